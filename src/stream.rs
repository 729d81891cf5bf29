//! The stream index: for every stream, its lock and the positions of its
//! events.
//!
//! A stream's positions are appended only under its lock, in the same
//! critical section that reserves them in the log, so they are ascending and
//! stream order equals position order. Readers read them without the lock and
//! cut them at the watermark: a stream's committed events are a prefix of its
//! positions.

use crate::idempotency::IdWindow;
use crate::ids::{Position, StreamId, StreamVersion};
use crate::log::Log;
use crate::positions::Positions;
use crate::signal::Signal;
use crate::sync::{self, fence, Arc, AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::transaction::StreamHead;

pub(crate) struct Stream {
    /// The stream's id, for readers that reach the stream from a record.
    pub(crate) id: StreamId,
    /// Held by a writer from checking the stream's expectation until its
    /// positions are recorded. Guards the stream's window of recent client
    /// ids (contract rule 29), allocated by the first write with one.
    lock: Mutex<Option<Box<IdWindow>>>,
    /// How many positions are recorded (committed or not).
    len: AtomicU64,
    /// The global position of each of the stream's events, by version;
    /// versions counted removed are freed (see [`Positions`]).
    positions: Positions,
    /// Where one-stream subscriptions of this stream park (targeted
    /// wake-ups): every writer of the stream wakes it once its commit is
    /// visible (`MemoryStore::finish`, `lock_and_write`), a cancel of a
    /// subscriber of the stream wakes it, and so does poisoning
    /// (`StreamIndex::wake_all`). Free for the writer while nobody sleeps.
    pub(crate) signal: Signal,
    /// The stream's name, if its first event was appended by name
    /// (`Transaction::append_named`); set at most once, by `Locked::name`.
    //
    // Sound without touching the stream's protocol: it is set under the
    // stream's lock while nothing is recorded (`len` 0), before the first
    // positions are recorded, and never changed after. Every event of the
    // stream is recorded after that under the same lock, and reaches a
    // reader only through the commit and the watermark (Release/Acquire),
    // so a reader that sees any event of the stream sees the name (or sees
    // that the stream has none, for good). `OnceLock` makes the read safe
    // in any case (its `get` is an Acquire load); a `std` one under loom
    // too, as no model sets a name. Unnamed streams pay its 24 bytes and
    // nothing else.
    name: std::sync::OnceLock<std::sync::Arc<str>>,
    /// The first version readers may see (contract rule 30): versions below
    /// it were removed by a delete ([`Locked::delete`]), a truncation
    /// ([`Locked::truncate`]) or the stream's maximum count
    /// ([`Stream::trim`]). Never lowered: every raise is a `fetch_max`, so
    /// raises under the lock and the lock-free ones of `trim` commute. 0
    /// for a stream nothing was removed from. May exceed `len` (a
    /// truncation ahead of the stream).
    floor: AtomicU64,
    /// The stream's maximum age in nanoseconds (KurrentDB's `$maxAge`,
    /// rule 30), 0 for none: readers hide an event created more than this
    /// long before they reach it. Next to `floor`, which every reader of
    /// the stream loads first, so the check costs no cache miss. Written
    /// only under `lock`.
    max_age: AtomicU64,
    /// The stream's marks ([`Marks`]): where it was last deleted, whether
    /// for good, whether it has a maximum count. Written only under `lock`.
    deleted: AtomicU64,
    /// Versions below this are counted as removed in the log (see
    /// [`Stream::count_removed`]), which frees a segment once all its
    /// events are. Written only by the thread holding `counting`.
    counted: AtomicU64,
    /// The most versions any caller of `count_removed` asked to have
    /// counted: removed, committed and visible to it. Never above `floor`.
    wanted: AtomicU64,
    /// Held (true) by the one thread counting: counting reads the positions
    /// of the versions it counts, and then frees them, so two counters at
    /// once could free what the other still reads.
    counting: AtomicBool,
    /// The most events of the stream readers see (KurrentDB's `$maxCount`);
    /// `u64::MAX` for no limit. Written only under `lock`, with
    /// [`LIMITED`] set in `deleted` before it is first read.
    max_count: AtomicU64,
}

/// The bit of `Stream::deleted` a hard delete sets.
const TOMBSTONE: u64 = 1 << 63;
/// The bit of `Stream::deleted` set once the stream was given a maximum
/// count: a writer trims the stream after its append only then.
const LIMITED: u64 = 1 << 62;
/// The bits of `Stream::deleted` that are not the delete base.
const FLAGS: u64 = TOMBSTONE | LIMITED;

/// A stream's marks as loaded once by a writer under the lock: the low 62
/// bits hold `len` at the last delete (the stream exists for expectations
/// and heads only once it has versions at or above it), then
/// [`LIMITED`] and [`TOMBSTONE`].
#[derive(Clone, Copy)]
pub(crate) struct Marks(u64);

impl Marks {
    /// Whether the stream was hard-deleted: every write is refused.
    #[inline]
    pub(crate) fn tombstoned(self) -> bool {
        self.0 & TOMBSTONE != 0
    }

    /// Whether the stream has a maximum count: a writer trims it.
    #[inline]
    pub(crate) fn limited(self) -> bool {
        self.0 & LIMITED != 0
    }

    /// The stream's length at its last delete.
    #[inline]
    pub(crate) fn base(self) -> u64 {
        self.0 & !FLAGS
    }
}

/// Why a write to a stream is refused: it was hard-deleted.
pub(crate) struct Tombstoned;

/// Proof that the holder may append to a stream.
pub(crate) struct Locked<'a> {
    stream: &'a Stream,
    guard: MutexGuard<'a, Option<Box<IdWindow>>>,
}

