//! Concurrent writers, readers and subscribers: contract rules 13, 15, 17 and 25.

use super::support::*;
use super::{StoreFactory, TestEvent, TestKind};
use crate::{
    Committed, EventStore, ExpectedVersion, Flow, Selector, StoreError, StreamHead, StreamId,
    StreamVersion, SubscriberHandle, Transaction,
};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Barrier;
use ExpectedVersion::{Any, Exact, ExactPosition, NoStream};

/// xorshift64*: tiny, deterministic, good enough to pick sizes and streams.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The streams random transactions pick from.
const POOL: u128 = 6;

/// A random transaction of `writer`: 1-3 distinct pool streams, 1-3 events
/// each, under `Any`, appended in a shuffled order and tagged in layout
/// order (streams ascending), so that [`check_log`] can find it whole.
fn random_tx(rng: &mut Rng, writer: u32, tx: u64) -> Transaction<TestEvent> {
    let mut plan: BTreeMap<StreamId, u32> = BTreeMap::new();
    for _ in 0..1 + rng.below(3) {
        plan.insert(
            sid(1 + u128::from(rng.below(POOL as u64))),
            1 + rng.below(3) as u32,
        );
    }
    let len: u32 = plan.values().sum();
    let mut index = 0;
    let mut appends: Vec<(StreamId, Vec<TestEvent>)> = plan
        .into_iter()
        .map(|(stream, count)| {
            let events = (0..count)
                .map(|i| {
                    let kind = [TestKind::Alpha, TestKind::Beta, TestKind::Gamma]
                        [(index + i) as usize % 3];
                    TestEvent::tagged(kind, writer, tx, index + i, len)
                })
                .collect();
            index += count;
            (stream, events)
        })
        .collect();
    if appends.len() > 1 && rng.below(2) == 0 {
        appends.reverse();
    }
    appends
        .into_iter()
        .fold(Transaction::new(), |t, (stream, events)| {
            t.append(stream, Any, events)
        })
}

/// `k` writers on three handles race, round after round, to write one
/// event to a stream, all expecting the same exact version (or exact
/// position, or no stream): exactly one wins, every loser is told what it
/// found (the winner's event), and the losers use no position.
async fn race<F: StoreFactory>(factory: &F, k: usize, rounds: u64) {
    let (store, handles) = store_and_handles(factory, 2).await;
    let all = [store.clone(), handles[0].clone(), handles[1].clone()];
    for round in 0..rounds {
        let stream = StreamId::new();
        let before: Option<StreamHead> = if round % 3 == 2 {
            None
        } else {
            let n = 1 + round % 2;
            let done = insert(
                &store,
                Transaction::new().append(stream, NoStream, events(TestKind::Alpha, 0, n)),
            )
            .await;
            done.stream(stream)
        };
        // Another stream moves the head, so that positions and versions differ.
        insert(&store, Transaction::single(StreamId::new(), Any, ev(0))).await;
        let global = store_head(&store).await.unwrap();
        let expected = match (round % 3, before) {
            (0, Some(head)) => Exact(head.version),
            (1, Some(head)) => ExactPosition(head.position),
            _ => NoStream,
        };
        let barrier = Arc::new(Barrier::new(k));
        let writers: Vec<_> = (0..k)
            .map(|w| {
                let (handle, barrier) = (all[w % all.len()].clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    let event = TestEvent::tagged(TestKind::Beta, w as u32 + 1, round, 0, 1);
                    handle
                        .insert(Transaction::single(stream, expected, event))
                        .await
                })
            })
            .collect();
        let mut results: Vec<Result<Committed, StoreError<_>>> = Vec::with_capacity(k);
        for writer in writers {
            results.push(writer.await.expect("a writer task panicked"));
        }
        let winners: Vec<&Committed> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}, {expected:?}: {} of {k} writers won",
            winners.len()
        );
        let won = winners[0]
            .stream(stream)
            .expect("the winner wrote the stream");
        let version = before.map_or(0, |h| h.version.get() + 1);
        assert_eq!(won, head(version, global.get() + 1), "round {round}");
        for result in &results {
            match result {
                Ok(_) => {}
                Err(StoreError::VersionConflict(found)) => {
                    assert_eq!(
                        found,
                        &[mismatch(stream, expected, Some(won))],
                        "round {round}"
                    );
                }
                Err(error) => panic!("round {round}: a loser got {error}"),
            }
        }
        assert_eq!(
            store_head(&store).await,
            Some(won.position),
            "losers used positions"
        );
        assert_eq!(stream_head(&handles[1], stream).await, Some(won));
    }
    assert_well_formed(&store).await;
}

