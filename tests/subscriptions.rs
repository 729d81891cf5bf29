//! The contract (`src/contract.md`), rules 15-24, for subscriptions: pull
//! ([`Subscription`]: `next`, `next_timeout`, `try_next`, `next_async`) and
//! handler ([`MemoryStore::spawn_subscriber`]). Each test is named after the
//! behaviour it proves and prefixed with the rule.
//!
//! Nothing here sleeps to synchronise: tests wait with `wait_processed`,
//! `wait_caught_up`, channels, barriers and joins. Timeouts are failure guards
//! ([`PATIENCE`]), except where the timeout is the expected result
//! ([`SHORT`]). Every test holds a [`watchdog`] that aborts the process if
//! the test hangs, so a lost wake-up fails loudly instead of stalling the run.

use hindsight::{
    CorrelationId, Envelope, EventContext, EventId, EventType, ExpectedVersion, Flow, HandlerError,
    HandlerFailure, InsertError, MemoryStore, Position, Selector, Start, StreamId, StreamVersion,
    Subscriber, SubscriberError, Subscription, Transaction, WaitError,
};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Barrier, Mutex, Once};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ExpectedVersion::{Any, Exact, NoStream};

mod common;
use common::{insert, seed, sid, Rng, Tracked, Watchdog};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// How long a wait that should succeed may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// How long a wait whose expected result is a timeout takes.
const SHORT: Duration = Duration::from_millis(50);

/// How long a test may run before its watchdog aborts the process.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Starts the [`common::watchdog`] of `test`, with expected panics quiet.
fn watchdog(test: &'static str) -> Watchdog {
    quiet_expected_panics();
    common::watchdog(test, WATCHDOG)
}

/// Handlers that panic on purpose put this in their message.
const EXPECTED_PANIC: &str = "expected test panic";

/// A non-string panic payload, thrown on purpose.
struct ExpectedPanic;

/// Keeps the panics the tests provoke out of the output; every other panic
/// is reported as usual.
fn quiet_expected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let expected = payload.is::<ExpectedPanic>()
                || payload
                    .downcast_ref::<String>()
                    .is_some_and(|message| message.contains(EXPECTED_PANIC))
                || payload
                    .downcast_ref::<&str>()
                    .is_some_and(|message| message.contains(EXPECTED_PANIC));
            if !expected {
                report(info);
            }
        }));
    });
}

/// The events of these tests: a type name and a number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    kind: &'static str,
    n: u64,
}

impl EventType for Ev {
    fn event_type(&self) -> &str {
        self.kind
    }
}

fn ev(kind: &'static str, n: u64) -> Ev {
    Ev { kind, n }
}

/// Appends `events` to `stream` in one transaction; returns the last position.
#[track_caller]
fn put(
    store: &MemoryStore<Ev>,
    stream: StreamId,
    events: impl IntoIterator<Item = Ev>,
) -> Position {
    insert(store, Transaction::new().append(stream, Any, events))
        .last_position()
        .expect("the transaction wrote events")
}

/// One delivered event, copied out of its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    position: Position,
    stream: StreamId,
    version: StreamVersion,
    event_id: EventId,
    event: Ev,
}

fn row(envelope: Envelope<'_, Ev>) -> Row {
    Row {
        position: envelope.position(),
        stream: envelope.stream_id(),
        version: envelope.version(),
        event_id: envelope.event_id(),
        event: envelope.payload().clone(),
    }
}

/// Every committed event that `keep` keeps, read with `read_all`.
fn rows_where(store: &MemoryStore<Ev>, keep: impl Fn(&Row) -> bool) -> Vec<Row> {
    store
        .read_all(Start::Beginning)
        .map(row)
        .filter(|row| keep(row))
        .collect()
}

fn all_rows(store: &MemoryStore<Ev>) -> Vec<Row> {
    rows_where(store, |_| true)
}

/// Everything a pull subscription can deliver without waiting.
fn drain(subscription: &mut Subscription<Ev>) -> Vec<Row> {
    let mut rows = Vec::new();
    while let Some(envelope) = subscription.try_next().expect("not poisoned") {
        rows.push(row(envelope));
    }
    rows
}

/// The next `n` events of a pull subscription, each within [`PATIENCE`].
fn take(subscription: &mut Subscription<Ev>, n: usize) -> Vec<Row> {
    (0..n)
        .map(|_| {
            let envelope = subscription.next_timeout(PATIENCE).expect("not poisoned");
            row(envelope.expect("no event within the patience"))
        })
        .collect()
}

/// What a recording handler was given, shared with the test.
type Rows = Arc<Mutex<Vec<Row>>>;

fn snapshot(rows: &Rows) -> Vec<Row> {
    rows.lock().unwrap().clone()
}

/// Spawns a subscriber that records every event it is given, then answers
/// what `decide` says; `decide` gets the number of events given so far,
/// this one included.
fn record_then<X: Send + Sync + 'static>(
    store: &MemoryStore<Ev>,
    selector: Selector<Ev>,
    mut decide: impl FnMut(usize) -> Result<Flow, X> + Send + 'static,
) -> (Subscriber<X>, Rows) {
    let rows = Rows::default();
    let sink = Arc::clone(&rows);
    let subscriber = store.spawn_subscriber(selector, move |envelope| {
        let given = {
            let mut rows = sink.lock().unwrap();
            rows.push(row(envelope));
            rows.len()
        };
        decide(given)
    });
    (subscriber, rows)
}

/// Spawns a subscriber that records every event and never stops on its own.
fn record(store: &MemoryStore<Ev>, selector: Selector<Ev>) -> (Subscriber<Infallible>, Rows) {
    record_then(store, selector, |_| Ok(Flow::Continue))
}

/// Waits until `subscriber` has processed `position`, or fails the test.
#[track_caller]
fn reach<X>(subscriber: &Subscriber<X>, position: Position) {
    if let Err(error) = subscriber.wait_processed(position, PATIENCE) {
        panic!("the subscriber did not reach {position:?}: {error}");
    }
}

/// All streams, or the one stream `scope` names.
fn selector_for(scope: Option<StreamId>) -> Selector<Ev> {
    scope.map_or_else(Selector::all, Selector::stream)
}

/// A handler's own error type, compared by value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Boom {
    code: u32,
    detail: String,
}

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom {}: {}", self.code, self.detail)
    }
}

impl std::error::Error for Boom {}

fn boom() -> Boom {
    Boom {
        code: 42,
        detail: "the third event".to_owned(),
    }
}

/// The earlier transaction of [`five_events`] ends here.
const BEFORE_FIVE: Position = Position(1);
/// The third of the five events: `b0`, stream `sid(2)`, version 2.
const THIRD_OF_FIVE: Position = Position(4);

/// A subscriber given (some of) one transaction of five events.
struct Five {
    store: MemoryStore<Ev>,
    subscriber: Subscriber<Boom>,
    /// Every event the handler was given.
    given: Rows,
    /// The five events, as `read_all` reads them.
    five: Vec<Row>,
}

