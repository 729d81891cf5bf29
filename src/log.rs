//! The append-only log of envelopes, with reservation and commit.
//!
//! A writer reserves a contiguous range of positions with one `fetch_add`,
//! moves its envelopes into the range's slots, and commits by storing the
//! range's length in the commit marker of its first slot. It then helps the
//! [`Watermark`] over every contiguous committed range. A slot is read only
//! below the watermark, and written exactly once, by the writer that reserved
//! it, before its range's marker is published.

use crate::envelope::Envelope;
use crate::segments::{self, Segments};
use crate::sync::{fence, AtomicU64, CachePadded, Ordering, UnsafeCell};
use crate::watermark::{Poisoned, Watermark};
use std::mem::MaybeUninit;

/// Slots in the log's first segment: 2^10 outside loom, 2 under it.
#[cfg(not(loom))]
const LOG_SHIFT: u32 = 10;
#[cfg(loom)]
const LOG_SHIFT: u32 = 1;

/// Commit marker bit: the range was abandoned by a panicking writer; its
/// written envelopes were already dropped and the watermark never covers it.
const ABANDONED: u64 = 1 << 63;

/// One position of the log.
pub(crate) struct Slot<E> {
    /// 0 until the transaction starting here commits; then its length
    /// (or its length | `ABANDONED`). Always 0 on slots that do not start a
    /// transaction.
    commit: AtomicU64,
    /// Initialised once the writer moved the envelope in; read only after
    /// the watermark covers this position.
    envelope: UnsafeCell<MaybeUninit<Envelope<E>>>,
}

impl<E> Default for Slot<E> {
    fn default() -> Self {
        Self {
            commit: AtomicU64::new(0),
            envelope: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }
}

impl<E> Slot<E> {
    /// The envelope of a committed slot.
    ///
    /// # Safety
    ///
    /// The slot's position is below a value this thread loaded from the
    /// watermark (with `Acquire`, as `Log::committed` does).
    #[inline]
    pub(crate) unsafe fn committed_envelope(&self) -> &Envelope<E> {
        // Why the shared borrow below is sound: 1. the watermark only covers
        // committed ranges; 2. a range is committed (Release marker) after
        // all its envelopes were written; 3. the caller's Acquire load of the
        // watermark happens-after that commit (through the helper's CAS).
        // SAFETY: by 1-3 the envelope is initialised and visible, and nobody
        // writes it again before the log drops (which needs `&mut self`).
        self.envelope.with(|p| unsafe { (*p).assume_init_ref() })
    }
}

// SAFETY: an all-zero `Slot` is a zero `AtomicU64` (its default) and an
// uninitialised `MaybeUninit`, for which any bytes are valid.
unsafe impl<E> segments::Slot for Slot<E> {}

// SAFETY: a slot's envelope is written by exactly one thread (the writer that
// reserved its position) before its range's Release commit, and from then on
// only shared as `&Envelope<E>`. Sharing needs `E: Sync`; dropping it on
// whatever thread drops the store needs `E: Send`.
unsafe impl<E: Send + Sync> Sync for Slot<E> {}
// SAFETY: as above; moving a slot moves its envelope.
unsafe impl<E: Send> Send for Slot<E> {}

pub(crate) struct Log<E> {
    slots: Segments<Slot<E>, LOG_SHIFT>,
    /// The next unreserved position.
    next: CachePadded<AtomicU64>,
    /// The end of the committed prefix.
    pub(crate) watermark: Watermark,
}

impl<E> Log<E> {
    pub(crate) fn new() -> Self {
        Self {
            slots: Segments::new(),
            next: CachePadded::new(AtomicU64::new(0)),
            watermark: Watermark::new(),
        }
    }

    /// Reserves `len > 0` consecutive positions.
    ///
    /// The caller must fill and commit them: dropping the reservation
    /// instead poisons the store (see [`Reservation`]).
    #[inline]
    pub(crate) fn reserve(&self, len: u64) -> Reservation<'_, E> {
        // Relaxed: positions only need to be unique and contiguous, which
        // the RMW gives. Two transactions on one stream are ordered by that
        // stream's lock, whose unlock/lock happens-before orders their
        // `fetch_add`s the same way. Slot contents are published by the
        // commit marker, not by this counter.
        let start = self.next.fetch_add(len, Ordering::Relaxed);
        Reservation {
            log: self,
            start,
            len,
            written: 0,
        }
    }

    /// The length of the transaction committed at `position`, or 0.
    #[inline]
    fn committed_len(&self, position: u64) -> u64 {
        let Some(slot) = self.slots.get(position) else {
            return 0;
        };
        // Acquire: pairs with the Release store in `Reservation::commit`,
        // making the range's envelopes visible to this helper, which then
        // republishes them through the watermark CAS.
        let marker = slot.commit.load(Ordering::Acquire);
        if marker & ABANDONED != 0 {
            0
        } else {
            marker
        }
    }

    /// The end of the committed prefix.
    #[inline]
    pub(crate) fn committed(&self) -> u64 {
        self.watermark.get()
    }

    /// Waits until every position below `end` is committed.
    pub(crate) fn wait_committed(&self, end: u64) -> Result<(), Poisoned> {
        self.watermark.wait_for(end)
    }

