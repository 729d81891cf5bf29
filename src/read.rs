//! Reads over the committed prefix of the log.
//!
//! Every read takes one snapshot of the watermark when it starts and yields
//! only what lies below it: the committed prefix at that moment, as whole
//! transactions. Envelopes are borrowed from the log, never copied. Events
//! removed from their stream (rule 30 of the contract: deleted, truncated
//! away, beyond a maximum count) are skipped when a read reaches them.

use crate::envelope::Envelope;
use crate::ids::{Position, StreamId};
use crate::log::{Held, Keep, Log, Reach, Slot};
use crate::store::Inner;
use crate::stream::{Stream, StreamPtr};
use crate::sync::{AtomicU64, Ordering};
use std::iter::FusedIterator;

/// Where a read or a subscription of the whole log starts.
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, Position, Start, StreamId, Transaction};
/// let store = MemoryStore::new();
/// store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [10, 11, 12])).unwrap();
/// let after_first: Vec<_> = store.read_all(Start::After(Position(0))).map(|e| *e.payload()).collect();
/// assert_eq!(after_first, [11, 12]);
/// assert_eq!(store.read_all(Start::End).count(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Start {
    /// From position 0.
    #[default]
    Beginning,
    /// From the first position after this one (exclusive).
    After(Position),
    /// After everything committed when the read or subscription starts:
    /// live events only (KurrentDB's `End`). The store resolves it once,
    /// when [`MemoryStore::subscribe`](crate::MemoryStore::subscribe) (or
    /// `spawn_subscriber`, or a read) is called, to the watermark at that
    /// moment: a subscription then delivers exactly the selected events
    /// committed after the call, and a read is empty.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Selector, Start, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// store.insert(Transaction::single(stream, ExpectedVersion::Any, "history")).unwrap();
    /// let mut live = store.subscribe(Selector::all().start(Start::End));
    /// assert!(live.try_next().unwrap().is_none());
    /// store.insert(Transaction::single(stream, ExpectedVersion::Any, "live")).unwrap();
    /// assert_eq!(*live.try_next().unwrap().unwrap().payload(), "live");
    /// ```
    End,
}

impl Start {
    /// The first position this start selects, when the watermark is
    /// `watermark`.
    pub(crate) fn first(self, watermark: u64) -> u64 {
        match self {
            Start::Beginning => 0,
            Start::After(position) => position.0.saturating_add(1),
            Start::End => watermark,
        }
    }
}

/// Committed events of the whole store in position order; see
/// [`MemoryStore::read_all`](crate::MemoryStore::read_all).
pub struct ReadAll<'a, E> {
    log: &'a Log<E>,
    inner: &'a Inner<E>,
    next: u64,
    /// The watermark when the read started.
    end: u64,
    /// The clock reading maximum ages are compared with (rule 30): taken
    /// when the read first reaches an event of a stream with one.
    now: Option<u64>,
    /// The slots from `next` to the end of its segment (or to `end`), once
    /// looked up: walking them needs no lookup per event.
    run: std::slice::Iter<'a, Slot<E>>,
    /// The pin on `run`'s segment, if it can be freed (rule 30).
    held: Option<Held<E>>,
    /// Where the pins of segments passed go.
    keep: Keep<'a>,
}

impl<'a, E> ReadAll<'a, E> {
    /// A read from `start`, whose pins go to `keep`: see [`Keep`]. With
    /// [`Keep::Drop`], each envelope must be gone before the next call to
    /// `next` (the crate's visitor reads).
    pub(crate) fn new(inner: &'a Inner<E>, start: Start, keep: Keep<'a>) -> Self {
        let log = &inner.log;
        let end = log.watermark.get();
        Self {
            log,
            inner,
            next: start.first(end).min(end),
            end,
            now: None,
            run: [].iter(),
            held: None,
            keep,
        }
    }
}

impl<E> Drop for ReadAll<'_, E> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            self.keep.keep(held);
        }
    }
}

