//! The in-memory store: inserts and reads.

use crate::envelope::Envelope;
use crate::ids::EventIds;
use crate::log::Log;
use crate::read::{ReadAll, ReadStream, Start};
use crate::stream::{Locked, StreamIndex};
use crate::sync::Arc;
use crate::transaction::Committed;
use crate::{
    ExpectedVersion, InsertError, Position, StreamHead, StreamId, StreamVersion, Transaction,
    VersionMismatch,
};
use smallvec::SmallVec;
use std::time::SystemTime;

/// A lock-free in-memory event store.
///
/// Handles are cheap to clone and all share one store; the store and every
/// event in it are dropped when the last handle goes. Every method takes
/// `&self` and may be called from any number of threads at once.
///
/// ```
/// use hindsight::{ExpectedVersion, MemoryStore, Start, StreamId, Transaction};
///
/// #[derive(Debug, PartialEq)]
/// enum Account { Opened, Deposited(u64) }
///
/// let store = MemoryStore::new();
/// let account = StreamId::new();
/// let done = store
///     .insert(Transaction::new().append(account, ExpectedVersion::NoStream, [Account::Opened]))
///     .unwrap();
///
/// // Optimistic concurrency: the next write expects the version just written.
/// let head = done.stream(account).unwrap();
/// store.insert(Transaction::single(account, head.expect_exact(), Account::Deposited(5))).unwrap();
///
/// let writer = store.clone(); // another handle on the same store
/// std::thread::spawn(move || {
///     writer.insert(Transaction::single(account, ExpectedVersion::Any, Account::Deposited(7))).unwrap();
/// }).join().unwrap();
///
/// let all: Vec<_> = store.read_all(Start::Beginning).map(|e| e.payload()).collect();
/// assert_eq!(all, [&Account::Opened, &Account::Deposited(5), &Account::Deposited(7)]);
/// ```
pub struct MemoryStore<E> {
    pub(crate) inner: Arc<Inner<E>>,
}

pub(crate) struct Inner<E> {
    pub(crate) log: Log<E>,
    pub(crate) streams: StreamIndex,
}

