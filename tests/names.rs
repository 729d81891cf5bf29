//! Named streams and categories on the memory store (contract rule 32):
//! what the conformance kit cannot see (`Debug`, the pull subscription,
//! races between a stream's first appends by name and by id).

use hindsight::{
    ExpectedVersion, InsertError, MemoryStore, Selector, Start, StreamId, StreamName,
    StreamNameError, Transaction, Uuid, MAX_STREAM_NAME_LEN,
};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use ExpectedVersion::{Any, NoStream};

fn name(text: &str) -> StreamName {
    StreamName::new(text).unwrap()
}

#[test]
fn from_name_is_the_uuidv5_of_the_name_under_the_documented_namespace() {
    let namespace = Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        b"https://docs.rs/hindsight/stream-names",
    );
    assert_eq!(StreamId::NAMESPACE, namespace);
    assert_eq!(
        StreamId::NAMESPACE.to_string(),
        "c32cb92e-f5d8-5de9-a48e-4a237f9467ba"
    );
    for text in ["order-42", "", "ünïcødé-1", "a"] {
        let id = StreamId::from_name(text);
        assert_eq!(*id.as_uuid(), Uuid::new_v5(&namespace, text.as_bytes()));
        assert_eq!(id.as_uuid().get_version_num(), 5);
    }
    assert_ne!(
        StreamId::from_name("order-42"),
        StreamId::from_name("order-43")
    );
}

#[test]
fn a_bad_name_is_an_error_value_and_the_bound_is_in_bytes() {
    assert_eq!(StreamName::new(""), Err(StreamNameError::Empty));
    assert_eq!(
        StreamName::new("order-\0"),
        Err(StreamNameError::Nul { at: 6 })
    );
    let longest = "x".repeat(MAX_STREAM_NAME_LEN);
    assert!(StreamName::new(longest.as_str()).is_ok());
    assert_eq!(
        StreamName::new(format!("{longest}x")),
        Err(StreamNameError::TooLong {
            len: MAX_STREAM_NAME_LEN + 1,
            max: MAX_STREAM_NAME_LEN
        })
    );
    // 512 two-byte characters fit exactly; one more does not.
    assert!(StreamName::new("é".repeat(512)).is_ok());
    assert!(matches!(
        StreamName::try_from("é".repeat(513)),
        Err(StreamNameError::TooLong { len: 1026, .. })
    ));
    assert_eq!(
        StreamNameError::TooLong {
            len: 1025,
            max: 1024
        }
        .to_string(),
        "a stream name of 1025 bytes is too long: at most 1024"
    );
}