impl Stream {
    fn new(id: StreamId) -> Self {
        Self {
            id,
            lock: Mutex::new(None),
            len: AtomicU64::new(0),
            positions: Positions::new(),
            signal: Signal::new(),
            name: std::sync::OnceLock::new(),
            floor: AtomicU64::new(0),
            max_age: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            counted: AtomicU64::new(0),
            wanted: AtomicU64::new(0),
            counting: AtomicBool::new(false),
            max_count: AtomicU64::new(u64::MAX),
        }
    }

    /// The first version readers may see: versions below it were removed.
    #[inline]
    pub(crate) fn floor(&self) -> u64 {
        // Acquire: pairs with the Release stores in `Locked::delete` and
        // `Locked::truncate`, so a reader that sees a raised floor also sees
        // the deletion mark stored before it in the same critical section.
        self.floor.load(Ordering::Acquire)
    }

    /// Whether a reader that reaches an event of this stream now hides it
    /// for its age (rule 30, maximum age): the stream has a maximum age,
    /// and the event was created (`created_at()`, nanoseconds since the
    /// Unix epoch) more than that long before `now()`, the store's clock;
    /// both are called only for a stream with a maximum age. Never panics
    /// unless `now` does.
    #[inline]
    pub(crate) fn too_old(
        &self,
        created_at: impl FnOnce() -> u64,
        now: impl FnOnce() -> u64,
    ) -> bool {
        // Relaxed: a value, not a publication; a reader that reaches the
        // event after `Locked::set_max_age` returned (happens-before, by
        // whatever ordered the two) reads it or a later one by coherence.
        let max_age = self.max_age.load(Ordering::Relaxed);
        max_age != 0 && created_at() < now().saturating_sub(max_age)
    }

    /// The version a delete left the stream at (its versions below are
    /// deleted), and whether the delete was for good.
    #[inline]
    fn deleted(&self) -> (u64, bool) {
        // Acquire: pairs with the Release store in `Locked::delete`.
        let marks = Marks(self.deleted.load(Ordering::Acquire));
        (marks.base(), marks.tombstoned())
    }

    /// After an append that left the stream `len` versions long: hides all
    /// but its last `max_count` versions, if it has a maximum count. Called
    /// once the append is visible, without the lock (the floor's raises
    /// commute). Never panics.
    pub(crate) fn trim(&self, len: u64) {
        // Relaxed: `LIMITED` was set (under the lock this writer held, or
        // before it) before the first store of `max_count`, and a count set
        // since then also raised the floor itself, counting this append.
        let max = self.max_count.load(Ordering::Relaxed);
        if let Some(floor) = len.checked_sub(max) {
            // Release: pairs with the Acquire load in `floor`.
            self.floor.fetch_max(floor, Ordering::Release);
        }
    }

    /// Counts the stream's versions below both its floor and `committed`
    /// that are not counted yet as removed events of `log` (contract rule
    /// 30), so that a log segment is freed once all its events are, then
    /// frees their positions. `committed` is a number of versions whose
    /// events are committed and covered by the watermark (the caller's own
    /// append's end, or `committed_len` of a watermark it loaded). A
    /// version removed ahead of its commit (a truncation past the head) is
    /// counted by its writer, after its commit.
    ///
    /// One thread counts at a time (`counting`); a caller that finds it
    /// taken leaves its request in `wanted`, which the counter looks at
    /// again before it leaves (a Dekker handshake through two SeqCst
    /// fences), so no request is lost (loom D4). Never panics and runs no user code (it may run
    /// under the lock).
    #[inline]
    pub(crate) fn count_removed<E>(&self, log: &Log<E>, committed: u64) {
        let target = self.floor().min(committed);
        // Relaxed: a hint, to skip the handshake when nothing is new; a
        // stale value only sends this caller through it.
        if target > self.wanted.load(Ordering::Relaxed) {
            self.count_removed_up_to(log, target);
        }
    }

