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
//! Under loom and Miri this is a stand-in with the same contract: one
//! mutex-guarded count of live guards, and what is deferred while any
//! guard lives runs when the count drops to zero. crossbeam-epoch is
//! model-checked by its own authors; the models here check the protocol
//! around it. (Under Miri, crossbeam-epoch's own intrusive lists fail the
//! Stacked Borrows checks, in its `internal.rs`: the stand-in keeps Miri
//! checking this crate's code under the stricter model.)

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

#[cfg(any(loom, miri))]
mod stand_in {
    use super::*;
    use crate::sync::Mutex;

    /// Live guards, and what waits for the count to reach zero.
    struct State {
        live: usize,
        waiting: Vec<Box<dyn FnOnce() + Send>>,
    }

    #[cfg(loom)]
    loom::lazy_static! {
        static ref STATE: Mutex<State> = Mutex::new(State { live: 0, waiting: Vec::new() });
    }

    #[cfg(not(loom))]
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