/// The selector of [`five_events`]: everything after the earlier transaction.
fn after_earlier() -> Selector<Ev> {
    Selector::all().after(BEFORE_FIVE)
}

/// Writes a transaction of two events to `sid(2)` (positions 0-1), then one
/// of five events with a correlation id: `a0 a1` to `sid(1)` and `b0 b1 b2`
/// to `sid(2)` (positions 2-6). The subscriber starts before the five events
/// (`live`) or after them, and its handler answers `third()` on the third
/// event it is given and `Continue` otherwise.
fn five_events(live: bool, selector: Selector<Ev>, third: fn() -> Result<Flow, Boom>) -> Five {
    let store = MemoryStore::new();
    put(&store, sid(2), [ev("pre", 0), ev("pre", 1)]);
    let five = || {
        Transaction::new()
            .append(sid(1), Any, [ev("a", 0), ev("a", 1)])
            .append(sid(2), Any, [ev("b", 0), ev("b", 1), ev("b", 2)])
            .with_correlation_id(CorrelationId::new())
    };
    let decide = move |given| {
        if given == 3 {
            third()
        } else {
            Ok(Flow::Continue)
        }
    };
    let (subscriber, given) = if live {
        let spawned = record_then(&store, selector, decide);
        insert(&store, five());
        spawned
    } else {
        insert(&store, five());
        record_then(&store, selector, decide)
    };
    let five = rows_where(&store, |row| row.position > BEFORE_FIVE);
    assert_eq!(five.len(), 5);
    Five {
        store,
        subscriber,
        given,
        five,
    }
}

/// The failure context of the event at `position`, built from `read_all`.
fn context_at(
    store: &MemoryStore<Ev>,
    position: Position,
    event_type: Option<&str>,
) -> EventContext {
    let envelope = store
        .read_all(Start::Beginning)
        .find(|envelope| envelope.position() == position)
        .expect("the position is committed");
    EventContext {
        position: envelope.position(),
        event_id: envelope.event_id(),
        event_type: event_type.map(str::to_owned),
        stream: envelope.stream_id(),
        version: envelope.version(),
        correlation_id: envelope.correlation_id(),
        causation_id: envelope.metadata().causation_id(),
        created_at: envelope.created_at(),
    }
}

/// Runs [`five_events`] with a handler that fails on the third event, and
/// checks the outcome is `failure` with the third event's full context.
fn assert_fails_on_third(
    live: bool,
    selector: Selector<Ev>,
    event_type: Option<&str>,
    third: fn() -> Result<Flow, Boom>,
    failure: HandlerFailure<Boom>,
) {
    let Five {
        store,
        subscriber,
        given,
        five,
    } = five_events(live, selector, third);
    let event = context_at(&store, THIRD_OF_FIVE, event_type);
    // The context is the third event's, field by field.
    assert_eq!(
        (event.position, event.stream, event.version),
        (THIRD_OF_FIVE, sid(2), StreamVersion(2))
    );
    assert!(event.correlation_id.is_some());
    let expected = SubscriberError::Handler(HandlerError { failure, event });

    assert_eq!(subscriber.wait(), Err(&expected), "live: {live}");
    assert!(subscriber.is_finished());
    // Two handled, the third given and failed, nothing after it.
    assert_eq!(snapshot(&given), five[..3]);
    assert_eq!(subscriber.processed(), Some(Position(THIRD_OF_FIVE.0 - 1)));
    assert_eq!(
        subscriber.wait_processed(THIRD_OF_FIVE, PATIENCE),
        Err(WaitError::Ended)
    );
    assert_eq!(subscriber.into_outcome(), Err(expected));
}

// ---- Random concurrent writers ----

/// The streams random writers write to: `sid(1)` to `sid(POOL)`.
const POOL: u64 = 12;

/// What a random transaction's insert must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Only `Any` expectations.
    Commits,
    /// An exact expectation read just before: a concurrent writer may win.
    MayConflict,
    /// An exact expectation no stream can meet.
    Conflicts,
}

/// A transaction over one to three distinct streams of the pool, one to
/// three events each, with mostly `Any`, some racy exact and some
/// impossible exact expectations.
fn random_transaction(
    rng: &mut Rng,
    store: &MemoryStore<Ev>,
    n: u64,
) -> (Transaction<Ev>, Outcome) {
    let mut tx = Transaction::new();
    let mut outcome = Outcome::Commits;
    let first = rng.below_u64(POOL);
    for k in 0..=rng.below_u64(3) {
        // 5 is coprime to POOL: up to three distinct streams.
        let stream = sid(u128::from(1 + (first + 5 * k) % POOL));
        let expected = match rng.below_u64(12) {
            0 => {
                outcome = Outcome::Conflicts;
                Exact(StreamVersion(1 << 40))
            }
            1 | 2 => {
                if outcome == Outcome::Commits {
                    outcome = Outcome::MayConflict;
                }
                store
                    .stream_head(stream)
                    .map_or(NoStream, |head| head.expect_exact())
            }
            _ => Any,
        };
        let events = (0..=rng.below_u64(3)).map(|i| ev("w", n * 10 + i));
        tx = tx.append(stream, expected, events);
    }
    if n % 2 == 1 {
        tx = tx.with_correlation_id(CorrelationId::new());
    }
    (tx, outcome)
}

/// Inserts `txs` random transactions (`writer`'s of the run seeded by
/// `seed`), checks each result against its [`Outcome`], and returns how
/// many events were committed. Sends on `halfway` once half the
/// transactions are done.
fn write_random(
    store: &MemoryStore<Ev>,
    seed: u64,
    writer: u64,
    txs: u64,
    halfway: Option<mpsc::Sender<()>>,
) -> u64 {
    let mut rng = Rng::new(seed, writer);
    let mut committed = 0;
    for i in 0..txs {
        if i == txs / 2 {
            if let Some(halfway) = &halfway {
                halfway.send(()).unwrap();
            }
        }
        let (tx, outcome) = random_transaction(&mut rng, store, writer * 1_000_000 + i);
        let len = tx.len() as u64;
        match (store.insert(tx), outcome) {
            (Ok(done), Outcome::Commits | Outcome::MayConflict) => {
                assert!(done.last_position().is_some());
                committed += len;
            }
            (
                Err(InsertError::VersionConflict(mismatches)),
                Outcome::Conflicts | Outcome::MayConflict,
            ) => {
                assert!(!mismatches.is_empty());
            }
            (result, outcome) => panic!("{outcome:?} transaction, insert gave {result:?}"),
        }
    }
    committed
}

/// The kind of the events that end a run of [`write_random`]: one per pool
/// stream, in one transaction.
const END: &str = "end";

fn write_end_markers(store: &MemoryStore<Ev>) {
    let tx = (1..=POOL).fold(Transaction::new(), |tx, n| {
        tx.append(sid(u128::from(n)), Any, [ev(END, n)])
    });
    insert(store, tx);
}

