//! A wake-up signal that costs nothing when nobody waits.
//!
//! `event_listener::Event::notify` takes a lock even when no listener is
//! registered. Writers notify on every watermark move and subscribers on
//! every processed event, so `Signal` counts its sleepers and notifies only
//! when there are some. The count and the state being waited on are tied by
//! a Dekker-style handshake of two `SeqCst` fences, which loses no wake-up:
//!
//! - a waiter registers a listener, increments `sleepers`, fences, then
//!   checks its condition, and parks only if it is still false;
//! - a notifier changes the state, fences, then loads `sleepers`, and
//!   notifies only if it is non-zero.
//!
//! Of the two fences, the one later in the single total order of `SeqCst`
//! operations belongs to a thread that sees the other's write: either the
//! notifier sees the sleeper (and the listener, registered before, gets the
//! notification) or the waiter sees the new state (and does not park).

use crate::sync::{fence, AtomicUsize, CachePadded, Ordering};
use event_listener::{Event, EventListener, Listener};
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct Signal {
    /// Threads or tasks between `prepare` and the drop of their `Sleeper`.
    sleepers: CachePadded<AtomicUsize>,
    event: Event,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self {
            sleepers: CachePadded::new(AtomicUsize::new(0)),
            event: Event::new(),
        }
    }

    /// Wakes every sleeper. Call after changing the state sleepers wait on.
    #[inline]
    pub(crate) fn wake(&self) {
        // SeqCst fence: pairs with the fence in `prepare` (module docs).
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above.
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            self.event.notify(usize::MAX);
        }
    }

    /// Registers the caller as a sleeper. The caller must then check its
    /// condition once more, and wait on the returned `Sleeper` only if it is
    /// still false.
    pub(crate) fn prepare(&self) -> Sleeper<'_> {
        // Register first, so that any notify from here on reaches us.
        let listener = self.event.listen();
        // SeqCst: part of the handshake with `wake`.
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // SeqCst fence: pairs with the fence in `wake` (module docs).
        fence(Ordering::SeqCst);
        Sleeper {
            signal: self,
            listener: Some(listener),
        }
    }

    /// Parks until `ready()` may have become true, or until `deadline`.
    /// Returns `false` only if the deadline passed first. May return
    /// spuriously: callers check `ready()` again.
    pub(crate) fn park_until(&self, ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
        let sleeper = self.prepare();
        if ready() {
            return true;
        }
        sleeper.wait(deadline)
    }
}

/// A registered sleeper; unregisters when dropped.
pub(crate) struct Sleeper<'a> {
    signal: &'a Signal,
    listener: Option<EventListener>,
}

impl Sleeper<'_> {
    /// Blocks until notified or until `deadline`; `false` if the deadline
    /// passed first.
    pub(crate) fn wait(mut self, deadline: Option<Instant>) -> bool {
        let Some(listener) = self.listener.take() else {
            return true;
        };
        match deadline {
            None => {
                listener.wait();
                true
            }
            Some(deadline) => listener.wait_deadline(deadline).is_some(),
        }
    }

    /// Waits asynchronously until notified.
    pub(crate) async fn notified(mut self) {
        if let Some(listener) = self.listener.take() {
            listener.await;
        }
    }
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        // Relaxed: the count only gates notifies; a stale high count costs a
        // needless notify, never a lost wake-up.
        self.signal.sleepers.fetch_sub(1, Ordering::Relaxed);
    }
}