impl<E> Clone for MemoryStore<E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E> Default for MemoryStore<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> std::fmt::Debug for MemoryStore<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("committed", &self.inner.log.committed())
            .field("poisoned", &self.inner.log.watermark.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl<E> MemoryStore<E> {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                log: Log::new(),
                streams: StreamIndex::new(),
            }),
        }
    }

    /// Inserts a transaction, all or nothing.
    ///
    /// Every expectation is checked against the state just before the
    /// transaction. If one fails, nothing is written, no position is used,
    /// and the error lists every failing stream. Otherwise the whole
    /// transaction gets one contiguous range of positions (streams in
    /// ascending id order, each stream's events in order) and one creation
    /// time, and when `insert` returns every reader and subscriber can see
    /// all of it.
    ///
    /// A transaction with no events checks its expectations and writes
    /// nothing; its [`Committed::last_position`] is `None`.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, InsertError, MemoryStore, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// let (a, b) = (StreamId::new(), StreamId::new());
    /// store.insert(Transaction::single(a, ExpectedVersion::NoStream, 1)).unwrap();
    ///
    /// // `a` exists and `b` does not: both expectations fail, both are reported.
    /// let tx = Transaction::new()
    ///     .append(a, ExpectedVersion::NoStream, [2])
    ///     .append(b, ExpectedVersion::StreamExists, [3]);
    /// let Err(InsertError::VersionConflict(mismatches)) = store.insert(tx) else { unreachable!() };
    /// assert_eq!(mismatches.len(), 2);
    /// assert_eq!(store.head().map(|p| p.get()), Some(0)); // nothing written
    /// ```
    pub fn insert(&self, tx: Transaction<E>) -> Result<Committed, InsertError> {
        let Inner {
            log,
            streams: index,
        } = &*self.inner;
        if log.watermark.is_poisoned() {
            return Err(InsertError::Poisoned);
        }
        let created_at = SystemTime::now();
        let (appends, correlation_id) = tx.into_normalized();
        let total: u64 = appends.iter().map(|a| a.events.len() as u64).sum();

        // Look up (or create) the streams, then lock them in ascending id
        // order (`appends` is sorted): any two transactions take their
        // common locks in the same order, so they cannot deadlock. A stream
        // whose expectation is checked is locked even if it receives no
        // events (a pure check), so the check is ordered with every write to
        // it; an empty entry is as missing as no entry. Only an `Any`
        // append of zero events checks and writes nothing, and is skipped.
        // Inline for up to 4 streams: a typical insert allocates nothing here.
        let streams: SmallVec<[_; 4]> = appends
            .iter()
            .map(|a| {
                let inert = a.events.is_empty() && a.expected == ExpectedVersion::Any;
                (!inert).then(|| index.get_or_create(a.stream))
            })
            .collect();
        let locked: SmallVec<[Option<Locked<'_>>; 4]> = streams
            .iter()
            .map(|stream| stream.as_deref().map(|s| s.lock()))
            .collect();

        // Check every expectation against the state before the transaction,
        // counting events of transactions that reserved but did not commit
        // yet: they are ordered before us and cannot fail any more.
        let mut mismatches = Vec::new();
        // The end of the latest range any check saw (committed or not).
        let mut seen_end = 0;
        for (append, stream) in appends.iter().zip(&locked) {
            let found = stream.as_ref().and_then(Locked::head);
            if let Some(head) = found {
                seen_end = seen_end.max(head.position.0 + 1);
            }
            if !append.expected.matches(found) {
                mismatches.push(VersionMismatch {
                    stream: append.stream,
                    expected: append.expected,
                    found,
                });
            }
        }
        if !mismatches.is_empty() || total == 0 {
            drop(locked);
            // What the checks saw may still be committing: wait until it is
            // visible, so that no read after this answer contradicts it.
            log.wait_committed(seen_end)
                .map_err(|_| InsertError::Poisoned)?;
            return if mismatches.is_empty() {
                Ok(Committed {
                    last_position: None,
                    streams: SmallVec::new(),
                })
            } else {
                Err(InsertError::VersionConflict(mismatches))
            };
        }

        // Everything that could fail or allocate unboundedly is done before
        // the reservation: ids, the result vector, the envelopes' fields.
        let mut ids = EventIds::take(total);
        let mut heads: SmallVec<[_; 1]> = SmallVec::with_capacity(appends.len());

        // ---- From here to `commit`, nothing may panic. ----
        let mut reservation = log.reserve(total);
        #[cfg(test)]
        fault::check(0);
        let start = reservation.start();
        let mut next = start;
        for (append, stream) in appends.iter().zip(&locked) {
            let count = append.events.len() as u64;
            if count == 0 {
                continue;
            }
            // Always `Some`: streams with events were created above. Were it
            // not, the slots would stay unwritten and `commit` would abandon
            // the range (fail closed) instead of panicking here.
            let Some(stream) = stream else { continue };
            let version = stream.len();
            stream.append(next, count);
            // Within capacity: `heads` has room for every append.
            heads.push((
                append.stream,
                StreamHead {
                    version: StreamVersion(version + count - 1),
                    position: Position(next + count - 1),
                },
            ));
            next += count;
        }
        // Unlock: the positions are recorded, so later transactions on these
        // streams are checked against them and reserve after them.
        drop(locked);

        let mut next_head = heads.iter();
        for append in appends {
            if append.events.is_empty() {
                continue;
            }
            // One head per written stream, in the same order (see above).
            let Some((stream, head)) = next_head.next() else {
                break;
            };
            // The head is the last event: count back to the first.
            let first = 1 + head.version.0 - append.events.len() as u64;
            let offset = head.position.0 - head.version.0;
            for (version, payload) in (first..).zip(append.events) {
                reservation.write(Envelope {
                    position: Position(offset + version),
                    version: StreamVersion(version),
                    stream: *stream,
                    event_id: ids.next_id(),
                    correlation_id,
                    created_at,
                    payload,
                });
                #[cfg(test)]
                fault::check(offset + version + 1 - start);
            }
        }
        reservation.commit();
        // ---- Committed. ----

        // Read your writes: return only once the watermark covers us.
        log.wait_committed(start + total)
            .map_err(|_| InsertError::Poisoned)?;
        Ok(Committed {
            last_position: Some(Position(start + total - 1)),
            streams: heads,
        })
    }

    /// The position of the last committed event, or `None` for an empty
    /// store.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Position, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// assert_eq!(store.head(), None);
    /// store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, ['a', 'b'])).unwrap();
    /// assert_eq!(store.head(), Some(Position(1)));
    /// ```
    pub fn head(&self) -> Option<Position> {
        self.inner.log.committed().checked_sub(1).map(Position)
    }

    /// The last committed event of `stream`, or `None` if the stream does
    /// not exist.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, StreamVersion, Transaction};
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// assert_eq!(store.stream_head(stream), None);
    /// store.insert(Transaction::new().append(stream, ExpectedVersion::Any, [1, 2, 3])).unwrap();
    /// assert_eq!(store.stream_head(stream).unwrap().version, StreamVersion(2));
    /// ```
    pub fn stream_head(&self, stream: StreamId) -> Option<StreamHead> {
        let watermark = self.inner.log.committed();
        self.inner.streams.get(stream)?.committed_head(watermark)
    }

    /// The committed events of every stream, in position order, from
    /// `start`. The read sees the store as it was when the call was made.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Position, Start, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2, 3])).unwrap();
    /// let positions: Vec<_> = store.read_all(Start::After(Position(0))).map(|e| e.position().get()).collect();
    /// assert_eq!(positions, [1, 2]);
    /// ```
    pub fn read_all(&self, start: Start) -> ReadAll<'_, E> {
        ReadAll::new(&self.inner.log, start)
    }

    /// The committed events of `stream`, oldest first, from version `from`
    /// (inclusive). Empty if the stream does not exist.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, StreamVersion, Transaction};
    /// let store = MemoryStore::new();
    /// let (a, b) = (StreamId::new(), StreamId::new());
    /// store.insert(Transaction::new().append(a, ExpectedVersion::Any, [1, 2]).append(b, ExpectedVersion::Any, [9])).unwrap();
    /// store.insert(Transaction::single(a, ExpectedVersion::Any, 3)).unwrap();
    /// let read: Vec<_> = store.read_stream(a, StreamVersion(1)).map(|e| *e.payload()).collect();
    /// assert_eq!(read, [2, 3]);
    /// ```
    pub fn read_stream(&self, stream: StreamId, from: StreamVersion) -> ReadStream<'_, E> {
        ReadStream::new(
            &self.inner.log,
            self.inner.streams.get(stream),
            from.0,
            None,
            false,
        )
    }

    /// The committed events of `stream`, newest first.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// store.insert(Transaction::new().append(stream, ExpectedVersion::Any, [1, 2, 3])).unwrap();
    /// let read: Vec<_> = store.read_stream_backward(stream).map(|e| *e.payload()).collect();
    /// assert_eq!(read, [3, 2, 1]);
    /// ```
    pub fn read_stream_backward(&self, stream: StreamId) -> ReadStream<'_, E> {
        ReadStream::new(
            &self.inner.log,
            self.inner.streams.get(stream),
            0,
            None,
            true,
        )
    }

    /// The committed events of `stream` from version `from` (inclusive)
    /// down to version 0, newest first.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, StreamVersion, Transaction};
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// store.insert(Transaction::new().append(stream, ExpectedVersion::Any, [1, 2, 3])).unwrap();
    /// let read: Vec<_> = store.read_stream_backward_from(stream, StreamVersion(1)).map(|e| *e.payload()).collect();
    /// assert_eq!(read, [2, 1]);
    /// ```
    pub fn read_stream_backward_from(
        &self,
        stream: StreamId,
        from: StreamVersion,
    ) -> ReadStream<'_, E> {
        ReadStream::new(
            &self.inner.log,
            self.inner.streams.get(stream),
            0,
            Some(from.0),
            true,
        )
    }

    /// Whether a writer panicked between reserving and committing, so that
    /// the store refuses writes (see [`InsertError::Poisoned`]). Never true
    /// unless this crate has a bug.
    pub fn is_poisoned(&self) -> bool {
        self.inner.log.watermark.is_poisoned()
    }

    /// Whether two handles share one store.
    ///
    /// ```
    /// use hindsight::MemoryStore;
    /// let store = MemoryStore::<()>::new();
    /// assert!(store.same_store(&store.clone()));
    /// assert!(!store.same_store(&MemoryStore::new()));
    /// ```
    pub fn same_store(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Test-only hook between reservation and commit, to drive the poisoning
/// path: it must drop every event once and never hang a waiter.
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::RefCell;

    type Hook = (u64, Box<dyn FnOnce()>);

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Runs `hook` inside this thread's next insert, once it has reserved
    /// its range and written `written` envelopes into it.
    pub(crate) fn after_writes(written: u64, hook: impl FnOnce() + 'static) {
        HOOK.with(|slot| *slot.borrow_mut() = Some((written, Box::new(hook))));
    }

    pub(crate) fn check(written: u64) {
        let hook = HOOK.with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.take() {
                Some((at, hook)) if at == written => Some(hook),
                other => {
                    *slot = other;
                    None
                }
            }
        });
        if let Some(hook) = hook {
            hook();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// Counts its drops.
    struct Counted(std::sync::Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counted(drops: &std::sync::Arc<AtomicUsize>, n: usize) -> Vec<Counted> {
        (0..n).map(|_| Counted(drops.clone())).collect()
    }

    #[test]
    fn a_panic_between_reserve_and_commit_poisons_and_wakes_a_waiting_writer() {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let store = MemoryStore::new();
        let stream = StreamId::new();
        store
            .insert(Transaction::new().append(stream, ExpectedVersion::Any, counted(&drops, 3)))
            .unwrap();

        // Writer A reserves positions 3..5; inside the hook it lets writer B
        // reserve 5..6 (B then commits and waits on A's range), then panics.
        let (start_b, start_b_rx) = mpsc::channel::<()>();
        let (b_reserved, b_reserved_rx) = mpsc::channel::<()>();
        let b = {
            let (store, drops) = (store.clone(), drops.clone());
            std::thread::spawn(move || {
                start_b_rx.recv().unwrap();
                fault::after_writes(0, move || b_reserved.send(()).unwrap());
                store.insert(Transaction::new().append(
                    StreamId::new(),
                    ExpectedVersion::Any,
                    counted(&drops, 1),
                ))
            })
        };
        fault::after_writes(0, move || {
            start_b.send(()).unwrap();
            b_reserved_rx.recv().unwrap();
            panic!("injected fault between reservation and commit");
        });
        let a = catch_unwind(AssertUnwindSafe(|| {
            store.insert(Transaction::new().append(
                stream,
                ExpectedVersion::Any,
                counted(&drops, 2),
            ))
        }));
        assert!(a.is_err(), "the injected panic propagates to A's caller");
        // B committed behind A's hole: it must be told, not left hanging.
        assert_eq!(b.join().unwrap(), Err(InsertError::Poisoned));

        assert!(store.is_poisoned());
        assert_eq!(
            store.insert(Transaction::single(
                stream,
                ExpectedVersion::Any,
                Counted(drops.clone())
            )),
            Err(InsertError::Poisoned)
        );
        // The committed prefix stays readable and whole.
        assert_eq!(store.head(), Some(Position(2)));
        assert_eq!(store.read_all(Start::Beginning).count(), 3);
        assert_eq!(
            store.stream_head(stream).map(|h| h.version),
            Some(StreamVersion(2))
        );

        // A's 2 events were dropped by the unwind, the rejected one at once.
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        drop(store);
        // 3 committed + B's 1 (committed past the hole) dropped with the store.
        assert_eq!(drops.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn a_panic_after_some_envelopes_were_written_drops_each_exactly_once() {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let store = MemoryStore::new();
        let (a, b) = (StreamId::new(), StreamId::new());
        // 2 of 4 envelopes moved into the log, 2 still in the transaction.
        fault::after_writes(2, || panic!("injected"));
        let result = catch_unwind(AssertUnwindSafe(|| {
            store.insert(
                Transaction::new()
                    .append(a, ExpectedVersion::Any, counted(&drops, 2))
                    .append(b, ExpectedVersion::Any, counted(&drops, 2)),
            )
        }));
        assert!(result.is_err());
        assert_eq!(drops.load(Ordering::Relaxed), 4);
        assert_eq!(store.head(), None);
        assert_eq!(store.read_all(Start::Beginning).count(), 0);
        drop(store);
        assert_eq!(drops.load(Ordering::Relaxed), 4);
    }
}