// ---- Digests ----

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over the little-endian bytes of `word`.
fn fnv(hash: u64, word: u64) -> u64 {
    word.to_le_bytes().iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// What a subscription saw, folded: (position, event id, stream, version) of
/// every event in delivery order, with the order checked as it goes.
#[derive(Debug, Clone)]
struct Digest {
    hash: u64,
    count: u64,
    /// `None` for all streams: positions must then be 0, 1, 2, ...
    scope: Option<StreamId>,
    last: Option<Position>,
    next_versions: HashMap<StreamId, u64>,
    /// End markers still to come.
    ends_left: u64,
}

impl Digest {
    fn new(scope: Option<StreamId>) -> Self {
        Self {
            hash: FNV_OFFSET,
            count: 0,
            scope,
            last: None,
            next_versions: HashMap::new(),
            ends_left: if scope.is_some() { 1 } else { POOL },
        }
    }

    /// Folds in the next event; `true` once every end marker is in.
    fn push(&mut self, envelope: Envelope<'_, Ev>) -> bool {
        let position = envelope.position();
        match self.scope {
            None => assert_eq!(position, Position(self.count), "a gap or a repeat"),
            Some(stream) => assert_eq!(envelope.stream_id(), stream, "another stream"),
        }
        assert!(self.last < Some(position), "out of position order");
        let version = self.next_versions.entry(envelope.stream_id()).or_default();
        assert_eq!(
            envelope.version(),
            StreamVersion(*version),
            "versions not dense"
        );
        *version += 1;
        self.last = Some(position);
        self.count += 1;
        let (id_high, id_low) = envelope.event_id().as_uuid().as_u64_pair();
        let (stream_high, stream_low) = envelope.stream_id().as_uuid().as_u64_pair();
        let words = [
            position.get(),
            id_high,
            id_low,
            stream_high,
            stream_low,
            envelope.version().get(),
        ];
        self.hash = words.into_iter().fold(self.hash, fnv);
        if envelope.payload().kind == END {
            self.ends_left = self
                .ends_left
                .checked_sub(1)
                .expect("more end markers than written");
        }
        self.ends_left == 0
    }

    /// Folds in every event `events` reads.
    fn of<'a>(scope: Option<StreamId>, events: impl Iterator<Item = Envelope<'a, Ev>>) -> Self {
        let mut digest = Self::new(scope);
        events.for_each(|envelope| {
            digest.push(envelope);
        });
        digest
    }

    fn summary(&self) -> (u64, u64) {
        (self.hash, self.count)
    }
}

/// Pulls until every end marker is in; nothing may follow them.
fn pull_until_ends(mut subscription: Subscription<Ev>, mut digest: Digest) -> Digest {
    loop {
        let envelope = subscription.next_timeout(PATIENCE).expect("not poisoned");
        if digest.push(envelope.expect("no event within the patience")) {
            break;
        }
    }
    assert!(
        subscription.try_next().unwrap().is_none(),
        "an event after the end markers"
    );
    digest
}

/// A handler subscriber folding into a digest it shares with the test.
struct DigestSubscriber {
    subscriber: Subscriber<Infallible>,
    digest: Arc<Mutex<Digest>>,
}

/// A handler that folds into a digest and stops once every end marker is in;
/// it also checks that its calls never overlap.
fn spawn_digest(store: &MemoryStore<Ev>, scope: Option<StreamId>) -> DigestSubscriber {
    let digest = Arc::new(Mutex::new(Digest::new(scope)));
    let sink = Arc::clone(&digest);
    let busy = AtomicBool::new(false);
    let subscriber = store.spawn_subscriber(selector_for(scope), move |envelope| {
        assert!(!busy.swap(true, Ordering::SeqCst), "handler calls overlap");
        let done = sink.lock().unwrap().push(envelope);
        busy.store(false, Ordering::SeqCst);
        Ok(if done { Flow::Stop } else { Flow::Continue })
    });
    DigestSubscriber { subscriber, digest }
}

/// The subscriptions of one phase of the ordering test: pull subscriptions
/// on threads and handler subscribers, for all streams and for one stream.
struct Followers {
    phase: &'static str,
    pulls: Vec<(Option<StreamId>, JoinHandle<Digest>)>,
    handlers: Vec<(Option<StreamId>, DigestSubscriber)>,
}

impl Followers {
    fn start(phase: &'static str, store: &MemoryStore<Ev>, followed: StreamId) -> Self {
        let pulls = [None, None, Some(followed)]
            .into_iter()
            .map(|scope| {
                let subscription = store.subscribe(selector_for(scope));
                (
                    scope,
                    thread::spawn(move || pull_until_ends(subscription, Digest::new(scope))),
                )
            })
            .collect();
        let handlers = [None, Some(followed)]
            .into_iter()
            .map(|scope| (scope, spawn_digest(store, scope)))
            .collect();
        Self {
            phase,
            pulls,
            handlers,
        }
    }

    /// Waits for every subscription to see its end markers; checks each
    /// digest against the reference for its scope.
    fn check(self, reference: impl Fn(Option<StreamId>) -> (u64, u64)) {
        let phase = self.phase;
        for (scope, pull) in self.pulls {
            let digest = pull.join().expect("a pull subscription failed");
            assert_eq!(
                digest.summary(),
                reference(scope),
                "{phase}: pull, {scope:?}"
            );
        }
        for (scope, DigestSubscriber { subscriber, digest }) in self.handlers {
            assert_eq!(subscriber.wait(), Ok(()), "{phase}: handler, {scope:?}");
            let digest = digest.lock().unwrap();
            assert_eq!(
                digest.summary(),
                reference(scope),
                "{phase}: handler, {scope:?}"
            );
        }
    }
}

// ---- Lockstep ----

/// Events a lockstep writer writes, one at a time.
const LOCKSTEP_ROUNDS: u64 = 5_000;

/// Writes [`LOCKSTEP_ROUNDS`] events one at a time, each only once all
/// `followers` have acknowledged the one before. Every follower thus starts
/// each wait just as the writer is about to commit: a wake-up lost between
/// a follower's last check and its park stalls the lockstep.
fn write_in_lockstep(store: &MemoryStore<Ev>, followers: usize, acks: &mpsc::Receiver<()>) {
    for round in 0..LOCKSTEP_ROUNDS {
        put(store, sid(1), [ev("lockstep", round)]);
        for _ in 0..followers {
            acks.recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("round {round}: a follower was never woken"));
        }
    }
}

/// A lockstep follower's check and acknowledgement of event `round`.
fn acknowledge(envelope: Envelope<'_, Ev>, round: u64, ack: &mpsc::Sender<()>) {
    assert_eq!(envelope.position(), Position(round));
    ack.send(()).unwrap();
}

