//! [`PgStore`]: connecting, inserting and reading.

use crate::codec::{Codec, JsonCodec, PayloadForm, StoreCodec};
use crate::error::PgError;
use crate::listener::Listener;
use crate::row::{self, Stored};
use crate::schema::{Sql, CONFLICT_SQLSTATE, DELETED_SQLSTATE, ID_CONFLICT_SQLSTATE};
use crate::subscription::{self, PgSubscriber};
use hindsight::{
    Committed, CorrelationId, EventId, EventIdMismatch, EventRef, EventStore, EventType,
    ExpectedVersion, Flow, Position, Selector, StoreError, StreamHead, StreamId, StreamName,
    StreamVersion, StreamWrite, Transaction, Uuid, VersionMismatch,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::postgres::{PgDatabaseError, PgPoolOptions};
use sqlx::{PgPool, Row};
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
#[cfg(feature = "tracing")]
use {crate::trace, tracing::Instrument};

/// How many rows one query of a read or a subscription fetches.
pub(crate) const PAGE: i64 = 500;

/// The end (exclusive) of the window of positions that an all-streams page
/// starting at `first` may scan: `PAGE` positions. Positions are dense, so
/// an unfiltered window holds `PAGE` events at most, and a page's cost is
/// bounded whatever plan PostgreSQL picks (see `Sql::subscription_page`).
pub(crate) fn window_end(first: i64) -> i64 {
    first.saturating_add(PAGE)
}

/// How many connections [`PgStore::connect`] opens at most (one of them is
/// the handle's listener).
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// What every clone of one handle shares: the pool, the SQL, the listener.
pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) sql: Sql,
    /// Bumped on every notification of the schema's channel (and after the
    /// listener reconnects, and after each insert through this handle):
    /// subscriptions waiting for events wake on it.
    pub(crate) listener: Listener,
}

/// An event store in one schema of a PostgreSQL database.
///
/// Implements [`EventStore`] for events that name their type
/// ([`EventType`]; the name is stored in a column of its own, so type
/// filters run in SQL). Payloads are serde JSON in a `JSONB` column
/// ([`PgStore::connect`], [`PgStore::with_pool`]), or bytes in a `BYTEA`
/// column from a [`Codec`] of yours ([`PgStore::connect_with_codec`],
/// [`PgStore::with_pool_and_codec`]). Clones are cheap and share one
/// connection pool and one listener; [`PgStore::connect`] again (another
/// process, say) gives an independent handle onto the same store.
///
/// ```no_run
/// use hindsight::{EventStore, EventType, ExpectedVersion, StreamId, Transaction};
/// use hindsight_postgres::PgStore;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Opened { owner: String }
/// impl EventType for Opened { fn event_type(&self) -> &str { "Opened" } }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgStore::<Opened>::connect("postgres://localhost/app", "accounts").await?;
/// let account = StreamId::new();
/// let event = Opened { owner: "ada".into() };
/// let done = store.insert(Transaction::single(account, ExpectedVersion::NoStream, event)).await?;
/// assert_eq!(store.head().await?, done.last_position());
/// # Ok(()) }
/// ```
pub struct PgStore<E> {
    inner: Arc<Inner>,
    codec: StoreCodec<E>,
}

impl<E> Clone for PgStore<E> {
    fn clone(&self) -> Self {
        PgStore {
            inner: Arc::clone(&self.inner),
            codec: self.codec.clone(),
        }
    }
}

impl<E> fmt::Debug for PgStore<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.sql.name)
            .field("form", &self.codec.form())
            .finish_non_exhaustive()
    }
}