/// Rules 13 and 7: of 2 writers expecting the same exact version (or
/// position, or no stream), exactly one wins.
pub fn rule_13_exactly_one_of_2_racing_writers_wins<F: StoreFactory>(factory: &F) {
    run("rule_13_race_2", race(factory, 2, 60));
}

/// Rules 13 and 7: of 10 writers expecting the same exact version (or
/// position, or no stream), exactly one wins.
pub fn rule_13_exactly_one_of_10_racing_writers_wins<F: StoreFactory>(factory: &F) {
    run("rule_13_race_10", race(factory, 10, 30));
}

/// Rules 13 and 7: of 100 writers expecting the same exact version (or
/// position, or no stream), exactly one wins.
pub fn rule_13_exactly_one_of_100_racing_writers_wins<F: StoreFactory>(factory: &F) {
    run("rule_13_race_100", race(factory, 100, 9));
}

/// Rules 13, 2 and 3: concurrent `Any` writers to one stream all succeed,
/// with dense positions and versions, each writer's events in its order.
pub fn rule_13_concurrent_any_writers_all_succeed<F: StoreFactory>(factory: &F) {
    const WRITERS: u32 = 16;
    const EACH: u64 = 25;
    run("rule_13_any", async {
        let (store, handles) = store_and_handles(factory, 2).await;
        let stream = StreamId::new();
        let barrier = Arc::new(Barrier::new(WRITERS as usize));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let handle = if w % 3 == 0 {
                    store.clone()
                } else {
                    handles[(w % 2) as usize].clone()
                };
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    for tx in 0..EACH {
                        let event = TestEvent::tagged(TestKind::Alpha, w + 1, tx, 0, 1);
                        insert(&handle, Transaction::single(stream, Any, event)).await;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("a writer failed");
        }
        let rows = assert_well_formed(&store).await;
        assert_eq!(rows.len() as u64, u64::from(WRITERS) * EACH);
        assert_eq!(
            stream_head(&store, stream).await.map(|h| h.version),
            Some(StreamVersion(rows.len() as u64 - 1))
        );
        for w in 1..=WRITERS {
            let mine: Vec<u64> = rows
                .iter()
                .filter(|r| r.event.writer() == w)
                .map(|r| r.event.value())
                .collect();
            assert_eq!(
                mine,
                (0..EACH).collect::<Vec<_>>(),
                "writer {w}'s events out of order"
            );
        }
    });
}