// ---------------------------------------------------------------------------
// Rule 15: only whole committed transactions
// ---------------------------------------------------------------------------

#[test]
fn rule_15_a_subscription_that_sees_the_first_event_of_a_transaction_can_read_all_of_it_at_once() {
    let _watchdog = watchdog("rule_15_whole_transactions");
    const WRITERS: u64 = 4;
    const TXS: u64 = 1_000;
    // Transaction sizes 1-6, events numbered size * 100 + index, split over
    // two streams laid out in id order: `sid(1)` first, then `sid(2)`.
    let size = |writer: u64, i: u64| 1 + (writer + i) % 6;
    let total: u64 = (0..WRITERS)
        .flat_map(|w| (0..TXS).map(move |i| size(w, i)))
        .sum();

    let store = MemoryStore::new();
    let mut subscription = store.subscribe(Selector::all());
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..TXS {
                    let size = size(writer, i);
                    let events = (0..size).map(|index| ev("tx", size * 100 + index));
                    let (first, rest): (Vec<_>, Vec<_>) =
                        events.partition(|e| e.n % 100 < size / 2);
                    insert(
                        &store,
                        Transaction::new()
                            .append(sid(2), Any, rest)
                            .append(sid(1), Any, first),
                    );
                }
            })
        })
        .collect();

    let mut seen = 0;
    while seen < total {
        let first = subscription
            .next_timeout(PATIENCE)
            .unwrap()
            .expect("no event within the patience");
        let (size, index) = (first.payload().n / 100, first.payload().n % 100);
        assert_eq!(
            index,
            0,
            "a transaction seen from its middle at {:?}",
            first.position()
        );
        for expected in 1..size {
            let rest = subscription
                .try_next()
                .unwrap()
                .expect("the rest of a transaction must be visible with its first event");
            assert_eq!(rest.payload().n, size * 100 + expected);
        }
        seen += size;
    }
    assert_eq!(seen, total);
    writers
        .into_iter()
        .for_each(|writer| writer.join().unwrap());
    assert!(subscription.try_next().unwrap().is_none());
}

// ---------------------------------------------------------------------------
// Rule 16: all streams or one stream, from the beginning or after a position
// ---------------------------------------------------------------------------

/// `sid(1)` = a, `sid(2)` = b: a0 a1 | b0 | a2 b1 b2 | b3 | a3 (positions 0-7).
fn two_interleaved_streams() -> MemoryStore<Ev> {
    let store = MemoryStore::new();
    let (a, b) = (sid(1), sid(2));
    put(&store, a, [ev("a", 0), ev("a", 1)]);
    put(&store, b, [ev("b", 0)]);
    insert(
        &store,
        Transaction::new()
            .append(a, Any, [ev("a", 2)])
            .append(b, Any, [ev("b", 1), ev("b", 2)]),
    );
    put(&store, b, [ev("b", 3)]);
    put(&store, a, [ev("a", 3)]);
    assert_eq!(store.head(), Some(Position(7)));
    store
}

/// The events after `after` in `scope`, read with `read_all`.
fn selected_after(store: &MemoryStore<Ev>, scope: Option<StreamId>, after: Position) -> Vec<Row> {
    rows_where(store, |row| {
        row.position > after && scope.is_none_or(|s| row.stream == s)
    })
}

#[test]
fn rule_16_after_a_position_is_exclusive_for_all_streams_and_for_one_stream() {
    let _watchdog = watchdog("rule_16_after_is_exclusive");
    let store = two_interleaved_streams();
    for after in (0..=9).map(Position) {
        for scope in [None, Some(sid(1)), Some(sid(2))] {
            let selector = || selector_for(scope).after(after);
            let expected = selected_after(&store, scope, after);

            let mut pull = store.subscribe(selector());
            assert_eq!(
                pull.passed(),
                Some(after),
                "positions before the start count as passed"
            );
            assert_eq!(
                drain(&mut pull),
                expected,
                "pull, after {after:?}, {scope:?}"
            );

            let (subscriber, rows) = record(&store, selector());
            subscriber.wait_caught_up(PATIENCE).unwrap();
            assert_eq!(
                snapshot(&rows),
                expected,
                "handler, after {after:?}, {scope:?}"
            );
        }
    }
}

#[test]
fn rule_16_after_a_position_not_yet_written_delivers_only_what_follows_it() {
    let _watchdog = watchdog("rule_16_after_a_future_position");
    let store = two_interleaved_streams();
    let after = Position(10);
    let scopes = [None, Some(sid(1)), Some(sid(2))];
    let mut pulls: Vec<_> = scopes
        .map(|scope| store.subscribe(selector_for(scope).after(after)))
        .into();
    let handlers = scopes.map(|scope| record(&store, selector_for(scope).after(after)));

    // Positions 8-13, alternating streams; only 11-13 lie after 10.
    let mut last = Position(0);
    for i in 0..6 {
        last = put(&store, sid(1 + u128::from(i % 2)), [ev("late", i)]);
    }
    for ((scope, pull), (subscriber, rows)) in scopes.into_iter().zip(&mut pulls).zip(&handlers) {
        let expected = selected_after(&store, scope, after);
        assert!(!expected.is_empty() && expected.iter().all(|row| row.position > after));
        assert_eq!(take(pull, expected.len()), expected, "pull, {scope:?}");
        assert!(pull.try_next().unwrap().is_none());
        reach(subscriber, last);
        assert_eq!(snapshot(rows), expected, "handler, {scope:?}");
    }
}

#[test]
fn rule_16_single_stream_subscriptions_see_only_their_stream_with_dense_versions() {
    let _watchdog = watchdog("rule_16_single_stream");
    let store = MemoryStore::new();
    let (a, b, c) = (sid(1), sid(2), sid(3));
    // Started before `b` exists, then halfway through, then at the end.
    let (early, early_rows) = record(&store, Selector::stream(b));
    let mut halfway = None;
    for i in 0..30 {
        if i == 15 {
            halfway = Some((
                store.subscribe(Selector::stream(b)),
                record(&store, Selector::stream(b)),
            ));
        }
        let tx = match i % 3 {
            0 => Transaction::new()
                .append(c, Any, [ev("c", i)])
                .append(a, Any, [ev("a", i)])
                .append(b, Any, [ev("b", i), ev("b", i + 100)]),
            1 => Transaction::single(a, Any, ev("a", i)),
            _ => Transaction::new()
                .append(b, Any, [ev("b", i)])
                .append(c, Any, [ev("c", i)]),
        };
        insert(&store, tx);
    }
    let (mut halfway_pull, (halfway, halfway_rows)) = halfway.unwrap();
    let mut late_pull = store.subscribe(Selector::stream(b));
    let head = store.head().unwrap();

    let expected: Vec<_> = store.read_stream(b, StreamVersion(0)).map(row).collect();
    assert_eq!(expected.len(), 30);
    assert!(expected
        .iter()
        .enumerate()
        .all(|(v, row)| row.stream == b && row.version == StreamVersion(v as u64)));
    for subscriber in [&early, &halfway] {
        reach(subscriber, head);
    }
    assert_eq!(snapshot(&early_rows), expected);
    assert_eq!(snapshot(&halfway_rows), expected);
    assert_eq!(drain(&mut halfway_pull), expected);
    assert_eq!(drain(&mut late_pull), expected);
}

