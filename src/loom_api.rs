//! Crate internals for the loom models in `loom-tests/`.
//!
//! Compiled only under `RUSTFLAGS="--cfg loom"`, and hidden from the docs:
//! this is not API. Each type here is a thin wrapper that forwards to the
//! crate's real code (`Segments`, `Signal`, `Log` with its reservations and
//! watermark), so that a model can drive one protocol directly, with far
//! fewer interleavings than a whole `MemoryStore::insert`. Nothing here adds
//! synchronisation of its own: every atomic access a model sees is the
//! crate's.

use crate::log::OwnedStamp;
use crate::stream::StreamPtr;
use crate::sync::{AtomicU64, UnsafeCell};
use std::cell::Cell;
use std::fmt;

// ---------------------------------------------------------------------------
// Observation hooks
// ---------------------------------------------------------------------------

loom::thread_local! {
    /// Commits that took the fast path (`Watermark::publish`) on this loom
    /// thread: a loom thread-local, so every model thread counts its own,
    /// and every execution starts from zero.
    static FAST_COMMITS: Cell<usize> = Cell::new(0);
    /// Times this loom thread registered on a `Signal`, found its condition
    /// still false, and went to wait (`Signal::park_until`).
    static PARKS: Cell<usize> = Cell::new(0);
    /// Capped log segments whose last removed event this loom thread
    /// counted (`Log::count_in`, which then queues the segment).
    static COMPLETED_SEGMENTS: Cell<usize> = Cell::new(0);
}

thread_local! {
    /// Transaction metadata (`TxMeta`) allocated and not yet freed on this
    /// OS thread. A std thread-local, as `LIVE_TRACKED_SLOTS` below: loom
    /// runs every thread of a model on the test's own OS thread, and a
    /// `TxMeta` may be freed on another loom thread than its writer's.
    static LIVE_TX_METAS: Cell<isize> = const { Cell::new(0) };
}

/// Called by `Reservation::commit` on its fast path (the one `cfg(loom)`
/// line there): counts for [`fast_commits`].
pub(crate) fn note_fast_commit() {
    FAST_COMMITS.with(|n| n.set(n.get() + 1));
}

/// Called by `Signal::park_until` just before it waits on its listener (the
/// one `cfg(loom)` line there): counts for [`parks`].
pub(crate) fn note_park() {
    PARKS.with(|n| n.set(n.get() + 1));
}

/// Called by `Log::count_in` when its count completes a segment (the one
/// `cfg(loom)` line there): counts for [`completed_segments`].
pub(crate) fn note_completed_segment() {
    COMPLETED_SEGMENTS.with(|n| n.set(n.get() + 1));
}

/// Called when a `TxMeta` is allocated (`delta` 1) and freed (-1): the
/// `cfg(loom)` lines of `OwnedStamp::allocate` and `free_stamp`.
pub(crate) fn note_tx_meta(delta: isize) {
    LIVE_TX_METAS.with(|live| live.set(live.get() + delta));
}

/// How many capped log segments the calling loom thread completed in this
/// execution: its `Log::count_removed` counted the last of their events,
/// and queued them for retirement (contract rule 30).
pub fn completed_segments() -> usize {
    COMPLETED_SEGMENTS.with(Cell::get)
}

/// Transaction metadata (`TxMeta`: a correlation id, metadata or client
/// ids) allocated and not yet freed on this OS thread: a leak shows up as
/// a count left over once its log is dropped, a double free as one below
/// where it started.
pub fn live_tx_metas() -> isize {
    LIVE_TX_METAS.with(Cell::get)
}

/// How many commits the calling loom thread made on the fast path (its
/// range started at the watermark, which it moved with a plain store) in
/// this execution. Commits through `insert` and handles count too.
pub fn fast_commits() -> usize {
    FAST_COMMITS.with(Cell::get)
}

/// How many times the calling loom thread parked on a `Signal` in this
/// execution: registered as a sleeper, found its condition still false and
/// waited for a wake-up (every wait of the crate goes through
/// `Signal::wait_until`, `park_until` and `wait_until_async`, except
/// `next_async`).
pub fn parks() -> usize {
    PARKS.with(Cell::get)
}

/// How many streams `store`'s index holds (with events, or in use by a
/// writer or handle right now): failed inserts, pure checks and handles
/// dropped unused must leave no entry behind.
pub fn indexed_streams<E>(store: &crate::MemoryStore<E>) -> usize {
    store.inner.streams.len()
}

