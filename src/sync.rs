//! The crate's one door to atomics, cells, locks and spinning.
//!
//! Every other module imports these names from here, never from `std` or
//! `loom` directly, so that `RUSTFLAGS="--cfg loom"` runs the crate's real
//! code under the loom model checker (see `loom-tests/`).

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};

/// Locks `mutex`, ignoring poisoning.
///
/// Stream locks guard plain counters that are never left half-updated by a
/// panic (nothing that can panic runs while they are held, but for the
/// `PartialEq` of a re-sent event, contract rule 29, which runs before the
/// writer changes anything under the lock), so a poisoned lock carries no
/// broken invariant.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(loom))]
    {
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    #[cfg(loom)]
    {
        mutex.lock().unwrap()
    }
}

/// Locks `mutex` if nobody holds it, ignoring poisoning (see [`lock`]).
pub(crate) fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        #[cfg(not(loom))]
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(_) => None,
    }
}

/// An `UnsafeCell` with loom's closure-based API, so that loom can track
/// every access to the cell's contents.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a pointer for reading.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a pointer for writing.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Spin-then-block advice.
///
/// Outside loom this is `crossbeam_utils::Backoff`. Under loom spinning only
/// multiplies the interleavings to explore, so the loom version says "block"
/// at once and every wait goes straight to its `event_listener` listener.
#[cfg(not(loom))]
pub(crate) use crossbeam_utils::Backoff;

#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Backoff;

#[cfg(loom)]
impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff
    }
    pub(crate) fn snooze(&self) {
        loom::thread::yield_now();
    }
    pub(crate) fn is_completed(&self) -> bool {
        true
    }
}

/// Pads and aligns a value to a cache line, so that hot counters written by
/// different threads do not share one.
#[cfg(not(loom))]
pub(crate) use crossbeam_utils::CachePadded;

#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct CachePadded<T>(T);

#[cfg(loom)]
impl<T> CachePadded<T> {
    pub(crate) fn new(value: T) -> Self {
        CachePadded(value)
    }
}

#[cfg(loom)]
impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
