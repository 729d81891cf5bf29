//! Event metadata in PostgreSQL (rule 33; the kit checks the round trip):
//! its stored form, `NULL` for events without, and a row whose headers are
//! not what the store writes fails the read with its position.
//!
//! Needs `DATABASE_URL`, like tests/conformance.rs.

use hindsight::testkit::{TestEvent, TestKind};
use hindsight::{
    CausationId, EventData, EventStore, ExpectedVersion, Metadata, Position, StreamId, Transaction,
};
use hindsight_postgres::{PgError, PgStore};
use std::ops::ControlFlow;

mod common;

fn ev(value: u64) -> TestEvent {
    TestEvent::new(TestKind::Alpha, value)
}

#[tokio::test]
async fn metadata_is_stored_in_its_columns_and_null_without() {
    let Some(url) = common::database_url() else {
        return;
    };
    let store = PgStore::<TestEvent>::connect(&url, &common::fresh_schema())
        .await
        .unwrap();
    let cause = CausationId::new();
    let metadata = Metadata::new()
        .with_causation_id(cause)
        .with_header("b", "2")
        .and_then(|m| m.with_header("a", "1"))
        .unwrap();
    store
        .insert(Transaction::new().append_with(
            StreamId::new(),
            ExpectedVersion::NoStream,
            [
                EventData::new(ev(0)).with_metadata(metadata),
                EventData::new(ev(1)),
            ],
        ))
        .await
        .unwrap();
    store
        .insert(Transaction::single(
            StreamId::new(),
            ExpectedVersion::Any,
            ev(2),
        ))
        .await
        .unwrap();
    let rows: Vec<(Option<hindsight::Uuid>, Option<String>)> = sqlx::query_as(&format!(
        "SELECT causation_id, headers::text FROM \"{}\".events ORDER BY position",
        store.schema()
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            (
                Some(*cause.as_uuid()),
                Some(r#"[["b", "2"], ["a", "1"]]"#.to_owned())
            ),
            (None, None),
            (None, None),
        ]
    );
    common::drop_schema(&store).await;
}

#[tokio::test]
async fn headers_the_store_did_not_write_fail_the_read_with_their_position() {
    let Some(url) = common::database_url() else {
        return;
    };
    let store = PgStore::<TestEvent>::connect(&url, &common::fresh_schema())
        .await
        .unwrap();
    store
        .insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [ev(0), ev(1)]))
        .await
        .unwrap();
    for (headers, what) in [
        (r#"{"a": "1"}"#, "not a list of pairs"),
        (r#"[["a", "1"], ["a", "2"]]"#, "duplicate key"),
        (r#"[["", "1"]]"#, "empty key"),
    ] {
        sqlx::query(&format!(
            "UPDATE \"{}\".events SET headers = $1::jsonb WHERE position = 1",
            store.schema()
        ))
        .bind(headers)
        .execute(store.pool())
        .await
        .unwrap();
        let mut read = Vec::new();
        let ended = store
            .read_all(None, |event| {
                read.push(event.payload.value());
                ControlFlow::Continue(())
            })
            .await;
        assert_eq!(read, [0], "{what}");
        match ended {
            Err(PgError::Corrupt { position, .. }) => {
                assert_eq!(position, Some(Position(1)), "{what}")
            }
            other => panic!("{what}: expected a corrupt row, got {other:?}"),
        }
    }
    common::drop_schema(&store).await;
}
