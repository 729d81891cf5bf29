//! The whole conformance kit against a real PostgreSQL server, one schema
//! per store, twice: with the default JSON payloads, and (module `bytes`)
//! with a byte codec (CBOR in `payload_bytes`). After each case that
//! passed, the schema invariants of every store it made are checked and
//! the schemas dropped.
//!
//! Needs `DATABASE_URL` (`.ci/run` starts a throwaway server and sets it).
//! Without it every test passes after one line on stderr, unless `CI` is
//! set, where a missing database is a failure.

use hindsight::testkit::{StoreFactory, TestEvent};
use hindsight_postgres::{PgError, PgStore};
use sqlx::Connection;
use std::sync::Mutex;

mod common;

/// Fresh stores in fresh schemas of the database at `url`; remembers them
/// for the checks after the case.
struct Pg {
    url: String,
    /// Payloads as bytes (CBOR), not JSON.
    bytes: bool,
    schemas: Mutex<Vec<String>>,
}

impl Pg {
    /// The factory for `DATABASE_URL`, or `None` to skip.
    fn from_env(bytes: bool) -> Option<Self> {
        common::database_url().map(|url| Pg {
            url,
            bytes,
            schemas: Mutex::new(Vec::new()),
        })
    }

    /// A handle onto the store in `schema`, with the factory's codec.
    async fn open(&self, schema: &str) -> Result<PgStore<TestEvent>, PgError> {
        if self.bytes {
            PgStore::connect_with_codec(&self.url, schema, common::cbor()).await
        } else {
            PgStore::connect(&self.url, schema).await
        }
    }
}

impl StoreFactory for Pg {
    type Store = PgStore<TestEvent>;

    async fn create(&self) -> PgStore<TestEvent> {
        let schema = common::fresh_schema();
        self.schemas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(schema.clone());
        self.open(&schema)
            .await
            .unwrap_or_else(|error| panic!("cannot open a store in {schema}: {error}"))
    }

    /// A separate pool and listener onto the same schema.
    async fn another_handle(&self, store: &PgStore<TestEvent>) -> PgStore<TestEvent> {
        self.open(store.schema())
            .await
            .unwrap_or_else(|error| panic!("cannot open another handle: {error}"))
    }
}

/// One number per invariant, each 0 when it holds.
const INVARIANTS: &str = r#"
SELECT
  (SELECT next_position FROM {s}.log_head) - (SELECT count(*) FROM {s}.events)
    AS "counter = row count",
  (SELECT next_position FROM {s}.log_head) - (SELECT coalesce(max(position) + 1, 0) FROM {s}.events)
    AS "counter = max position + 1",
  (SELECT count(*) FROM {s}.streams st
     WHERE st.last_version IS DISTINCT FROM
             (SELECT max(version) FROM {s}.events e WHERE e.stream_id = st.stream_id)
        OR st.last_position IS DISTINCT FROM
             (SELECT max(position) FROM {s}.events e WHERE e.stream_id = st.stream_id))
    AS "heads = maxima",
  (SELECT count(*) FROM (SELECT stream_id FROM {s}.events GROUP BY stream_id
                         HAVING count(*) <> max(version) + 1) gaps)
    AS "versions dense",
  (SELECT count(DISTINCT e.stream_id) FROM {s}.events e
     WHERE NOT EXISTS (SELECT 1 FROM {s}.streams st WHERE st.stream_id = e.stream_id))
    AS "every stream has a head",
  (SELECT count(*) FROM {s}.events WHERE {other} IS NOT NULL)
    AS "every payload in the codec's column"
"#;

impl Drop for Pg {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return; // the case failed: keep its schemas to look at
        }
        let schemas = std::mem::take(self.schemas.get_mut().unwrap_or_else(|e| e.into_inner()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the invariant checks");
        runtime.block_on(async {
            let mut db = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect for the invariant checks");
            for schema in schemas {
                let other = if self.bytes {
                    "payload"
                } else {
                    "payload_bytes"
                };
                let sql = INVARIANTS
                    .replace("{s}", &format!("\"{schema}\""))
                    .replace("{other}", other);
                let row = sqlx::query(&sql)
                    .fetch_one(&mut db)
                    .await
                    .unwrap_or_else(|error| panic!("checking {schema}: {error}"));
                use sqlx::{Column, Row};
                for (i, column) in row.columns().iter().enumerate() {
                    let off: i64 = row.get(i);
                    assert_eq!(
                        off,
                        0,
                        "schema {schema}: invariant `{}` broken",
                        column.name()
                    );
                }
                sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    .execute(&mut db)
                    .await
                    .unwrap_or_else(|error| panic!("dropping {schema}: {error}"));
            }
        });
    }
}

hindsight::conformance_tests!({
    let Some(factory) = Pg::from_env(false) else {
        return;
    };
    factory
});

/// The kit again with payloads as bytes.
mod bytes {
    use super::Pg;

    hindsight::conformance_tests!({
        let Some(factory) = Pg::from_env(true) else {
            return;
        };
        factory
    });
}