#[test]
fn a_named_stream_shows_its_name_in_debug_output_errors_and_envelopes() {
    let store = MemoryStore::new();
    let order = name("order-42");
    store
        .insert(Transaction::new().append_named(&order, NoStream, ["placed"]))
        .unwrap();

    let event = store.read_all(Start::Beginning).next().unwrap();
    assert_eq!(event.stream_name(), Some("order-42"));
    assert_eq!(event.category(), Some("order"));
    assert!(format!("{event:?}").contains(r#"stream_name: Some("order-42")"#));
    let handle = store.stream(order.id());
    assert!(format!("{handle:?}").contains(r#"name: Some("order-42")"#));
    assert_eq!(format!("{order:?}"), r#"StreamName("order-42")"#);

    // A conflict by id on the named stream prints the kept name.
    let error = store
        .insert(Transaction::single(order.id(), NoStream, "again"))
        .unwrap_err();
    let InsertError::VersionConflict(mismatches) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(mismatches[0].stream_name, Some(order.clone()));
    assert!(error
        .to_string()
        .contains(&format!(r#"stream "order-42" ({})"#, order.id())));
    // Through a handle too.
    let error = handle.append_one(NoStream, "via handle").unwrap_err();
    assert!(error.to_string().contains(r#"stream "order-42""#));

    // Unnamed streams print as before.
    let unnamed = StreamId::new();
    store
        .insert(Transaction::single(unnamed, NoStream, "x"))
        .unwrap();
    let error = store
        .insert(Transaction::single(unnamed, NoStream, "y"))
        .unwrap_err();
    assert!(error
        .to_string()
        .starts_with(&format!("wrong expected version: stream {unnamed}: ")));
}

#[test]
fn appends_to_one_stream_merged_in_a_transaction_keep_the_first_name_given() {
    let store = MemoryStore::new();
    let order = name("order-1");
    // By id first, then by name: merged into one append, which has a name.
    store
        .insert(
            Transaction::new()
                .append(order.id(), NoStream, [1])
                .append_named(&order, Any, [2])
                .append(StreamId::new(), NoStream, [3]),
        )
        .unwrap();
    assert_eq!(store.stream_name(order.id()), Some(order));
}

#[test]
fn a_category_pull_subscription_gets_history_then_live_events_and_skips_the_rest() {
    let store = MemoryStore::new();
    let (first, second) = (name("order-1"), name("order-2"));
    store
        .insert(
            Transaction::new()
                .append_named(&first, Any, ["order 1 placed"])
                .append_named(&name("cart-1"), Any, ["cart"]),
        )
        .unwrap();
    store
        .insert(Transaction::single(
            StreamId::from_name("order-3"),
            Any,
            "by id",
        ))
        .unwrap();

    let mut orders = store.subscribe(Selector::category("order"));
    assert_eq!(*orders.next().unwrap().payload(), "order 1 placed");
    assert!(orders.try_next().unwrap().is_none());
    assert!(orders.is_caught_up());

    let writer = store.clone();
    let second_writer = second.clone();
    let live = std::thread::spawn(move || {
        writer
            .insert(Transaction::single(StreamId::new(), Any, "unnamed"))
            .unwrap();
        writer
            .insert(Transaction::new().append_named(&second_writer, Any, ["order 2 placed"]))
            .unwrap();
    });
    let event = orders.next().unwrap(); // blocks until the order commits
    assert_eq!(
        (*event.payload(), event.stream_id()),
        ("order 2 placed", second.id())
    );
    live.join().unwrap();
    assert!(orders
        .next_timeout(Duration::from_millis(10))
        .unwrap()
        .is_none());
    // Skipped events still advance it (rule 18): it has passed them all.
    assert_eq!(orders.passed(), store.head());
}

/// Writers race to make one stream: some append by name, some by id. The
/// first to record decides the name, and every reader agrees on it:
/// category subscriptions started before and after the race deliver all of
/// the stream's events if it is named, none if it is not.
#[test]
fn racing_first_appends_by_name_and_by_id_give_every_reader_one_answer() {
    for round in 0..50 {
        let store = MemoryStore::new();
        let contested = name(&format!("race-{round}"));
        let before = store.subscribe(Selector::category("race"));
        let barrier = Arc::new(Barrier::new(4));
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let (store, barrier, contested) =
                    (store.clone(), Arc::clone(&barrier), contested.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..5 {
                        let tx = if writer % 2 == 0 {
                            Transaction::new().append_named(&contested, Any, [writer * 10 + i])
                        } else {
                            Transaction::single(contested.id(), Any, writer * 10 + i)
                        };
                        store.insert(tx).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let named = store.stream_name(contested.id()).is_some();
        let first_by_name = store
            .read_all(Start::Beginning)
            .next()
            .is_some_and(|event| event.payload() % 20 < 10);
        assert_eq!(
            named, first_by_name,
            "round {round}: the first append decides"
        );
        assert!(store
            .read_all(Start::Beginning)
            .all(|event| event.stream_name().is_some() == named));

        let after = store.subscribe(Selector::category("race"));
        for mut subscription in [before, after] {
            let delivered = subscription.drain(|_| {}).unwrap();
            assert_eq!(delivered, if named { 20 } else { 0 }, "round {round}");
        }
    }
}
