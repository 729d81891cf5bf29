//! Epoch guards for short looks at log segments that may be retired.
//!
//! A writer committing its range, and a helper moving the watermark, read
//! slots near the watermark from a value they loaded earlier, which may be
//! stale by the time they read: the segment may have been retired since
//! (all its events removed, contract rule 30). They read under a [`Guard`]:
//! a retired segment's memory is freed only once every guard pinned before
//! its retirement is gone ([`Guard::defer_flag`]). Pinning is a store to a
//! thread-local word (crossbeam-epoch), with no write shared between
//! threads, so it costs a commit little. Guards are `!Send` and scoped to
//! one call; readers that keep references across calls pin the segment
//! itself instead (`segments::SegmentPin`).
//!
//! Under loom and Miri this is a stand-in with the same contract (see
//! `stand_in`): under loom, crossbeam-epoch's handshake without its
//! epochs; under Miri, a mutex-guarded count of live guards.
//! crossbeam-epoch is model-checked by its own authors; the models here
//! check the protocol around it. (Under Miri, crossbeam-epoch's own
//! intrusive lists fail the Stacked Borrows checks, in its `internal.rs`:
//! the stand-in keeps Miri checking this crate's code under the stricter
//! model.)

use crate::sync::{Arc, AtomicBool, Ordering};

/// A pinned epoch: memory retired after the pin is not freed while it
/// lives.
pub(crate) struct Guard {
    #[cfg(not(any(loom, miri)))]
    inner: crossbeam_epoch::Guard,
    #[cfg(any(loom, miri))]
    _inner: (),
}

/// Pins the current thread's epoch.
#[inline]
pub(crate) fn pin() -> Guard {
    #[cfg(not(any(loom, miri)))]
    {
        Guard {
            inner: crossbeam_epoch::pin(),
        }
    }
    #[cfg(any(loom, miri))]
    {
        stand_in::pin();
        Guard { _inner: () }
    }
}

impl Guard {
    /// Sets `flag` (with Release) once every guard pinned before this call
    /// (this one included) is gone. Never panics and runs no user code: the
    /// deferred function only stores to the flag, which it owns a share of.
    pub(crate) fn defer_flag(&self, flag: Arc<AtomicBool>) {
        // Release: pairs with the Acquire load of the flag by whoever
        // frees the segment.
        self.defer(move || flag.store(true, Ordering::Release));
    }

    /// Drops `value` once every guard pinned before this call (this one
    /// included) is gone, on whichever thread collects then. `value`'s
    /// `Drop` must not panic, and must not touch anything that may be gone
    /// by then (it may run after the store dropped).
    pub(crate) fn defer_drop<T: Send + 'static>(&self, value: T) {
        self.defer(move || drop(value));
    }

    /// Hands this thread's deferred functions to the global queue and runs
    /// those whose guards are gone: what tests call to drive the epoch.
    #[cfg(test)]
    pub(crate) fn flush(&self) {
        #[cfg(not(any(loom, miri)))]
        self.inner.flush();
    }

    fn defer(&self, f: impl FnOnce() + Send + 'static) {
        #[cfg(not(any(loom, miri)))]
        {
            self.inner.defer(f);
            // Hands the deferred function to the global queue now, so that
            // any thread's next collection may run it.
            self.inner.flush();
        }
        #[cfg(any(loom, miri))]
        stand_in::defer(Box::new(f));
    }
}

#[cfg(any(loom, miri))]
impl Drop for Guard {
    fn drop(&mut self) {
        stand_in::unpin();
    }
}

/// Under Miri: one mutex-guarded count of live guards; what is deferred
/// while any guard lives runs when the count drops to zero.
#[cfg(all(miri, not(loom)))]
mod stand_in {
    use crate::sync::Mutex;

    /// Live guards, and what waits for the count to reach zero.
    struct State {
        live: usize,
        waiting: Vec<Box<dyn FnOnce() + Send>>,
    }

    static STATE: Mutex<State> = Mutex::new(State {
        live: 0,
        waiting: Vec::new(),
    });

    pub(super) fn pin() {
        crate::sync::lock(&STATE).live += 1;
    }

    pub(super) fn unpin() {
        let mut state = crate::sync::lock(&STATE);
        state.live -= 1;
        if state.live == 0 {
            for deferred in state.waiting.drain(..) {
                deferred();
            }
        }
    }