// ---------------------------------------------------------------------------
// Rule 17: every selected event exactly once, in order, no seam
// ---------------------------------------------------------------------------

#[test]
fn rule_17_a_subscriber_started_first_sees_three_events_then_the_marker_every_time() {
    let _watchdog = watchdog("rule_17_three_then_marker");
    for round in 0..50 {
        let store = MemoryStore::new();
        let (subscriber, rows) = record(&store, Selector::all());
        for i in 0..3 {
            put(&store, sid(1 + u128::from(i % 2)), [ev("event", i)]);
        }
        let marker = put(&store, sid(3), [ev("marker", 0)]);
        reach(&subscriber, marker);
        let seen = snapshot(&rows);
        let events: Vec<_> = seen.iter().map(|row| row.event.clone()).collect();
        assert_eq!(
            events,
            [
                ev("event", 0),
                ev("event", 1),
                ev("event", 2),
                ev("marker", 0)
            ],
            "round {round}"
        );
        assert_eq!(seen, all_rows(&store), "round {round}");
    }
}

#[test]
fn rule_17_subscriptions_started_before_during_and_after_concurrent_writes_see_the_same_sequence() {
    let _watchdog = watchdog("rule_17_ordering_under_concurrent_writes");
    const WRITERS: u64 = 8;
    const TXS: u64 = 3_000;
    let store = MemoryStore::new();
    let followed = sid(1);

    let seed = seed();
    let before = Followers::start("before", &store, followed);
    let (halfway, halfway_rx) = mpsc::channel();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            let halfway = (writer == 0).then(|| halfway.clone());
            thread::spawn(move || write_random(&store, seed, writer + 1, TXS, halfway))
        })
        .collect();
    halfway_rx
        .recv_timeout(PATIENCE)
        .expect("writer 0 never got halfway");
    let during = Followers::start("during", &store, followed);
    let written: u64 = writers
        .into_iter()
        .map(|writer| writer.join().unwrap())
        .sum();
    write_end_markers(&store);
    let after = Followers::start("after", &store, followed);

    let total = written + POOL;
    assert_eq!(store.head(), Some(Position(total - 1)));
    let all = Digest::of(None, store.read_all(Start::Beginning));
    let one = Digest::of(
        Some(followed),
        store.read_stream(followed, StreamVersion(0)),
    );
    assert_eq!(all.count, total);
    let reference = |scope: Option<StreamId>| {
        if scope.is_some() {
            one.summary()
        } else {
            all.summary()
        }
    };
    for followers in [before, during, after] {
        followers.check(reference);
    }
}

#[test]
fn rule_17_try_next_returns_none_when_caught_up_and_next_timeout_returns_none_on_timeout() {
    let _watchdog = watchdog("rule_17_try_next_and_next_timeout");
    let store = MemoryStore::new();
    let mut subscription = store.subscribe(Selector::all());
    assert!(subscription.try_next().unwrap().is_none());
    assert_eq!(subscription.passed(), None);
    assert!(subscription.next_timeout(SHORT).unwrap().is_none());

    let last = put(&store, sid(1), [ev("x", 0), ev("x", 1)]);
    assert_eq!(drain(&mut subscription), all_rows(&store));
    assert_eq!(subscription.passed(), Some(last));
    assert!(subscription.try_next().unwrap().is_none());
    assert!(subscription.next_timeout(SHORT).unwrap().is_none());

    put(&store, sid(2), [ev("y", 2)]);
    let next = take(&mut subscription, 1);
    assert_eq!(next[0].event, ev("y", 2));
    assert!(subscription.try_next().unwrap().is_none());
}

#[test]
fn rule_17_next_blocks_until_a_writer_on_another_thread_commits() {
    let _watchdog = watchdog("rule_17_next_blocks");
    let store = MemoryStore::new();
    let mut subscription = store.subscribe(Selector::stream(sid(1)));
    let (delivered, got) = mpsc::channel();
    let reader = thread::spawn(move || {
        for _ in 0..3 {
            let envelope = subscription.next().expect("not poisoned");
            delivered.send(row(envelope)).unwrap();
        }
    });
    for i in 0..3 {
        // Nothing of its stream is committed: the reader cannot have returned.
        assert_eq!(got.try_recv(), Err(TryRecvError::Empty));
        // Another stream moves the watermark but must not end the wait.
        put(&store, sid(2), [ev("other", i)]);
        put(&store, sid(1), [ev("mine", i)]);
        let envelope = got.recv_timeout(PATIENCE).expect("next never returned");
        assert_eq!(
            (envelope.event, envelope.version),
            (ev("mine", i), StreamVersion(i))
        );
    }
    reader.join().unwrap();
    assert_eq!(got.try_recv(), Err(TryRecvError::Disconnected));
}

#[test]
fn rule_17_blocking_waits_in_lockstep_with_a_writer_never_miss_a_wake_up() {
    let _watchdog = watchdog("rule_21_blocking_lockstep");
    let store = MemoryStore::new();
    let (ack, acks) = mpsc::channel();
    // Two threads blocked in `next`, two handler subscribers.
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut subscription = store.subscribe(Selector::all());
            let ack = ack.clone();
            thread::spawn(move || {
                for round in 0..LOCKSTEP_ROUNDS {
                    acknowledge(subscription.next().expect("not poisoned"), round, &ack);
                }
            })
        })
        .collect();
    let handlers: Vec<_> = (0..2)
        .map(|_| {
            let ack = ack.clone();
            let mut round = 0;
            store.spawn_subscriber(Selector::all(), move |envelope| {
                acknowledge(envelope, round, &ack);
                round += 1;
                Ok::<_, Infallible>(Flow::Continue)
            })
        })
        .collect();
    write_in_lockstep(&store, threads.len() + handlers.len(), &acks);
    threads
        .into_iter()
        .for_each(|thread| thread.join().unwrap());
    for handler in handlers {
        handler.cancel();
        assert_eq!(handler.wait(), Ok(()));
    }
}

// ---------------------------------------------------------------------------
// Rule 18: restricted to some event types
// ---------------------------------------------------------------------------