/// Rule 13: transactions naming the same streams in opposite (and every
/// other) order never deadlock.
pub fn rule_13_opposite_orders_never_deadlock<F: StoreFactory>(factory: &F) {
    const EACH: u64 = 150;
    run("rule_13_deadlock", async {
        let (store, handles) = store_and_handles(factory, 1).await;
        let streams = [StreamId::new(), StreamId::new(), StreamId::new()];
        let orders: [[usize; 3]; 6] = [
            [0, 1, 2],
            [2, 1, 0],
            [1, 0, 2],
            [0, 2, 1],
            [2, 0, 1],
            [1, 2, 0],
        ];
        let barrier = Arc::new(Barrier::new(orders.len()));
        let writers: Vec<_> = orders
            .iter()
            .enumerate()
            .map(|(w, order)| {
                let handle = if w % 2 == 0 {
                    store.clone()
                } else {
                    handles[0].clone()
                };
                let (barrier, order) = (Arc::clone(&barrier), *order);
                tokio::spawn(async move {
                    barrier.wait().await;
                    for tx in 0..EACH {
                        let t = order.iter().fold(Transaction::new(), |t, &s| {
                            t.append(streams[s], Any, [TestEvent::new(TestKind::Alpha, tx)])
                        });
                        insert(&handle, t).await;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("a writer failed");
        }
        let rows = assert_well_formed(&store).await;
        assert_eq!(rows.len() as u64, 6 * EACH * 3);
    });
}

/// Rules 15, 7, 9, 2 and 3: while writers commit random multi-stream
/// transactions, readers on other handles only ever see whole transactions,
/// contiguous, with dense positions and versions.
pub fn rule_15_readers_see_only_whole_transactions_under_concurrent_writers<F: StoreFactory>(
    factory: &F,
) {
    const WRITERS: u32 = 4;
    const EACH: u64 = 150;
    run("rule_15", async {
        let (store, handles) = store_and_handles(factory, 2).await;
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (reader, done) = (handles[r].clone(), Arc::clone(&done));
                tokio::spawn(async move {
                    let mut reads = 0u64;
                    let mut stream = 0;
                    let mut previous = Vec::new();
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        let rows = read_all(&reader, None).await;
                        if let Err(problem) = check_log(&rows) {
                            panic!("reader {r}, read {reads}: {problem}");
                        }
                        // Nothing seen is ever seen otherwise later.
                        assert!(
                            rows.starts_with(&previous),
                            "reader {r}, read {reads}: the log changed under a reader"
                        );
                        previous = rows;
                        stream = (stream + 1) % POOL;
                        let versions: Vec<u64> =
                            read_stream(&reader, sid(1 + stream), StreamVersion(0))
                                .await
                                .iter()
                                .map(|row| row.version.get())
                                .collect();
                        assert!(
                            versions.iter().copied().eq(0..versions.len() as u64),
                            "a stream read with a gap"
                        );
                        reads += 1;
                        if finished {
                            return previous;
                        }
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let barrier = Arc::new(Barrier::new(WRITERS as usize));
        let writers: Vec<_> = (1..=WRITERS)
            .map(|w| {
                let (handle, barrier) = (
                    if w % 2 == 0 {
                        store.clone()
                    } else {
                        handles[0].clone()
                    },
                    Arc::clone(&barrier),
                );
                tokio::spawn(async move {
                    let mut rng = Rng::new(u64::from(w));
                    barrier.wait().await;
                    for tx in 0..EACH {
                        insert(&handle, random_tx(&mut rng, w, tx)).await;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("a writer failed");
        }
        done.store(true, Ordering::Release);
        let rows = assert_well_formed(&store).await;
        for reader in readers {
            let last_read = reader.await.expect("a reader failed");
            assert_eq!(
                last_read, rows,
                "a reader's last read, after the writers, misses events"
            );
        }
        let transactions = rows.iter().filter(|row| row.event.index() == 0).count() as u64;
        assert_eq!(transactions, u64::from(WRITERS) * EACH);
    });
}

/// Subscriptions that fold what they get into a hash chain, and check that
/// handler calls never overlap.
struct Followers<H> {
    phase: &'static str,
    subscriptions: Vec<(Option<StreamId>, H, Arc<Mutex<Digest>>)>,
}

impl<H: SubscriberHandle<Infallible>> Followers<H> {
    async fn start<S>(phase: &'static str, store: &S, followed: StreamId) -> Self
    where
        S: EventStore<Event = TestEvent, Subscriber<Infallible> = H>,
    {
        let mut subscriptions = Vec::new();
        for scope in [None, None, Some(followed)] {
            let digest = Arc::new(Mutex::new(Digest::new(scope)));
            let sink = Arc::clone(&digest);
            let busy = AtomicBool::new(false);
            let selector = match scope {
                None => Selector::all(),
                Some(stream) => Selector::stream(stream),
            };
            let subscription = store
                .spawn_subscriber(selector, move |event| {
                    let overlapping = busy.swap(true, Ordering::SeqCst);
                    let mut digest = sink.lock().unwrap();
                    if overlapping && digest.problem.is_none() {
                        digest.problem = Some("handler calls overlap".into());
                    }
                    digest.push(event);
                    busy.store(false, Ordering::SeqCst);
                    Ok::<_, Infallible>(Flow::Continue)
                })
                .await
                .unwrap_or_else(|error| panic!("spawn_subscriber failed: {error}"));
            subscriptions.push((scope, subscription, digest));
        }
        Followers {
            phase,
            subscriptions,
        }
    }

    /// Waits until each has passed `head`; compares its chain with `reference`.
    async fn check(
        self,
        head: crate::Position,
        reference: &dyn Fn(Option<StreamId>) -> (u64, u64),
    ) {
        for (scope, subscription, digest) in self.subscriptions {
            reach(&subscription, head).await;
            {
                let digest = digest.lock().unwrap();
                assert_eq!(digest.problem, None, "{}: {scope:?}", self.phase);
                assert_eq!(
                    digest.summary(),
                    reference(scope),
                    "{}: {scope:?} saw another sequence",
                    self.phase
                );
            }
            subscription.cancel().await;
            assert!(subscription.wait().await.is_ok());
        }
    }
}

/// Writers on `writers` handles, subscriptions on `followers` handles
/// started before, during and after the writes: every subscription of a
/// scope sees the identical sequence, the one every handle reads.
async fn ordering<F: StoreFactory>(factory: &F, extra_handles: usize) {
    const WRITERS: u32 = 4;
    const EACH: u64 = 200;
    let (store, handles) = store_and_handles(factory, extra_handles).await;
    let all: Vec<F::Store> = std::iter::once(store.clone()).chain(handles).collect();
    let handle = |i: usize| all[i % all.len()].clone();
    let followed = sid(1);

    let before = Followers::start("before", &handle(1), followed).await;
    let (halfway, halfway_reached) = tokio::sync::oneshot::channel();
    let mut halfway = Some(halfway);
    let barrier = Arc::new(Barrier::new(WRITERS as usize));
    let writers: Vec<_> = (1..=WRITERS)
        .map(|w| {
            let (writer, barrier) = (handle(w as usize), Arc::clone(&barrier));
            let halfway = if w == 1 { halfway.take() } else { None };
            tokio::spawn(async move {
                let mut rng = Rng::new(u64::from(w) + 100);
                let mut halfway = halfway;
                barrier.wait().await;
                for tx in 0..EACH {
                    if tx == EACH / 2 {
                        if let Some(halfway) = halfway.take() {
                            let _ = halfway.send(());
                        }
                    }
                    insert(&writer, random_tx(&mut rng, w, tx)).await;
                }
            })
        })
        .collect();
    halfway_reached.await.expect("writer 1 never got halfway");
    let during = Followers::start("during", &handle(2), followed).await;
    for writer in writers {
        writer.await.expect("a writer failed");
    }
    let after = Followers::start("after", &handle(3), followed).await;

    let head = store_head(&store).await.expect("the writers wrote");
    let everything = digest_of_read(&store, None).await;
    let one = digest_of_read(&store, Some(followed)).await;
    assert_eq!(everything.problem, None);
    assert_eq!(everything.count, head.get() + 1);
    for handle in &all {
        assert_eq!(
            digest_of_read(handle, None).await.summary(),
            everything.summary(),
            "two handles read two orders"
        );
        assert_eq!(
            digest_of_read(handle, Some(followed)).await.summary(),
            one.summary()
        );
    }
    let reference = |scope: Option<StreamId>| {
        if scope.is_some() {
            one.summary()
        } else {
            everything.summary()
        }
    };
    for followers in [before, during, after] {
        followers.check(head, &reference).await;
    }
    assert_well_formed(&store).await;
}

/// Rules 17, 15 and 21: subscriptions started before, during and after a
/// burst of concurrent writes all see the identical sequence (hash chains
/// over position, id, stream and version), all streams and one stream, and
/// no subscription's handler calls overlap.
pub fn rule_17_subscribers_started_before_during_and_after_writes_agree<F: StoreFactory>(
    factory: &F,
) {
    run("rule_17_ordering", ordering(factory, 0));
}

/// Rules 25, 13 and 17: with writers, readers and subscribers spread over
/// several handles of one store, every handle reads and every subscription
/// delivers the one same order.
pub fn rule_25_every_handle_sees_one_order<F: StoreFactory>(factory: &F) {
    run("rule_25", ordering(factory, 3));
}