impl<E: 'static> PgStore<E> {
    /// Connects to the database at `url` (a pool of up to 10 connections)
    /// and opens the store in `schema`, creating or migrating it if needed;
    /// payloads are serde JSON in the `JSONB` column ([`JsonCodec`]).
    ///
    /// `schema` is 1 to 48 characters of `[a-z0-9_]`, not starting with a
    /// digit. Must be called inside a Tokio runtime: the handle's listener
    /// is a task of it.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), hindsight_postgres::PgError> {
    /// let store = hindsight_postgres::PgStore::<()>::connect("postgres://localhost/app", "events").await?;
    /// # drop(store); Ok(()) }
    /// ```
    pub async fn connect(url: &str, schema: &str) -> Result<Self, PgError>
    where
        E: Serialize + DeserializeOwned,
    {
        Self::connect_with_codec(url, schema, JsonCodec).await
    }

    /// [`PgStore::connect`], with payloads encoded and decoded by `codec`:
    /// bytes in the `BYTEA` column for a byte codec ([`ByteCodec`](crate::ByteCodec)).
    ///
    /// Every handle onto one schema should use the same codec: an event
    /// stored in the other [`PayloadForm`], or one `codec` cannot decode,
    /// fails reads and subscriptions with
    /// [`PgError::Decode`](crate::PgError::Decode) at its position.
    ///
    /// ```no_run
    /// use hindsight_postgres::{ByteCodec, PgStore};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Opened { owner: String }
    ///
    /// # async fn demo() -> Result<(), hindsight_postgres::PgError> {
    /// // Any binary format; CBOR here, with ciborium (a dependency of yours,
    /// // not of this crate).
    /// let cbor = ByteCodec::new(
    ///     |event: &Opened| {
    ///         let mut bytes = Vec::new();
    ///         ciborium::into_writer(event, &mut bytes)?;
    ///         Ok(bytes)
    ///     },
    ///     |bytes| Ok(ciborium::from_reader(bytes)?),
    /// );
    /// let store = PgStore::connect_with_codec("postgres://localhost/app", "accounts", cbor).await?;
    /// # drop(store); Ok(()) }
    /// ```
    pub async fn connect_with_codec(
        url: &str,
        schema: &str,
        codec: impl Codec<E>,
    ) -> Result<Self, PgError> {
        let sql = Sql::new(schema)?;
        let pool = PgPoolOptions::new()
            .max_connections(DEFAULT_MAX_CONNECTIONS)
            .connect(url)
            .await?;
        Self::open(pool, sql, StoreCodec::new(codec)).await
    }

    /// Opens the store in `schema` on an existing pool (creating or
    /// migrating it if needed); the handle's listener takes one of the
    /// pool's connections for as long as the handle lives. Payloads are
    /// serde JSON in the `JSONB` column ([`JsonCodec`]).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), hindsight_postgres::PgError> {
    /// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
    /// let store = hindsight_postgres::PgStore::<()>::with_pool(pool, "events").await?;
    /// # drop(store); Ok(()) }
    /// ```
    pub async fn with_pool(pool: PgPool, schema: &str) -> Result<Self, PgError>
    where
        E: Serialize + DeserializeOwned,
    {
        Self::with_pool_and_codec(pool, schema, JsonCodec).await
    }

    /// [`PgStore::with_pool`], with payloads encoded and decoded by `codec`
    /// (see [`PgStore::connect_with_codec`]).
    ///
    /// ```no_run
    /// use hindsight_postgres::{ByteCodec, PgStore};
    ///
    /// # async fn demo() -> Result<(), hindsight_postgres::PgError> {
    /// // Counters as 8 little-endian bytes.
    /// let counters = ByteCodec::new(
    ///     |event: &u64| Ok(event.to_le_bytes().to_vec()),
    ///     |bytes| Ok(u64::from_le_bytes(bytes.try_into()?)),
    /// );
    /// let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
    /// let store = PgStore::with_pool_and_codec(pool, "counters", counters).await?;
    /// # drop(store); Ok(()) }
    /// ```
    pub async fn with_pool_and_codec(
        pool: PgPool,
        schema: &str,
        codec: impl Codec<E>,
    ) -> Result<Self, PgError> {
        Self::open(pool, Sql::new(schema)?, StoreCodec::new(codec)).await
    }

    async fn open(pool: PgPool, sql: Sql, codec: StoreCodec<E>) -> Result<Self, PgError> {
        sql.migrate(&pool).await?;
        let listener = Listener::start(&pool, &sql.channel).await?;
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                sql,
                listener,
            }),
            codec,
        })
    }

    /// The connection pool this handle uses.
    ///
    /// ```no_run
    /// # async fn demo(store: hindsight_postgres::PgStore<()>) -> Result<(), sqlx::Error> {
    /// let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(store.pool()).await?;
    /// # Ok(()) }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema this store lives in, as given at connect.
    ///
    /// ```no_run
    /// # async fn demo(store: hindsight_postgres::PgStore<()>) {
    /// assert_eq!(store.schema(), "events");
    /// # }
    /// ```
    pub fn schema(&self) -> &str {
        &self.inner.sql.name
    }
}

/// The next position to be written (`log_head.next_position`).
pub(crate) async fn next_position(inner: &Inner) -> Result<u64, PgError> {
    let next: i64 = sqlx::query_scalar(&inner.sql.head)
        .fetch_one(&inner.pool)
        .await?;
    row::unsigned(next, "next position", None)
}

/// An expectation as `insert_events` takes it: a kind and a value.
fn expectation(expected: ExpectedVersion) -> (i16, i64) {
    let exact = |kind: i16, value: u64| match i64::try_from(value) {
        Ok(value) => (kind, value),
        // No stream has a version or position above i64::MAX: never met.
        Err(_) => (5, 0),
    };
    match expected {
        ExpectedVersion::Any => (0, 0),
        ExpectedVersion::NoStream => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        ExpectedVersion::Exact(version) => exact(3, version.0),
        ExpectedVersion::ExactPosition(position) => exact(4, position.0),
    }
}

/// One failing stream as `insert_events` reports it in its DETAIL.
#[derive(serde::Deserialize)]
struct Found {
    stream: Uuid,
    version: Option<i64>,
    position: Option<i64>,
}