#[test]
fn rule_18_a_type_filter_delivers_only_its_types_and_skipped_events_still_advance_it() {
    let _watchdog = watchdog("rule_18_type_filter");
    let store = MemoryStore::new();
    let deposits = || Selector::all().only_types(["deposit"]);
    let write = |from: u64| {
        for i in from..from + 6 {
            let kind = ["deposit", "withdrawal", "note"][(i % 3) as usize];
            put(&store, sid(1 + u128::from(i % 2)), [ev(kind, i)]);
        }
        // The log ends with events the filter skips.
        put(
            &store,
            sid(1),
            [ev("note", 100 + from), ev("withdrawal", 200 + from)],
        )
    };
    write(0);
    let (live, live_rows) = record(&store, deposits());
    let (nothing, nothing_rows) = record(&store, Selector::all().only_types(["never written"]));
    let head = write(10);
    let mut pull = store.subscribe(deposits());
    let (history, history_rows) = record(&store, deposits());

    let expected = rows_where(&store, |row| row.event.kind == "deposit");
    assert_eq!(expected.len(), 4);
    for subscriber in [&live, &history] {
        subscriber.wait_caught_up(PATIENCE).unwrap();
        assert_eq!(
            subscriber.processed(),
            Some(head),
            "skipped events still advance it"
        );
    }
    nothing.wait_caught_up(PATIENCE).unwrap();
    assert_eq!(nothing.processed(), Some(head));
    assert_eq!(snapshot(&live_rows), expected);
    assert_eq!(snapshot(&history_rows), expected);
    assert!(snapshot(&nothing_rows).is_empty());
    assert_eq!(drain(&mut pull), expected);
    assert_eq!(
        pull.passed(),
        Some(head),
        "skipped events still advance a pull subscription"
    );
}

// ---------------------------------------------------------------------------
// Rule 19: Stop
// ---------------------------------------------------------------------------

#[test]
fn rule_19_stop_on_the_third_of_five_events_of_one_transaction_ends_the_subscription_there() {
    let _watchdog = watchdog("rule_19_stop");
    for live in [false, true] {
        let Five {
            store,
            subscriber,
            given,
            five,
        } = five_events(live, after_earlier(), || Ok(Flow::Stop));
        let last_of_five = five[4].position;
        assert_eq!(
            subscriber.wait_processed(last_of_five, PATIENCE),
            Err(WaitError::Ended),
            "live: {live}"
        );
        assert_eq!(subscriber.wait(), Ok(()));
        assert!(subscriber.is_finished());
        assert_eq!(snapshot(&given), five[..3], "exactly three handled");
        assert_eq!(subscriber.processed(), Some(THIRD_OF_FIVE));
        // Nothing after the stop: not the rest of its transaction, not later inserts.
        let later = put(&store, sid(1), [ev("later", 0), ev("later", 1)]);
        assert_eq!(
            subscriber.wait_processed(later, PATIENCE),
            Err(WaitError::Ended)
        );
        assert_eq!(snapshot(&given), five[..3]);
        assert_eq!(subscriber.into_outcome(), Ok(()));
    }
}

// ---------------------------------------------------------------------------
// Rule 20: a handler error or panic ends the subscription, with its context
// ---------------------------------------------------------------------------

#[test]
fn rule_20_a_handler_error_ends_it_with_the_error_unchanged_and_the_event_context() {
    let _watchdog = watchdog("rule_20_handler_error");
    let fail = || Err(boom());
    let error = || HandlerFailure::Error(boom());
    assert_fails_on_third(
        false,
        after_earlier().with_type_names(),
        Some("b"),
        fail,
        error(),
    );
    assert_fails_on_third(
        true,
        after_earlier().only_types(["a", "b"]),
        Some("b"),
        fail,
        error(),
    );
    assert_fails_on_third(true, after_earlier(), None, fail, error());

    // The error is the handler's own, reachable as the error's source.
    let Five { subscriber, .. } = five_events(false, after_earlier().with_type_names(), fail);
    let outcome = subscriber.into_outcome().unwrap_err();
    let source =
        std::error::Error::source(&outcome).and_then(|source| source.downcast_ref::<Boom>());
    assert_eq!(source, Some(&boom()));
    let message = outcome.to_string();
    assert!(
        message.contains("boom 42: the third event") && message.contains("type b"),
        "{message}"
    );
}

#[test]
fn rule_20_a_handler_panic_ends_it_with_the_panic_message_and_the_event_context() {
    let _watchdog = watchdog("rule_20_handler_panic");
    let panic_message = |message: &str| HandlerFailure::Panic(message.to_owned());
    assert_fails_on_third(
        false,
        after_earlier().with_type_names(),
        Some("b"),
        || panic!("{EXPECTED_PANIC}: formatted {}", 3),
        panic_message("expected test panic: formatted 3"),
    );
    assert_fails_on_third(
        true,
        after_earlier().only_types(["b", "a"]),
        Some("b"),
        || panic!("expected test panic: a literal"),
        panic_message("expected test panic: a literal"),
    );
    assert_fails_on_third(
        true,
        after_earlier(),
        None,
        || std::panic::panic_any(ExpectedPanic),
        panic_message("a panic with a non-string payload"),
    );
}

// ---------------------------------------------------------------------------
// Rule 21: cancel
// ---------------------------------------------------------------------------

#[test]
fn rule_21_cancel_wakes_a_parked_subscriber_and_returns_once_it_has_stopped() {
    let _watchdog = watchdog("rule_21_cancel_parked");
    for round in 0..20 {
        let store = MemoryStore::new();
        let head = put(&store, sid(1), (0..5).map(|i| ev("x", i)));
        let (subscriber, rows) = record(&store, Selector::all());
        if round % 2 == 0 {
            // Caught up, then idle long enough to have parked.
            subscriber.wait_caught_up(PATIENCE).unwrap();
            assert_eq!(
                subscriber.wait_processed(Position(head.0 + 1), SHORT),
                Err(WaitError::TimedOut)
            );
        }
        subscriber.cancel();
        // Returned once stopped: nothing is handled from here on.
        assert!(subscriber.is_finished());
        let handled = snapshot(&rows);
        assert_eq!(
            handled,
            all_rows(&store)[..handled.len()],
            "a prefix, in order"
        );
        put(&store, sid(1), [ev("after cancel", 0)]);
        assert_eq!(snapshot(&rows), handled);
        assert_eq!(subscriber.wait(), Ok(()));
    }
}

#[test]
fn rule_21_cancel_after_stop_is_a_harmless_no_op_and_the_outcome_stays_ok() {
    let _watchdog = watchdog("rule_21_cancel_after_stop");
    let Five {
        subscriber, given, ..
    } = five_events(false, after_earlier(), || Ok(Flow::Stop));
    assert_eq!(subscriber.wait(), Ok(()));
    subscriber.cancel();
    subscriber.cancel();
    assert_eq!(subscriber.wait(), Ok(()));
    assert_eq!(snapshot(&given).len(), 3);
    assert_eq!(subscriber.into_outcome(), Ok(()));
}

