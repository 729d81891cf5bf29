//! The payload codecs: a byte store's payloads really are `BYTEA`; a row in
//! the other form, or one the codec cannot decode, fails reads and
//! subscriptions with its position; an event that cannot be encoded fails
//! its insert with nothing written; and a schema made by migrations 1 and
//! 2 (before byte payloads) upgrades with its JSON events readable.
//!
//! Needs `DATABASE_URL`, like tests/conformance.rs.

use hindsight::testkit::{TestEvent, TestKind};
use hindsight::{
    EventStore, ExpectedVersion, Flow, Position, Selector, StoreError, StreamId, StreamVersion,
    SubscriberError, SubscriberHandle, Transaction,
};
use hindsight_postgres::{BoxError, ByteCodec, Codec, PayloadForm, PgError, PgStore};
use sqlx::Connection;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

/// Long enough that only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(30);

fn ev(value: u64) -> TestEvent {
    TestEvent::new(TestKind::Alpha, value)
}

/// A JSON store and a byte (CBOR) store onto one fresh schema, or `None`
/// to skip.
async fn json_and_bytes() -> Option<(PgStore<TestEvent>, PgStore<TestEvent>)> {
    let url = common::database_url()?;
    let schema = common::fresh_schema();
    let json = PgStore::connect(&url, &schema).await.expect("a JSON store");
    let bytes = PgStore::connect_with_codec(&url, &schema, common::cbor())
        .await
        .expect("a byte store");
    Some((json, bytes))
}

/// The values `read_all` visits from the beginning, and how it ended.
async fn read_values(store: &PgStore<TestEvent>) -> (Vec<u64>, Result<(), PgError>) {
    let mut values = Vec::new();
    let ended = store
        .read_all(None, |event| {
            values.push(event.payload.value());
            ControlFlow::Continue(())
        })
        .await;
    (values, ended)
}

/// The values a subscription from the beginning handles before it ends,
/// and how it ended (a subscription that does not end within
/// [`PATIENCE`] fails the test).
async fn subscribed_values(
    store: &PgStore<TestEvent>,
) -> (Vec<u64>, Result<(), SubscriberError<Infallible, PgError>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let subscription = store
        .spawn_subscriber(Selector::all(), move |event| {
            sink.lock().unwrap().push(event.payload.value());
            Ok(Flow::Continue)
        })
        .await
        .expect("subscribe");
    let ended = tokio::time::timeout(PATIENCE, subscription.wait())
        .await
        .expect("the subscription did not end");
    let seen = seen.lock().unwrap().clone();
    (seen, ended)
}

/// Asserts that `error` is a decode failure at `position` whose source
/// says `why`.
fn assert_decode_failure(error: &PgError, position: u64, why: &str) {
    match error {
        PgError::Decode {
            position: at,
            source,
        } => {
            assert_eq!(*at, Position(position), "{error}");
            assert!(source.to_string().contains(why), "{error}");
        }
        other => panic!("expected a decode failure at position {position}, got {other:?}"),
    }
}

/// Asserts that reads and subscriptions of `store` deliver `delivered`,
/// then fail at `position` because of `why`.
async fn assert_reads_fail_at(
    store: &PgStore<TestEvent>,
    delivered: &[u64],
    position: u64,
    why: &str,
) {
    let (values, read) = read_values(store).await;
    assert_eq!(values, delivered);
    assert_decode_failure(&read.expect_err("the read passed"), position, why);

    let (values, ended) = subscribed_values(store).await;
    assert_eq!(values, delivered);
    match ended {
        Err(SubscriberError::Backend(error)) => assert_decode_failure(&error, position, why),
        other => panic!("expected a backend failure, got {other:?}"),
    }
}

