//! What the PostgreSQL tests share: where the database is, or why not.

use std::io::Write;
use std::sync::Once;

/// `DATABASE_URL`, or `None` (after one line on stderr) if it is not set;
/// panics if it is not set and `CI` is: in CI the tests must run.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
                panic!("DATABASE_URL is not set, but CI is: the PostgreSQL tests must run in CI");
            }
            static SKIP: Once = Once::new();
            SKIP.call_once(|| {
                // Straight to stderr, past the test harness's capture.
                let _ = writeln!(
                    std::io::stderr(),
                    "hindsight-postgres: DATABASE_URL is not set; skipping the PostgreSQL tests"
                );
            });
            None
        }
    }
}

/// A fresh schema name.
pub fn fresh_schema() -> String {
    format!("hs_test_{}", hindsight::Uuid::new_v4().simple())
}

/// A byte codec in a real binary serde format (CBOR): what a store of
/// `PgStore::connect_with_codec` keeps in `payload_bytes`.
#[allow(dead_code)] // not every test binary opens a byte store
pub fn cbor<E>() -> impl hindsight_postgres::Codec<E>
where
    E: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    hindsight_postgres::ByteCodec::new(
        |event: &E| {
            let mut bytes = Vec::new();
            ciborium::into_writer(event, &mut bytes)?;
            Ok(bytes)
        },
        |bytes| Ok(ciborium::from_reader(bytes)?),
    )
}

/// Drops `store`'s schema, with everything in it (after a passing test).
#[allow(dead_code)] // the conformance kit drops its schemas itself
pub async fn drop_schema<E: 'static>(store: &hindsight_postgres::PgStore<E>) {
    sqlx::raw_sql(&format!("DROP SCHEMA \"{}\" CASCADE", store.schema()))
        .execute(store.pool())
        .await
        .expect("drop the schema");
}