/// How many of `stream`'s versions `store` has counted as removed events
/// (rule 30's reclamation), 0 for a stream it does not hold.
pub fn counted_removed<E>(store: &crate::MemoryStore<E>, stream: crate::StreamId) -> u64 {
    store
        .inner
        .streams
        .with(stream, |stream| stream.counted_removed())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Segments
// ---------------------------------------------------------------------------

/// The crate's `Segments` with the stream index's own slot type
/// (`AtomicU64`) and segments of 2, 4, then 4, 4, ... slots (the loom
/// `SHIFT`, capped at 4 so that models reach the capped region).
pub struct AtomicSegments(crate::segments::Segments<AtomicU64, 1, 0, 2>);

impl AtomicSegments {
    /// An empty array: no segment allocated.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::segments::Segments::new())
    }

    /// `Segments::get_or_alloc`.
    pub fn get_or_alloc(&self, index: u64) -> &AtomicU64 {
        self.0.get_or_alloc(index)
    }

    /// `Segments::get`.
    pub fn get(&self, index: u64) -> Option<&AtomicU64> {
        self.0.get(index)
    }
}

impl fmt::Debug for AtomicSegments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AtomicSegments")
    }
}

thread_local! {
    /// Live `TrackedSlot`s on this OS thread. Loom runs every thread of a
    /// model as a coroutine on the test's own OS thread, so this counts the
    /// slots of the current model only (tests run on separate OS threads).
    static LIVE_TRACKED_SLOTS: Cell<isize> = const { Cell::new(0) };
    /// `TrackedSlot`s ever created on this OS thread.
    static CREATED_TRACKED_SLOTS: Cell<usize> = const { Cell::new(0) };
}

/// A slot whose value sits in a loom `UnsafeCell`: loom flags any access to
/// it that is not ordered after the slot's creation (which happens inside
/// `Segments::install`, on the allocating thread), so a segment published
/// without Release/Acquire is caught. Slots also count themselves, so a
/// segment that is never freed (a leak) shows up in [`live_tracked_slots`].
pub struct TrackedSlot {
    value: UnsafeCell<u64>,
}

impl Default for TrackedSlot {
    fn default() -> Self {
        LIVE_TRACKED_SLOTS.with(|live| live.set(live.get() + 1));
        CREATED_TRACKED_SLOTS.with(|created| created.set(created.get() + 1));
        Self {
            value: UnsafeCell::new(0),
        }
    }
}

impl Drop for TrackedSlot {
    fn drop(&mut self) {
        LIVE_TRACKED_SLOTS.with(|live| live.set(live.get() - 1));
    }
}

// SAFETY: only used under loom, where `alloc_segment` builds slots with
// `T::default()`, never from zeroed memory.
unsafe impl crate::segments::Slot for TrackedSlot {}

impl TrackedSlot {
    /// Reads the value. Not synchronised: the caller must be ordered after
    /// the last `set` (loom checks it).
    pub fn get(&self) -> u64 {
        // SAFETY: loom's `UnsafeCell` checks the access; the pointer is valid
        // for as long as the segment, which outlives `&self`.
        self.value.with(|p| unsafe { *p })
    }

    /// Writes the value. Not synchronised: the caller must be the only
    /// accessor (loom checks it).
    pub fn set(&self, value: u64) {
        // SAFETY: as in `get`.
        self.value.with_mut(|p| unsafe { *p = value })
    }
}

impl fmt::Debug for TrackedSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrackedSlot")
    }
}

/// `TrackedSlot`s created and not yet dropped on this OS thread.
pub fn live_tracked_slots() -> isize {
    LIVE_TRACKED_SLOTS.with(Cell::get)
}

/// `TrackedSlot`s ever created on this OS thread.
pub fn created_tracked_slots() -> usize {
    CREATED_TRACKED_SLOTS.with(Cell::get)
}

/// The crate's `Segments` over [`TrackedSlot`]s, 2, 4, then 4, 4, ... slots
/// per segment.
pub struct TrackedSegments(crate::segments::Segments<TrackedSlot, 1, 0, 2>);

