//! The commit watermark: the end of the committed prefix of the log.
//!
//! Writers commit out of order (each publishes a commit marker on the first
//! slot of its range), but the watermark only moves in order, over whole
//! transactions: whoever finds the range at the watermark committed moves the
//! watermark past it, and keeps going while the next range is committed too.
//! Readers and subscribers only ever look below the watermark.
//!
//! A writer whose range starts at the watermark moves it itself, with a
//! plain store (`publish`): nobody else can move the watermark past a range
//! whose marker is not set yet. Everyone else moves it with a CAS
//! (`advance`).
//!
//! Waiting on the watermark goes through [`Signal::wait_until`] (spin,
//! yield, park), which a writer that moves the watermark wakes (for free
//! when nobody is parked).

use crate::signal::Signal;
use crate::sync::{AtomicBool, AtomicU64, CachePadded, Ordering};

/// Returned by waits when the store was poisoned: the watermark will never
/// move again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Poisoned;

pub(crate) struct Watermark {
    /// Every position below `line.value` is committed, in whole
    /// transactions.
    line: CachePadded<Line>,
    /// Set once a reserved range can never be committed.
    poisoned: AtomicBool,
    /// Where waiters for any commit park (all-streams subscriptions, the
    /// store's own waits); woken when the watermark moves, on poison, and
    /// when a subscriber is cancelled. One-stream subscriptions
    /// park on their stream's signal instead (`Stream::signal`).
    pub(crate) signal: CachePadded<Signal>,
}

/// The watermark's cache line: its value, and what the last fast-path
/// commit left for the next one (rule 26 of the contract), read together
/// at no extra cost.
struct Line {
    value: AtomicU64,
    /// Where the last fast-path commit moved the watermark to...
    fast_end: AtomicU64,
    /// ...and the final creation time (ns) of its transaction.
    fast_created_at: AtomicU64,
}

impl Watermark {
    pub(crate) fn new() -> Self {
        Self {
            line: CachePadded::new(Line {
                value: AtomicU64::new(0),
                fast_end: AtomicU64::new(0),
                fast_created_at: AtomicU64::new(0),
            }),
            poisoned: AtomicBool::new(false),
            signal: CachePadded::new(Signal::new()),
        }
    }

    /// The end of the committed prefix.
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        // Acquire: pairs with the AcqRel CAS in `advance`, which itself
        // acquired the commit markers of every range it moved over, or with
        // the Release store in `publish`, whose writer acquired everything
        // below its range in `is_at`: either way the slots below the
        // returned value are fully written and visible.
        self.line.value.load(Ordering::Acquire)
    }

    /// Whether the watermark is exactly at `position`: with `position` the
    /// start of the caller's own uncommitted range, nobody else can move it
    /// from there, so the caller may [`publish`](Self::publish).
    #[inline]
    pub(crate) fn is_at(&self, position: u64) -> bool {
        // Acquire: pairs with the Release store in `publish` or the CAS in
        // `advance` that moved the watermark here, so the ranges below are
        // visible to this writer, which republishes them with `publish`.
        self.line.value.load(Ordering::Acquire) == position
    }

    /// The final creation time (ns) of the event before `position`, if the
    /// last fast-path commit moved the watermark to `position`. Only for the
    /// writer that [`is_at`](Self::is_at) found at `position`.
    #[inline]
    pub(crate) fn created_at_at(&self, position: u64) -> Option<u64> {
        // Relaxed, both: written before the `publish` Release store that the
        // caller's `is_at` Acquire load read (or an earlier one), and only by
        // the writer at the watermark, one at a time. A CAS in `advance`
        // since then moved the watermark without writing them, and leaves
        // `fast_end` below `position`: the caller then reads the slot.
        if self.line.fast_end.load(Ordering::Relaxed) == position {
            Some(self.line.fast_created_at.load(Ordering::Relaxed))
        } else {
            None
        }
    }

    /// Moves the watermark to `end`, over a transaction created at
    /// `created_at` (ns, its final time). Only for the writer whose own
    /// range ends at `end` and starts where [`is_at`](Self::is_at) found
    /// the watermark, after writing the range and before setting its marker.
    ///
    /// The caller must then issue a `fence(SeqCst)` and call
    /// [`Signal::wake_fenced`]: see `Reservation::commit`.
    #[inline]
    pub(crate) fn publish(&self, end: u64, created_at: u64) {
        // Relaxed, both: published by the Release store below to the next
        // writer's `is_at` (see `created_at_at`).
        self.line
            .fast_created_at
            .store(created_at, Ordering::Relaxed);
        self.line.fast_end.store(end, Ordering::Relaxed);
        // Release: pairs with the Acquire in `get`, `is_at` and `advance`:
        // publishes this writer's records and, through its `is_at` Acquire,
        // every range below them.
        self.line.value.store(end, Ordering::Release);
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        // Acquire: pairs with the SeqCst store in `poison`; nothing is read
        // through the flag, and `Signal`'s fences order it for sleepers.
        self.poisoned.load(Ordering::Acquire)
    }

    /// Moves the watermark over every contiguous committed range.
    ///
    /// `committed(p)` is the length of the transaction whose commit marker
    /// sits at position `p`, or 0 if nothing is committed there (yet). It
    /// must load the marker with `Acquire`.
    ///
    /// The caller must have published its own marker (or moved the
    /// watermark with `publish`) and then issued a `fence(SeqCst)` before
    /// calling: see `Reservation::commit`.
    pub(crate) fn advance(&self, committed: impl Fn(u64) -> u64) {
        let mut moved = false;
        // Acquire: pairs with the AcqRel CAS below, made by another helper,
        // or with the Release store in `publish`.
        let mut current = self.line.value.load(Ordering::Acquire);
        loop {
            let len = committed(current);
            if len == 0 {
                break;
            }
            // AcqRel on success: Release publishes the slots of the range
            // (acquired through its marker) to `get`; earlier helpers' ranges
            // reach readers through the release sequence (every write here is
            // an RMW), and Acquire lets this helper see what it moved past.
            // Acquire on failure: the new value's ranges are as visible as
            // after `get`.
            match self.line.value.compare_exchange(
                current,
                current + len,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    moved = true;
                    current += len;
                }
                Err(actual) => current = actual,
            }
        }
        if moved {
            self.signal.wake();
        }
    }

    /// Marks the store as poisoned and wakes every waiter.
    pub(crate) fn poison(&self) {
        // SeqCst: ordered before the fence in `Signal::wake`.
        self.poisoned.store(true, Ordering::SeqCst);
        self.signal.wake();
    }

    /// Waits until the watermark reaches `target`.
    #[inline]
    pub(crate) fn wait_for(&self, target: u64) -> Result<(), Poisoned> {
        // Usually already true (a commit on the fast path moved the
        // watermark itself): answer without building the wait.
        if self.get() >= target {
            return Ok(());
        }
        self.signal
            .wait_until(|| self.get() >= target || self.is_poisoned(), None);
        if self.get() >= target {
            Ok(())
        } else {
            Err(Poisoned)
        }
    }
}

impl std::fmt::Debug for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermark")
            .field("value", &self.line.value.load(Ordering::Relaxed))
            .field("poisoned", &self.poisoned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