impl<'a, E> Iterator for ReadAll<'a, E> {
    type Item = Envelope<'a, E>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.next >= self.end {
                return None;
            }
            let slot = match self.run.next() {
                Some(slot) => slot,
                None => {
                    let keep = self.keep;
                    // SAFETY: `next < end`, a watermark value loaded with
                    // Acquire; the run is read while `held` pins it, and
                    // the envelopes it yields while `keep` does.
                    match unsafe {
                        self.log
                            .reach(self.next, self.end, &mut self.held, |held| keep.keep(held))
                    } {
                        Reach::Run(run) => {
                            self.run = run.iter();
                            self.run.next()?
                        }
                        // Every event of the segment was removed and its
                        // memory reclaimed: skipped as removed (rule 30).
                        Reach::Gone { end } => {
                            self.next = end.min(self.end);
                            continue;
                        }
                    }
                }
            };
            let position = self.next;
            self.next += 1;
            // SAFETY: the slot is at `position < end`, a watermark value loaded
            // with Acquire (the run stops at `end`).
            let record = unsafe { slot.committed_record() };
            let event = Envelope::new(record, position, &self.log.ids);
            // Removed and too old events are skipped when reached (rule
            // 30); the stream is looked at only once anything was ever
            // removed, its age only once any stream has a maximum age.
            if !self
                .inner
                .skips(self.inner.removals(), event, &mut self.now)
            {
                return Some(event);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Removed events are skipped: at most what is left.
        (0, Some((self.end - self.next) as usize))
    }
}
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
    /// The store, for its clock (maximum age, rule 30).
    inner: &'a Inner<E>,
    /// The clock reading maximum ages are compared with: taken when the
    /// read first reaches an event, if the stream has one.
    now: Option<u64>,
    /// `None` for a stream with no committed event.
    stream: Option<&'a Stream>,
    /// Versions still to read: `front..back`.
    front: u64,
    back: u64,
    backward: bool,
    /// Forward: the positions of versions `front..`, to the end of their
    /// segment of the stream's index (or empty, until looked up).
    run: &'a [AtomicU64],
    /// Forward: committed log slots from `window_start` to the end of their
    /// segment (or to the watermark). A transaction's events of one stream
    /// sit at consecutive positions, so most events of a forward read come
    /// from here without a log lookup.
    window: &'a [Slot<E>],
    window_start: u64,
    /// The watermark when the read started.
    watermark: u64,
    /// The pin on `window`'s segment, if it can be freed (rule 30).
    held: Option<Held<E>>,
    /// Where the pins of segments passed go.
    keep: Keep<'a>,
}

impl<E> Drop for ReadStream<'_, E> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            self.keep.keep(held);
        }
    }
}

impl<'a, E> ReadStream<'a, E> {
    /// Versions `first..` (forward) or `..=last` (backward) of `id`, cut at
    /// the committed end of the stream; pins go to `keep`, as for
    /// [`ReadAll::new`].
    pub(crate) fn new(
        inner: &'a Inner<E>,
        id: StreamId,
        first: u64,
        last: Option<u64>,
        backward: bool,
        keep: Keep<'a>,
    ) -> Self {
        // The watermark first, then the stream's length: see `committed_len`.
        let watermark = inner.log.watermark.get();
        let found = inner.streams.with(id, |stream| {
            (StreamPtr::new(stream), stream.committed_len(watermark))
        });
        let (stream, len) = match found {
            // SAFETY: the stream holds committed events, so the index keeps
            // it for as long as the store, which `inner` borrows for `'a`.
            Some((stream, len)) if len > 0 => (Some(unsafe { stream.get() }), len),
            _ => (None, 0),
        };
        let back = last.map_or(len, |last| last.saturating_add(1).min(len));
        let floor = stream.map_or(0, Stream::floor);
        Self {
            log: &inner.log,
            inner,
            now: None,
            stream,
            front: first.max(floor).min(back),
            back,
            backward,
            run: &[],
            window: &[],
            window_start: 0,
            watermark,
            held: None,
            keep,
        }
    }

