//! Named streams and categories: contract rule 32.

use super::support::*;
use super::{StoreFactory, TestEvent, TestKind};
use crate::{
    EventStore, ExpectedVersion, Position, Selector, StreamId, StreamName, StreamVersion,
    SubscriberHandle, Transaction, Uuid,
};
use ExpectedVersion::{Any, NoStream, StreamExists};

fn name(text: &str) -> StreamName {
    StreamName::new(text).unwrap_or_else(|error| panic!("{text:?}: {error}"))
}

async fn name_of<S: EventStore>(store: &S, stream: StreamId) -> Option<StreamName> {
    match store.stream_name(stream).await {
        Ok(name) => name,
        Err(error) => panic!("stream_name failed: {error}"),
    }
}

/// Rule 32: a name's id is fixed (UUIDv5 under the crate's namespace, the
/// same in every store), and the store keeps the name given with a
/// stream's first event, and only that one: not a name given to a stream
/// first written by id, not one from a failed insert or a pure check.
pub fn rule_32_names_give_fixed_ids_and_the_store_keeps_the_first<F: StoreFactory>(factory: &F) {
    run("rule_32", async {
        // The id of a name never changes: pinned here for every backend.
        let pinned = Uuid::from_u128(0xef43_bdfe_97b9_5894_9241_c2f6_da76_db3b);
        assert_eq!(StreamId::from_name("order-42"), StreamId::from_uuid(pinned));
        let order = name("order-42");
        assert_eq!(order.id(), StreamId::from_uuid(pinned));

        let store = factory.create().await;
        assert_eq!(name_of(&store, order.id()).await, None, "no such stream");
        // A pure check by name creates nothing, so names nothing.
        insert(
            &store,
            Transaction::new().append_named(&order, NoStream, []),
        )
        .await;
        assert_eq!(name_of(&store, order.id()).await, None, "a pure check");
        // A failed insert names nothing.
        conflict(
            &store,
            Transaction::new().append_named(&order, StreamExists, [ev(0)]),
        )
        .await;
        assert_eq!(name_of(&store, order.id()).await, None, "a failed insert");

        // Named and unnamed streams in one transaction.
        let cart = name("cart-7");
        let unnamed = StreamId::new();
        insert(
            &store,
            Transaction::new()
                .append_named(&order, NoStream, [ev(1), ev(2)])
                .append(unnamed, NoStream, [ev(3)])
                .append_named(&cart, NoStream, [ev(4)]),
        )
        .await;
        assert_eq!(name_of(&store, order.id()).await, Some(order.clone()));
        assert_eq!(name_of(&store, cart.id()).await, Some(cart.clone()));
        assert_eq!(name_of(&store, unnamed).await, None);
        // Appends by id go to the named stream, which keeps its name.
        insert(&store, Transaction::single(order.id(), Any, ev(5))).await;
        assert_eq!(name_of(&store, order.id()).await, Some(order.clone()));
        let versions: Vec<u64> = read_stream(&store, order.id(), StreamVersion(0))
            .await
            .iter()
            .map(|row| row.version.get())
            .collect();
        assert_eq!(versions, [0, 1, 2]);

        // A stream first written by id stays unnamed, even once appended
        // to by the name whose id it is: the first append decides.
        let late = name("late-1");
        insert(&store, Transaction::single(late.id(), NoStream, ev(6))).await;
        insert(
            &store,
            Transaction::new().append_named(&late, StreamExists, [ev(7)]),
        )
        .await;
        assert_eq!(
            name_of(&store, late.id()).await,
            None,
            "first written by id"
        );

        // Another store: the same name, the same id, its own names.
        let other = factory.create().await;
        assert_eq!(name_of(&other, order.id()).await, None);
        insert(
            &other,
            Transaction::new().append_named(&name("order-42"), NoStream, [ev(8)]),
        )
        .await;
        assert_eq!(name_of(&other, order.id()).await, Some(order));
    });
}

