//! Fault injection: a backend wrapper that answers chosen inserts with a
//! version conflict, so that retry paths run deterministically in tests.

use crate::backend::{EventRef, EventStore, StoreError};
use crate::error::VersionMismatch;
use crate::ids::StreamId;
use crate::name::StreamName;
use crate::selector::Selector;
use crate::subscription::Flow;
use crate::transaction::{Committed, ExpectedVersion, StreamHead, Transaction};
use crate::StreamVersion;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};

/// Any [`EventStore`] whose inserts fail with a version conflict when a
/// test says so: the next `n` inserts to a stream ([`fail_next`]), or a
/// seeded fraction of all inserts ([`fail_fraction`]). Everything else
/// passes through unchanged, and clones share one plan.
///
/// An injected conflict is what a lost race gives: nothing is written, no
/// position is used, and the error lists the stream (or, for
/// [`fail_fraction`], every stream of the transaction) with its
/// expectation and its real head, read from the store just before. It is
/// injected whatever the expectation, `Any` included (which never conflicts
/// for real), so code that should not retry is caught retrying.
///
/// [`fail_next`]: Faulty::fail_next
/// [`fail_fraction`]: Faulty::fail_fraction
///
/// ```
/// use hindsight::testkit::Faulty;
/// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, Transaction};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = Faulty::new(MemoryStore::new());
/// let account = StreamId::new();
/// store.fail_next(account, 2);
///
/// // A command that retries on conflict, as application code would.
/// let mut attempts = 0;
/// loop {
///     attempts += 1;
///     let tx = Transaction::single(account, ExpectedVersion::Any, "deposited");
///     match store.insert(tx).await {
///         Ok(_) => break,
///         Err(error) if error.is_conflict() => continue,
///         Err(error) => panic!("{error}"),
///     }
/// }
/// assert_eq!(attempts, 3);
/// assert_eq!(store.injected(), 2);
/// assert_eq!(store.inner().head().map(|p| p.get()), Some(0)); // written once
/// # }
/// ```
pub struct Faulty<S> {
    inner: S,
    plan: Arc<Mutex<Plan>>,
}

/// What to fail next.
#[derive(Default)]
struct Plan {
    /// Inserts still to fail, per stream.
    next: HashMap<StreamId, u64>,
    /// Fail each insert with this probability, drawn from `rng`.
    fraction: Option<(f64, SplitMix64)>,
    /// Conflicts injected so far.
    injected: u64,
}

/// A fraction outside `0.0..=1.0` (or NaN) given to
/// [`Faulty::fail_fraction`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidFraction(pub f64);

impl fmt::Display for InvalidFraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a fraction of inserts must be within 0..=1, not {}",
            self.0
        )
    }
}

impl std::error::Error for InvalidFraction {}

impl<S> Faulty<S> {
    /// Wraps `inner`, failing nothing until told.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            plan: Arc::new(Mutex::new(Plan::default())),
        }
    }

    /// The store inside, to read or write around the faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Fails the next `count` inserts that name `stream` (to write to it or
    /// to check it), on top of any still pending for it.
    pub fn fail_next(&self, stream: StreamId, count: u64) {
        let mut plan = self.plan();
        let pending = plan.next.entry(stream).or_default();
        *pending = pending.saturating_add(count);
    }

    /// From now on fails each insert with probability `fraction`, drawn
    /// from a generator seeded with `seed`: the same seed and the same
    /// sequence of inserts fail the same inserts. `0.0` stops it.
    ///
    /// # Errors
    ///
    /// [`InvalidFraction`] if `fraction` is NaN or outside `0.0..=1.0`;
    /// the plan is unchanged.
    ///
    /// ```
    /// use hindsight::testkit::Faulty;
    /// use hindsight::MemoryStore;
    /// let store = Faulty::new(MemoryStore::<u8>::new());
    /// assert!(store.fail_fraction(0.25, 7).is_ok());
    /// assert!(store.fail_fraction(1.5, 7).is_err());
    /// ```
    pub fn fail_fraction(&self, fraction: f64, seed: u64) -> Result<(), InvalidFraction> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(InvalidFraction(fraction));
        }
        self.plan().fraction = (fraction > 0.0).then_some((fraction, SplitMix64(seed)));
        Ok(())
    }

    /// How many conflicts were injected so far.
    pub fn injected(&self) -> u64 {
        self.plan().injected
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        // The plan holds counters only: a panic elsewhere cannot leave it
        // half-updated, so a poisoned lock is taken as it is.
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The streams of `tx` to report, with their expectations, if this
    /// insert is to fail.
    fn decide<E>(&self, tx: &Transaction<E>) -> Option<Vec<(StreamId, ExpectedVersion)>> {
        let mut plan = self.plan();
        let targeted = tx
            .appends
            .iter()
            .find(|append| plan.next.get(&append.stream).is_some_and(|&n| n > 0))
            .map(|append| (append.stream, append.expected));
        let failing = match targeted {
            Some((stream, expected)) => {
                if let Some(pending) = plan.next.get_mut(&stream) {
                    *pending -= 1;
                    if *pending == 0 {
                        plan.next.remove(&stream);
                    }
                }
                vec![(stream, expected)]
            }
            None => {
                let (fraction, rng) = plan.fraction.as_mut()?;
                if rng.next_f64() >= *fraction {
                    return None;
                }
                let mut all: Vec<_> = tx.appends.iter().map(|a| (a.stream, a.expected)).collect();
                all.sort_by_key(|&(stream, _)| stream);
                all.dedup_by_key(|&mut (stream, _)| stream);
                all
            }
        };
        plan.injected += 1;
        Some(failing)
    }
}