impl TrackedSegments {
    /// An empty array: no segment allocated.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::segments::Segments::new())
    }

    /// `Segments::get_or_alloc`.
    pub fn get_or_alloc(&self, index: u64) -> &TrackedSlot {
        self.0.get_or_alloc(index)
    }

    /// `Segments::get`.
    pub fn get(&self, index: u64) -> Option<&TrackedSlot> {
        self.0.get(index)
    }
}

impl fmt::Debug for TrackedSegments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrackedSegments")
    }
}

// ---------------------------------------------------------------------------
// Signal
// ---------------------------------------------------------------------------

/// The crate's `Signal`: a sleeper count gating `event_listener` notifies.
pub struct Signal(crate::signal::Signal);

impl Signal {
    /// No sleepers.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::signal::Signal::new())
    }

    /// `Signal::wake`: call after changing the state sleepers wait on.
    pub fn wake(&self) {
        self.0.wake();
    }

    /// `Signal::park_until` with no deadline (loom's parker has no timeouts).
    pub fn park_until(&self, ready: impl Fn() -> bool) -> bool {
        self.0.park_until(ready, None)
    }

    /// `Signal::wait_until` with no deadline: the crate's one waiting loop
    /// (under loom its `Backoff` never spins, so it parks at once).
    pub fn wait_until(&self, ready: impl Fn() -> bool) {
        self.0.wait_until(ready, None);
    }

    /// `Signal::wait_until_async`, the async subscription waits' loop
    /// (under loom without its spin and its timer): `prepare`, check again,
    /// then await the listener as a future.
    pub async fn wait_until_async(&self, ready: impl Fn() -> bool) -> bool {
        self.0
            .wait_until_async(ready, std::time::Duration::MAX)
            .await
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// ---------------------------------------------------------------------------
// Log, reservations and the watermark
// ---------------------------------------------------------------------------

/// The crate's `Log` (segments of 2, 4, ... slots under loom) with its
/// commit watermark.
pub struct Log<E>(crate::log::Log<E>);

/// The store was poisoned: the watermark will never move again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poisoned;

impl<E> Log<E> {
    /// An empty log.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(crate::log::Log::new(crate::ids::EventIds::new()))
    }

    /// `Log::reserve`: `len > 0` consecutive positions.
    pub fn reserve(&self, len: u64) -> Reservation<'_, E> {
        Reservation {
            inner: self
                .0
                .reserve(len, OwnedStamp::new(0, None))
                .expect("a model never fills the log"),
            next: 0,
        }
    }

    /// `Log::reserve` for a transaction created at `created_at` (ns since
    /// the epoch), with a correlation id (its time then lives in the
    /// transaction's `TxMeta`) or without (in each record's stamp).
    pub fn reserve_created(
        &self,
        len: u64,
        created_at: u64,
        correlated: bool,
    ) -> Reservation<'_, E> {
        let correlation_id =
            correlated.then(|| crate::ids::CorrelationId::from_uuid(uuid::Uuid::nil()));
        Reservation {
            inner: self
                .0
                .reserve(len, OwnedStamp::new(created_at, correlation_id))
                .expect("a model never fills the log"),
            next: 0,
        }
    }

    /// The creation time (ns) of every committed position, read as
    /// `read_all` does: one watermark load, then the records below it.
    ///
    /// For models that never count a removal: without an epoch guard (so
    /// that the reader synchronises with nobody but through the log's own
    /// atomics), which is sound only while no segment is ever retired.
    pub fn read_created_at(&self) -> Vec<u64> {
        let end = self.0.watermark.get();
        (0..end)
            .map(|p| {
                // SAFETY: `p` is below `end`, loaded with Acquire, and no
                // segment of this log is retired (the caller's contract).
                let record = unsafe { self.0.committed(p) }
                    .expect("a model that reads this way never retires a segment");
                crate::envelope::Envelope::new(record, p, &self.0.ids)
                    .created_at()
                    .duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos() as u64)
            })
            .collect()
    }

    /// `Watermark::get`: the end of the committed prefix (an Acquire load).
    pub fn committed(&self) -> u64 {
        self.0.watermark.get()
    }

    /// `Log::wait_for`: waits until every position below `end` is
    /// committed.
    pub fn wait_committed(&self, end: u64) -> Result<(), Poisoned> {
        self.0.wait_for(end).map_err(|_| Poisoned)
    }

    /// Whether the log was poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.0.watermark.is_poisoned()
    }

    /// `Log::count_removed`: counts the events at `positions` as removed
    /// (each committed, below the watermark, and counted once in the log's
    /// life), queueing each capped segment it completes.
    pub fn count_removed(&self, positions: std::ops::Range<u64>) {
        self.0.count_removed(positions);
    }

    /// `Log::reclaim`: retires the queued segments the watermark is past,
    /// frees the retired ones nobody can read.
    pub fn reclaim(&self) {
        self.0.reclaim();
    }

    /// Reads the committed event at `position` as a reader that keeps
    /// events across calls does (a subscription, a borrowed read): one
    /// watermark load, then `Log::reach_one`, which pins the position's
    /// capped segment; `read` runs while the pin is held (only its payload,
    /// creation time and correlation id mean anything here: the log alone
    /// has no streams), and the pin is dropped after it. `None` if the
    /// segment was retired (every event in it removed).
    pub fn read_pinned<R>(
        &self,
        position: u64,
        read: impl FnOnce(crate::envelope::Envelope<'_, E>) -> R,
    ) -> Option<R> {
        let end = self.0.watermark.get();
        assert!(position < end, "position {position} is not committed");
        let mut held = None;
        // SAFETY: `position` is below `end`, loaded with Acquire; the
        // envelope is used only inside this `match`, while `held` lives.
        let read = match unsafe { self.0.reach_one(position, &mut held, drop) } {
            Ok(envelope) => Some(read(envelope)),
            Err(_) => None,
        };
        drop(held);
        read
    }

    /// The payloads of every committed position, read as `read_all` does:
    /// one watermark load, then the records below it.
    ///
    /// For models that never count a removal, as [`read_created_at`](Self::read_created_at).
    pub fn read_committed(&self) -> Vec<&E> {
        let end = self.0.watermark.get();
        (0..end)
            .map(|p| {
                // SAFETY: `p` is below `end`, loaded with Acquire, and no
                // segment of this log is retired (the caller's contract).
                &unsafe { self.0.committed(p) }
                    .expect("a model that reads this way never retires a segment")
                    .payload
            })
            .collect()
    }
}

