//! Reads over the committed prefix of the log.
//!
//! Every read takes one snapshot of the watermark when it starts and yields
//! only what lies below it: the committed prefix at that moment, as whole
//! transactions. Envelopes are borrowed from the log, never copied.

use crate::envelope::Envelope;
use crate::log::{Log, Slot};
use crate::stream::Stream;
use crate::sync::Arc;
use crate::Position;
use std::iter::FusedIterator;

/// Where a read or a subscription of the whole log starts.
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, Position, Start, StreamId, Transaction};
/// let store = MemoryStore::new();
/// store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [10, 11, 12])).unwrap();
/// let after_first: Vec<_> = store.read_all(Start::After(Position(0))).map(|e| *e.payload()).collect();
/// assert_eq!(after_first, [11, 12]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Start {
    /// From position 0.
    #[default]
    Beginning,
    /// From the first position after this one (exclusive).
    After(Position),
}

impl Start {
    /// The first position this start selects.
    pub(crate) fn first(self) -> u64 {
        match self {
            Start::Beginning => 0,
            Start::After(position) => position.0.saturating_add(1),
        }
    }
}

/// Committed events of the whole store in position order; see
/// [`MemoryStore::read_all`](crate::MemoryStore::read_all).
pub struct ReadAll<'a, E> {
    log: &'a Log<E>,
    next: u64,
    /// The watermark when the read started.
    end: u64,
    /// The slots from `next` to the end of its segment (or to `end`), once
    /// looked up: walking them needs no lookup per event.
    run: std::slice::Iter<'a, Slot<E>>,
}

impl<'a, E> ReadAll<'a, E> {
    pub(crate) fn new(log: &'a Log<E>, start: Start) -> Self {
        let end = log.committed();
        Self {
            log,
            next: start.first().min(end),
            end,
            run: [].iter(),
        }
    }
}

impl<'a, E> Iterator for ReadAll<'a, E> {
    type Item = &'a Envelope<E>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let slot = match self.run.next() {
            Some(slot) => slot,
            None => {
                // SAFETY: `next < end`, a watermark value loaded with Acquire.
                self.run = unsafe { self.log.committed_run(self.next, self.end) }.iter();
                self.run.next()?
            }
        };
        self.next += 1;
        // SAFETY: the slot is at `next - 1 < end`, a watermark value loaded
        // with Acquire (the run stops at `end`).
        Some(unsafe { slot.committed_envelope() })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.next) as usize;
        (left, Some(left))
    }
}

impl<E> ExactSizeIterator for ReadAll<'_, E> {}
impl<E> FusedIterator for ReadAll<'_, E> {}

impl<E> std::fmt::Debug for ReadAll<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAll")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish()
    }
}

/// Committed events of one stream, forward or backward; see
/// [`MemoryStore::read_stream`](crate::MemoryStore::read_stream).
pub struct ReadStream<'a, E> {
    log: &'a Log<E>,
    /// `None` for a stream that does not exist.
    stream: Option<Arc<Stream>>,
    /// Versions still to read: `front..back`.
    front: u64,
    back: u64,
    backward: bool,
    /// The watermark when the read started.
    watermark: u64,
}

impl<'a, E> ReadStream<'a, E> {
    /// Versions `first..` (forward) or `..=last` (backward), cut at the
    /// committed end of the stream.
    pub(crate) fn new(
        log: &'a Log<E>,
        stream: Option<Arc<Stream>>,
        first: u64,
        last: Option<u64>,
        backward: bool,
    ) -> Self {
        // The watermark first, then the stream's length: see `committed_len`.
        let watermark = log.committed();
        let len = stream.as_ref().map_or(0, |s| s.committed_len(watermark));
        let back = last.map_or(len, |last| last.saturating_add(1).min(len));
        Self {
            log,
            stream,
            front: first.min(back),
            back,
            backward,
            watermark,
        }
    }

    fn envelope(&self, version: u64) -> &'a Envelope<E> {
        let stream = self
            .stream
            .as_ref()
            .expect("a non-empty range has a stream");
        let position = stream.committed_position(version);
        debug_assert!(position < self.watermark);
        // SAFETY: `version < committed_len(watermark)`, so `position` lies
        // below `watermark`, loaded with Acquire when the read started.
        unsafe { self.log.get_committed(position) }
    }
}

impl<'a, E> Iterator for ReadStream<'a, E> {
    type Item = &'a Envelope<E>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        let version = if self.backward {
            self.back -= 1;
            self.back
        } else {
            self.front += 1;
            self.front - 1
        };
        Some(self.envelope(version))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.back - self.front) as usize;
        (left, Some(left))
    }
}

impl<E> ExactSizeIterator for ReadStream<'_, E> {}
impl<E> FusedIterator for ReadStream<'_, E> {}

impl<E> std::fmt::Debug for ReadStream<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadStream")
            .field("front", &self.front)
            .field("back", &self.back)
            .field("backward", &self.backward)
            .finish()
    }
}