    /// The envelope at `position`.
    ///
    /// # Safety
    ///
    /// `position` is below a value this thread loaded from the watermark
    /// (with `Acquire`, as `committed` does).
    #[inline]
    pub(crate) unsafe fn get_committed(&self, position: u64) -> &Envelope<E> {
        // The watermark covers `position`, so its writer allocated the segment
        // (happens-before the commit we acquired): `get` cannot miss it.
        let slot = self
            .slots
            .get(position)
            .expect("committed slot has a segment");
        // SAFETY: the caller's contract is `committed_envelope`'s.
        unsafe { slot.committed_envelope() }
    }

    /// The committed slots from `position` to `end`, or to the end of
    /// `position`'s segment if that comes first (never empty): a run the
    /// caller can walk without looking up each slot. Read each with
    /// [`Slot::committed_envelope`].
    ///
    /// # Safety
    ///
    /// `position < end`, and `end` is at most a value this thread loaded
    /// from the watermark (with `Acquire`, as `committed` does).
    #[inline]
    pub(crate) unsafe fn committed_run(&self, position: u64, end: u64) -> &[Slot<E>] {
        // As in `get_committed`: the watermark covers `position`, so its
        // segment exists.
        let run = self
            .slots
            .run(position)
            .expect("committed slot has a segment");
        let len = usize::try_from(end - position).map_or(run.len(), |left| left.min(run.len()));
        &run[..len]
    }
}

impl<E> Drop for Log<E> {
    fn drop(&mut self) {
        // Every reservation ended in a commit or an abandonment (both need
        // the `&self` borrow that `&mut self` excludes), so walking the
        // markers from 0 visits every range. Relaxed: `&mut self` means all
        // writes happened-before (the last `Arc` drop synchronises).
        let end = self.next.load(Ordering::Relaxed);
        let mut position = 0;
        while position < end {
            let Some(slot) = self.slots.get(position) else {
                break;
            };
            let marker = slot.commit.load(Ordering::Relaxed);
            if marker == 0 {
                // Unreachable: see above. Leak rather than guess.
                break;
            }
            let len = marker & !ABANDONED;
            if marker & ABANDONED == 0 {
                for p in position..position + len {
                    let slot = self.slots.get(p).expect("committed slot has a segment");
                    // SAFETY: the range is committed, so the envelope is
                    // initialised; it is dropped only here, once.
                    slot.envelope
                        .with_mut(|e| unsafe { (*e).assume_init_drop() });
                }
            }
            position += len;
        }
    }
}

/// Positions reserved by one writer, to be filled and then committed.
///
/// Dropping it uncommitted (only possible if something panicked between
/// reservation and commit) drops what was written, marks the range
/// abandoned and poisons the store: the range can never be committed, and
/// every waiter is told instead of hanging.
pub(crate) struct Reservation<'a, E> {
    log: &'a Log<E>,
    start: u64,
    len: u64,
    written: u64,
}

impl<E> Reservation<'_, E> {
    /// The first reserved position.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Moves `envelope` into the next reserved slot.
    #[inline]
    pub(crate) fn write(&mut self, envelope: Envelope<E>) {
        debug_assert!(self.written < self.len, "more envelopes than reserved");
        let slot = self.log.slots.get_or_alloc(self.start + self.written);
        // SAFETY: this reservation owns the position (unique by `fetch_add`)
        // and writes it once (`written` only grows); readers wait for the
        // commit below, which happens after this write.
        slot.envelope.with_mut(|e| unsafe { (*e).write(envelope) });
        self.written += 1;
    }

    /// Publishes the range and helps the watermark over it.
    pub(crate) fn commit(self) {
        let mut this = std::mem::ManuallyDrop::new(self);
        let (log, start, len) = (this.log, this.start, this.len);
        if this.written != len {
            // Never happens: the store writes exactly what it reserved.
            // Failing closed beats publishing uninitialised slots.
            this.abandon();
            return;
        }
        let first = log.slots.get_or_alloc(start);
        // Release: pairs with the Acquire load in `committed_len`; publishes
        // the envelopes written above to whichever helper moves the watermark.
        first.commit.store(len, Ordering::Release);
        // SeqCst fence: pairs with the same fence of every other committer.
        // Without it, this writer could read a stale watermark or marker while
        // another writer, blocked on our range, reads our marker as 0: both
        // stop and the watermark is stranded. With it, of two committers, the
        // later fence's loads see the earlier one's marker.
        fence(Ordering::SeqCst);
        log.watermark
            .advance(|position| log.committed_len(position));
    }

    fn abandon(&mut self) {
        for p in self.start..self.start + self.written {
            let slot = self.log.slots.get_or_alloc(p);
            // SAFETY: written above by this reservation and never published
            // (the range is never committed), so nobody else can see it.
            slot.envelope
                .with_mut(|e| unsafe { (*e).assume_init_drop() });
        }
        let first = self.log.slots.get_or_alloc(self.start);
        // Release: orders the drops above before the marker `Log::drop` reads.
        first.commit.store(self.len | ABANDONED, Ordering::Release);
        self.log.watermark.poison();
    }
}

impl<E> Drop for Reservation<'_, E> {
    fn drop(&mut self) {
        self.abandon();
    }
}