    /// How many versions are counted removed, for the loom models.
    #[cfg(loom)]
    pub(crate) fn counted_removed(&self) -> u64 {
        // Acquire: pairs with the counter's Release of `counting`.
        let _ = self.counting.load(Ordering::Acquire);
        self.counted.load(Ordering::Relaxed)
    }

    /// [`count_removed`](Self::count_removed) when `target` may be new.
    #[inline(never)]
    fn count_removed_up_to<E>(&self, log: &Log<E>, target: u64) {
        // Release: publishes what the caller saw (the positions, the
        // watermark behind `committed`) to whichever thread counts it.
        self.wanted.fetch_max(target, Ordering::Release);
        loop {
            // SeqCst fence: pairs with the counter's fence between its
            // release of `counting` and its load of `wanted`: of the two
            // fences, the later one's thread sees the other's store, so
            // either this caller takes `counting` below, or the counter
            // sees this request.
            fence(Ordering::SeqCst);
            // A CAS, so that a caller that finds it taken writes nothing.
            // Acquire: the previous counter's `counted` and frees happen
            // before this one's (pairs with its Release store of false).
            if self
                .counting
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return;
            }
            // Relaxed: written only under `counting`, which this thread
            // acquired from the last writer.
            let counted = self.counted.load(Ordering::Relaxed);
            // Acquire: pairs with the requesters' Release `fetch_max`.
            let wanted = self.wanted.load(Ordering::Acquire);
            if wanted > counted {
                log.count_removed((counted..wanted).map(|version| self.position(version)));
                // Relaxed: read only under `counting`.
                self.counted.store(wanted, Ordering::Relaxed);
                // Then the positions of the counted versions, but for the
                // last one's leaf (the head's position stays readable). A
                // reader that finds a leaf freed then sees the watermark
                // the requester loaded (`wanted`'s Release, then the swap
                // of the free).
                self.positions.free_below(wanted - 1);
            }
            // Release: publishes `counted` and the frees to the next counter.
            self.counting.store(false, Ordering::Release);
            // SeqCst fence: the other half of the handshake above.
            fence(Ordering::SeqCst);
            // Acquire: as above.
            if self.wanted.load(Ordering::Acquire) <= wanted {
                return;
            }
        }
    }

    /// The stream's marks, read without the lock.
    pub(crate) fn marks(&self) -> Marks {
        // Acquire: pairs with the Release stores under the lock.
        Marks(self.deleted.load(Ordering::Acquire))
    }

    /// The stream's name, if its first event was appended by name.
    #[inline]
    pub(crate) fn name(&self) -> Option<&std::sync::Arc<str>> {
        self.name.get()
    }

    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked {
            stream: self,
            guard: sync::lock(&self.lock),
        }
    }

    /// The position of the event with version `version < len`; `None` if
    /// it was removed and counted and its positions freed (rule 30).
    #[inline]
    fn try_position(&self, version: u64) -> Option<u64> {
        // The caller read a `len` above `version` with Acquire (or holds the
        // lock), which orders the slot's store before it.
        self.positions.get(version)
    }

    /// The position of the event with version `version < len`, for a
    /// version never freed: at or past the last counted version (the
    /// stream's head, or one being counted).
    #[inline]
    fn position(&self, version: u64) -> u64 {
        // Never `None` for such a version (see `Positions`); 0 would only
        // misreport a position, never touch freed memory.
        self.try_position(version).unwrap_or(0)
    }

    /// How many of the stream's events lie below `watermark`: its committed
    /// length for a watermark loaded (with Acquire) before this call.
    #[inline]
    pub(crate) fn committed_len(&self, watermark: u64) -> u64 {
        // Acquire: pairs with the Release store in `Locked::append`, so the
        // positions below `len` are visible. Every committed event below
        // `watermark` is counted: its append happened before its commit,
        // which happened before the caller's watermark load.
        let mut len = self.len.load(Ordering::Acquire);
        // Uncommitted events sit at the end (positions ascend): at most one
        // transaction per writer in flight on this stream. A freed version
        // was committed and counted (so below any watermark loaded since).
        while len > 0
            && self
                .try_position(len - 1)
                .is_some_and(|position| position >= watermark)
        {
            len -= 1;
        }
        len
    }

    /// The positions of committed versions `version..`, up to the end of
    /// their segment of the index (never empty), if they lie in the part
    /// of it never freed: a run a reader walks across calls without
    /// looking up each version. `version < committed_len(..)`.
    #[inline]
    pub(crate) fn committed_positions(&self, version: u64) -> Option<&[AtomicU64]> {
        self.positions.head_run(version)
    }

    /// The position of committed version `version` (`version <
    /// committed_len(..)`); `None` if it was removed and its position freed.
    #[inline]
    pub(crate) fn committed_position(&self, version: u64) -> Option<u64> {
        self.try_position(version)
    }

    /// The stream's last committed event, below the watermark that
    /// `watermark` loads (with Acquire; called once, or again if the first
    /// was stale). `None` if the stream has no committed event since its
    /// last delete.
    pub(crate) fn committed_head(&self, watermark: impl Fn() -> u64) -> Option<StreamHead> {
        loop {
            let len = self.committed_len(watermark());
            if len <= self.deleted().0 {
                return None;
            }
            match self.try_position(len - 1) {
                Some(position) => {
                    return Some(StreamHead {
                        version: StreamVersion(len - 1),
                        position: Position(position),
                    })
                }
                // The watermark was stale: the version was counted removed
                // since, by a thread that saw a later watermark and then
                // freed the leaf (its swap, which this read saw, published
                // that watermark); the last counted version's position is
                // never freed. Looks again with a fresh watermark.
                None => continue,
            }
        }
    }

    /// Whether the stream exists for readers: it has a committed event
    /// since its last delete (`watermark` loaded first, with Acquire).
    pub(crate) fn exists(&self, watermark: u64) -> bool {
        self.committed_len(watermark) > self.deleted().0
    }

    /// The last recorded event, committed or not, read without the lock: a
    /// consistent head as of the `len` load (positions are recorded before
    /// `len` moves); `None` if nothing was recorded since the last delete,
    /// `Err` for a hard-deleted stream.
    pub(crate) fn recorded_head(&self) -> Result<Option<StreamHead>, Tombstoned> {
        // Acquire: pairs with the Release store in `Locked::append`.
        let len = self.len.load(Ordering::Acquire);
        let (base, tombstoned) = self.deleted();
        if tombstoned {
            return Err(Tombstoned);
        }
        Ok((len > base).then(|| StreamHead {
            version: StreamVersion(len - 1),
            position: Position(self.position(len - 1)),
        }))
    }

    /// Whether nothing was ever recorded for the stream, and it was never
    /// hard-deleted (a tombstone must stay in the index).
    fn is_empty(&self) -> bool {
        // Relaxed: a stale answer only costs `release` a needless trip to
        // `remove_if_unused`, which fences and checks again under the
        // shard's write lock.
        self.len.load(Ordering::Relaxed) == 0 && self.deleted.load(Ordering::Relaxed) == 0
    }
}