/// A byte store writes `payload_bytes` (`BYTEA`, exactly the codec's
/// bytes) and leaves `payload` NULL; a JSON store the reverse; each reads
/// its own events back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_store_keeps_payloads_as_bytea_and_leaves_the_json_column_null() {
    let Some((json, bytes)) = json_and_bytes().await else {
        return;
    };
    let stream = StreamId::new();
    bytes
        .insert(Transaction::new().append(stream, ExpectedVersion::NoStream, [ev(7), ev(8)]))
        .await
        .unwrap();
    let other = StreamId::new();
    json.insert(Transaction::single(other, ExpectedVersion::NoStream, ev(9)))
        .await
        .unwrap();

    let rows: Vec<(Option<String>, Option<Vec<u8>>, String)> = sqlx::query_as(&format!(
        "SELECT payload::text, payload_bytes, pg_typeof(payload_bytes)::text \
         FROM \"{}\".events ORDER BY position",
        bytes.schema()
    ))
    .fetch_all(bytes.pool())
    .await
    .unwrap();
    let cbor = common::cbor::<TestEvent>();
    assert_eq!(rows.len(), 3);
    for (row, value) in rows[..2].iter().zip([7, 8]) {
        let (payload, stored, column_type) = row;
        assert_eq!(*payload, None, "the byte store wrote JSON");
        assert_eq!(column_type, "bytea");
        assert_eq!(
            stored.as_deref(),
            Some(&cbor.encode(&ev(value)).unwrap()[..])
        );
    }
    let (payload, stored, _) = &rows[2];
    assert_eq!(*stored, None, "the JSON store wrote bytes");
    let payload = payload.as_deref().expect("the JSON store's payload");
    assert!(payload.contains("\"value\": 9"), "{payload}");

    let mut own = Vec::new();
    bytes
        .read_stream(stream, StreamVersion(0), |event| {
            own.push(event.payload.value());
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(own, [7, 8]);
    json.read_stream(other, StreamVersion(0), |event| {
        own.push(event.payload.value());
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(own, [7, 8, 9]);
    common::drop_schema(&json).await;
}

/// A JSON store that meets a byte row fails reads and ends subscriptions
/// with that row's position, after every event before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_store_fails_at_the_position_of_a_byte_row() {
    let Some((json, bytes)) = json_and_bytes().await else {
        return;
    };
    let stream = StreamId::new();
    json.insert(Transaction::new().append(stream, ExpectedVersion::NoStream, [ev(0), ev(1)]))
        .await
        .unwrap();
    bytes
        .insert(Transaction::single(stream, ExpectedVersion::Any, ev(2)))
        .await
        .unwrap();
    assert_reads_fail_at(&json, &[0, 1], 2, "stored as bytes").await;
    common::drop_schema(&json).await;
}

/// A byte store that meets a JSON row fails reads and ends subscriptions
/// with that row's position, after every event before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_store_fails_at_the_position_of_a_json_row() {
    let Some((json, bytes)) = json_and_bytes().await else {
        return;
    };
    let stream = StreamId::new();
    bytes
        .insert(Transaction::single(
            stream,
            ExpectedVersion::NoStream,
            ev(0),
        ))
        .await
        .unwrap();
    json.insert(Transaction::new().append(stream, ExpectedVersion::Any, [ev(1), ev(2)]))
        .await
        .unwrap();
    assert_reads_fail_at(&bytes, &[0], 1, "stored as JSON").await;
    common::drop_schema(&json).await;
}

/// Values as 8 little-endian bytes; `encode` fails on 13 and panics on 14,
/// `decode` fails on 7 if `picky_decode`, and panics on 7 if not.
fn counters(picky_decode: bool) -> impl Codec<TestEvent> {
    ByteCodec::new(
        |event: &TestEvent| match event.value() {
            13 => Err("13 is not encodable".into()),
            14 => panic!("14 panics the encoder"),
            value => Ok(value.to_le_bytes().to_vec()),
        },
        move |bytes| {
            let value = u64::from_le_bytes(bytes.try_into()?);
            match value {
                7 if picky_decode => Err("7 is not decodable".into()),
                7 => panic!("7 panics the decoder"),
                value => Ok(ev(value)),
            }
        },
    )
}

/// A codec's failure or panic on decode fails reads and ends subscriptions
/// with the position of the event, after every event before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_failing_or_panicking_on_decode_fails_reads_at_the_position() {
    let Some(url) = common::database_url() else {
        return;
    };
    let schema = common::fresh_schema();
    let failing = PgStore::connect_with_codec(&url, &schema, counters(true))
        .await
        .unwrap();
    let stream = StreamId::new();
    failing
        .insert(Transaction::new().append(stream, ExpectedVersion::NoStream, [ev(5), ev(6), ev(7)]))
        .await
        .unwrap();
    assert_reads_fail_at(&failing, &[5, 6], 2, "7 is not decodable").await;

    let panicking = PgStore::connect_with_codec(&url, &schema, counters(false))
        .await
        .unwrap();
    assert_reads_fail_at(&panicking, &[5, 6], 2, "panicked: 7 panics the decoder").await;
    common::drop_schema(&failing).await;
}

/// A JSON-form codec that makes bytes which are not UTF-8 for the value
/// 15, and serde JSON for any other.
struct NotUtf8On15;

impl Codec<TestEvent> for NotUtf8On15 {
    fn form(&self) -> PayloadForm {
        PayloadForm::Json
    }

    fn encode(&self, event: &TestEvent) -> Result<Vec<u8>, BoxError> {
        match event.value() {
            15 => Ok(vec![b'"', 0xff, b'"']),
            _ => Ok(serde_json::to_vec(event)?),
        }
    }

    fn decode(&self, _: &[u8]) -> Result<TestEvent, BoxError> {
        Err("never stored".into())
    }
}