impl<S: Clone> Clone for Faulty<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            plan: Arc::clone(&self.plan),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Faulty<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.plan();
        f.debug_struct("Faulty")
            .field("inner", &self.inner)
            .field("pending", &plan.next)
            .field("fraction", &plan.fraction.as_ref().map(|(f, _)| *f))
            .field("injected", &plan.injected)
            .finish()
    }
}

impl<S: EventStore> EventStore for Faulty<S> {
    type Event = S::Event;
    type Cursor = S::Cursor;
    type Error = S::Error;
    type Subscriber<X: Send + Sync + 'static> = S::Subscriber<X>;

    async fn insert(
        &self,
        tx: Transaction<Self::Event>,
    ) -> Result<Committed, StoreError<Self::Error>> {
        let Some(failing) = self.decide(&tx) else {
            return self.inner.insert(tx).await;
        };
        let mut mismatches = Vec::with_capacity(failing.len());
        for (stream, expected) in failing {
            let found: Option<StreamHead> = self
                .inner
                .stream_head(stream)
                .await
                .map_err(StoreError::Backend)?;
            // As a real conflict names it: the name the store keeps, or
            // else the one the transaction gave.
            let kept = self
                .inner
                .stream_name(stream)
                .await
                .map_err(StoreError::Backend)?;
            let given = tx
                .appends
                .iter()
                .find(|append| append.stream == stream)
                .and_then(|append| append.name.clone())
                .map(|name| StreamName::kept(stream, name));
            mismatches.push(VersionMismatch {
                stream,
                stream_name: kept.or(given),
                expected,
                found,
            });
        }
        Err(StoreError::VersionConflict(mismatches))
    }

    fn head(&self) -> impl Future<Output = Result<Option<Self::Cursor>, Self::Error>> + Send {
        self.inner.head()
    }

    fn stream_head(
        &self,
        stream: StreamId,
    ) -> impl Future<Output = Result<Option<StreamHead>, Self::Error>> + Send {
        self.inner.stream_head(stream)
    }

    fn stream_name(
        &self,
        stream: StreamId,
    ) -> impl Future<Output = Result<Option<StreamName>, Self::Error>> + Send {
        self.inner.stream_name(stream)
    }