/// A pointer to a stream that a log record keeps: the stream holds the
/// record's event, so the index keeps it for as long as the log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamPtr(*const Stream);

// SAFETY: a `StreamPtr` is only dereferenced as `&Stream`, and `Stream` is
// `Sync` (atomics, a mutex and a segmented array of atomics).
unsafe impl Send for StreamPtr {}
// SAFETY: as above.
unsafe impl Sync for StreamPtr {}

impl StreamPtr {
    pub(crate) fn new(stream: &Stream) -> Self {
        StreamPtr(stream)
    }

    /// A pointer to no stream, for the loom models of the log alone, which
    /// never read a record's stream.
    #[cfg(loom)]
    pub(crate) fn dangling() -> Self {
        StreamPtr(std::ptr::NonNull::dangling().as_ptr())
    }

    /// The stream.
    ///
    /// # Safety
    ///
    /// The stream holds an event of a log the caller borrows (so the index,
    /// which outlives the log, still holds the stream: streams with events
    /// are never removed).
    pub(crate) unsafe fn get<'a>(self) -> &'a Stream {
        // SAFETY: by the caller's contract the stream is alive for `'a`.
        unsafe { &*self.0 }
    }
}

impl Locked<'_> {
    /// The number of events recorded so far, committed or not: what a new
    /// transaction's expectation is checked against.
    pub(crate) fn len(&self) -> u64 {
        // Relaxed: only written under the lock we hold.
        self.stream.len.load(Ordering::Relaxed)
    }

    /// The last recorded event since the stream's last delete, committed
    /// or not: what an expectation is checked against. `Err` for a
    /// hard-deleted stream, which refuses every write.
    ///
    /// One Relaxed load beyond the head itself (the deletion mark).
    #[inline]
    pub(crate) fn head(&self) -> Result<Option<StreamHead>, Tombstoned> {
        let marks = self.marks();
        if marks.tombstoned() {
            return Err(Tombstoned);
        }
        Ok(self.head_given(marks))
    }

    /// [`head`](Self::head) with the marks already loaded (and the stream
    /// known not to be hard-deleted).
    #[inline]
    pub(crate) fn head_given(&self, marks: Marks) -> Option<StreamHead> {
        let len = self.len();
        (len > marks.base()).then(|| StreamHead {
            version: StreamVersion(len - 1),
            position: Position(self.stream.position(len - 1)),
        })
    }

    /// The stream's marks: one Relaxed load, all a write checks beyond
    /// the head.
    #[inline]
    pub(crate) fn marks(&self) -> Marks {
        // Relaxed: only written under the lock we hold.
        Marks(self.stream.deleted.load(Ordering::Relaxed))
    }

    /// Deletes the stream (soft, or hard with `tombstone`): every version
    /// recorded so far is removed (readers skip them), the stream reads as
    /// missing until its next write, which continues the versions. The
    /// caller checked the stream is not tombstoned already. Never panics.
    pub(crate) fn delete(&self, tombstone: bool) {
        let len = self.len();
        let flags = self.marks().0 & LIMITED;
        let word = len | flags | if tombstone { TOMBSTONE } else { 0 };
        // Release: pairs with the Acquire loads in `Stream::deleted` and
        // `Stream::marks`.
        self.stream.deleted.store(word, Ordering::Release);
        self.raise_floor(len);
    }

    /// Hides versions below `before` from readers; a no-op if they are
    /// hidden already (the floor never moves back). Never panics.
    pub(crate) fn truncate(&self, before: u64) {
        self.raise_floor(before);
    }

    /// Sets the stream's maximum count (`None`: no limit) and hides all
    /// but its last `max` versions now. Never panics.
    pub(crate) fn set_max_count(&self, max: Option<u64>) {
        let max = max.unwrap_or(u64::MAX);
        // Relaxed: published by the Release store of the marks below, and
        // read only by writers that saw `LIMITED` (under this lock, or
        // after it).
        self.stream.max_count.store(max, Ordering::Relaxed);
        let marks = self.marks();
        if !marks.limited() {
            // Release: as in `delete`.
            self.stream
                .deleted
                .store(marks.0 | LIMITED, Ordering::Release);
        }
        if let Some(floor) = self.len().checked_sub(max) {
            self.raise_floor(floor);
        }
    }

    /// Sets the stream's maximum age in nanoseconds (0: none). Readers
    /// hide by age when they reach an event, so nothing else changes now.
    /// Never panics.
    pub(crate) fn set_max_age(&self, nanos: u64) {
        // Relaxed: see `Stream::too_old`.
        self.stream.max_age.store(nanos, Ordering::Relaxed);
    }

    fn raise_floor(&self, floor: u64) {
        // Release: pairs with the Acquire load in `Stream::floor`. A
        // `fetch_max`: `Stream::trim` raises it without the lock.
        self.stream.floor.fetch_max(floor, Ordering::Release);
    }

    /// Names the stream `name` if nothing is recorded for it yet (its
    /// events are about to be): a stream's name is the one its first
    /// append gave, and never changes (see `Stream::name`). Call with
    /// events to record, just before [`append`](Self::append). Never
    /// panics (a reference count increment).
    pub(crate) fn name(&self, name: Option<&std::sync::Arc<str>>) {
        if let Some(name) = name {
            if self.len() == 0 {
                // Cannot fail: only set here, under the lock we hold, while
                // nothing is recorded; an `Err` would leave the first name.
                let _ = self.stream.name.set(std::sync::Arc::clone(name));
            }
        }
    }

    /// The stream's window of recent client ids, if a write ever gave it
    /// one (contract rule 29).
    pub(crate) fn window(&self) -> Option<&IdWindow> {
        self.guard.as_deref()
    }

    /// The stream's window of recent client ids, created empty if need be.
    pub(crate) fn window_mut(&mut self) -> &mut IdWindow {
        self.guard.get_or_insert_with(Box::default)
    }

    /// The position of recorded version `version < len()`; `None` if it
    /// was removed and counted and its position freed (rule 30).
    pub(crate) fn position_of(&self, version: u64) -> Option<u64> {
        self.stream.try_position(version)
    }

    /// The version of the recorded event at `position`, if it is one of
    /// this stream's and its position is not freed (a binary search:
    /// positions ascend with versions; the freed ones are a prefix).
    pub(crate) fn version_at(&self, position: u64) -> Option<u64> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self
                .stream
                .try_position(mid)
                .map(|found| found.cmp(&position))
            {
                None | Some(std::cmp::Ordering::Less) => low = mid + 1,
                Some(std::cmp::Ordering::Greater) => high = mid,
                Some(std::cmp::Ordering::Equal) => return Some(mid),
            }
        }
        None
    }

    /// The stream's name, if it has one.
    pub(crate) fn stream_name(&self) -> Option<&std::sync::Arc<str>> {
        self.stream.name()
    }

    /// Records `count` events at positions `first..first + count`.
    ///
    /// Never panics (allocation failure aborts).
    pub(crate) fn append(&self, first: u64, count: u64) {
        let len = self.len();
        if count == 1 {
            // The common case, without the run bookkeeping. Relaxed: as below.
            if let Some(slot) = self.stream.positions.run_or_alloc(len).first() {
                slot.store(first, Ordering::Relaxed);
            }
            // Release: as below.
            self.stream.len.store(len + 1, Ordering::Release);
            return;
        }
        let mut recorded = 0;
        while recorded < count {
            // Relaxed: published by the Release store of `len` below.
            let run = self.stream.positions.run_or_alloc(len + recorded);
            for slot in run.iter().take((count - recorded) as usize) {
                slot.store(first + recorded, Ordering::Relaxed);
                recorded += 1;
            }
        }
        // Release: pairs with the Acquire loads in `committed_len` and
        // `recorded_head`.
        self.stream.len.store(len + count, Ordering::Release);
    }
}