/// An event the codec fails on, panics on, or encodes as JSON that is not
/// UTF-8 fails the whole insert with `PgError::Encode` naming its stream
/// and type: no event, stream or position is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_encoded_fails_its_insert_and_writes_nothing() {
    let Some(url) = common::database_url() else {
        return;
    };
    let schema = common::fresh_schema();
    let store = PgStore::connect_with_codec(&url, &schema, counters(true))
        .await
        .unwrap();
    let not_utf8 = PgStore::connect_with_codec(&url, &schema, NotUtf8On15)
        .await
        .unwrap();
    let (first, second) = (StreamId::new(), StreamId::new());
    let cases = [
        (&store, 13, "13 is not encodable"),
        (&store, 14, "the codec panicked: 14 panics the encoder"),
        (&not_utf8, 15, "the JSON is not UTF-8"),
    ];
    for (store, value, why) in cases {
        let failed = store
            .insert(
                Transaction::new()
                    .append(first, ExpectedVersion::NoStream, [ev(1)])
                    .append(second, ExpectedVersion::NoStream, [ev(2), ev(value)]),
            )
            .await;
        match failed {
            Err(StoreError::Backend(PgError::Encode {
                stream,
                event_type,
                source,
            })) => {
                assert_eq!(stream, second);
                assert_eq!(event_type, "Alpha");
                assert!(source.to_string().contains(why), "{source}");
            }
            other => panic!("expected an encode failure ({why}), got {other:?}"),
        }
    }
    assert_eq!(store.head().await.unwrap(), None);
    assert_eq!(store.stream_head(first).await.unwrap(), None);
    let streams: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".streams"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(streams, 0, "a failed insert left stream rows");
    // The next insert takes position 0: none was used.
    let done = store
        .insert(Transaction::single(first, ExpectedVersion::NoStream, ev(1)))
        .await
        .unwrap();
    assert_eq!(done.last_position(), Some(Position(0)));
    common::drop_schema(&store).await;
}

/// A schema as migrations 1 and 2 left it, with events written by that
/// version's insert function, upgrades when a store opens it (and again,
/// idempotently): its JSON events read back, new ones follow them, the old
/// insert function is gone, and the one-payload check binds old rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_migrations_1_and_2_upgrades_and_keeps_its_json_events() {
    let Some(url) = common::database_url() else {
        return;
    };
    let schema = common::fresh_schema();
    let quoted = format!("\"{schema}\"");
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let old = include_str!("fixtures/schema_v2.sql")
        .replace("{s}", &quoted)
        .replace("{channel}", &format!("hindsight_{schema}"));
    sqlx::raw_sql(&old).execute(&mut db).await.unwrap();
    let stream = StreamId::new();
    let payloads = [ev(0), ev(1)].map(|event| serde_json::to_string(&event).unwrap());
    sqlx::query(&format!(
        "SELECT * FROM {quoted}.insert_events(ARRAY[$1::uuid], ARRAY[1::int2], ARRAY[0::int8], \
         ARRAY[2], ARRAY['Alpha', 'Alpha'], $2, NULL)"
    ))
    .bind(stream.as_uuid())
    .bind(&payloads[..])
    .fetch_all(&mut db)
    .await
    .expect("an insert with the old function");

    // The first open migrates; the second finds nothing to do.
    let mut stores = Vec::new();
    for _ in 0..2 {
        stores.push(PgStore::<TestEvent>::connect(&url, &schema).await.unwrap());
        let versions: Vec<i32> = sqlx::query_scalar(&format!(
            "SELECT version FROM {quoted}.migrations ORDER BY version"
        ))
        .fetch_all(&mut db)
        .await
        .unwrap();
        // Every migration, in order: 1 to 5 and the event metadata's
        // (whose number is not pinned here).
        let every: Vec<i32> = (1..=versions.len() as i32).collect();
        assert_eq!(versions, every);
        assert!(versions.len() >= 6, "{versions:?}");
    }
    let store = stores.pop().expect("two stores");
    let (values, read) = read_values(&store).await;
    read.unwrap();
    assert_eq!(values, [0, 1]);
    let done = store
        .insert(Transaction::single(
            stream,
            ExpectedVersion::Exact(StreamVersion(1)),
            ev(2),
        ))
        .await
        .unwrap();
    assert_eq!(done.last_position(), Some(Position(2)));
    let mut read = Vec::new();
    store
        .read_stream(stream, StreamVersion(0), |event| {
            read.push((event.version.0, event.payload.value()));
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(read, [(0, 0), (1, 1), (2, 2)]);

    let functions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = $1 AND p.proname = 'insert_events'",
    )
    .bind(&schema)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(
        functions, 1,
        "the old insert function is left beside the new one"
    );
    let both = sqlx::query(&format!(
        "UPDATE {quoted}.events SET payload_bytes = '\\x00' WHERE position = 0"
    ))
    .execute(&mut db)
    .await
    .expect_err("an old row took a second payload");
    assert_eq!(
        both.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23514"),
        "{both}"
    );
    common::drop_schema(&store).await;
}
