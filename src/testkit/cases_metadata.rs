//! Per-event metadata (causation id and headers): contract rule 33.

use super::support::*;
use super::{StoreFactory, TestEvent};
use crate::ExpectedVersion::{Any, NoStream, StreamExists};
use crate::{
    CausationId, CorrelationId, EventData, Metadata, Position, Selector, StreamId, StreamVersion,
    SubscriberHandle, Transaction, Uuid,
};

/// Metadata with `causation` (if any) and the headers `pairs`.
fn metadata(causation: Option<u128>, pairs: &[(&str, &str)]) -> Metadata {
    let mut metadata = Metadata::new();
    if let Some(causation) = causation {
        metadata = metadata.with_causation_id(CausationId::from_uuid(Uuid::from_u128(causation)));
    }
    for (key, value) in pairs {
        metadata
            .insert_header(key, value)
            .unwrap_or_else(|error| panic!("{key:?}: {error}"));
    }
    metadata
}

/// The event of value `value` with `metadata`.
fn with(value: u64, metadata: &Metadata) -> EventData<TestEvent> {
    EventData::new(ev(value)).with_metadata(metadata.clone())
}

/// Every event's metadata by value, as `rows` has them, in their order.
fn by_value<C>(rows: &[Row<C>]) -> Vec<(u64, Metadata)> {
    rows.iter()
        .map(|row| (row.event.value(), row.metadata.clone()))
        .collect()
}

/// Rule 33 (with 9 and 10): each event reads back exactly the metadata it
/// was appended with, and an event appended without reads it empty, in
/// every read and every subscription: in a multi-stream transaction whose
/// streams are laid out in id order (rule 9), with appends to one stream
/// merged (rule 10), mixed with events without metadata, beside a
/// correlation id, and in a later transaction that has none.
pub fn rule_33_each_event_keeps_its_own_metadata_through_reads_and_subscriptions<
    F: StoreFactory,
>(
    factory: &F,
) {
    run("rule_33", async {
        let store = factory.create().await;
        let live = record(&store, Selector::all()).await;
        let (low, high) = (sid(1), sid(2));
        let caused = metadata(Some(7), &[]);
        let headed = metadata(None, &[("user", "ada"), ("source", "api")]);
        let both = metadata(Some(8), &[("tenant", "acme"), ("é", "ünïcode ✓")]);
        let empty = Metadata::new();

        // `high` is named first but laid out second; its two appends merge.
        let first = insert(
            &store,
            Transaction::new()
                .append_with(high, NoStream, [with(10, &caused), with(11, &empty)])
                .append(low, NoStream, [ev(0), ev(1)])
                .append_with(high, StreamExists, [with(12, &headed)])
                .append_with(low, Any, [with(2, &both)])
                .with_correlation_id(CorrelationId::from_uuid(Uuid::from_u128(99))),
        )
        .await;
        assert_eq!(first.last_position(), Some(Position(5)));
        // Metadata alone, no correlation id; then nothing at all.
        insert(
            &store,
            Transaction::new().append_with(low, Any, [with(3, &both), with(4, &empty)]),
        )
        .await;
        let last = insert(&store, Transaction::single(high, Any, ev(13)))
            .await
            .last_position()
            .expect("one event");

        let expected = [
            (0, empty.clone()),
            (1, empty.clone()),
            (2, both.clone()),
            (10, caused.clone()),
            (11, empty.clone()),
            (12, headed.clone()),
            (3, both.clone()),
            (4, empty.clone()),
            (13, empty.clone()),
        ];
        let all = assert_well_formed(&store).await;
        assert_eq!(by_value(&all), expected, "read_all");
        let correlated: Vec<bool> = all.iter().map(|r| r.correlation_id.is_some()).collect();
        assert_eq!(
            correlated,
            [true, true, true, true, true, true, false, false, false]
        );

        let high_rows = read_stream(&store, high, StreamVersion(1)).await;
        assert_eq!(
            by_value(&high_rows),
            [
                (11, empty.clone()),
                (12, headed.clone()),
                (13, empty.clone())
            ],
            "read_stream from version 1"
        );

        // Live, from before the writes, and history, from after the first.
        let history = record(
            &store,
            Selector::all().after(first.last_position().unwrap()),
        )
        .await;
        let one_stream = record(&store, Selector::stream(low)).await;
        for (label, (subscription, rows), wanted) in [
            ("live, all streams", &live, expected.to_vec()),
            ("history after the first", &history, expected[6..].to_vec()),
            (
                "one stream",
                &one_stream,
                expected
                    .iter()
                    .filter(|(value, _)| *value < 10)
                    .cloned()
                    .collect(),
            ),
        ] {
            reach(subscription, last).await;
            assert_eq!(by_value(&snapshot(rows)), wanted, "{label}");
            subscription.cancel().await;
        }

        // Another handle reads the same.
        let other = factory.another_handle(&store).await;
        assert_eq!(
            by_value(&read_all(&other, None).await),
            expected,
            "another handle"
        );
    });
}

/// Rule 33: metadata at every limit (the most headers, the longest key and
/// value, multi-byte text, keys differing only in case) comes back exactly,
/// headers in the order they were added; a failed insert with metadata
/// writes nothing, and the events after it read their own.
pub fn rule_33_metadata_at_its_limits_round_trips_exactly<F: StoreFactory>(factory: &F) {
    run("rule_33", async {
        let store = factory.create().await;
        let stream = StreamId::new();

        let mut full = Metadata::new().with_causation_id(CausationId::new());
        for i in (0..Metadata::MAX_HEADERS).rev() {
            full.insert_header(&format!("header-{i:02}"), &format!("value {i}"))
                .unwrap_or_else(|error| panic!("header {i}: {error}"));
        }
        let key = "k".repeat(Metadata::MAX_KEY_LEN);
        let value = "√".repeat(Metadata::MAX_VALUE_LEN / 3);
        let longest = metadata(None, &[(key.as_str(), value.as_str())]);
        let cased = metadata(None, &[("Key", "upper"), ("key", "lower"), ("empty", "")]);

        // A failed insert first: nothing of it is written.
        conflict(
            &store,
            Transaction::new().append_with(stream, StreamExists, [with(0, &full)]),
        )
        .await;
        assert_eq!(
            store_head(&store).await,
            None,
            "the failed insert wrote nothing"
        );

        insert(
            &store,
            Transaction::new().append_with(
                stream,
                NoStream,
                [with(1, &full), with(2, &longest), with(3, &cased)],
            ),
        )
        .await;
        let rows = read_stream(&store, stream, StreamVersion(0)).await;
        assert_eq!(
            by_value(&rows),
            [(1, full.clone()), (2, longest.clone()), (3, cased.clone())]
        );
        let order: Vec<&str> = rows[0].metadata.headers().map(|(key, _)| key).collect();
        let wanted: Vec<String> = (0..Metadata::MAX_HEADERS)
            .rev()
            .map(|i| format!("header-{i:02}"))
            .collect();
        assert_eq!(order, wanted, "headers keep the order they were added in");
        assert_eq!(rows[1].metadata.header(&key), Some(&*value));
        assert_eq!(rows[2].metadata.header("key"), Some("lower"));
        assert_eq!(rows[2].metadata.header("empty"), Some(""));
    });
}