/// The version conflict in `error`, if it is one, with the expectations
/// the transaction held.
fn conflict(
    error: &sqlx::Error,
    expected: &[(StreamId, ExpectedVersion)],
) -> Option<Result<Vec<VersionMismatch>, PgError>> {
    let database = error.as_database_error()?;
    if database.code().as_deref() != Some(CONFLICT_SQLSTATE) {
        return None;
    }
    let corrupt = |detail: String| PgError::Corrupt {
        position: None,
        detail,
    };
    let detail = database
        .try_downcast_ref::<PgDatabaseError>()
        .and_then(PgDatabaseError::detail)
        .unwrap_or("");
    let parsed = serde_json::from_str::<Vec<Found>>(detail)
        .map_err(|error| corrupt(format!("a conflict's detail {detail:?}: {error}")))
        .and_then(|found| {
            found
                .into_iter()
                .map(|found| {
                    let stream = StreamId::from_uuid(found.stream);
                    let expected = expected
                        .iter()
                        .find(|(s, _)| *s == stream)
                        .map(|(_, e)| *e)
                        .ok_or_else(|| corrupt(format!("a conflict on unnamed stream {stream}")))?;
                    let found = match (found.version, found.position) {
                        (Some(version), Some(position)) => Some(StreamHead {
                            version: StreamVersion(row::unsigned(version, "version", None)?),
                            position: Position(row::unsigned(position, "position", None)?),
                        }),
                        _ => None,
                    };
                    Ok(VersionMismatch {
                        stream,
                        // Filled in by `name_mismatches`.
                        stream_name: None,
                        expected,
                        found,
                    })
                })
                .collect()
        });
    Some(parsed)
}

/// The hard-deleted stream `insert_events` refused in `error`, if that is
/// what it is.
fn deleted(error: &sqlx::Error) -> Option<Result<StreamId, PgError>> {
    let database = error.as_database_error()?;
    if database.code().as_deref() != Some(DELETED_SQLSTATE) {
        return None;
    }
    let detail = database
        .try_downcast_ref::<PgDatabaseError>()
        .and_then(PgDatabaseError::detail)
        .unwrap_or("");
    Some(
        Uuid::parse_str(detail)
            .map(StreamId::from_uuid)
            .map_err(|error| PgError::Corrupt {
                position: None,
                detail: format!("a hard-deleted stream's detail {detail:?}: {error}"),
            }),
    )
}

/// What `insert_events` reports in an event id conflict's DETAIL.
#[derive(serde::Deserialize)]
struct IdConflict {
    stream: Uuid,
    event_id: Uuid,
    mismatch: String,
    version: Option<i64>,
    expected: Option<i64>,
}

/// The event id conflict (rule 29) `insert_events` raised in `error`, if
/// that is what it is: the stream, the id and what differed.
fn id_conflict(
    error: &sqlx::Error,
) -> Option<Result<(StreamId, EventId, EventIdMismatch), PgError>> {
    let database = error.as_database_error()?;
    if database.code().as_deref() != Some(ID_CONFLICT_SQLSTATE) {
        return None;
    }
    let detail = database
        .try_downcast_ref::<PgDatabaseError>()
        .and_then(PgDatabaseError::detail)
        .unwrap_or("");
    let corrupt = |why: String| PgError::Corrupt {
        position: None,
        detail: format!("an event id conflict's detail {detail:?}: {why}"),
    };
    let parsed = serde_json::from_str::<IdConflict>(detail)
        .map_err(|error| corrupt(error.to_string()))
        .and_then(|found| {
            let version = |value: Option<i64>| {
                value
                    .map(|v| row::unsigned(v, "version", None).map(StreamVersion))
                    .transpose()
            };
            let at = version(found.version)?;
            let expected = version(found.expected)?;
            let need = || at.ok_or_else(|| corrupt("no version".to_owned()));
            let mismatch = match found.mismatch.as_str() {
                "other_version" => EventIdMismatch::OtherVersion {
                    found: need()?,
                    expected,
                },
                "other_payload" => EventIdMismatch::OtherPayload { version: need()? },
                "other_metadata" => EventIdMismatch::OtherMetadata { version: need()? },
                "other_id" => EventIdMismatch::OtherId { version: need()? },
                "partial" => EventIdMismatch::Partial,
                "part_of_transaction" => EventIdMismatch::PartOfTransaction,
                other => return Err(corrupt(format!("unknown mismatch {other:?}"))),
            };
            Ok((
                StreamId::from_uuid(found.stream),
                EventId::from_uuid(found.event_id),
                mismatch,
            ))
        });
    Some(parsed)
}

/// A name read back from the `streams` table of `stream`.
fn stored_name(stream: StreamId, name: &str) -> Result<StreamName, PgError> {
    StreamName::new(name).map_err(|error| PgError::Corrupt {
        position: None,
        detail: format!("stream {stream} has name {name:?}: {error}"),
    })
}

/// One encoded payload, for the `insert_events` array of its form.
enum Payload {
    Json(String),
    Bytes(Vec<u8>),
}

impl<E: 'static> PgStore<E> {
    /// `event` (of type `event_type`, for `stream`) encoded with the
    /// store's codec.
    fn encode(&self, stream: StreamId, event: &E, event_type: &str) -> Result<Payload, PgError> {
        let failed = |source| PgError::Encode {
            stream,
            event_type: event_type.to_owned(),
            source,
        };
        let payload = self.codec.encode(event).map_err(failed)?;
        Ok(match self.codec.form() {
            PayloadForm::Json => Payload::Json(
                String::from_utf8(payload)
                    .map_err(|error| failed(format!("the JSON is not UTF-8: {error}").into()))?,
            ),
            PayloadForm::Bytes => Payload::Bytes(payload),
        })
    }
}