    // Lifecycle calls pass through: only inserts are made to conflict.
    fn delete_stream(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send {
        self.inner.delete_stream(stream, expected)
    }

    fn tombstone_stream(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send {
        self.inner.tombstone_stream(stream, expected)
    }

    fn truncate_stream(
        &self,
        stream: StreamId,
        before: StreamVersion,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send {
        self.inner.truncate_stream(stream, before)
    }

    fn set_max_count(
        &self,
        stream: StreamId,
        max_count: Option<u64>,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send {
        self.inner.set_max_count(stream, max_count)
    }

    fn set_max_age(
        &self,
        stream: StreamId,
        max_age: Option<std::time::Duration>,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send {
        self.inner.set_max_age(stream, max_age)
    }

    fn delete_all_streams(
        &self,
    ) -> impl Future<Output = Result<(), StoreError<Self::Error>>> + Send {
        self.inner.delete_all_streams()
    }

    fn read_all<F>(
        &self,
        after: Option<Self::Cursor>,
        visit: F,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send
    where
        F: FnMut(EventRef<'_, Self::Event, Self::Cursor>) -> ControlFlow<()> + Send,
    {
        self.inner.read_all(after, visit)
    }

    fn read_stream<F>(
        &self,
        stream: StreamId,
        from: StreamVersion,
        visit: F,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send
    where
        F: FnMut(EventRef<'_, Self::Event, Self::Cursor>) -> ControlFlow<()> + Send,
    {
        self.inner.read_stream(stream, from, visit)
    }

    fn spawn_subscriber<X, H>(
        &self,
        selector: Selector<Self::Event>,
        handler: H,
    ) -> impl Future<Output = Result<Self::Subscriber<X>, Self::Error>> + Send
    where
        X: Send + Sync + 'static,
        H: FnMut(EventRef<'_, Self::Event, Self::Cursor>) -> Result<Flow, X> + Send + 'static,
    {
        self.inner.spawn_subscriber(selector, handler)
    }
}

/// SplitMix64: a tiny, well-known seeded generator; plenty for choosing
/// which inserts fail.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, Start};

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    #[test]
    fn the_next_inserts_to_a_stream_fail_with_its_real_head_and_write_nothing() {
        block_on(async {
            let store = Faulty::new(MemoryStore::new());
            let (a, b) = (StreamId::new(), StreamId::new());
            store
                .insert(Transaction::single(a, ExpectedVersion::NoStream, 1))
                .await
                .unwrap();
            store.fail_next(a, 1);
            // Another stream is not affected.
            store
                .insert(Transaction::single(b, ExpectedVersion::Any, 2))
                .await
                .unwrap();
            let tx = || {
                Transaction::new()
                    .append(b, ExpectedVersion::Any, [3])
                    .append(a, ExpectedVersion::Exact(StreamVersion(0)), [4])
            };
            let error = store.insert(tx()).await.unwrap_err();
            let mismatches = error.mismatches().unwrap();
            assert_eq!(mismatches.len(), 1);
            assert_eq!(mismatches[0].stream, a);
            assert_eq!(
                mismatches[0].expected,
                ExpectedVersion::Exact(StreamVersion(0))
            );
            assert_eq!(mismatches[0].found.unwrap().version, StreamVersion(0));
            // Nothing of it was written; the next try goes through.
            assert_eq!(store.inner().read_all(Start::Beginning).count(), 2);
            store.insert(tx()).await.unwrap();
            assert_eq!(store.injected(), 1);
        });
    }

    #[test]
    fn a_seeded_fraction_fails_the_same_inserts_every_run() {
        let run = |seed| {
            block_on(async {
                let store = Faulty::new(MemoryStore::new());
                store.fail_fraction(0.3, seed).unwrap();
                let stream = StreamId::new();
                let mut failed = Vec::new();
                for i in 0..200 {
                    let tx = Transaction::single(stream, ExpectedVersion::Any, i);
                    if store.insert(tx).await.is_err() {
                        failed.push(i);
                    }
                }
                assert_eq!(store.injected() as usize, failed.len());
                failed
            })
        };
        let failed = run(11);
        assert_eq!(failed, run(11));
        // About 30% of 200; bounds far outside any seed's spread.
        assert!((20..=100).contains(&failed.len()), "{}", failed.len());
        assert_ne!(failed, run(12));
    }

    #[test]
    fn fractions_outside_zero_to_one_are_refused() {
        let store = Faulty::new(MemoryStore::<u8>::new());
        for bad in [-0.1, 1.1, f64::NAN, f64::INFINITY] {
            assert!(store.fail_fraction(bad, 1).is_err(), "{bad}");
        }
        assert!(store.fail_fraction(0.0, 1).is_ok());
        assert!(store.fail_fraction(1.0, 1).is_ok());
    }
}
