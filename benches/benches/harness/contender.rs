//! What every store in the benchmarks implements, so that one generic
//! scenario runs each of them in the same criterion group.
//!
//! The traits are split by capability: every contender appends and reads a
//! stream; only some have atomic multi-stream transactions with exact
//! expectations, a global read, or subscriptions. A scenario bounds on the
//! traits it needs, and a contender that lacks one is left out of that
//! scenario (PERF.md says which and why) rather than faked.
//!
//! All methods are synchronous. Adapters of async peers drive their futures
//! to completion on the calling thread (the in-memory peers never actually
//! wait), so every contender runs on the same plain OS threads.

use crate::harness::Payload;

/// An event store under benchmark.
pub trait Contender: Send + Sync + Sized + 'static {
    /// The name in benchmark ids (`<group>/<NAME>/<parameter>`).
    const NAME: &'static str;

    /// The contender's handle for a stream.
    type Stream: Clone + Send + Sync;

    /// A fresh, empty store.
    fn new() -> Self;

    /// The stream numbered `index`: the same index always names the same
    /// stream, distinct indexes name distinct streams.
    fn stream(&self, index: u64) -> Self::Stream;

    /// Appends `events` to `stream` in one transaction, with no expectation
    /// on the stream's version (the store's "any version").
    fn append(&self, stream: &Self::Stream, events: &[Payload]);

    /// Appends `events` to `stream`, which the caller knows holds `len`
    /// events and that nobody else writes. Used only to fill stores before
    /// a measurement: a store whose appends must name the stream's version
    /// (and would otherwise read the stream to learn it) overrides this to
    /// use `len`; for the others it is [`Contender::append`].
    fn append_at(&self, stream: &Self::Stream, len: u64, events: &[Payload]) {
        let _ = len;
        self.append(stream, events);
    }

    /// Calls `visit` on every event of `stream`, oldest first, and returns
    /// how many there were.
    fn read_stream(&self, stream: &Self::Stream, visit: impl FnMut(&Payload)) -> u64;
}

/// A store with atomic transactions across several streams, each checked
/// against an exact expected version.
pub trait MultiStream: Contender {
    /// Appends each `(stream, expected_len, events)` in one atomic
    /// transaction, provided every stream holds exactly `expected_len`
    /// events (0: the stream does not exist yet). Returns `false` and
    /// writes nothing on a conflict.
    fn append_exact(&self, writes: &[(&Self::Stream, u64, &[Payload])]) -> bool;
}

/// A store with one global order that can be read across all streams.
pub trait GlobalRead: Contender {
    /// Calls `visit` on every stored event in global order and returns how
    /// many there were.
    fn read_all(&self, visit: impl FnMut(&Payload)) -> u64;
}

/// A store that delivers every event, in global order, to subscribers that
/// catch up from the beginning and then follow live writes.
pub trait Subscribe: Contender {
    /// A subscription to all streams.
    type Subscription<'a>: Subscription
    where
        Self: 'a;

    /// A subscription to all streams from the beginning.
    fn subscribe(&self) -> Self::Subscription<'_>;
}

/// One subscriber's view of the global order.
pub trait Subscription: Send {
    /// The next event if one is committed, without waiting.
    fn try_next(&mut self) -> Option<Payload>;

    /// The next event, waiting for it in the store's own way (spinning,
    /// parking, polling: whatever the store does).
    fn next(&mut self) -> Payload;
}

/// Fills `store` with `events` events in `size`-event transactions (the
/// last takes the remainder), round-robin over streams `0..100`. Untimed
/// set-up: goes through [`Contender::append_at`].
pub fn fill<C: Contender>(store: &C, events: u64, size: u64) {
    let streams: Vec<C::Stream> = (0..100).map(|i| store.stream(i)).collect();
    let mut lens = [0u64; 100];
    let mut written = 0;
    while written < events {
        let count = (events - written).min(size);
        let batch: Vec<Payload> = (0..count).map(|i| Payload::new(0, written + i)).collect();
        let index = (written / size) as usize % 100;
        store.append_at(&streams[index], lens[index], &batch);
        lens[index] += count;
        written += count;
    }
}

