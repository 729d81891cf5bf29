//! The commit watermark: the end of the committed prefix of the log.
//!
//! Writers commit out of order (each publishes a commit marker on the first
//! slot of its range), but the watermark only moves in order, over whole
//! transactions: whoever finds the range at the watermark committed moves the
//! watermark past it, and keeps going while the next range is committed too.
//! Readers and subscribers only ever look below the watermark.
//!
//! Waiting on the watermark spins with `Backoff`, then parks on a
//! [`Signal`], which a writer that moves the watermark wakes (for free when
//! nobody is parked).

use crate::signal::Signal;
use crate::sync::{AtomicBool, AtomicU64, Backoff, CachePadded, Ordering};

/// Returned by waits when the store was poisoned: the watermark will never
/// move again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Poisoned;

pub(crate) struct Watermark {
    /// Every position below this is committed, in whole transactions.
    value: CachePadded<AtomicU64>,
    /// Set once a reserved range can never be committed.
    poisoned: AtomicBool,
    /// Where waiters park; woken when the watermark moves, on poison, and
    /// when a subscription is cancelled.
    pub(crate) signal: Signal,
}

impl Watermark {
    pub(crate) fn new() -> Self {
        Self {
            value: CachePadded::new(AtomicU64::new(0)),
            poisoned: AtomicBool::new(false),
            signal: Signal::new(),
        }
    }

    /// The end of the committed prefix.
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        // Acquire: pairs with the AcqRel CAS in `advance`, which itself
        // acquired the commit markers of every range it moved over, so the
        // slots below the returned value are fully written and visible.
        self.value.load(Ordering::Acquire)
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
    /// The caller must have published its own marker and then issued a
    /// `fence(SeqCst)` before calling: see `Log::commit`.
    pub(crate) fn advance(&self, committed: impl Fn(u64) -> u64) {
        let mut moved = false;
        // Acquire: pairs with the AcqRel CAS below, made by another helper.
        let mut current = self.value.load(Ordering::Acquire);
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
            match self.value.compare_exchange(
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
    pub(crate) fn wait_for(&self, target: u64) -> Result<(), Poisoned> {
        let ready = || self.get() >= target;
        let backoff = Backoff::new();
        loop {
            if ready() {
                return Ok(());
            }
            if self.is_poisoned() {
                return Err(Poisoned);
            }
            if backoff.is_completed() {
                self.signal
                    .park_until(|| ready() || self.is_poisoned(), None);
            } else {
                backoff.snooze();
            }
        }
    }
}

impl std::fmt::Debug for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watermark")
            .field("value", &self.value.load(Ordering::Relaxed))
            .field("poisoned", &self.poisoned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
