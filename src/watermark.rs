//! The commit watermark: the end of the committed prefix of the log.
//!
//! Writers commit out of order (each publishes a commit marker on the first
//! slot of its range), but the watermark only moves in order, over whole
//! transactions: whoever finds the range at the watermark committed moves the
//! watermark past it, and keeps going while the next range is committed too.
//! Readers and subscribers only ever look below the watermark.
//!
//! Waiting on the watermark spins with `Backoff`, then parks on an
//! `event_listener::Event`. Notifying an `Event` takes a lock, so a writer
//! that moves the watermark notifies only when someone is parked, counted in
//! `sleepers` (a Dekker-style handshake, see [`Watermark::park_until`]).

use crate::sync::{fence, AtomicBool, AtomicU64, AtomicUsize, Backoff, CachePadded, Ordering};
use event_listener::{Event, Listener};
use std::time::Instant;

/// Returned by waits when the store was poisoned: the watermark will never
/// move again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Poisoned;

pub(crate) struct Watermark {
    /// Every position below this is committed, in whole transactions.
    value: CachePadded<AtomicU64>,
    /// Threads that are parked, or about to park, on `event`.
    sleepers: CachePadded<AtomicUsize>,
    /// Set once a reserved range can never be committed.
    poisoned: AtomicBool,
    /// Where waiters park; notified when the watermark moves or on poison.
    event: Event,
}

impl Watermark {
    pub(crate) fn new() -> Self {
        Self {
            value: CachePadded::new(AtomicU64::new(0)),
            sleepers: CachePadded::new(AtomicUsize::new(0)),
            poisoned: AtomicBool::new(false),
            event: Event::new(),
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
        // through the flag, so this only needs to see it eventually.
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
            // (acquired through its marker) to `get`; Acquire keeps the
            // release sequence of earlier helpers. Acquire on failure: the
            // new value's ranges are as visible as after `get`.
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
            self.wake();
        }
    }

    /// Marks the store as poisoned and wakes every waiter.
    pub(crate) fn poison(&self) {
        // SeqCst: ordered before the fence in `wake`, so that a waiter whose
        // readiness check missed this store has its `sleepers` increment seen.
        self.poisoned.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Wakes the parked waiters, if there are any.
    ///
    /// Called after the state that waiters check (the watermark, the poison
    /// flag, or anything a subscriber's `ready` reads) has changed.
    pub(crate) fn wake(&self) {
        // SeqCst fence: pairs with the fence in `park_until`. Either this
        // fence comes first in the single total order, and the waiter's check
        // after its fence sees the change made before this one, or the
        // waiter's comes first, and the load below sees its increment.
        fence(Ordering::SeqCst);
        // Relaxed: the fence above orders it (see there).
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            self.event.notify(usize::MAX);
        }
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
                self.park_until(|| ready() || self.is_poisoned(), None);
            } else {
                backoff.snooze();
            }
        }
    }

    /// Parks until `ready()` may have become true, or until `deadline`.
    /// Returns `false` only when the deadline passed.
    ///
    /// May return spuriously: callers check `ready()` again.
    pub(crate) fn park_until(&self, ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
        // Register first, so that any notify from here on reaches us.
        let listener = self.event.listen();
        // SeqCst: part of the handshake with `wake`, see the fence below.
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // SeqCst fence: pairs with the fence in `wake`. Either `wake`'s fence
        // is later, and its `sleepers` load sees our increment (so it
        // notifies our registered listener), or it is earlier, and `ready`
        // below sees the state change that preceded it.
        fence(Ordering::SeqCst);
        let in_time = if ready() {
            true
        } else {
            match deadline {
                None => {
                    listener.wait();
                    true
                }
                Some(deadline) => listener.wait_deadline(deadline).is_some(),
            }
        };
        // Relaxed: the count only gates notifies; a stale high count costs
        // one needless notify, never a lost wake-up.
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        in_time
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