impl<E> fmt::Debug for Log<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("watermark", &self.0.watermark)
            .finish_non_exhaustive()
    }
}

/// Which way `Reservation::commit` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitPath {
    /// The range started at the watermark: the writer moved the watermark
    /// itself with `Watermark::publish`, then stored its marker, fenced,
    /// helped over any range committed behind it, and `wake_fenced`.
    Fast,
    /// Marker, fence, `Watermark::advance` (a CAS loop) and `Signal::wake`.
    Slow,
}

/// The crate's `Reservation`. Dropping it uncommitted abandons the range and
/// poisons the log, as in the crate.
pub struct Reservation<'a, E> {
    inner: crate::log::Reservation<'a, E>,
    next: u64,
}

impl<E> Reservation<'_, E> {
    /// The first reserved position.
    pub fn start(&self) -> u64 {
        self.inner.start()
    }

    /// `Reservation::write`: moves a record holding `payload` into the
    /// next reserved slot (its stream pointer is never read by the log).
    pub fn write(&mut self, payload: E) {
        let version = self.next;
        self.next += 1;
        self.inner.write(StreamPtr::dangling(), version, payload);
    }

    /// `Reservation::commit`: publishes the range and moves the watermark
    /// (the fast path when the range starts at the watermark) or helps it.
    /// Returns which path the commit took.
    pub fn commit(self) -> CommitPath {
        let before = fast_commits();
        self.inner.commit();
        if fast_commits() > before {
            CommitPath::Fast
        } else {
            CommitPath::Slow
        }
    }
}

impl<E> fmt::Debug for Reservation<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("start", &self.inner.start())
            .field("written", &self.next)
            .finish()
    }
}

/// Reserves one position of `store`'s log and drops the reservation
/// uncommitted, as a writer unwinding between reservation and commit would:
/// the crate's real abandon path (the range is marked abandoned and the
/// store poisoned, waking every waiter). The store's fault-injection hook is
/// test-only, so this is how a model poisons a whole store.
pub fn abandon_a_reservation<E>(store: &crate::MemoryStore<E>) {
    drop(
        store
            .inner
            .log
            .reserve(1, OwnedStamp::new(0, None))
            .expect("a model never fills the log")
            // As every reservation of the store: abandoned, it wakes the
            // sleepers of every stream too.
            .wake_on_poison(&store.inner.streams),
    );
}