/// Rules 32 and 7: a version conflict names a named stream: by the name
/// the store keeps (also when the failing append was by id), or else by
/// the name the failing append gave; an unnamed stream's has no name.
pub fn rule_32_a_conflict_on_a_named_stream_names_it<F: StoreFactory>(factory: &F) {
    run("rule_32", async {
        let store = factory.create().await;
        let order = name("order-42");
        let unnamed = StreamId::new();
        insert(
            &store,
            Transaction::new().append_named(&order, NoStream, [ev(0)]),
        )
        .await;
        insert(&store, Transaction::single(unnamed, NoStream, ev(1))).await;

        // By name, by id, and a missing stream by name, in one transaction.
        let missing = name("invoice-9");
        let mismatches = conflict(
            &store,
            Transaction::new()
                .append_named(&order, NoStream, [ev(2)])
                .append(unnamed, NoStream, [ev(3)])
                .append_named(&missing, StreamExists, [ev(4)]),
        )
        .await;
        let named = |stream: StreamId| {
            mismatches
                .iter()
                .find(|m| m.stream == stream)
                .unwrap_or_else(|| panic!("{stream} is not reported: {mismatches:?}"))
                .stream_name
                .clone()
        };
        assert_eq!(mismatches.len(), 3, "{mismatches:?}");
        assert_eq!(named(order.id()), Some(order.clone()));
        assert_eq!(named(missing.id()), Some(missing.clone()));
        assert_eq!(named(unnamed), None);
        let order_mismatch = mismatches.iter().find(|m| m.stream == order.id()).unwrap();
        assert_eq!(
            order_mismatch.to_string(),
            format!(
                "stream \"order-42\" ({}): expected NoStream, found version 0 at position 0",
                order.id()
            )
        );

        // One stream, appended to by id: the kept name.
        let mismatches = conflict(&store, Transaction::single(order.id(), NoStream, ev(5))).await;
        assert_eq!(mismatches[0].stream_name, Some(order));
        assert_eq!(mismatches[0].found, Some(head(0, 0)));
    });
}

/// Rules 32, 17 and 16: `Selector::category` delivers exactly the events
/// of the named streams of that category, in position order, history then
/// live, from the beginning or after a position: not unnamed streams (a
/// stream written by the id of a name in the category included), not names
/// without a `-`, not categories that merely start alike.
pub fn rule_32_category_subscriptions_deliver_exactly_the_category_in_order<F: StoreFactory>(
    factory: &F,
) {
    run("rule_32", async {
        let store = factory.create().await;
        let in_category = [name("order-1"), name("order-2"), name("order-2-line-1")];
        let others = [
            name("orderly-1"),
            name("order"),
            name("cart-1"),
            name("-order"),
        ];
        let by_id = StreamId::from_name("order-3");
        let mut selected_ids: Vec<StreamId> = in_category.iter().map(StreamName::id).collect();
        selected_ids.sort();

        // Writes a round: every stream, in three transactions.
        let round = |round: u64| {
            let store = &store;
            let (in_category, others) = (&in_category, &others);
            async move {
                let value = |i: u64| TestEvent::new(TestKind::Alpha, round * 100 + i);
                let mut mixed = Transaction::new()
                    .append_named(&in_category[0], Any, [value(0), value(1)])
                    .append_named(&others[0], Any, [value(2)])
                    .append(by_id, Any, [value(3)]);
                for (i, other) in others.iter().enumerate().skip(1) {
                    mixed = mixed.append_named(other, Any, [value(10 + i as u64)]);
                }
                insert(store, mixed).await;
                insert(
                    store,
                    Transaction::new().append_named(&in_category[1], Any, [value(20)]),
                )
                .await;
                let beta = TestEvent::new(TestKind::Beta, round * 100 + 30);
                insert(
                    store,
                    Transaction::new()
                        .append_named(&in_category[2], Any, [beta])
                        .append(StreamId::new(), Any, [value(31)]),
                )
                .await
                .last_position()
                .unwrap()
            }
        };

        round(0).await;
        let before = record(&store, Selector::category("order")).await;
        let middle = round(1).await;
        let after = record(&store, Selector::category("order").after(middle)).await;
        let only_beta = record(&store, Selector::category("order").only_types(["Beta"])).await;
        let last = round(2).await;

        let all = read_all(&store, None).await;
        let expected: Vec<_> = all
            .iter()
            .filter(|row| selected_ids.binary_search(&row.stream).is_ok())
            .cloned()
            .collect();
        assert_eq!(expected.len(), 12, "3 rounds of 4 events");
        for (label, (subscription, recorded), from, beta_only) in [
            ("started after round 0", &before, None, false),
            ("after round 1's last position", &after, Some(middle), false),
            ("only Beta", &only_beta, None, true),
        ] {
            reach(subscription, last).await;
            let wanted: Vec<_> = expected
                .iter()
                .filter(|row| from.is_none_or(|p: Position| row.position() > p))
                .filter(|row| !beta_only || row.event.kind() == TestKind::Beta)
                .cloned()
                .collect();
            assert_eq!(snapshot(recorded), wanted, "{label}");
            subscription.cancel().await;
        }
        assert_eq!(snapshot(&only_beta.1).len(), 3, "one Beta a round");
    });
}
