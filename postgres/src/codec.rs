//! How a store turns events into stored payloads and back: JSON in a
//! `JSONB` column by default ([`JsonCodec`]), or bytes in a `BYTEA` column
//! from a binary format of your choice ([`ByteCodec`], or your own
//! [`Codec`]).
//!
//! Either way the event's [`EventType`](hindsight::EventType) name is
//! stored in a column of its own, so type filters run in SQL whatever the
//! payload looks like.

use crate::panic::panic_message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use std::error::Error;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// A codec's error, boxed: whatever the format's own error type is.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Where a codec's payloads are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadForm {
    /// JSON text in the `payload` column (`JSONB`), which PostgreSQL
    /// checks on insert and normalises (whitespace, key order, duplicate
    /// keys): readable and queryable in SQL. The codec must produce UTF-8
    /// JSON and read JSON back in PostgreSQL's normal form.
    Json,
    /// Bytes in the `payload_bytes` column (`BYTEA`), stored and read back
    /// exactly as the codec produced them.
    Bytes,
}

/// How a [`PgStore`](crate::PgStore) stores its events' payloads: which
/// column ([`PayloadForm`]), and the bytes that go there and come back.
///
/// A store uses one codec for every event it writes and reads. A row
/// stored in the other form (bytes read by a JSON store, or the reverse),
/// or one the codec fails to decode, fails the read and ends
/// subscriptions with [`PgError::Decode`](crate::PgError::Decode) at its
/// position; an event that fails to encode fails its insert with
/// [`PgError::Encode`](crate::PgError::Encode), and nothing is written. A
/// panic in the codec is caught and reported as that error.
///
/// [`JsonCodec`] and [`ByteCodec`] cover the usual cases; implement it
/// for a format that needs state (a schema registry, say):
///
/// ```
/// use hindsight_postgres::{BoxError, Codec, PayloadForm};
///
/// /// Counters stored as 8 little-endian bytes.
/// struct Counter;
/// impl Codec<u64> for Counter {
///     fn form(&self) -> PayloadForm { PayloadForm::Bytes }
///     fn encode(&self, event: &u64) -> Result<Vec<u8>, BoxError> {
///         Ok(event.to_le_bytes().to_vec())
///     }
///     fn decode(&self, payload: &[u8]) -> Result<u64, BoxError> {
///         Ok(u64::from_le_bytes(payload.try_into()?))
///     }
/// }
/// assert_eq!(Counter.decode(&Counter.encode(&7).unwrap()).unwrap(), 7);
/// ```
pub trait Codec<E>: Send + Sync + 'static {
    /// The column the payloads go to; asked once, when a store is opened.
    fn form(&self) -> PayloadForm;

    /// The payload of `event`: UTF-8 JSON for [`PayloadForm::Json`], any
    /// bytes for [`PayloadForm::Bytes`].
    fn encode(&self, event: &E) -> Result<Vec<u8>, BoxError>;

    /// The event of a stored payload, as [`encode`](Codec::encode) made it
    /// (for [`PayloadForm::Json`], as PostgreSQL normalised it).
    fn decode(&self, payload: &[u8]) -> Result<E, BoxError>;
}

/// The default codec: serde JSON in the `JSONB` column `payload`.
///
/// ```
/// use hindsight_postgres::{Codec, JsonCodec, PayloadForm};
/// let codec = JsonCodec;
/// assert_eq!(Codec::<Vec<u32>>::form(&codec), PayloadForm::Json);
/// assert_eq!(codec.encode(&vec![1u32, 2]).unwrap(), b"[1,2]");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCodec;

impl<E: Serialize + DeserializeOwned> Codec<E> for JsonCodec {
    fn form(&self) -> PayloadForm {
        PayloadForm::Json
    }

    fn encode(&self, event: &E) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(event)?)
    }

    fn decode(&self, payload: &[u8]) -> Result<E, BoxError> {
        Ok(serde_json::from_slice(payload)?)
    }
}