/// The trait's work, which the `EventStore` implementation below wraps in
/// a span when the `tracing` feature is on.
impl<E> PgStore<E>
where
    E: EventType + Send + Sync + 'static,
{
    /// Inserts `tx`'s writes ([`Transaction::into_writes`]).
    async fn insert_untraced(
        &self,
        writes: Vec<StreamWrite<E>>,
        correlation_id: Option<CorrelationId>,
    ) -> Result<Committed, StoreError<PgError>> {
        if writes.is_empty() {
            return Ok(Committed::new(None, Vec::new()));
        }
        let mut streams = Vec::with_capacity(writes.len());
        let mut kinds = Vec::with_capacity(writes.len());
        let mut values = Vec::with_capacity(writes.len());
        let mut counts = Vec::with_capacity(writes.len());
        let mut expected = Vec::with_capacity(writes.len());
        let mut types = Vec::new();
        // One of the two stays empty, by the codec's form (see the schema).
        let mut json = Vec::new();
        let mut bytes = Vec::new();
        // The names given with events, and how many events each stream gets.
        let mut names: Vec<(StreamName, u64)> = Vec::new();
        // Per event, in the payloads' order; both stay empty (and send
        // nothing) when no event has metadata (rule 33).
        let total: usize = writes.iter().map(|write| write.events.len()).sum();
        let with_metadata = writes.iter().any(|write| !write.metadata.is_empty());
        let mut causations: Vec<Option<Uuid>> = Vec::new();
        let mut headers: Vec<Option<String>> = Vec::new();
        if with_metadata {
            causations.reserve(total);
            headers.reserve(total);
        }
        // Client ids (rule 29): empty (sending nothing) when no event has
        // one; an id given twice is refused before the round trip.
        let with_ids = writes.iter().any(|write| !write.event_ids.is_empty());
        let mut ids: Vec<Option<Uuid>> = Vec::new();
        if with_ids {
            ids.reserve(total);
            let mut seen = std::collections::HashSet::new();
            for write in &writes {
                for id in write.event_ids.iter().flatten() {
                    if !seen.insert(*id) {
                        return Err(StoreError::EventIdConflict {
                            stream: write.stream,
                            stream_name: write.name.clone(),
                            event_id: *id,
                            mismatch: EventIdMismatch::Duplicate,
                        });
                    }
                }
            }
        }
        for write in writes {
            if with_ids {
                if write.event_ids.is_empty() {
                    ids.extend(std::iter::repeat_n(None, write.events.len()));
                } else {
                    ids.extend(write.event_ids.iter().map(|id| id.map(|id| *id.as_uuid())));
                }
            }
            if with_metadata {
                if write.metadata.is_empty() {
                    causations.extend(std::iter::repeat_n(None, write.events.len()));
                    headers.extend(std::iter::repeat_n(None, write.events.len()));
                } else {
                    for metadata in &write.metadata {
                        causations.push(metadata.causation_id().map(|id| *id.as_uuid()));
                        headers.push(row::headers_json(metadata));
                    }
                }
            }
            let (kind, value) = expectation(write.expected);
            let count = i32::try_from(write.events.len()).map_err(|_| {
                StoreError::Backend(PgError::TooLarge {
                    events: write.events.len(),
                })
            })?;
            streams.push(*write.stream.as_uuid());
            kinds.push(kind);
            values.push(value);
            counts.push(count);
            expected.push((write.stream, write.expected));
            if let Some(name) = write.name {
                if !write.events.is_empty() {
                    names.push((name, write.events.len() as u64));
                }
            }
            for event in write.events {
                let event_type = event.event_type().to_owned();
                match self.encode(write.stream, &event, &event_type)? {
                    Payload::Json(payload) => json.push(payload),
                    Payload::Bytes(payload) => bytes.push(payload),
                }
                types.push(event_type);
            }
        }
        let query = sqlx::query(&self.inner.sql.insert)
            .bind(streams)
            .bind(kinds)
            .bind(values)
            .bind(counts)
            .bind(types)
            .bind(json)
            .bind(bytes)
            .bind(correlation_id.map(|id| *id.as_uuid()))
            .bind(causations)
            .bind(headers)
            .bind(ids);
        let rows = if names.is_empty() {
            query.fetch_all(&self.inner.pool).await
        } else {
            self.insert_named(query, &names).await
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                return Err(match conflict(&error, &expected) {
                    Some(Ok(mut mismatches)) => {
                        self.name_mismatches(&mut mismatches, &names).await?;
                        StoreError::VersionConflict(mismatches)
                    }
                    Some(Err(corrupt)) => StoreError::Backend(corrupt),
                    None => match deleted(&error) {
                        Some(Ok(stream)) => StoreError::StreamDeleted {
                            stream,
                            stream_name: self
                                .stream_name_kept(stream)
                                .await
                                .map_err(StoreError::Backend)?,
                        },
                        Some(Err(corrupt)) => StoreError::Backend(corrupt),
                        None => match id_conflict(&error) {
                            Some(Ok((stream, event_id, mismatch))) => {
                                let kept = self
                                    .stream_name_kept(stream)
                                    .await
                                    .map_err(StoreError::Backend)?;
                                let given = names
                                    .iter()
                                    .find(|(name, _)| name.id() == stream)
                                    .map(|(name, _)| name.clone());
                                StoreError::EventIdConflict {
                                    stream,
                                    stream_name: kept.or(given),
                                    event_id,
                                    mismatch,
                                }
                            }
                            Some(Err(corrupt)) => StoreError::Backend(corrupt),
                            None => StoreError::Backend(PgError::Database(error)),
                        },
                    },
                })
            }
        };
        let mut heads = Vec::with_capacity(rows.len());
        for row in &rows {
            let stream: Uuid = row.try_get("out_stream").map_err(PgError::from)?;
            let version: i64 = row.try_get("out_version").map_err(PgError::from)?;
            let position: i64 = row.try_get("out_position").map_err(PgError::from)?;
            heads.push((
                StreamId::from_uuid(stream),
                StreamHead {
                    version: StreamVersion(row::unsigned(version, "version", None)?),
                    position: Position(row::unsigned(position, "position", None)?),
                },
            ));
        }
        let last = heads.iter().map(|(_, head)| head.position).max();
        if last.is_some() {
            // This handle's own subscriptions need not wait for the NOTIFY.
            self.inner.listener.wake();
        }
        Ok(Committed::new(last, heads))
    }

    /// `insert` (the query, `insert_events`) for a transaction that names
    /// streams: in one database transaction with the names, so that no
    /// snapshot sees a stream's first events without its name. A stream is
    /// named only if these are its first events (its new head's version + 1
    /// is the count written) and it has no name yet; the rows are locked
    /// by `insert_events` already, so this takes no new lock. Three more
    /// round trips than an unnamed insert (`BEGIN`, the names, `COMMIT`).
    async fn insert_named(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        names: &[(StreamName, u64)],
    ) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
        let mut tx = self.inner.pool.begin().await?;
        let rows = query.fetch_all(&mut *tx).await?;
        let mut ids = Vec::new();
        let mut texts = Vec::new();
        let mut categories = Vec::new();
        for row in &rows {
            let stream = StreamId::from_uuid(row.try_get("out_stream")?);
            let version: i64 = row.try_get("out_version")?;
            let first = names
                .iter()
                .find(|(name, count)| name.id() == stream && version + 1 == *count as i64);
            if let Some((name, _)) = first {
                ids.push(*stream.as_uuid());
                texts.push(name.as_str());
                categories.push(name.category());
            }
        }
        if !ids.is_empty() {
            sqlx::query(&self.inner.sql.name_streams)
                .bind(ids)
                .bind(texts)
                .bind(categories)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows)
    }

    /// Names the streams of a version conflict as the memory store does:
    /// the name the store keeps, or else the one the transaction gave
    /// (one more round trip, on conflicts only).
    async fn name_mismatches(
        &self,
        mismatches: &mut [VersionMismatch],
        given: &[(StreamName, u64)],
    ) -> Result<(), StoreError<PgError>> {
        let ids: Vec<Uuid> = mismatches.iter().map(|m| *m.stream.as_uuid()).collect();
        let kept: Vec<(Uuid, String)> = sqlx::query_as(&self.inner.sql.stream_names)
            .bind(ids)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|error| StoreError::Backend(PgError::Database(error)))?;
        for mismatch in mismatches {
            let stream = mismatch.stream;
            let kept = kept
                .iter()
                .find(|(id, _)| *id == *stream.as_uuid())
                .map(|(_, name)| stored_name(stream, name))
                .transpose()
                .map_err(StoreError::Backend)?;
            let given = given
                .iter()
                .find(|(name, _)| name.id() == stream)
                .map(|(name, _)| name.clone());
            mismatch.stream_name = kept.or(given);
        }
        Ok(())
    }

    /// The name the store keeps for `stream`, deleted or not.
    async fn stream_name_kept(&self, stream: StreamId) -> Result<Option<StreamName>, PgError> {
        let kept: Vec<(Uuid, String)> = sqlx::query_as(&self.inner.sql.stream_names)
            .bind(vec![*stream.as_uuid()])
            .fetch_all(&self.inner.pool)
            .await?;
        kept.first()
            .map(|(_, name)| stored_name(stream, name))
            .transpose()
    }

    /// Soft or hard delete (`tombstone`), in one transaction holding the
    /// stream's row lock (the one `insert_events` takes): the expectation
    /// is checked against the head since the last delete, as an insert's.
    async fn remove_untraced(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        tombstone: bool,
    ) -> Result<(), StoreError<PgError>> {
        let db = |error| StoreError::Backend(PgError::Database(error));
        let sql = &self.inner.sql;
        let id = stream.as_uuid();
        let mut tx = self.inner.pool.begin().await.map_err(db)?;
        if tombstone {
            // A missing stream is hard-deleted too: it gets a row to mark.
            sqlx::query(&sql.placeholder)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        type Locked = (Option<i64>, Option<i64>, i64, bool, Option<String>);
        let row: Option<Locked> = sqlx::query_as(&sql.lock_stream)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let (head, tombstoned, name) = match row {
            None => (None, false, None),
            Some((last, position, deleted_before, tombstoned, name)) => {
                let head = match (last, position) {
                    (Some(version), Some(position)) if version >= deleted_before => {
                        Some(StreamHead {
                            version: StreamVersion(row::unsigned(version, "version", None)?),
                            position: Position(row::unsigned(position, "position", None)?),
                        })
                    }
                    _ => None,
                };
                (head, tombstoned, name)
            }
        };
        let stream_name = name
            .map(|name| stored_name(stream, &name))
            .transpose()
            .map_err(StoreError::Backend)?;
        // Dropping `tx` on the refusals below rolls it back.
        if tombstoned {
            return Err(StoreError::StreamDeleted {
                stream,
                stream_name,
            });
        }
        if !expected.matches(head) {
            return Err(StoreError::VersionConflict(vec![VersionMismatch {
                stream,
                stream_name,
                expected,
                found: head,
            }]));
        }
        if head.is_some() || tombstone {
            sqlx::query(&sql.delete)
                .bind(id)
                .bind(tombstone)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    /// Raises the stream's floor to `before` (one statement, under the
    /// stream's row lock).
    async fn truncate_untraced(
        &self,
        stream: StreamId,
        before: StreamVersion,
    ) -> Result<(), StoreError<PgError>> {
        // No version lies above i64::MAX: hiding up to it hides them all.
        let before = i64::try_from(before.0).unwrap_or(i64::MAX);
        let row: Option<(bool, Option<String>)> = sqlx::query_as(&self.inner.sql.truncate)
            .bind(stream.as_uuid())
            .bind(before)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|error| StoreError::Backend(PgError::Database(error)))?;
        match row {
            Some((true, name)) => Err(StoreError::StreamDeleted {
                stream,
                stream_name: name
                    .map(|name| stored_name(stream, &name))
                    .transpose()
                    .map_err(StoreError::Backend)?,
            }),
            _ => Ok(()),
        }
    }

    /// Sets or clears the stream's maximum count (one statement, under
    /// the stream's row lock).
    async fn max_count_untraced(
        &self,
        stream: StreamId,
        max_count: Option<u64>,
    ) -> Result<(), StoreError<PgError>> {
        // No stream holds more than i64::MAX events: a larger count hides
        // nothing.
        let max_count = max_count.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        let row: (bool, Option<String>) = sqlx::query_as(&self.inner.sql.max_count)
            .bind(stream.as_uuid())
            .bind(max_count)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|error| StoreError::Backend(PgError::Database(error)))?;
        match row {
            (true, name) => Err(StoreError::StreamDeleted {
                stream,
                stream_name: name
                    .map(|name| stored_name(stream, &name))
                    .transpose()
                    .map_err(StoreError::Backend)?,
            }),
            (false, _) => Ok(()),
        }
    }

    /// Sets or clears the stream's maximum age (one statement, under the
    /// stream's row lock).
    async fn max_age_untraced(
        &self,
        stream: StreamId,
        max_age: Option<std::time::Duration>,
    ) -> Result<(), StoreError<PgError>> {
        // At most 1.6e16 µs (`MAX_AGE_LIMIT`): fits.
        let max_age = max_age.map(|age| hindsight::max_age_micros(age) as i64);
        let row: (bool, Option<String>) = sqlx::query_as(&self.inner.sql.max_age)
            .bind(stream.as_uuid())
            .bind(max_age)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|error| StoreError::Backend(PgError::Database(error)))?;
        match row {
            (true, name) => Err(StoreError::StreamDeleted {
                stream,
                stream_name: name
                    .map(|name| stored_name(stream, &name))
                    .transpose()
                    .map_err(StoreError::Backend)?,
            }),
            (false, _) => Ok(()),
        }
    }

    /// Every stream deleted in one transaction, holding every row lock
    /// (taken in id order, as `insert_events` takes them).
    async fn delete_all_untraced(&self) -> Result<(), StoreError<PgError>> {
        let db = |error| StoreError::Backend(PgError::Database(error));
        let mut tx = self.inner.pool.begin().await.map_err(db)?;
        sqlx::query(&self.inner.sql.lock_all)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(&self.inner.sql.delete_all)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn stream_name_untraced(&self, stream: StreamId) -> Result<Option<StreamName>, PgError> {
        let name: Option<Option<String>> = sqlx::query_scalar(&self.inner.sql.stream_name)
            .bind(stream.as_uuid())
            .fetch_optional(&self.inner.pool)
            .await?;
        name.flatten()
            .map(|name| stored_name(stream, &name))
            .transpose()
    }

    async fn head_untraced(&self) -> Result<Option<Position>, PgError> {
        let next = next_position(&self.inner).await?;
        Ok(next.checked_sub(1).map(Position))
    }

    async fn stream_head_untraced(&self, stream: StreamId) -> Result<Option<StreamHead>, PgError> {
        let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(&self.inner.sql.stream_head)
            .bind(stream.as_uuid())
            .fetch_optional(&self.inner.pool)
            .await?;
        match row {
            // A placeholder row (checked, never written): no stream.
            Some((Some(version), Some(position))) => Ok(Some(StreamHead {
                version: StreamVersion(row::unsigned(version, "version", None)?),
                position: Position(row::unsigned(position, "position", None)?),
            })),
            _ => Ok(None),
        }
    }

    async fn read_all_untraced<F>(
        &self,
        after: Option<Position>,
        mut visit: F,
    ) -> Result<(), PgError>
    where
        F: FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send,
    {
        let first = match after {
            None => 0,
            Some(after) => match after.0.checked_add(1).map(i64::try_from) {
                Some(Ok(first)) => first,
                // After a position no event can have: nothing.
                _ => return Ok(()),
            },
        };
        let end = next_position(&self.inner).await?;
        let end = i64::try_from(end).map_err(|_| PgError::Corrupt {
            position: None,
            detail: format!("next position {end} above i64::MAX"),
        })?;
        let mut from = first;
        while from < end {
            // One window of `PAGE` positions a query: positions are dense,
            // so it holds `PAGE` events at most, and the query's cost is
            // bounded whatever plan the statistics (or their absence, in a
            // fresh schema) lead to; a plan that sorts the whole range
            // made a catch-up read quadratic.
            let window_end = end.min(window_end(from));
            let rows = sqlx::query(&self.inner.sql.read_all)
                .bind(from)
                .bind(window_end)
                .bind(PAGE)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|source| PgError::Query {
                    after: from.checked_sub(1).map(|p| Position(p as u64)),
                    source,
                })?;
            for row in &rows {
                let event: Stored<E> = row::decode(row, &self.codec)?;
                if visit(event.as_ref()).is_break() {
                    return Ok(());
                }
            }
            from = window_end;
        }
        Ok(())
    }

    async fn read_stream_untraced<F>(
        &self,
        stream: StreamId,
        from: StreamVersion,
        mut visit: F,
    ) -> Result<(), PgError>
    where
        F: FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send,
    {
        let Ok(mut from) = i64::try_from(from.0) else {
            // No stream has a version above i64::MAX: nothing.
            return Ok(());
        };
        let end = next_position(&self.inner).await?;
        let end = i64::try_from(end).map_err(|_| PgError::Corrupt {
            position: None,
            detail: format!("next position {end} above i64::MAX"),
        })?;
        loop {
            let rows = sqlx::query(&self.inner.sql.read_stream)
                .bind(stream.as_uuid())
                .bind(from)
                .bind(end)
                .bind(PAGE)
                .fetch_all(&self.inner.pool)
                .await
                .map_err(|source| PgError::Query {
                    after: None,
                    source,
                })?;
            for row in &rows {
                let event: Stored<E> = row::decode(row, &self.codec)?;
                if visit(event.as_ref()).is_break() {
                    return Ok(());
                }
                from = event.version.0 as i64 + 1;
            }
            if (rows.len() as i64) < PAGE {
                return Ok(());
            }
        }
    }
}