/// Every stream that holds events, or that a writer or a handle is using.
///
/// An entry is created when a writer needs to lock a stream that does not
/// exist yet (or when a [`StreamHandle`](crate::StreamHandle) names it), and
/// removed again by [`release`](Self::release) if nothing was recorded for
/// it: failed inserts and pure checks leave nothing behind.
pub(crate) struct StreamIndex {
    #[cfg(not(loom))]
    map: dashmap::DashMap<StreamId, Arc<Stream>, foldhash::quality::RandomState>,
    #[cfg(loom)]
    map: Mutex<std::collections::HashMap<StreamId, Arc<Stream>>>,
}

impl StreamIndex {
    pub(crate) fn new() -> Self {
        Self {
            // A random key per store: stream ids chosen from outside cannot
            // be made to collide (foldhash's `RandomState` seeds every
            // instance afresh).
            #[cfg(not(loom))]
            map: dashmap::DashMap::with_hasher(foldhash::quality::RandomState::default()),
            #[cfg(loom)]
            map: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The stream, if it holds events or a writer or handle is using it.
    pub(crate) fn get(&self, id: StreamId) -> Option<Arc<Stream>> {
        // Clone the Arc and let the shard guard go at once: holding a dashmap
        // guard while locking another key can deadlock across shards.
        #[cfg(not(loom))]
        return self.map.get(&id).map(|entry| Arc::clone(entry.value()));
        #[cfg(loom)]
        return sync::lock(&self.map).get(&id).cloned();
    }

    /// Runs `read` on the stream, if it is in the index, without taking a
    /// reference to it (no reference count traffic, no cleanup to do).
    /// `read` must not touch the index.
    pub(crate) fn with<R>(&self, id: StreamId, read: impl FnOnce(&Stream) -> R) -> Option<R> {
        #[cfg(not(loom))]
        return self.map.get(&id).map(|entry| read(entry.value()));
        #[cfg(loom)]
        return sync::lock(&self.map).get(&id).map(|stream| read(stream));
    }

    /// Runs `f` on stream `id`, created empty first if it is missing and
    /// `create` is set; `None` if it is missing and not created.
    ///
    /// `f` runs under the index shard's read lock, which keeps the stream
    /// in the index without a reference count: `f` must not touch the
    /// index, and must not wait for anything but the stream's own lock
    /// (whose holders never wait on the index) and the watermark over
    /// positions already reserved (the idempotency check of rule 29 waits
    /// for a re-sent write's original to commit: a writer holding reserved
    /// positions commits them without touching the index). A stream that `f` leaves
    /// empty may be removed once `f` returns: see
    /// [`remove_if_unused`](Self::remove_if_unused).
    pub(crate) fn with_or_create<R>(
        &self,
        id: StreamId,
        create: bool,
        f: impl FnOnce(&Stream) -> R,
    ) -> Option<R> {
        #[cfg(not(loom))]
        {
            if let Some(stream) = self.map.get(&id) {
                return Some(f(&stream));
            }
            if !create {
                return None;
            }
            let stream = self
                .map
                .entry(id)
                .or_insert_with(|| Arc::new(Stream::new(id)))
                .downgrade();
            Some(f(&stream))
        }
        // Under loom the index is one mutex: hold a reference instead of
        // the lock while `f` runs, so that `f` does not serialise the model.
        #[cfg(loom)]
        {
            let stream = if create {
                self.get_or_create(id)
            } else {
                self.get(id)?
            };
            Some(f(&stream))
        }
    }

    /// The stream, created empty if need be. Hand it back with
    /// [`release`](Self::release).
    pub(crate) fn get_or_create(&self, id: StreamId) -> Arc<Stream> {
        if let Some(stream) = self.get(id) {
            return stream;
        }
        // As in `get`: the entry guard is dropped at the end of the statement.
        #[cfg(not(loom))]
        return Arc::clone(
            self.map
                .entry(id)
                .or_insert_with(|| Arc::new(Stream::new(id)))
                .value(),
        );
        #[cfg(loom)]
        return Arc::clone(
            sync::lock(&self.map)
                .entry(id)
                .or_insert_with(|| Arc::new(Stream::new(id))),
        );
    }

    /// Gives back a reference from [`get_or_create`](Self::get_or_create)
    /// or [`get`](Self::get), and removes the stream from the index if
    /// nothing was ever recorded for it and nobody else holds it.
    ///
    /// Exact: under the shard's write lock nobody can take a new reference
    /// from the index, so a reference count of one (the index's own) means
    /// nobody holds the stream, nobody can be about to append to it, and an
    /// empty stream can go. Whoever lets go of an empty stream last removes
    /// it, so no failed insert, pure check or dropped handle leaves an entry
    /// behind.
    pub(crate) fn release(&self, stream: Arc<Stream>) {
        if !stream.is_empty() {
            // Streams with events stay for as long as the store.
            return;
        }
        let id = stream.id;
        drop(stream);
        self.remove_if_unused(id);
    }

    /// Removes stream `id` if nothing was ever recorded for it and nobody
    /// holds it (see [`release`](Self::release)). Users that reach a stream
    /// through [`with_or_create`](Self::with_or_create) hold the shard's
    /// read lock, which this write lock excludes.
    pub(crate) fn remove_if_unused(&self, id: StreamId) {
        let unused = |stream: &Arc<Stream>| {
            let alone = Arc::strong_count(stream) == 1;
            // Acquire fence: pairs with the Release decrement of the last
            // other holder's `Arc` drop, whose count we just read, so
            // everything it recorded (its Release `len` store) is visible to
            // the emptiness check below.
            fence(Ordering::Acquire);
            alone && stream.is_empty()
        };
        #[cfg(not(loom))]
        self.map.remove_if(&id, |_, stream| unused(stream));
        #[cfg(loom)]
        {
            let mut map = sync::lock(&self.map);
            if map.get(&id).is_some_and(unused) {
                map.remove(&id);
            }
        }
    }

    /// Every stream in the index, sorted by id: for a store-wide delete,
    /// which locks them all in the order transactions lock streams. Hand
    /// each back with [`release`](Self::release).
    pub(crate) fn all_sorted(&self) -> Vec<Arc<Stream>> {
        #[cfg(not(loom))]
        let mut all: Vec<Arc<Stream>> = self
            .map
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect();
        #[cfg(loom)]
        let mut all: Vec<Arc<Stream>> = sync::lock(&self.map).values().cloned().collect();
        all.sort_unstable_by_key(|stream| stream.id);
        all
    }

    /// Wakes every sleeper of every stream: after poisoning, which every
    /// wait checks, and which commits no event that would wake them.
    /// Never called with a shard of the index locked by this thread.
    pub(crate) fn wake_all(&self) {
        #[cfg(not(loom))]
        for entry in self.map.iter() {
            entry.value().signal.wake();
        }
        #[cfg(loom)]
        for stream in sync::lock(&self.map).values() {
            stream.signal.wake();
        }
    }

    /// The number of streams in the index (with events, or in use).
    #[cfg(any(test, loom))]
    pub(crate) fn len(&self) -> usize {
        #[cfg(not(loom))]
        return self.map.len();
        #[cfg(loom)]
        return sync::lock(&self.map).len();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;
    use uuid::Uuid;

    /// A store's hash of `id`.
    fn hash(index: &StreamIndex, id: Uuid) -> u64 {
        index.map.hasher().hash_one(StreamId::from_uuid(id))
    }

    /// How many distinct values `bits(hash)` takes over `ids`.
    fn spread(index: &StreamIndex, ids: &[Uuid], bits: impl Fn(u64) -> u64) -> usize {
        ids.iter()
            .map(|&id| bits(hash(index, id)))
            .collect::<HashSet<_>>()
            .len()
    }

    /// Sequential ids must spread over hashbrown's buckets (low bits), its
    /// tags (top 7 bits) and dashmap's shards (the bits below the tag): a
    /// hash that moved only high bits put 4096 such streams in one bucket
    /// and made every lookup a linear probe.
    #[test]
    fn sequential_stream_ids_spread_over_buckets_tags_and_shards() {
        type Family = (&'static str, fn(u64) -> Uuid);
        let families: [Family; 3] = [
            ("from_u128(i)", |i| Uuid::from_u128(i as u128)),
            ("from_u64_pair(k, i)", |i| {
                Uuid::from_u64_pair(0x6869_6e64, i)
            }),
            ("from_u64_pair(i, 0)", |i| Uuid::from_u64_pair(i, 0)),
        ];
        let index = StreamIndex::new();
        for (name, make) in families {
            let ids: Vec<Uuid> = (0..4096).map(make).collect();
            // 4096 random values in 4096 buckets take about 2590 of them.
            let buckets = spread(&index, &ids, |h| h & 0xfff);
            assert!(buckets > 2400, "{name}: {buckets} of 4096 low-bit buckets");
            let tags = spread(&index, &ids, |h| h >> 57);
            assert!(tags > 120, "{name}: {tags} of 128 tags");
            let shards = spread(&index, &ids, |h| (h << 7) >> 58);
            assert!(shards > 60, "{name}: {shards} of 64 shards");
        }
    }

    /// Stream ids crafted to share one 64-bit hash under an unkeyed hash
    /// (here the fold this index used before it was keyed: 20,000 such ids
    /// made `stream_head` 2,200 times slower) spread like random ids under a
    /// store's keyed hash, and two stores hash one id differently.
    #[test]
    fn ids_that_collide_without_a_key_spread_under_the_store_key() {
        const C: u64 = 0x9E37_79B9_7F4A_7C15;
        let unkeyed = |id: Uuid| {
            let (w0, w1) = (id.as_bytes()[..8].to_vec(), id.as_bytes()[8..].to_vec());
            let w0 = u64::from_le_bytes(w0.try_into().unwrap());
            let w1 = u64::from_le_bytes(w1.try_into().unwrap());
            (w0.wrapping_mul(C).rotate_left(23) ^ w1).wrapping_mul(C)
        };
        // (rotl(w0 * C, 23) ^ w1) * C is the same for every w0 when w1 is
        // chosen as below.
        let crafted: Vec<Uuid> = (0..20_000u64)
            .map(|w0| {
                let w1 = w0.wrapping_mul(C).rotate_left(23) ^ 0x5eed;
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&w0.to_le_bytes());
                bytes[8..].copy_from_slice(&w1.to_le_bytes());
                Uuid::from_bytes(bytes)
            })
            .collect();
        let one_hash: HashSet<u64> = crafted.iter().map(|&id| unkeyed(id)).collect();
        assert_eq!(one_hash.len(), 1, "the crafted ids collide without a key");

        let index = StreamIndex::new();
        let full = crafted
            .iter()
            .map(|&id| hash(&index, id))
            .collect::<HashSet<_>>()
            .len();
        assert_eq!(full, crafted.len(), "no 64-bit collision under the key");
        // 20,000 random values in 16,384 buckets take about 11,900 of them.
        let buckets = spread(&index, &crafted, |h| h & 0x3fff);
        assert!(buckets > 11_000, "{buckets} of 16384 buckets");

        let other = StreamIndex::new();
        let same = crafted
            .iter()
            .filter(|&&id| hash(&index, id) == hash(&other, id))
            .count();
        assert_eq!(same, 0, "two stores have different keys");
    }

    /// An entry nothing was recorded for goes when its last user releases
    /// it; one with events stays.
    #[test]
    fn released_empty_streams_leave_the_index() {
        let index = StreamIndex::new();
        let (a, b) = (StreamId::new(), StreamId::new());
        let first = index.get_or_create(a);
        let second = index.get_or_create(a);
        index.release(first);
        assert_eq!(index.len(), 1, "still held by the second user");
        index.release(second);
        assert_eq!(index.len(), 0);

        let written = index.get_or_create(b);
        written.lock().append(0, 1);
        index.release(written);
        assert_eq!(index.len(), 1, "a stream with events stays");
    }
}