/// A byte codec made of an encode and a decode function: payloads go to
/// the `BYTEA` column `payload_bytes` exactly as `encode` returns them.
///
/// Any binary serde format fits, with no dependency of this crate's:
///
/// ```
/// use hindsight_postgres::{BoxError, ByteCodec, Codec, PayloadForm};
///
/// // A hand-written format; with postcard, say, the two functions would be
/// // `|event| Ok(postcard::to_allocvec(event)?)` and
/// // `|bytes| Ok(postcard::from_bytes(bytes)?)`.
/// let codec = ByteCodec::new(
///     |event: &String| Ok(event.as_bytes().to_vec()),
///     |bytes| Ok(String::from_utf8(bytes.to_vec())?),
/// );
/// assert_eq!(codec.form(), PayloadForm::Bytes);
/// assert_eq!(codec.decode(&codec.encode(&"hi".to_owned())?)?, "hi");
/// # Ok::<(), BoxError>(())
/// ```
#[derive(Clone, Copy)]
pub struct ByteCodec<En, De> {
    encode: En,
    decode: De,
}

impl<En, De> ByteCodec<En, De> {
    /// The codec that stores `encode(event)` and reads an event back with
    /// `decode(bytes)`.
    pub fn new<E>(encode: En, decode: De) -> Self
    where
        En: Fn(&E) -> Result<Vec<u8>, BoxError> + Send + Sync + 'static,
        De: Fn(&[u8]) -> Result<E, BoxError> + Send + Sync + 'static,
    {
        ByteCodec { encode, decode }
    }
}

impl<E, En, De> Codec<E> for ByteCodec<En, De>
where
    En: Fn(&E) -> Result<Vec<u8>, BoxError> + Send + Sync + 'static,
    De: Fn(&[u8]) -> Result<E, BoxError> + Send + Sync + 'static,
{
    fn form(&self) -> PayloadForm {
        PayloadForm::Bytes
    }

    fn encode(&self, event: &E) -> Result<Vec<u8>, BoxError> {
        (self.encode)(event)
    }

    fn decode(&self, payload: &[u8]) -> Result<E, BoxError> {
        (self.decode)(payload)
    }
}

impl<En, De> fmt::Debug for ByteCodec<En, De> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteCodec").finish_non_exhaustive()
    }
}

/// A handle's codec and its form (asked once, when the store opened, so
/// the form never changes under a handle): what encodes and decodes every
/// payload of a store and its subscriptions, with the codec's panics caught
/// and returned as its errors.
pub(crate) struct StoreCodec<E> {
    codec: Arc<dyn Codec<E>>,
    form: PayloadForm,
}

impl<E> Clone for StoreCodec<E> {
    fn clone(&self) -> Self {
        StoreCodec {
            codec: Arc::clone(&self.codec),
            form: self.form,
        }
    }
}

impl<E> StoreCodec<E> {
    /// Where the payloads go.
    pub(crate) fn form(&self) -> PayloadForm {
        self.form
    }
}

impl<E: 'static> StoreCodec<E> {
    pub(crate) fn new(codec: impl Codec<E>) -> Self {
        StoreCodec {
            form: codec.form(),
            codec: Arc::new(codec),
        }
    }

    /// The codec's payload of `event`.
    pub(crate) fn encode(&self, event: &E) -> Result<Vec<u8>, BoxError> {
        catch_unwind(AssertUnwindSafe(|| self.codec.encode(event))).unwrap_or_else(panicked)
    }

    /// The codec's event of `payload`.
    pub(crate) fn decode(&self, payload: &[u8]) -> Result<E, BoxError> {
        catch_unwind(AssertUnwindSafe(|| self.codec.decode(payload))).unwrap_or_else(panicked)
    }
}

/// A caught panic of the codec, as its error.
fn panicked<T>(panic: Box<dyn Any + Send>) -> Result<T, BoxError> {
    Err(format!("the codec panicked: {}", panic_message(panic)).into())
}
