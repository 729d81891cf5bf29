//! Decoding an event row: every number checked, the payload decoded with
//! the store's codec.

use crate::codec::{PayloadForm, StoreCodec};
use crate::error::PgError;
use hindsight::{
    CausationId, CorrelationId, EventId, EventRef, Metadata, Position, StreamId, StreamVersion,
    Uuid,
};
use sqlx::postgres::PgRow;
use sqlx::Row;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An event decoded from a row: what an [`EventRef`] borrows.
#[derive(Debug)]
pub(crate) struct Stored<E> {
    pub(crate) position: Position,
    pub(crate) stream: StreamId,
    pub(crate) version: StreamVersion,
    pub(crate) event_id: EventId,
    pub(crate) correlation_id: Option<hindsight::CorrelationId>,
    pub(crate) created_at: SystemTime,
    pub(crate) metadata: Metadata,
    pub(crate) payload: E,
}

impl<E> Stored<E> {
    /// The event as readers and handlers see it.
    pub(crate) fn as_ref(&self) -> EventRef<'_, E, Position> {
        EventRef {
            cursor: self.position,
            stream: self.stream,
            version: self.version,
            event_id: self.event_id,
            correlation_id: self.correlation_id,
            created_at: self.created_at,
            metadata: &self.metadata,
            payload: &self.payload,
        }
    }
}

/// A `BIGINT` that must not be negative.
pub(crate) fn unsigned(value: i64, what: &str, position: Option<Position>) -> Result<u64, PgError> {
    u64::try_from(value).map_err(|_| PgError::Corrupt {
        position,
        detail: format!("negative {what}: {value}"),
    })
}

/// The position of a row (the `position` column).
pub(crate) fn position(row: &PgRow) -> Result<Position, PgError> {
    let raw: i64 = row.try_get("position")?;
    Ok(Position(unsigned(raw, "position", None)?))
}

/// The event's metadata from its `causation_id` and `headers` columns
/// (`[[key, value], ...]`, checked as [`Metadata::insert_header`] checks).
fn metadata(
    causation_id: Option<Uuid>,
    headers: Option<String>,
    at: Option<Position>,
) -> Result<Metadata, PgError> {
    let mut metadata = Metadata::new();
    if let Some(causation_id) = causation_id {
        metadata = metadata.with_causation_id(CausationId::from_uuid(causation_id));
    }
    let Some(headers) = headers else {
        return Ok(metadata);
    };
    let corrupt = |detail: String| PgError::Corrupt {
        position: at,
        detail,
    };
    let pairs: Vec<(String, String)> = serde_json::from_str(&headers)
        .map_err(|error| corrupt(format!("headers are not [[key, value], ...]: {error}")))?;
    for (key, value) in pairs {
        metadata
            .insert_header(&key, &value)
            .map_err(|error| corrupt(format!("header {key:?}: {error}")))?;
    }
    Ok(metadata)
}

/// Headers as the `headers` column stores them: `[[key, value], ...]`
/// (JSON text); `None` for none.
pub(crate) fn headers_json(metadata: &Metadata) -> Option<String> {
    if metadata.headers().len() == 0 {
        return None;
    }
    let pairs: Vec<(&str, &str)> = metadata.headers().collect();
    // Serialising pairs of strings cannot fail.
    serde_json::to_string(&pairs).ok()
}

/// Decodes a row of [`crate::schema`]'s event columns, its payload with
/// the store's `codec`.
pub(crate) fn decode<E: 'static>(row: &PgRow, codec: &StoreCodec<E>) -> Result<Stored<E>, PgError> {
    let position = position(row)?;
    let at = Some(position);
    let version: i64 = row.try_get("version")?;
    let stream: Uuid = row.try_get("stream_id")?;
    let event_id: Uuid = row.try_get("event_id")?;
    let correlation_id: Option<Uuid> = row.try_get("correlation_id")?;
    let created_us: i64 = row.try_get("created_us")?;
    let json: Option<String> = row.try_get("payload")?;
    let bytes: Option<Vec<u8>> = row.try_get("payload_bytes")?;
    let causation_id: Option<Uuid> = row.try_get("causation_id")?;
    let headers: Option<String> = row.try_get("headers")?;
    let metadata = metadata(causation_id, headers, at)?;
    let created_at = UNIX_EPOCH
        .checked_add(Duration::from_micros(unsigned(
            created_us,
            "created_at",
            at,
        )?))
        .ok_or_else(|| PgError::Corrupt {
            position: at,
            detail: format!("created_at out of range: {created_us} us"),
        })?;
    let payload = match (json, bytes) {
        (Some(json), None) => match codec.form() {
            PayloadForm::Json => codec.decode(json.as_bytes()),
            PayloadForm::Bytes => Err(
                "the payload is stored as JSON (`payload`), but this store's codec reads bytes"
                    .into(),
            ),
        },
        (None, Some(bytes)) => match codec.form() {
            PayloadForm::Bytes => codec.decode(&bytes),
            PayloadForm::Json => Err(
                "the payload is stored as bytes (`payload_bytes`), but this store's codec \
                 reads JSON"
                    .into(),
            ),
        },
        (json, bytes) => {
            return Err(PgError::Corrupt {
                position: at,
                detail: format!(
                    "{} payloads (one of `payload` and `payload_bytes` must be set)",
                    if json.is_some() && bytes.is_some() {
                        "two"
                    } else {
                        "no"
                    }
                ),
            })
        }
    }
    .map_err(|source| PgError::Decode { position, source })?;
    Ok(Stored {
        position,
        stream: StreamId::from_uuid(stream),
        version: StreamVersion(unsigned(version, "version", at)?),
        event_id: EventId::from_uuid(event_id),
        correlation_id: correlation_id.map(CorrelationId::from_uuid),
        created_at,
        metadata,
        payload,
    })
}