/// With the `tracing` feature each call runs in a span, as on the memory
/// store: `hindsight.insert` (`DEBUG`; `streams`, `events`, then
/// `first_position` and `last_position`, or `error`), `hindsight.head`,
/// `hindsight.stream_head`, `hindsight.read_all` and `hindsight.read_stream`
/// (`DEBUG`; where they start and how many events they `visited`),
/// `hindsight.spawn_subscriber` (`INFO`, the `selector`); the subscription's
/// task runs in a root span `hindsight.subscriber` that follows from it, and
/// so does its handler, on each blocking thread it runs on, with the
/// dispatcher of the task that spawned it.
impl<E> EventStore for PgStore<E>
where
    E: EventType + Send + Sync + 'static,
{
    type Event = E;
    type Cursor = Position;
    type Error = PgError;
    type Subscriber<X: Send + Sync + 'static> = PgSubscriber<X>;

    /// One round trip to `insert_events` (see the crate docs). An empty
    /// transaction is accepted as a no-op without a round trip; appends of
    /// no events still have their expectations checked. A transaction
    /// that names streams ([`Transaction::append_named`]) runs inside
    /// `BEGIN`/`COMMIT` with one more statement that records the names of
    /// the streams it created: four round trips.
    ///
    /// Dropping the future once the statement was sent leaves the
    /// transaction committed or not, all or nothing (one statement); read
    /// the stream to learn which.
    async fn insert(&self, tx: Transaction<E>) -> Result<Committed, StoreError<PgError>> {
        let (writes, correlation_id) = tx.into_writes();
        #[cfg(feature = "tracing")]
        {
            let events: usize = writes.iter().map(|write| write.events.len()).sum();
            let span = tracing::debug_span!(
                "hindsight.insert",
                streams = writes.len(),
                events,
                first_position = tracing::field::Empty,
                last_position = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            let insert = self.insert_untraced(writes, correlation_id);
            let result = insert.instrument(span.clone()).await;
            trace::record_insert(&span, events, &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        self.insert_untraced(writes, correlation_id).await
    }

    async fn head(&self) -> Result<Option<Position>, PgError> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.head",
                head = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            let head = self.head_untraced().instrument(span.clone()).await;
            match &head {
                Ok(head) => span.record("head", head.map(|head| head.0)),
                Err(error) => span.record("error", tracing::field::display(error)),
            };
            head
        }
        #[cfg(not(feature = "tracing"))]
        self.head_untraced().await
    }

    async fn stream_head(&self, stream: StreamId) -> Result<Option<StreamHead>, PgError> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.stream_head",
                %stream,
                version = tracing::field::Empty,
                position = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            let head = self
                .stream_head_untraced(stream)
                .instrument(span.clone())
                .await;
            trace::record_head(&span, &head);
            head
        }
        #[cfg(not(feature = "tracing"))]
        self.stream_head_untraced(stream).await
    }

    async fn stream_name(&self, stream: StreamId) -> Result<Option<StreamName>, PgError> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.stream_name",
                %stream,
                name = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            let name = self
                .stream_name_untraced(stream)
                .instrument(span.clone())
                .await;
            match &name {
                Ok(Some(name)) => span.record("name", name.as_str()),
                Ok(None) => &span,
                Err(error) => span.record("error", tracing::field::display(error)),
            };
            name
        }
        #[cfg(not(feature = "tracing"))]
        self.stream_name_untraced(stream).await
    }

    /// One transaction: the stream's row locked, the expectation checked,
    /// the row marked (three or four round trips).
    async fn delete_stream(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
    ) -> Result<(), StoreError<PgError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.delete_stream",
                %stream,
                ?expected,
                error = tracing::field::Empty,
            );
            let result = self
                .remove_untraced(stream, expected, false)
                .instrument(span.clone())
                .await;
            trace::record_result(&span, "delete_stream", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        self.remove_untraced(stream, expected, false).await
    }

    /// As [`delete_stream`](EventStore::delete_stream), marking the row
    /// for good.
    async fn tombstone_stream(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
    ) -> Result<(), StoreError<PgError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.tombstone_stream",
                %stream,
                ?expected,
                error = tracing::field::Empty,
            );
            let result = self
                .remove_untraced(stream, expected, true)
                .instrument(span.clone())
                .await;
            trace::record_result(&span, "tombstone_stream", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        self.remove_untraced(stream, expected, true).await
    }

    /// One statement.
    async fn truncate_stream(
        &self,
        stream: StreamId,
        before: StreamVersion,
    ) -> Result<(), StoreError<PgError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.truncate_stream",
                %stream,
                before = before.0,
                error = tracing::field::Empty,
            );
            let result = self
                .truncate_untraced(stream, before)
                .instrument(span.clone())
                .await;
            trace::record_result(&span, "truncate_stream", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        self.truncate_untraced(stream, before).await
    }

    /// One statement (an upsert of the stream's row).
    async fn set_max_age(
        &self,
        stream: StreamId,
        max_age: Option<std::time::Duration>,
    ) -> Result<(), StoreError<PgError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.set_max_age",
                %stream,
                max_age_us = max_age.map(hindsight::max_age_micros),
                error = tracing::field::Empty,
            );
            let result = self
                .max_age_untraced(stream, max_age)
                .instrument(span.clone())
                .await;
            trace::record_result(&span, "set_max_age", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        self.max_age_untraced(stream, max_age).await
    }

    /// One transaction: every stream row locked, then updated.
    async fn delete_all_streams(&self) -> Result<(), StoreError<PgError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.delete_all_streams",
                error = tracing::field::Empty,
            );
            let result = self.delete_all_untraced().instrument(span.clone()).await;
            trace::record_result(&span, "delete_all_streams", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        self.delete_all_untraced().await
    }

    /// One statement (an upsert of the stream's row).
    async fn set_max_count(
        &self,
        stream: StreamId,
        max_count: Option<u64>,
    ) -> Result<(), StoreError<PgError>> {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.set_max_count",
                %stream,
                max_count,
                error = tracing::field::Empty,
            );
            let result = self
                .max_count_untraced(stream, max_count)
                .instrument(span.clone())
                .await;
            trace::record_result(&span, "set_max_count", &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        self.max_count_untraced(stream, max_count).await
    }

    /// Pages by position (500 rows a query), bounded by the head read once
    /// at the start: the read sees the store as it was then.
    async fn read_all<F>(&self, after: Option<Position>, visit: F) -> Result<(), PgError>
    where
        F: FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send,
    {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.read_all",
                after = after.map(|after| after.0),
                visited = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            let mut visited = 0u64;
            let read = self.read_all_untraced(after, trace::counted(visit, &mut visited));
            let result = read.instrument(span.clone()).await;
            trace::record_read(&span, visited, &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        self.read_all_untraced(after, visit).await
    }

    /// Pages by (stream, version), 500 rows a query, bounded by the head
    /// read once at the start.
    async fn read_stream<F>(
        &self,
        stream: StreamId,
        from: StreamVersion,
        visit: F,
    ) -> Result<(), PgError>
    where
        F: FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send,
    {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(
                "hindsight.read_stream",
                %stream,
                from = from.0,
                visited = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            let mut visited = 0u64;
            let read = self.read_stream_untraced(stream, from, trace::counted(visit, &mut visited));
            let result = read.instrument(span.clone()).await;
            trace::record_read(&span, visited, &result);
            result
        }
        #[cfg(not(feature = "tracing"))]
        self.read_stream_untraced(stream, from, visit).await
    }

    /// Starts a subscription task (see [`PgSubscriber`]); `Start::End`
    /// resolves to the head when this is awaited.
    async fn spawn_subscriber<X, H>(
        &self,
        selector: Selector<E>,
        handler: H,
    ) -> Result<PgSubscriber<X>, PgError>
    where
        X: Send + Sync + 'static,
        H: FnMut(EventRef<'_, E, Position>) -> Result<Flow, X> + Send + 'static,
    {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::info_span!(
                "hindsight.spawn_subscriber",
                ?selector,
                error = tracing::field::Empty,
            );
            let start = subscription::start(
                Arc::clone(&self.inner),
                self.codec.clone(),
                selector,
                handler,
                &span,
            );
            let started = start.instrument(span.clone()).await;
            if let Err(error) = &started {
                span.record("error", tracing::field::display(error));
            }
            started
        }
        #[cfg(not(feature = "tracing"))]
        subscription::start(
            Arc::clone(&self.inner),
            self.codec.clone(),
            selector,
            handler,
        )
        .await
    }
}