    /// The next event of the stream not below its floor, whatever its age;
    /// `Some(None)` for one whose memory was reclaimed (removed).
    #[inline]
    fn next_unaged(&mut self, stream: &'a Stream) -> Option<Option<Envelope<'a, E>>> {
        // Versions removed since the read started are skipped once reached
        // (rule 30): the floor only rises.
        let floor = stream.floor();
        if self.front < floor {
            self.front = floor.min(self.back);
            self.run = &[];
        }
        if self.front >= self.back {
            return None;
        }
        if self.backward {
            self.back -= 1;
            // `None`: removed, and its position freed (rule 30).
            let Some(position) = stream.committed_position(self.back) else {
                return Some(None);
            };
            return Some(self.envelope(position));
        }
        if self.run.is_empty() {
            // One lookup per run of the stream's index, not per event, where
            // the index is never freed (its first versions).
            if let Some(run) = stream.committed_positions(self.front) {
                self.run = run;
            }
        }
        let position = match self.run.split_first() {
            Some((first, rest)) => {
                self.run = rest;
                // Relaxed: the version is below the committed length, whose
                // Acquire load published its position.
                first.load(Ordering::Relaxed)
            }
            None => match stream.committed_position(self.front) {
                Some(position) => position,
                None => {
                    // Removed, and its position freed (rule 30).
                    self.front += 1;
                    return Some(None);
                }
            },
        };
        self.front += 1;
        Some(self.forward_envelope(position))
    }

    /// The event at `position`, a committed position of the stream at or
    /// after the previous one a forward read returned: from the window when
    /// it holds `position`, else from a new window starting there.
    /// `None` if its memory was reclaimed (every event of its segment was
    /// removed).
    #[inline]
    fn forward_envelope(&mut self, position: u64) -> Option<Envelope<'a, E>> {
        debug_assert!(position < self.watermark);
        let offset = usize::try_from(position.wrapping_sub(self.window_start));
        let slot = match offset.ok().and_then(|offset| self.window.get(offset)) {
            Some(slot) => slot,
            None => {
                let keep = self.keep;
                // SAFETY: `position < watermark` (as in `envelope`), a value
                // loaded with Acquire when the read started; the window is
                // read while `held` pins it, and the envelopes it yields
                // while `keep` does.
                match unsafe {
                    self.log
                        .reach(position, self.watermark, &mut self.held, |held| {
                            keep.keep(held)
                        })
                } {
                    Reach::Run(window) => self.window = window,
                    Reach::Gone { .. } => return None,
                }
                self.window_start = position;
                &self.window[0]
            }
        };
        // SAFETY: the slot is at `position`, below the watermark loaded with
        // Acquire when the read started (the window stops there).
        let record = unsafe { slot.committed_record() };
        Some(Envelope::new(record, position, &self.log.ids))
    }

    /// The event at `position`, a committed position of the stream; `None`
    /// if its memory was reclaimed.
    fn envelope(&mut self, position: u64) -> Option<Envelope<'a, E>> {
        debug_assert!(position < self.watermark);
        let keep = self.keep;
        // SAFETY: the position is a version's below `committed_len(watermark)`,
        // so it lies below `watermark`, loaded with Acquire when the read
        // started; held as in `forward_envelope`.
        unsafe {
            self.log
                .reach_one(position, &mut self.held, |held| keep.keep(held))
        }
        .ok()
    }
}

impl<'a, E> Iterator for ReadStream<'a, E> {
    type Item = Envelope<'a, E>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.stream?;
        loop {
            let Some(event) = self.next_unaged(stream)? else {
                // Removed, and its memory reclaimed (rule 30).
                continue;
            };
            // Events older than the stream's maximum age when reached are
            // skipped too (rule 30): one load for a stream without one.
            if !event.is_too_old(|| self.inner.reading(&mut self.now)) {
                return Some(event);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // A removal may still hide some: at most what is left.
        (0, Some((self.back - self.front) as usize))
    }
}
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

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{ExpectedVersion, MemoryStore, Start, StreamId, StreamVersion, Transaction};

    /// A forward stream read reuses a window of log slots between events;
    /// across segment boundaries (the first segment holds 1,024 slots, 64
    /// under Miri), gaps of other streams' events and every start version,
    /// it returns exactly the stream's events of `read_all`, in order.
    #[test]
    fn stream_reads_match_read_all_across_segments_and_gaps() {
        let store = MemoryStore::new();
        let (a, b) = (StreamId::new(), StreamId::new());
        let mut n = 0u64;
        // Under Miri, fewer: still past the first segment (1,024 slots).
        let (transactions, step) = if cfg!(miri) { (300, 401) } else { (1_500, 97) };
        for tx in 0..transactions {
            let stream = if tx % 3 == 0 { b } else { a };
            let len = 1 + tx % 7;
            let events: Vec<u64> = (n..n + len).collect();
            n += len;
            store
                .insert(Transaction::new().append(stream, ExpectedVersion::Any, events))
                .unwrap();
        }
        for stream in [a, b] {
            let expected: Vec<(u64, u64)> = store
                .read_all(Start::Beginning)
                .filter(|event| event.stream_id() == stream)
                .map(|event| (event.position().0, *event.payload()))
                .collect();
            for from in (0..expected.len() as u64 + 2).step_by(step) {
                let read: Vec<(u64, u64)> = store
                    .read_stream(stream, StreamVersion(from))
                    .map(|event| (event.position().0, *event.payload()))
                    .collect();
                let skip = (from as usize).min(expected.len());
                assert_eq!(read, expected[skip..], "stream read from version {from}");
            }
            let backward: Vec<(u64, u64)> = store
                .read_stream_backward(stream)
                .map(|event| (event.position().0, *event.payload()))
                .collect();
            assert!(backward.iter().rev().eq(expected.iter()));
        }
    }
}