    pub(super) fn defer(deferred: Box<dyn FnOnce() + Send>) {
        // The caller's own guard is live: it waits for that one at least.
        crate::sync::lock(&STATE).waiting.push(deferred);
    }
}

/// Under loom: crossbeam-epoch's handshake without its epochs, and without
/// adding synchronisation between guards (a mutex taken by every pin would
/// order every commit after the one before, and hide weakened orderings
/// from the log's models). Each loom thread owns a slot: pinning stores
/// `true` to it (Relaxed) and issues a `fence(SeqCst)`, unpinning stores
/// `false` (Release), as crossbeam-epoch's local epoch does. A deferral
/// issues a `fence(SeqCst)` and notes which slots are pinned; it runs once
/// each of them has been seen unpinned (Acquire) since, checked whenever a
/// thread pins or unpins while anything waits. Of a reader's pin fence and
/// the deferrer's fence, the later one's thread sees the other's store:
/// the reader sees the swap made before the deferral, or the deferral
/// sees the reader pinned and waits for it.
#[cfg(loom)]
mod stand_in {
    use crate::sync::{fence, AtomicBool, AtomicUsize, Mutex, Ordering};
    use std::cell::Cell;

    /// Loom threads a model may use.
    const SLOTS: usize = 8;

    /// A deferred function and the slots it still waits for.
    struct Waiting {
        slots: [bool; SLOTS],
        deferred: Box<dyn FnOnce() + Send>,
    }

    loom::lazy_static! {
        static ref PINNED: Vec<AtomicBool> = (0..SLOTS).map(|_| AtomicBool::new(false)).collect();
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
        static ref ANY_WAITING: AtomicBool = AtomicBool::new(false);
        static ref WAITING: Mutex<Vec<Waiting>> = Mutex::new(Vec::new());
    }

    loom::thread_local! {
        /// This thread's slot, and how many of its guards are live.
        static SLOT: (usize, Cell<usize>) = (NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS, Cell::new(0));
    }

    pub(super) fn pin() {
        SLOT.with(|(slot, depth)| {
            depth.set(depth.get() + 1);
            if depth.get() == 1 {
                // Relaxed, then the fence: crossbeam-epoch's pin.
                PINNED[*slot].store(true, Ordering::Relaxed);
                fence(Ordering::SeqCst);
            }
        });
        collect();
    }

    pub(super) fn unpin() {
        SLOT.with(|(slot, depth)| {
            depth.set(depth.get() - 1);
            if depth.get() == 0 {
                // Release: the reads made under the guard happen before
                // whatever runs once a deferral sees the slot unpinned.
                PINNED[*slot].store(false, Ordering::Release);
            }
        });
        collect();
    }

    pub(super) fn defer(deferred: Box<dyn FnOnce() + Send>) {
        fence(Ordering::SeqCst);
        let mut slots = [false; SLOTS];
        for (waits, pinned) in slots.iter_mut().zip(PINNED.iter()) {
            // Relaxed: a slot seen pinned is waited for (until seen
            // unpinned with Acquire); one missed pinned after the fence
            // above, and sees what was done before the deferral.
            *waits = pinned.load(Ordering::Relaxed);
        }
        WAITING.lock().unwrap().push(Waiting { slots, deferred });
        ANY_WAITING.store(true, Ordering::Relaxed);
    }

    /// Runs the deferrals whose slots have all been seen unpinned.
    fn collect() {
        // Relaxed: a hint; a deferral missed here is looked at by a later
        // pin or unpin (a model's final reclaim pins after joining).
        if !ANY_WAITING.load(Ordering::Relaxed) {
            return;
        }
        let ready: Vec<Box<dyn FnOnce() + Send>> = {
            let mut waiting = WAITING.lock().unwrap();
            for entry in waiting.iter_mut() {
                for (waits, pinned) in entry.slots.iter_mut().zip(PINNED.iter()) {
                    // Acquire: pairs with the unpin's Release store.
                    if *waits && !pinned.load(Ordering::Acquire) {
                        *waits = false;
                    }
                }
            }
            let (ready, left): (Vec<Waiting>, Vec<Waiting>) = waiting
                .drain(..)
                .partition(|entry| entry.slots.iter().all(|waits| !waits));
            *waiting = left;
            ready.into_iter().map(|entry| entry.deferred).collect()
        };
        for deferred in ready {
            deferred();
        }
    }
}
