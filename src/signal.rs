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

//!
//! Every wait in the crate goes through [`Signal::wait_until`]: spin a
//! little (`Backoff`), then yield, then park. One loop, so one set of loom
//! models covers every wait.

use crate::sync::{fence, AtomicUsize, Backoff, Ordering};
use event_listener::{Event, EventListener, Listener};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How many `Backoff::spin` steps an async wait spins before it awaits:
/// 2^0 + ... + 2^6 = 127 pause instructions, `Backoff`'s whole spin phase.
#[cfg(not(loom))]
const SPINS: u32 = 7;

/// 16 bytes, unpadded: every stream has one (targeted wake-ups), and the
/// watermark pads its own.
#[derive(Debug)]
pub(crate) struct Signal {
    /// Threads or tasks between `prepare` and the drop of their `Sleeper`.
    sleepers: AtomicUsize,
    event: Event,
}

impl Signal {
    pub(crate) fn new() -> Self {
        Self {
            sleepers: AtomicUsize::new(0),
            event: Event::new(),
        }
    }

    /// How many sleepers are registered now (for tests that check where a
    /// wait parks).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn sleepers(&self) -> usize {
        self.sleepers.load(Ordering::SeqCst)
    }

    /// Wakes every sleeper. Call after changing the state sleepers wait on.
    #[inline]
    pub(crate) fn wake(&self) {
        // SeqCst fence: pairs with the fence in `prepare` (module docs).
        fence(Ordering::SeqCst);
        self.wake_fenced();
    }

    /// [`wake`](Self::wake) for a caller that already issued a
    /// `fence(SeqCst)` after changing the state sleepers wait on: the commit
    /// fast path shares one fence between this handshake and its own.
    #[inline]
    pub(crate) fn wake_fenced(&self) {
        // Relaxed: ordered by the caller's SeqCst fence, which pairs with
        // the fence in `prepare` (module docs).
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            self.event.notify(usize::MAX);
        }
    }

    /// Waits until `ready()` holds: spins briefly, then yields the CPU a few
    /// times, then parks until woken. `false` if `deadline` passed first.
    ///
    /// Spinning first serves the common case (the state changes within
    /// microseconds: another writer finishing its commit); yielding next
    /// lets a writer that was preempted between reserving and committing run
    /// again when threads outnumber cores; parking last stops a long wait
    /// from burning a core. Whoever makes `ready()` true must then call
    /// [`wake`](Self::wake).
    pub(crate) fn wait_until(&self, ready: impl Fn() -> bool, deadline: Option<Instant>) -> bool {
        let backoff = Backoff::new();
        loop {
            if ready() {
                return true;
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return false;
            }
            if backoff.is_completed() {
                self.park_until(&ready, deadline);
            } else {
                backoff.snooze();
            }
        }
    }

    /// Registers the caller as a sleeper. The caller must then check its
    /// condition once more, and wait on the returned `Sleeper` only if it is
    /// still false.
    pub(crate) fn prepare(&self) -> Sleeper<'_> {
        Sleeper {
            signal: self,
            listener: Some(self.register()),
        }
    }

    /// The registration half of [`prepare`](Self::prepare), for sleepers
    /// that own their signal's holder (`OwnedSleeper`): each call must be
    /// matched by one [`unregister`](Self::unregister).
    fn register(&self) -> EventListener {
        // Register first, so that any notify from here on reaches us.
        let listener = self.event.listen();
        // SeqCst: part of the handshake with `wake`.
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // SeqCst fence: pairs with the fence in `wake` (module docs).
        fence(Ordering::SeqCst);
        listener
    }

    /// Undoes one [`register`](Self::register).
    fn unregister(&self) {
        // Relaxed: the count only gates notifies; a stale high count costs a
        // needless notify, never a lost wake-up.
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Waits asynchronously until `ready()` holds, for at most `timeout`
    /// (from the first poll that has to wait); `false` if the timeout
    /// passed first. Never blocks the polling thread and starts no thread
    /// of its own: it awaits the signal's listener and, when the timeout is
    /// representable as an `Instant`, a `futures_timer::Delay` (one global
    /// helper thread serves every delay of the process).
    ///
    /// Cancel-safe: dropping the future unregisters its listener and its
    /// timer and releases everything it held. Uses the same handshake as
    /// [`park_until`](Self::park_until) (`prepare`, check again, wait), so
    /// no wake-up is lost. Whoever makes `ready()` true must then call
    /// [`wake`](Self::wake).
    ///
    /// Under loom there is no timer (loom has no time): the wait ends only
    /// when `ready()` holds, and the spin is left out.
    ///
    /// # Panics
    ///
    /// If the operating system cannot start the timer's helper thread, the
    /// first time any delay is needed (as starting a thread panics).
    pub(crate) async fn wait_until_async(
        &self,
        ready: impl Fn() -> bool,
        timeout: Duration,
    ) -> bool {
        if ready() {
            return true;
        }
        if timeout.is_zero() {
            return false;
        }
        // Spin briefly first (about a hundred pause instructions, never a
        // yield of the thread): the common wait, for a subscriber that is
        // running, ends within microseconds, and registering a timer wakes
        // the timer's thread twice (to add it and to remove it).
        #[cfg(not(loom))]
        {
            let backoff = Backoff::new();
            for _ in 0..SPINS {
                backoff.spin();
                if ready() {
                    return true;
                }
            }
        }
        // Created when the first wait starts; `None` inside for a timeout
        // too long to ever pass (`Duration::MAX`).
        #[cfg(not(loom))]
        let mut timer: Option<Option<futures_timer::Delay>> = None;
        loop {
            let mut sleeper = self.prepare();
            if ready() {
                return true;
            }
            #[cfg(not(loom))]
            let timer = timer.get_or_insert_with(|| {
                Instant::now()
                    .checked_add(timeout)
                    .map(|_| futures_timer::Delay::new(timeout))
            });
            #[cfg(loom)]
            crate::loom_api::note_park();
            let notified = std::future::poll_fn(|cx| {
                if sleeper.poll_notified(cx).is_ready() {
                    return Poll::Ready(true);
                }
                #[cfg(not(loom))]
                if let Some(delay) = timer {
                    if Pin::new(delay).poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                }
                Poll::Pending
            })
            .await;
            if !notified {
                return ready();
            }
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
        #[cfg(loom)]
        crate::loom_api::note_park();
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

    /// Polls for the notification: `Ready` once notified (and from then on).
    fn poll_notified(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.listener {
            None => Poll::Ready(()),
            Some(listener) => {
                let notified = Pin::new(listener).poll(cx);
                if notified.is_ready() {
                    self.listener = None;
                }
                notified
            }
        }
    }
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        self.signal.unregister();
    }
}

/// Something that owns (a share of) a [`Signal`]: a store handle owns its
/// watermark's.
pub(crate) trait HoldsSignal {
    /// The signal.
    fn signal(&self) -> &Signal;
}

/// A [`Sleeper`] that does not borrow its signal: it holds `H`, which keeps
/// the signal alive, so that a `'static` future or stream can keep it
/// across polls. The protocol is `prepare`'s, unchanged: [`new`](Self::new)
/// registers the listener, counts the sleeper and fences; the caller then
/// checks its condition once more and polls only if it is still false.
pub(crate) struct OwnedSleeper<H: HoldsSignal> {
    holder: H,
    listener: EventListener,
}

impl<H: HoldsSignal> OwnedSleeper<H> {
    /// Registers a sleeper on `holder`'s signal (as `Signal::prepare`).
    pub(crate) fn new(holder: H) -> Self {
        let listener = holder.signal().register();
        Self { holder, listener }
    }

    /// Ready once notified (by any `wake` after `new`'s fence, including
    /// one that came before this poll); otherwise registers `cx`'s waker.
    pub(crate) fn poll_notified(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.listener).poll(cx)
    }
}

impl<H: HoldsSignal> Drop for OwnedSleeper<H> {
    fn drop(&mut self) {
        self.holder.signal().unregister();
    }
}
