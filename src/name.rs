//! Stream names: the text a user calls a stream by ("order-42"), its
//! deterministic id, and its category (KurrentDB's convention).

use crate::error::StreamNameError;
use crate::ids::StreamId;
use std::fmt;
// `std`'s `Arc` even under loom: a name is immutable text, set once before
// its stream holds an event, and no part of any model.
use std::sync::Arc;

/// The longest stream name, in bytes of UTF-8: 1,024.
///
/// Longer names are refused by [`StreamName::new`] with
/// [`StreamNameError::TooLong`].
pub const MAX_STREAM_NAME_LEN: usize = 1024;

/// What a user calls a stream: `"order-42"`, `"account-7f3a"`. KurrentDB
/// calls streams only by such names; here every stream has a [`StreamId`],
/// and a named stream's id is [`StreamId::from_name`] of its name, so the
/// same name gives the same id in every process, store and backend.
///
/// A name is checked when it is made: not empty, at most
/// [`MAX_STREAM_NAME_LEN`] bytes, no NUL character (which PostgreSQL's
/// `TEXT` cannot hold). Appending with
/// [`Transaction::append_named`](crate::Transaction::append_named) records
/// the name with the stream, and from then on the store shows it:
/// [`MemoryStore::stream_name`](crate::MemoryStore::stream_name),
/// [`Envelope::stream_name`](crate::Envelope::stream_name), version
/// conflicts (`stream "order-42" (<uuid>)`) and `Debug` output. Cloning a
/// name is cheap (a reference count).
///
/// # Category
///
/// KurrentDB's category convention: the category of `order-42` is `order`,
/// the part before the first `-` ([`category`](Self::category)).
/// [`Selector::category`](crate::Selector::category) subscribes to every
/// stream of a category.
///
/// ```
/// use hindsight::{StreamId, StreamName, StreamNameError};
///
/// let order = StreamName::new("order-42")?;
/// assert_eq!(order.as_str(), "order-42");
/// assert_eq!(order.id(), StreamId::from_name("order-42"));
/// assert_eq!(order.category(), Some("order"));
///
/// assert_eq!(StreamName::new(""), Err(StreamNameError::Empty));
/// # Ok::<(), StreamNameError>(())
/// ```
#[doc(alias = "stream name")]
#[derive(Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
pub struct StreamName {
    /// `StreamId::from_name(&name)`, computed once.
    id: StreamId,
    name: Arc<str>,
}

impl StreamName {
    /// The name `name`, checked.
    ///
    /// # Errors
    ///
    /// - [`StreamNameError::Empty`]: `name` is empty.
    /// - [`StreamNameError::TooLong`]: `name` is longer than
    ///   [`MAX_STREAM_NAME_LEN`] bytes.
    /// - [`StreamNameError::Nul`]: `name` contains a NUL character.
    ///
    /// ```
    /// use hindsight::{StreamName, StreamNameError, MAX_STREAM_NAME_LEN};
    /// assert!(StreamName::new("cart-1").is_ok());
    /// assert_eq!(StreamName::new("a\0b"), Err(StreamNameError::Nul { at: 1 }));
    /// let long = "x".repeat(MAX_STREAM_NAME_LEN + 1);
    /// assert!(matches!(StreamName::new(long), Err(StreamNameError::TooLong { .. })));
    /// ```
    pub fn new(name: impl AsRef<str> + Into<Arc<str>>) -> Result<Self, StreamNameError> {
        check(name.as_ref())?;
        let id = StreamId::from_name(name.as_ref());
        Ok(StreamName {
            id,
            name: name.into(),
        })
    }

    /// A name the store kept (checked when it was made) for stream `id`.
    pub(crate) fn kept(id: StreamId, name: Arc<str>) -> Self {
        StreamName { id, name }
    }

    /// The name's text, shared with the caller (no copy).
    pub(crate) fn shared(&self) -> &Arc<str> {
        &self.name
    }

    /// The stream id of this name: [`StreamId::from_name`] of its text.
    ///
    /// ```
    /// use hindsight::{StreamId, StreamName};
    /// let name = StreamName::new("user-ada").unwrap();
    /// assert_eq!(name.id(), StreamId::from_name("user-ada"));
    /// ```
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The name's text.
    ///
    /// ```
    /// use hindsight::StreamName;
    /// assert_eq!(StreamName::new("user-ada").unwrap().as_str(), "user-ada");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The stream's category (KurrentDB's convention, the `$ce-` streams):
    /// the part of the name before its first `-`, or `None` for a name
    /// with no `-` or that starts with one.
    ///
    /// ```
    /// use hindsight::StreamName;
    /// let category = |name: &str| StreamName::new(name).unwrap().category().map(str::to_owned);
    /// assert_eq!(category("order-42").as_deref(), Some("order"));
    /// assert_eq!(category("order-42-line-3").as_deref(), Some("order"));
    /// assert_eq!(category("settings"), None);
    /// assert_eq!(category("-42"), None);
    /// ```
    #[doc(alias = "$ce")]
    pub fn category(&self) -> Option<&str> {
        category_of(&self.name)
    }
}

/// The category of stream name `name`: the part before the first `-`, if
/// there is one and it is not empty. One function for every place that
/// asks, so the convention cannot drift.
#[inline]
pub(crate) fn category_of(name: &str) -> Option<&str> {
    match name.split_once('-') {
        Some((category, _)) if !category.is_empty() => Some(category),
        _ => None,
    }
}

/// Whether `name` may name a stream.
fn check(name: &str) -> Result<(), StreamNameError> {
    if name.is_empty() {
        return Err(StreamNameError::Empty);
    }
    if name.len() > MAX_STREAM_NAME_LEN {
        return Err(StreamNameError::TooLong {
            len: name.len(),
            max: MAX_STREAM_NAME_LEN,
        });
    }
    if let Some(at) = name.bytes().position(|byte| byte == 0) {
        return Err(StreamNameError::Nul { at });
    }
    Ok(())
}

impl TryFrom<&str> for StreamName {
    type Error = StreamNameError;

    fn try_from(name: &str) -> Result<Self, StreamNameError> {
        StreamName::new(name)
    }
}

impl TryFrom<String> for StreamName {
    type Error = StreamNameError;

    fn try_from(name: String) -> Result<Self, StreamNameError> {
        StreamName::new(name)
    }
}

impl From<StreamName> for String {
    fn from(name: StreamName) -> String {
        name.name.as_ref().to_owned()
    }
}

impl From<&StreamName> for StreamId {
    fn from(name: &StreamName) -> StreamId {
        name.id
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamName({:?})", &*self.name)
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