#[test]
fn rule_21_cancel_after_a_handler_failure_keeps_the_failure() {
    let _watchdog = watchdog("rule_21_cancel_after_failure");
    let Five {
        store, subscriber, ..
    } = five_events(true, after_earlier(), || Err(boom()));
    let expected = SubscriberError::Handler(HandlerError {
        failure: HandlerFailure::Error(boom()),
        event: context_at(&store, THIRD_OF_FIVE, None),
    });
    assert_eq!(subscriber.wait(), Err(&expected));
    subscriber.cancel();
    subscriber.cancel();
    assert_eq!(subscriber.wait(), Err(&expected));
    assert_eq!(subscriber.into_outcome(), Err(expected));
}

#[test]
fn rule_21_cancel_twice_and_from_another_thread_while_a_third_thread_waits() {
    let _watchdog = watchdog("rule_21_cancel_from_threads");
    for _ in 0..20 {
        let store = MemoryStore::new();
        let (subscriber, _rows) = record(&store, Selector::all());
        reach(&subscriber, put(&store, sid(1), [ev("x", 0)]));
        let start = Barrier::new(3);
        thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                start.wait();
                assert_eq!(subscriber.wait(), Ok(()));
            });
            let canceller = scope.spawn(|| {
                start.wait();
                subscriber.cancel();
                subscriber.cancel();
            });
            start.wait();
            subscriber.cancel();
            waiter.join().unwrap();
            canceller.join().unwrap();
        });
        assert!(subscriber.is_finished());
        assert_eq!(subscriber.wait(), Ok(()));
    }
}

#[test]
fn rule_21_dropping_the_handle_cancels_the_subscriber_and_drops_its_handler() {
    let _watchdog = watchdog("rule_21_drop_cancels");
    let store = MemoryStore::new();
    let token = Arc::new(());
    let handled = Arc::new(AtomicUsize::new(0));
    // The handler's captures tell when the worker has dropped them: a drop
    // of the handle only requests cancellation and never waits.
    let (released, gone) = mpsc::channel::<()>();
    let subscriber = {
        let (token, handled) = (Arc::clone(&token), Arc::clone(&handled));
        store.spawn_subscriber(Selector::all(), move |_| {
            let _ = (&token, &released);
            handled.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Flow::Continue)
        })
    };
    reach(&subscriber, put(&store, sid(1), [ev("x", 0), ev("x", 1)]));
    assert_eq!(Arc::strong_count(&token), 2);
    drop(subscriber);
    // Committed after the drop: never handled.
    put(&store, sid(1), [ev("after drop", 0)]);
    assert_eq!(
        gone.recv_timeout(PATIENCE),
        Err(mpsc::RecvTimeoutError::Disconnected),
        "the worker ended and dropped its handler"
    );
    assert_eq!(Arc::strong_count(&token), 1);
    assert_eq!(handled.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------
// Rule 22: a slow subscriber loses nothing and slows no writer
// ---------------------------------------------------------------------------

#[test]
fn rule_22_a_slow_subscriber_gets_everything_and_writers_finish_while_it_is_behind() {
    let _watchdog = watchdog("rule_22_slow_subscriber");
    const HELD_AT: usize = 50;
    let store = MemoryStore::new();
    let (open_gate, gate) = mpsc::channel::<()>();
    // Slow on every event (sleeping is the behaviour under test, not a
    // synchronisation), and held at position 50 until the writers are done.
    let (slow, rows) = record_then(&store, Selector::all(), move |given| {
        if given == HELD_AT + 1 {
            gate.recv_timeout(PATIENCE)
                .map_err(|_| "the writers never finished")?;
        }
        thread::sleep(Duration::from_millis(1));
        Ok::<_, &str>(Flow::Continue)
    });
    // Never read while the writers run.
    let mut lazy = store.subscribe(Selector::all());

    let seed = seed();
    let writers: Vec<_> = (1..=2)
        .map(|writer| {
            let store = store.clone();
            thread::spawn(move || write_random(&store, seed, writer, 100, None))
        })
        .collect();
    writers.into_iter().for_each(|writer| {
        writer.join().unwrap();
    });
    let head = store.head().unwrap();
    assert!(
        head.0 > HELD_AT as u64,
        "too few events for the test: {head:?}"
    );
    assert!(
        slow.processed() < Some(Position(HELD_AT as u64)),
        "the writers finished while the subscriber was behind"
    );
    open_gate.send(()).unwrap();

    reach(&slow, head);
    assert_eq!(snapshot(&rows), all_rows(&store));
    assert_eq!(drain(&mut lazy), all_rows(&store));
}

// ---------------------------------------------------------------------------
// Rule 23: waiting for progress instead of sleeping
// ---------------------------------------------------------------------------

#[test]
fn rule_23_wait_processed_counts_other_streams_and_skipped_types_as_passed() {
    let _watchdog = watchdog("rule_23_unselected_positions_pass");
    let store = MemoryStore::new();
    let (a, b) = (sid(1), sid(2));
    let (on_a, a_rows) = record(&store, Selector::stream(a));
    let (deposits, deposit_rows) = record(&store, Selector::all().only_types(["deposit"]));

    // `a` does not exist yet, and nothing is a deposit.
    let other = put(&store, b, [ev("note", 0), ev("note", 1)]);
    for subscriber in [&on_a, &deposits] {
        assert_eq!(subscriber.wait_processed(other, PATIENCE), Ok(()));
        assert_eq!(subscriber.processed(), Some(other));
    }
    assert!(snapshot(&a_rows).is_empty() && snapshot(&deposit_rows).is_empty());

    put(&store, a, [ev("deposit", 2)]);
    let last = put(&store, b, [ev("note", 3)]);
    for subscriber in [&on_a, &deposits] {
        reach(subscriber, last);
    }
    let deposit = rows_where(&store, |row| row.event.kind == "deposit");
    assert_eq!(snapshot(&a_rows), deposit);
    assert_eq!(snapshot(&deposit_rows), deposit);
}

#[test]
fn rule_23_wait_processed_times_out_for_a_position_never_written() {
    let _watchdog = watchdog("rule_23_wait_processed_times_out");
    let store = MemoryStore::new();
    let (subscriber, _rows) = record(&store, Selector::all());
    assert_eq!(
        subscriber.wait_processed(Position(0), SHORT),
        Err(WaitError::TimedOut)
    );
    let head = put(&store, sid(1), [ev("x", 0), ev("x", 1)]);
    assert_eq!(subscriber.wait_caught_up(PATIENCE), Ok(()));
    assert_eq!(subscriber.processed(), Some(head));
    assert_eq!(
        subscriber.wait_processed(Position(head.0 + 1), SHORT),
        Err(WaitError::TimedOut)
    );
    assert!(!subscriber.is_finished());
}

#[test]
/// Regression: `wait_processed` once computed `position + 1` unchecked.
fn rule_23_wait_processed_on_the_last_possible_position_times_out() {
    let _watchdog = watchdog("rule_23_wait_processed_last_position");
    let store = MemoryStore::new();
    let (subscriber, _rows) = record(&store, Selector::all());
    put(&store, sid(1), [ev("x", 0)]);
    assert_eq!(
        subscriber.wait_processed(Position(u64::MAX), SHORT),
        Err(WaitError::TimedOut)
    );
}

#[test]
fn rule_23_wait_processed_reports_ended_at_once_when_the_subscriber_ended_before_the_position() {
    let _watchdog = watchdog("rule_21_wait_processed_ended");
    let never = Position(1_000);
    // Ended by Stop, by a failure, by cancel: reached positions are Ok,
    // the others Ended, not TimedOut after the patience.
    let stopped = five_events(false, after_earlier(), || Ok(Flow::Stop)).subscriber;
    let failed = five_events(false, after_earlier(), || Err(boom())).subscriber;
    let cancelled = five_events(false, after_earlier(), || Ok(Flow::Continue)).subscriber;
    reach(&cancelled, Position(6));
    cancelled.cancel();
    for (subscriber, last, first_unreached) in [
        (&stopped, THIRD_OF_FIVE, Position(5)),
        (&failed, Position(3), THIRD_OF_FIVE),
        (&cancelled, Position(6), Position(7)),
    ] {
        let _ = subscriber.wait();
        assert_eq!(subscriber.wait_processed(last, PATIENCE), Ok(()));
        assert_eq!(
            subscriber.wait_processed(first_unreached, PATIENCE),
            Err(WaitError::Ended)
        );
        assert_eq!(
            subscriber.wait_processed(never, PATIENCE),
            Err(WaitError::Ended)
        );
    }

    // A waiter already blocked is released by the end as well.
    let store = MemoryStore::new();
    let (subscriber, _rows) = record(&store, Selector::all());
    thread::scope(|scope| {
        let waiter = scope.spawn(|| subscriber.wait_processed(never, PATIENCE));
        subscriber.cancel();
        assert_eq!(waiter.join().unwrap(), Err(WaitError::Ended));
    });
}

// ---------------------------------------------------------------------------
// Rule 24: subscriptions keep the store alive
// ---------------------------------------------------------------------------

#[test]
fn rule_24_subscriptions_keep_the_store_alive_after_every_store_handle_is_dropped() {
    let _watchdog = watchdog("rule_24_subscriptions_keep_the_store_alive");
    let drops = Arc::new(AtomicUsize::new(0));
    let tracked = |n: usize| {
        (0..n)
            .map(|_| Tracked(Arc::clone(&drops)))
            .collect::<Vec<_>>()
    };
    let store = MemoryStore::new();
    insert(&store, Transaction::new().append(sid(1), Any, tracked(3)));
    let mut pull = store.subscribe(Selector::all());
    let handled = Arc::new(AtomicUsize::new(0));
    let subscriber = {
        let handled = Arc::clone(&handled);
        store.spawn_subscriber(Selector::all(), move |_| {
            handled.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Flow::Continue)
        })
    };
    drop(store);
    assert_eq!(drops.load(Ordering::SeqCst), 0);

    // Both still read, live too: write through the subscription's own handle.
    let writer = pull.store().clone();
    insert(&writer, Transaction::new().append(sid(2), Any, tracked(1)));
    drop(writer);
    let mut pulled = 0;
    while pull.try_next().unwrap().is_some() {
        pulled += 1;
    }
    assert_eq!(pulled, 4);
    reach(&subscriber, Position(3));
    assert_eq!(handled.load(Ordering::SeqCst), 4);

    drop(pull);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the subscriber still holds the store"
    );
    // `cancel` returns once the worker has let go of the store; the
    // handle itself holds it weakly.
    subscriber.cancel();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        4,
        "the last holder gone, each event dropped once"
    );
    assert_eq!(subscriber.wait(), Ok(()));
    drop(subscriber);
    assert_eq!(drops.load(Ordering::SeqCst), 4);
}