/// Checks that `C` keeps the events it is given, per stream and in order.
/// Every benchmark binary runs the checks of its contenders first, so no
/// figure comes from an adapter that drops or reorders events.
///
/// # Panics
/// On the first violation, naming the contender.
pub fn check_streams<C: Contender>() {
    let store = C::new();
    let (a, b) = (store.stream(1), store.stream(2));
    assert_eq!(
        store.read_stream(&a, |_| {}),
        0,
        "{}: empty stream",
        C::NAME
    );
    let events: Vec<Payload> = (0..10).map(|i| Payload::new(0, i)).collect();
    store.append(&a, &events[..3]);
    store.append(&b, &events[3..4]);
    store.append(&a, &events[4..]);
    let mut seen = Vec::new();
    let count = store.read_stream(&a, |e| seen.push(*e));
    assert_eq!(count, 9, "{}: count of stream a", C::NAME);
    let expected: Vec<Payload> = events[..3].iter().chain(&events[4..]).copied().collect();
    assert_eq!(seen, expected, "{}: events of stream a", C::NAME);
    seen.clear();
    store.read_stream(&b, |e| seen.push(*e));
    assert_eq!(seen, events[3..4], "{}: events of stream b", C::NAME);
    let c = store.stream(3);
    assert_eq!(
        store.read_stream(&c, |_| {}),
        0,
        "{}: unwritten stream",
        C::NAME
    );
}

/// Checks that `C`'s transactions are atomic and checked against exact
/// expected versions.
///
/// # Panics
/// On the first violation, naming the contender.
pub fn check_multi_stream<C: MultiStream>() {
    let store = C::new();
    let (a, b) = (store.stream(1), store.stream(2));
    let one = [Payload::new(0, 1)];
    let two = [Payload::new(0, 2), Payload::new(0, 3)];
    assert!(
        store.append_exact(&[(&a, 0, &one), (&b, 0, &two)]),
        "{}",
        C::NAME
    );
    assert!(
        !store.append_exact(&[(&a, 1, &one), (&b, 1, &two)]),
        "{}: a stale expectation on b must fail the whole transaction",
        C::NAME
    );
    assert_eq!(
        store.read_stream(&a, |_| {}),
        1,
        "{}: partial write",
        C::NAME
    );
    assert!(
        store.append_exact(&[(&a, 1, &one), (&b, 2, &two)]),
        "{}",
        C::NAME
    );
    assert_eq!(store.read_stream(&a, |_| {}), 2, "{}", C::NAME);
    assert_eq!(store.read_stream(&b, |_| {}), 4, "{}", C::NAME);
    assert!(
        !store.append_exact(&[(&a, 0, &one)]),
        "{}: a stream that exists is not at length 0",
        C::NAME
    );
}

/// Checks that `C::read_all` returns every event once, in commit order.
///
/// # Panics
/// On the first violation, naming the contender.
pub fn check_global_read<C: GlobalRead>() {
    let store = C::new();
    let streams: Vec<_> = (0..4).map(|i| store.stream(i)).collect();
    for i in 0..20 {
        store.append(&streams[i as usize % 4], &[Payload::new(1, i)]);
    }
    let mut seen = Vec::new();
    assert_eq!(store.read_all(|e| seen.push(e.0[1])), 20, "{}", C::NAME);
    assert_eq!(
        seen,
        (0..20).collect::<Vec<_>>(),
        "{}: global order",
        C::NAME
    );
}

/// Checks that a `C` subscription catches up and then follows live writes
/// from another thread, every event once and in order.
///
/// # Panics
/// On the first violation, naming the contender.
pub fn check_subscribe<C: Subscribe>() {
    let store = C::new();
    let stream = store.stream(0);
    store.append(&stream, &[Payload::new(2, 0), Payload::new(2, 1)]);
    let mut subscription = store.subscribe();
    assert_eq!(
        subscription.try_next(),
        Some(Payload::new(2, 0)),
        "{}",
        C::NAME
    );
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 2..200 {
                store.append(&stream, &[Payload::new(2, i)]);
            }
        });
        for i in 1..200 {
            assert_eq!(
                subscription.next(),
                Payload::new(2, i),
                "{}: live order",
                C::NAME
            );
        }
    });
    assert_eq!(subscription.try_next(), None, "{}: past the end", C::NAME);
}