// ---------------------------------------------------------------------------
// Rule 17 for async pull subscriptions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_17_three_hundred_async_subscriptions_each_get_every_event_in_order() {
    let _watchdog = watchdog("rule_17_async_subscriptions");
    const TASKS: usize = 300;
    const EVENTS: u64 = 500;
    let store = MemoryStore::<Ev>::new();
    let (ready, readies) = mpsc::channel();
    let spawn_task = |ready: Option<mpsc::Sender<()>>| {
        let mut subscription = store.subscribe(Selector::all());
        tokio::spawn(async move {
            let receive = async {
                if let Some(ready) = ready {
                    ready.send(()).unwrap();
                }
                for i in 0..EVENTS {
                    let envelope = subscription.next_async().await.expect("not poisoned");
                    assert_eq!(
                        (envelope.position(), envelope.payload().n),
                        (Position(i), i)
                    );
                }
            };
            tokio::time::timeout(PATIENCE, receive)
                .await
                .expect("events missing after the patience");
            assert!(subscription.try_next().unwrap().is_none());
        })
    };
    // Half the tasks wait before the first write, half start during the writes.
    let mut tasks: Vec<_> = (0..TASKS / 2)
        .map(|_| spawn_task(Some(ready.clone())))
        .collect();
    let writer = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..TASKS / 2 {
                readies
                    .recv_timeout(PATIENCE)
                    .expect("a task never started");
            }
            for i in 0..EVENTS {
                put(&store, sid(1 + u128::from(i % 3)), [ev("async", i)]);
            }
        })
    };
    tasks.extend((0..TASKS / 2).map(|_| spawn_task(None)));
    writer.await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_17_a_next_async_future_dropped_mid_wait_does_not_break_later_waits() {
    let _watchdog = watchdog("rule_21_dropped_next_async");
    let store = MemoryStore::new();
    let mut subscription = store.subscribe(Selector::all());
    for round in 0..20 {
        // Caught up: the wait parks, and the timeout drops the parked future.
        let timed_out = tokio::time::timeout(SHORT, subscription.next_async())
            .await
            .is_err();
        assert!(timed_out, "round {round}: an event out of nowhere");
        let writer = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || put(&store, sid(1), [ev("after a drop", round)]))
        };
        let envelope = tokio::time::timeout(PATIENCE, subscription.next_async())
            .await
            .expect("the later wait was never woken")
            .expect("not poisoned");
        assert_eq!(
            (envelope.position(), envelope.payload().n),
            (Position(round), round)
        );
        writer.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_17_async_waits_in_lockstep_with_a_writer_never_miss_a_wake_up() {
    let _watchdog = watchdog("rule_21_async_lockstep");
    const TASKS: usize = 4;
    let store = MemoryStore::new();
    let (ack, acks) = mpsc::channel();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut subscription = store.subscribe(Selector::all());
            let ack = ack.clone();
            tokio::spawn(async move {
                for round in 0..LOCKSTEP_ROUNDS {
                    let envelope = subscription.next_async().await.expect("not poisoned");
                    acknowledge(envelope, round, &ack);
                }
            })
        })
        .collect();
    let writer = tokio::task::spawn_blocking(move || write_in_lockstep(&store, TASKS, &acks));
    writer.await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
}
