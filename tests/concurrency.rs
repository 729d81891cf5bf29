//! Concurrency tests of the store's contract (`src/contract.md` §§ 2-3, 6-9, 12-13, 15).
//!
//! Every event written here carries a [`Tag`] naming the writer, the
//! writer's transaction and the event's place in that transaction, so that
//! any read of the whole log can be checked on its own: positions gap-free,
//! every transaction whole and contiguous, every stream dense and in position
//! order (see [`check_log`]).
//!
//! Nothing here sleeps or measures time; threads start together on a
//! [`Barrier`]. Every test runs under a watchdog that aborts the process
//! after [`WATCHDOG`], so a deadlock fails loudly instead of hanging CI.
//!
//! The randomised tests draw a random seed, or take `HINDSIGHT_TEST_SEED`, and
//! print it on failure; set `HINDSIGHT_TEST_SEED` to rerun one (the thread
//! interleaving will differ, the workload will not).

use hindsight::{
    Committed, Envelope, EventId, ExpectedVersion, InsertError, MemoryStore, Position, Start,
    StreamHead, StreamId, StreamVersion, Transaction, VersionMismatch,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;

mod common;
use common::{scaled, seed, with_watchdog, Rng, WATCHDOG};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The payload of every event: who wrote it and where it sits in its
/// transaction (`index` counts in layout order, i.e. streams ascending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    writer: u32,
    tx: u32,
    index: u32,
    len: u32,
}

impl Tag {
    /// The one event of a one-event transaction.
    fn single(writer: u32, tx: u32) -> Self {
        Tag {
            writer,
            tx,
            index: 0,
            len: 1,
        }
    }
}

/// One `Transaction::append` call: `count` events to `stream`.
#[derive(Debug, Clone, Copy)]
struct Append {
    stream: StreamId,
    expected: ExpectedVersion,
    count: u32,
}

impl Append {
    fn new(stream: StreamId, expected: ExpectedVersion, count: u32) -> Self {
        Append {
            stream,
            expected,
            count,
        }
    }
}

/// The transaction of `appends` (in this builder order), its events tagged
/// with their index in the layout the contract promises (§ 9): appends
/// stably sorted by stream id, each one's events in order.
fn build(writer: u32, tx: u32, appends: &[Append]) -> Transaction<Tag> {
    let len = appends.iter().map(|a| a.count).sum();
    let mut layout: Vec<usize> = (0..appends.len()).collect();
    layout.sort_by_key(|&i| appends[i].stream); // stable
    let mut first = vec![0; appends.len()];
    let mut next = 0;
    for i in layout {
        first[i] = next;
        next += appends[i].count;
    }
    appends
        .iter()
        .zip(first)
        .fold(Transaction::new(), |t, (a, first)| {
            let tags = (first..first + a.count).map(|index| Tag {
                writer,
                tx,
                index,
                len,
            });
            t.append(a.stream, a.expected, tags)
        })
}

/// Per stream, the expectation that counts (the first one, § 10) and the
/// number of events, in ascending stream order.
fn effective(appends: &[Append]) -> Vec<Append> {
    let mut merged: Vec<Append> = Vec::new();
    for a in appends {
        match merged.iter_mut().find(|m| m.stream == a.stream) {
            Some(m) => m.count += a.count,
            None => merged.push(*a),
        }
    }
    merged.sort_by_key(|a| a.stream);
    merged
}

/// `k` threads, released together by a barrier, each inserting the
/// transaction `tx(thread)` (built before the barrier). Results by thread.
fn race(
    store: &MemoryStore<Tag>,
    k: usize,
    tx: impl Fn(u32) -> Transaction<Tag> + Sync,
) -> Vec<Result<Committed, InsertError>> {
    let barrier = Barrier::new(k);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..k as u32)
            .map(|thread| {
                let (barrier, tx) = (&barrier, &tx);
                scope.spawn(move || {
                    let tx = tx(thread);
                    barrier.wait();
                    store.insert(tx)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer panicked"))
            .collect()
    })
}

/// Runs `writers` writer threads and `readers` reader threads, all started
/// on one barrier. Reader `r` makes its loop body with `reader(r)` and runs
/// it until every writer is done, then once more. Returns each writer's
/// result, by writer.
fn with_readers<T: Send, R: FnMut()>(
    writers: usize,
    write: impl Fn(u32) -> T + Sync,
    readers: usize,
    reader: impl Fn(usize) -> R + Sync,
) -> Vec<T> {
    let done = AtomicBool::new(false);
    let barrier = Barrier::new(writers + readers);
    thread::scope(|scope| {
        for r in 0..readers {
            let (barrier, done, reader) = (&barrier, &done, &reader);
            scope.spawn(move || {
                let mut read = reader(r);
                barrier.wait();
                while !done.load(Ordering::Acquire) {
                    read();
                }
                read();
            });
        }
        let handles: Vec<_> = (0..writers as u32)
            .map(|writer| {
                let (barrier, write) = (&barrier, &write);
                scope.spawn(move || {
                    barrier.wait();
                    write(writer)
                })
            })
            .collect();
        // Join them all before looking at any result, so that the readers
        // are always told to stop, even when a writer panicked.
        let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        done.store(true, Ordering::Release);
        joined
            .into_iter()
            .map(|r| r.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// The reader used by most tests: reader 0 reads and checks the whole log
/// each time ([`check_store`]); the others tail it, each read checking only
/// what was committed since its last one ([`Snapshot::extend`]), so they
/// take many more, smaller snapshots, and compare with `read_stream` now
/// and then.
fn checking_reader<'a>(
    store: &'a MemoryStore<Tag>,
    context: &'a str,
    r: usize,
) -> impl FnMut() + 'a {
    let mut tail = Snapshot::default();
    let mut reads = 0u64;
    move || {
        if r == 0 {
            check_store(store, context);
        } else {
            tail.extend(store)
                .unwrap_or_else(|e| panic!("{context}: tailing reader: {e}"));
            reads += 1;
            if reads.is_multiple_of(64) {
                check_streams_agree(store, &tail).unwrap_or_else(|e| panic!("{context}: {e}"));
            }
        }
    }
}

/// What reads of the log showed, from position 0; built only by reads
/// that passed every check of [`Snapshot::extend`].
#[derive(Default)]
struct Snapshot {
    /// Events read.
    len: u64,
    /// `(writer, tx)` to the transaction's first position and length.
    txs: HashMap<(u32, u32), (u64, u32)>,
    /// Every stream's positions, by version.
    streams: HashMap<StreamId, Vec<u64>>,
    /// Each writer's last transaction read.
    last_tx: HashMap<u32, u32>,
}

impl Snapshot {
    /// The head `stream` had just before position `cut`: its last event
    /// below `cut`.
    fn head_before(&self, stream: StreamId, cut: u64) -> Option<StreamHead> {
        let positions = self.streams.get(&stream).map_or(&[][..], Vec::as_slice);
        let len = positions.partition_point(|&p| p < cut);
        (len > 0).then(|| StreamHead {
            version: StreamVersion(len as u64 - 1),
            position: Position(positions[len - 1]),
        })
    }

    /// Whether `head` is a real event of `stream` in this log.
    fn holds(&self, stream: StreamId, head: StreamHead) -> bool {
        self.streams
            .get(&stream)
            .and_then(|positions| positions.get(head.version.0 as usize))
            == Some(&head.position.0)
    }
}

/// An open transaction while walking the log.
struct Open {
    tag: Tag,
    first: u64,
    stream: StreamId,
    created_at: std::time::SystemTime,
    correlation: Option<hindsight::CorrelationId>,
}

impl Snapshot {
    /// Reads what was committed after this snapshot (one `read_all`) and
    /// checks that it continues it: positions on from `len` in order (§ 2);
    /// every transaction whole, contiguous, laid out in stream order,
    /// sharing one timestamp and correlation id, and ending before the read
    /// does (§§ 9, 11, 15); each writer's transactions in the order it made
    /// them (§ 12); every stream's versions dense and in position order (§ 3).
    fn extend(&mut self, store: &MemoryStore<Tag>) -> Result<(), String> {
        let start = self
            .len
            .checked_sub(1)
            .map_or(Start::Beginning, |p| Start::After(Position(p)));
        let read = store.read_all(start);
        // The snapshot's end: nothing is removed in these tests.
        let end = self.len + read.size_hint().1.unwrap_or(0) as u64;
        let mut open: Option<Open> = None;
        for e in read {
            let (i, t) = (self.len, *e.payload());
            if e.position() != Position(i) {
                return Err(format!("event #{i} has position {:?}", e.position()));
            }
            let versions = self.streams.entry(e.stream_id()).or_default();
            if e.version() != StreamVersion(versions.len() as u64) {
                return Err(format!(
                    "position {i}: stream {} version {:?} after {} events of it",
                    e.stream_id(),
                    e.version(),
                    versions.len()
                ));
            }
            versions.push(i);
            match &open {
                Some(o) => {
                    let fits = t.writer == o.tag.writer
                        && t.tx == o.tag.tx
                        && t.len == o.tag.len
                        && t.index == o.tag.index + 1
                        && e.stream_id() >= o.stream
                        && e.created_at() == o.created_at
                        && e.correlation_id() == o.correlation;
                    if !fits {
                        return Err(format!(
                            "position {i}: {t:?} (stream {}) interrupts or misorders {:?} \
                             (stream {}) of the transaction starting at {}",
                            e.stream_id(),
                            o.tag,
                            o.stream,
                            o.first
                        ));
                    }
                }
                None => {
                    if t.index != 0 || t.len == 0 {
                        return Err(format!("position {i}: {t:?} does not start a transaction"));
                    }
                    if let Some(previous) = self.last_tx.insert(t.writer, t.tx) {
                        if previous >= t.tx {
                            return Err(format!(
                                "position {i}: writer {} transaction {} after its transaction {previous}",
                                t.writer, t.tx
                            ));
                        }
                    }
                }
            }
            let first = open.as_ref().map_or(i, |o| o.first);
            open = if t.index + 1 == t.len {
                self.txs.insert((t.writer, t.tx), (first, t.len));
                None
            } else {
                Some(Open {
                    tag: t,
                    first,
                    stream: e.stream_id(),
                    created_at: e.created_at(),
                    correlation: e.correlation_id(),
                })
            };
            self.len += 1;
        }
        if self.len != end {
            return Err(format!(
                "read_all announced {end} events and yielded {}",
                self.len
            ));
        }
        if let Some(o) = open {
            return Err(format!(
                "a read ending at {end} ends inside a transaction: {:?} starting at {}",
                o.tag, o.first
            ));
        }
        Ok(())
    }
}

/// One read of the whole log, checked by [`Snapshot::extend`].
fn check_log(store: &MemoryStore<Tag>) -> Result<Snapshot, String> {
    let mut snapshot = Snapshot::default();
    snapshot.extend(store)?;
    Ok(snapshot)
}

/// `read_stream` and `stream_head`, called after `snapshot` was taken, agree
/// with it: every stream's events below the snapshot's end are exactly the
/// snapshot's, and its head is at least as far.
fn check_streams_agree(store: &MemoryStore<Tag>, snapshot: &Snapshot) -> Result<(), String> {
    for (&stream, positions) in &snapshot.streams {
        let mut read = Vec::new();
        for (version, e) in store.read_stream(stream, StreamVersion(0)).enumerate() {
            if e.stream_id() != stream || e.version() != StreamVersion(version as u64) {
                return Err(format!(
                    "read_stream({stream}) yielded version {:?} of {} as its #{version}",
                    e.version(),
                    e.stream_id()
                ));
            }
            read.push(e.position().0);
        }
        if read.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "read_stream({stream}) positions not ascending: {read:?}"
            ));
        }
        let below: Vec<u64> = read
            .iter()
            .copied()
            .take_while(|&p| p < snapshot.len)
            .collect();
        if &below != positions {
            return Err(format!(
                "stream {stream}: read_all showed positions {positions:?}, read_stream {read:?}"
            ));
        }
        let head = store.stream_head(stream).map(|h| h.version.0 + 1);
        if head < Some(positions.len() as u64) {
            return Err(format!(
                "stream {stream}: stream_head {head:?} behind {} events already read",
                positions.len()
            ));
        }
    }
    Ok(())
}

/// [`check_log`] and [`check_streams_agree`], panicking with `context`.
fn check_store(store: &MemoryStore<Tag>, context: &str) -> Snapshot {
    let snapshot = check_log(store).unwrap_or_else(|e| panic!("{context}: {e}"));
    check_streams_agree(store, &snapshot).unwrap_or_else(|e| panic!("{context}: {e}"));
    snapshot
}

/// The final check of a store at rest: everything [`check_store`] checks,
/// plus unique event ids (§ 1).
fn check_final(store: &MemoryStore<Tag>, context: &str) -> Snapshot {
    let snapshot = check_store(store, context);
    let ids: HashSet<EventId> = store
        .read_all(Start::Beginning)
        .map(Envelope::event_id)
        .collect();
    assert_eq!(
        ids.len() as u64,
        snapshot.len,
        "{context}: duplicate event ids"
    );
    assert_eq!(
        store.head(),
        snapshot.len.checked_sub(1).map(Position),
        "{context}: head() disagrees with read_all"
    );
    snapshot
}

/// `committed`, returned for `(writer, tx)`, describes what the log shows of
/// that transaction (§ 8): its last position, and the last version and
/// position of each stream it wrote, in ascending stream order.
fn check_committed(
    log: &[Envelope<'_, Tag>],
    snapshot: &Snapshot,
    (writer, tx): (u32, u32),
    committed: &Committed,
) -> Result<(), String> {
    let &(first, len) = snapshot.txs.get(&(writer, tx)).ok_or_else(|| {
        format!("writer {writer} transaction {tx} succeeded but is not in the log")
    })?;
    let range = first as usize..(first + u64::from(len)) as usize;
    let mut heads: Vec<(StreamId, StreamHead)> = Vec::new();
    for e in &log[range] {
        let head = StreamHead {
            version: e.version(),
            position: e.position(),
        };
        match heads.last_mut() {
            Some((stream, last)) if *stream == e.stream_id() => *last = head,
            _ => heads.push((e.stream_id(), head)),
        }
    }
    let last = Some(Position(first + u64::from(len) - 1));
    if committed.last_position() != last || committed.streams() != heads.as_slice() {
        return Err(format!(
            "writer {writer} transaction {tx}: insert returned {committed:?}, \
             the log shows last position {last:?} and heads {heads:?}"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 1. K writers race on one exact expectation: exactly one wins (§ 13)
// ---------------------------------------------------------------------------

/// The expectation every racer of a round holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Race {
    /// `Exact(v)` of an existing stream's head version.
    Version,
    /// `ExactPosition(p)` of an existing stream's head position.
    Position,
    /// `NoStream` of a fresh stream.
    NoStream,
}

/// `rounds` times, `k` writers append one event each to one stream, all
/// expecting the same head: one wins, with the head after its event; every
/// loser gets exactly one mismatch reporting the winner's event as the
/// stream's head (the state just before the loser's transaction, § 6-7).
/// Between rounds another stream is written, so that the raced stream's
/// versions and positions differ.
fn exactly_one_of_k_racing_writers_wins(k: usize, rounds: u32, race_on: Race) {
    let watched = format!("{k} writers racing on {race_on:?}");
    with_watchdog(&watched, WATCHDOG, || {
        let store = MemoryStore::new();
        let (bystander, setup) = (k as u32, k as u32 + 1);
        let other = StreamId::new();
        let mut stream = StreamId::new();
        store
            .insert(build(
                setup,
                0,
                &[Append::new(stream, ExpectedVersion::NoStream, 2)],
            ))
            .unwrap();
        for round in 0..rounds {
            store
                .insert(Transaction::single(
                    other,
                    ExpectedVersion::Any,
                    Tag::single(bystander, round),
                ))
                .unwrap();
            if race_on == Race::NoStream {
                stream = StreamId::new();
            }
            let before = store.stream_head(stream);
            let expected = match (race_on, before) {
                (Race::Version, Some(head)) => head.expect_exact(),
                (Race::Position, Some(head)) => ExpectedVersion::ExactPosition(head.position),
                (Race::NoStream, None) => ExpectedVersion::NoStream,
                _ => unreachable!("{race_on:?} round {round} starts from {before:?}"),
            };
            let winner_head = StreamHead {
                version: StreamVersion(before.map_or(0, |h| h.version.0 + 1)),
                position: Position(store.head().expect("written above").0 + 1),
            };
            let context = format!("{k} writers, round {round}, expecting {expected:?}");

            let results = race(&store, k, |w| {
                Transaction::single(stream, expected, Tag::single(w, round))
            });

            let winners: Vec<u32> = (0..k as u32)
                .filter(|&w| results[w as usize].is_ok())
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "{context}: not exactly one winner: {results:?}"
            );
            let lost = InsertError::VersionConflict(vec![VersionMismatch {
                stream,
                stream_name: None,
                expected,
                found: Some(winner_head),
            }]);
            for (w, result) in results.iter().enumerate() {
                match result {
                    Ok(committed) => {
                        assert_eq!(
                            committed.last_position(),
                            Some(winner_head.position),
                            "{context}"
                        );
                        assert_eq!(committed.streams(), [(stream, winner_head)], "{context}");
                    }
                    Err(error) => assert_eq!(error, &lost, "{context}: writer {w}"),
                }
            }
            assert_eq!(store.stream_head(stream), Some(winner_head), "{context}");
            let tail: Vec<Tag> = store
                .read_stream(stream, StreamVersion(0))
                .skip(winner_head.version.0 as usize)
                .map(|e| *e.payload())
                .collect();
            assert_eq!(tail, [Tag::single(winners[0], round)], "{context}");
        }
        check_final(&store, &format!("{k} writers racing on {race_on:?}"));
    });
}

#[test]
fn exactly_one_of_2_writers_expecting_the_same_version_wins() {
    exactly_one_of_k_racing_writers_wins(2, 20, Race::Version);
}

#[test]
fn exactly_one_of_10_writers_expecting_the_same_version_wins() {
    exactly_one_of_k_racing_writers_wins(10, 20, Race::Version);
}

#[test]
fn exactly_one_of_100_writers_expecting_the_same_version_wins() {
    exactly_one_of_k_racing_writers_wins(100, 5, Race::Version);
}

#[test]
fn exactly_one_of_2_writers_expecting_the_same_position_wins() {
    exactly_one_of_k_racing_writers_wins(2, 20, Race::Position);
}

#[test]
fn exactly_one_of_10_writers_expecting_the_same_position_wins() {
    exactly_one_of_k_racing_writers_wins(10, 20, Race::Position);
}

#[test]
fn exactly_one_of_100_writers_expecting_the_same_position_wins() {
    exactly_one_of_k_racing_writers_wins(100, 5, Race::Position);
}

#[test]
fn exactly_one_of_2_writers_expecting_no_stream_creates_it() {
    exactly_one_of_k_racing_writers_wins(2, 20, Race::NoStream);
}

#[test]
fn exactly_one_of_10_writers_expecting_no_stream_creates_it() {
    exactly_one_of_k_racing_writers_wins(10, 20, Race::NoStream);
}

#[test]
fn exactly_one_of_100_writers_expecting_no_stream_creates_it() {
    exactly_one_of_k_racing_writers_wins(100, 5, Race::NoStream);
}

// ---------------------------------------------------------------------------
// 2. Concurrent Any writers all succeed (§ 13)
// ---------------------------------------------------------------------------

#[test]
fn fifty_concurrent_any_writers_all_succeed_with_dense_versions() {
    with_watchdog("fifty_concurrent_any_writers", WATCHDOG, || {
        const K: usize = 50;
        let store = MemoryStore::new();
        for round in 0..5 {
            let stream = StreamId::new();
            let results = race(&store, K, |w| {
                Transaction::single(stream, ExpectedVersion::Any, Tag::single(w, round))
            });
            let events: Vec<_> = store.read_stream(stream, StreamVersion(0)).collect();
            assert_eq!(events.len(), K, "round {round}");
            for (version, e) in events.iter().enumerate() {
                assert_eq!(e.version(), StreamVersion(version as u64), "round {round}");
            }
            assert!(
                events.windows(2).all(|w| w[0].position() < w[1].position()),
                "round {round}: positions not ascending"
            );
            for (w, result) in results.iter().enumerate() {
                let committed = result
                    .as_ref()
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
                let head = committed.stream(stream).expect("wrote to the stream");
                let e = events[head.version.0 as usize];
                assert_eq!(e.position(), head.position, "round {round}, writer {w}");
                assert_eq!(*e.payload(), Tag::single(w as u32, round), "round {round}");
            }
        }
        check_final(&store, "fifty_concurrent_any_writers");
    });
}

// ---------------------------------------------------------------------------
// 3. Opposite lock orders never deadlock (§ 13)
// ---------------------------------------------------------------------------

#[test]
fn transactions_over_the_same_streams_in_opposite_order_never_deadlock() {
    with_watchdog("opposite_order", WATCHDOG, || {
        let iterations = scaled(5_000, 20_000) as u32;
        let store = MemoryStore::new();
        let (a, b) = (StreamId::new(), StreamId::new());
        let orders = [[a, b], [b, a]];
        with_readers(
            2,
            |writer| {
                for tx in 0..iterations {
                    let appends =
                        orders[writer as usize].map(|s| Append::new(s, ExpectedVersion::Any, 1));
                    store.insert(build(writer, tx, &appends)).unwrap();
                }
            },
            1,
            |_| checking_reader(&store, "opposite_order", 1),
        );
        let snapshot = check_final(&store, "opposite_order");
        assert_eq!(snapshot.txs.len() as u32, 2 * iterations);
        for stream in [a, b] {
            assert_eq!(snapshot.streams[&stream].len() as u32, 2 * iterations);
        }
    });
}

// ---------------------------------------------------------------------------
// 4. Random multi-stream load under concurrent readers (§§ 2-3, 8-9, 12, 15)
// ---------------------------------------------------------------------------

/// `Any` appends of 1..=8 events in all, in 1..=4 appends to random
/// `streams`. A stream may come twice: its later expectation can never
/// match, and must be ignored (the first one wins, § 10).
fn random_appends(rng: &mut Rng, streams: &[StreamId]) -> Vec<Append> {
    let events = 1 + rng.below(8);
    let mut counts = vec![1u32; 1 + rng.below(events.min(4))];
    for _ in counts.len()..events {
        let i = rng.below(counts.len());
        counts[i] += 1;
    }
    let mut appends: Vec<Append> = Vec::new();
    for count in counts {
        let stream = rng.pick(streams);
        let expected = if appends.iter().any(|a| a.stream == stream) {
            ExpectedVersion::Exact(StreamVersion(u64::MAX))
        } else {
            ExpectedVersion::Any
        };
        appends.push(Append::new(stream, expected, count));
    }
    appends
}

#[test]
fn random_multi_stream_transactions_are_seen_whole_and_in_order_by_concurrent_readers() {
    with_watchdog("random_multi_stream", WATCHDOG, || {
        let seed = seed();
        let events_per_writer = scaled(25_000, 100_000);
        let store = MemoryStore::new();
        let streams: Vec<StreamId> = (0..12).map(|_| StreamId::new()).collect();
        let context = format!("seed {seed}");

        let results = with_readers(
            4,
            |writer| {
                let mut rng = Rng::new(seed, u64::from(writer));
                let (mut done, mut written) = (Vec::new(), 0);
                for tx in 0.. {
                    if written >= events_per_writer {
                        break;
                    }
                    let appends = random_appends(&mut rng, &streams);
                    let events: usize = appends.iter().map(|a| a.count as usize).sum();
                    let committed = store
                        .insert(build(writer, tx, &appends))
                        .unwrap_or_else(|e| {
                            panic!("{context}: writer {writer} tx {tx} {appends:?}: {e}")
                        });
                    written += events;
                    done.push((tx, committed, events));
                }
                done
            },
            2,
            |r| checking_reader(&store, &context, r),
        );

        let snapshot = check_final(&store, &context);
        let log: Vec<_> = store.read_all(Start::Beginning).collect();
        let total: usize = results.iter().flatten().map(|(_, _, events)| events).sum();
        assert_eq!(snapshot.len as usize, total, "{context}: events in the log");
        let successes: usize = results.iter().map(Vec::len).sum();
        assert_eq!(
            snapshot.txs.len(),
            successes,
            "{context}: transactions in the log"
        );
        for (writer, done) in results.iter().enumerate() {
            for (tx, committed, _) in done {
                check_committed(&log, &snapshot, (writer as u32, *tx), committed)
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
            }
        }
    });
}

// ---------------------------------------------------------------------------
// 5. Exact writers (some failing) racing Any writers (§§ 6-8, 13)
// ---------------------------------------------------------------------------

/// Appends to 1..=3 distinct streams, each expecting what `stream_head` just
/// said (a read that may be stale by the time of the insert): `NoStream` for
/// a missing stream, else `Exact`, `ExactPosition` or `StreamExists`, and in
/// one case of ten an older version, which must fail. Streams known to exist
/// may get zero events (a pure check); the first append has events.
fn exact_appends(rng: &mut Rng, store: &MemoryStore<Tag>, streams: &[StreamId]) -> Vec<Append> {
    let mut chosen: Vec<StreamId> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let stream = rng.pick(streams);
        if !chosen.contains(&stream) {
            chosen.push(stream);
        }
    }
    chosen
        .into_iter()
        .enumerate()
        .map(|(i, stream)| match store.stream_head(stream) {
            None => Append::new(stream, ExpectedVersion::NoStream, 1 + rng.below(3) as u32),
            Some(head) => {
                let expected = match rng.below(10) {
                    0 if head.version.0 > 0 => {
                        ExpectedVersion::Exact(StreamVersion(head.version.0 - 1))
                    }
                    0..=3 => head.expect_exact(),
                    4..=7 => ExpectedVersion::ExactPosition(head.position),
                    _ => ExpectedVersion::StreamExists,
                };
                let count = if i == 0 {
                    1 + rng.below(3)
                } else {
                    rng.below(4)
                };
                Append::new(stream, expected, count as u32)
            }
        })
        .collect()
}

/// A failed insert's mismatches are a true account of one moment (§ 7):
/// each names a stream of the transaction, with the expectation that counted
/// and a head that fails it and is a real event (or none); and some cut of
/// the final log gives every listed stream exactly the reported head while
/// every unlisted stream of the transaction meets its expectation.
fn check_conflict(
    snapshot: &Snapshot,
    appends: &[Append],
    mismatches: &[VersionMismatch],
) -> Result<(), String> {
    let expected = effective(appends);
    if mismatches.is_empty() || mismatches.windows(2).any(|w| w[0].stream >= w[1].stream) {
        return Err(format!(
            "mismatches empty or not in ascending stream order: {mismatches:?}"
        ));
    }
    let (mut lo, mut hi) = (0, snapshot.len);
    for m in mismatches {
        let valid = expected
            .iter()
            .any(|a| a.stream == m.stream && a.expected == m.expected)
            && !m.expected.matches(m.found)
            && m.found.is_none_or(|head| snapshot.holds(m.stream, head));
        if !valid {
            return Err(format!("mismatch {m:?} for appends {expected:?}"));
        }
        // The cuts at which the stream's head is `found`.
        let positions = snapshot
            .streams
            .get(&m.stream)
            .map_or(&[][..], Vec::as_slice);
        let next = m.found.map_or(0, |h| h.version.0 as usize + 1);
        lo = lo.max(m.found.map_or(0, |h| h.position.0 + 1));
        hi = hi.min(positions.get(next).copied().unwrap_or(snapshot.len));
    }
    let unlisted: Vec<&Append> = expected
        .iter()
        .filter(|a| mismatches.iter().all(|m| m.stream != a.stream))
        .collect();
    // Unlisted streams' heads change only just after their own events.
    let mut cuts = vec![lo];
    for a in &unlisted {
        let positions = snapshot
            .streams
            .get(&a.stream)
            .map_or(&[][..], Vec::as_slice);
        cuts.extend(
            positions
                .iter()
                .map(|p| p + 1)
                .filter(|&c| lo < c && c <= hi),
        );
    }
    let consistent = lo <= hi
        && cuts.iter().any(|&cut| {
            unlisted
                .iter()
                .all(|a| a.expected.matches(snapshot.head_before(a.stream, cut)))
        });
    if !consistent {
        return Err(format!(
            "no moment of the log fits mismatches {mismatches:?} for appends {expected:?}"
        ));
    }
    Ok(())
}

#[test]
fn exact_writers_racing_any_writers_get_true_heads_and_failures_use_no_positions() {
    with_watchdog("exact_and_any", WATCHDOG, || {
        let seed = seed();
        let (exact_writers, any_writers) = (3, 2);
        let txs_per_writer = scaled(3_000, 20_000) as u32;
        let store = MemoryStore::new();
        let streams: Vec<StreamId> = (0..6).map(|_| StreamId::new()).collect();
        let context = format!("seed {seed}");

        let results = with_readers(
            exact_writers + any_writers,
            |writer| {
                let mut rng = Rng::new(seed, u64::from(writer));
                (0..txs_per_writer)
                    .map(|tx| {
                        let appends = if (writer as usize) < exact_writers {
                            exact_appends(&mut rng, &store, &streams)
                        } else {
                            random_appends(&mut rng, &streams)
                        };
                        let result = store.insert(build(writer, tx, &appends));
                        (appends, result)
                    })
                    .collect::<Vec<_>>()
            },
            2,
            |r| checking_reader(&store, &context, r),
        );

        let snapshot = check_final(&store, &context);
        let log: Vec<_> = store.read_all(Start::Beginning).collect();
        let (mut written, mut exact_ok, mut failed) = (0, 0, 0);
        for (writer, done) in results.iter().enumerate() {
            let writer = writer as u32;
            for (tx, (appends, result)) in done.iter().enumerate() {
                let id = (writer, tx as u32);
                let context = format!("{context}: writer {writer} tx {tx} {appends:?}");
                match result {
                    Ok(committed) => {
                        written += appends.iter().map(|a| u64::from(a.count)).sum::<u64>();
                        exact_ok += usize::from((writer as usize) < exact_writers);
                        check_committed(&log, &snapshot, id, committed)
                            .unwrap_or_else(|e| panic!("{context}: {e}"));
                        // Every expectation held just before the transaction.
                        let first = snapshot.txs[&id].0;
                        for a in effective(appends) {
                            let before = snapshot.head_before(a.stream, first);
                            assert!(
                                a.expected.matches(before),
                                "{context}: {a:?} met {before:?}"
                            );
                        }
                        // read_stream shows each returned head with this transaction's event.
                        for &(stream, head) in committed.streams() {
                            let e = store.read_stream(stream, head.version).next();
                            let e = e.unwrap_or_else(|| panic!("{context}: {head:?} unreadable"));
                            assert_eq!(e.position(), head.position, "{context}");
                            assert_eq!((e.payload().writer, e.payload().tx), id, "{context}");
                        }
                    }
                    Err(InsertError::VersionConflict(mismatches)) => {
                        failed += 1;
                        assert!(
                            (writer as usize) < exact_writers,
                            "{context}: Any writer failed"
                        );
                        assert!(
                            !snapshot.txs.contains_key(&id),
                            "{context}: failed but visible"
                        );
                        check_conflict(&snapshot, appends, mismatches)
                            .unwrap_or_else(|e| panic!("{context}: {e}"));
                    }
                    Err(e) => panic!("{context}: {e}"),
                }
            }
        }
        // Failed inserts consumed no positions.
        assert_eq!(store.head().map_or(0, |h| h.0 + 1), written, "{context}");
        assert!(
            exact_ok > 0 && failed > 0,
            "{context}: {exact_ok} exact successes, {failed} failures"
        );
    });
}

// ---------------------------------------------------------------------------
// 6. No reader ever sees part of a transaction (§ 15)
// ---------------------------------------------------------------------------

#[test]
fn readers_never_see_part_of_a_hundred_event_transaction() {
    with_watchdog("hundred_event_transactions", WATCHDOG, || {
        const TX_LEN: u64 = 100;
        let txs = scaled(1_000, 5_000) as u32;
        let store = MemoryStore::new();
        let streams = [StreamId::new(), StreamId::new(), StreamId::new()];
        let per_stream = [50, 30, 20];
        let appends: Vec<Append> = streams
            .iter()
            .zip(per_stream)
            .map(|(&s, count)| Append::new(s, ExpectedVersion::Any, count))
            .collect();
        let context = "hundred_event_transactions";

        with_readers(
            1,
            |writer| {
                for tx in 0..txs {
                    store.insert(build(writer, tx, &appends)).unwrap();
                }
            },
            2,
            |_| {
                let (store, streams) = (&store, &streams);
                let mut tail = Snapshot::default();
                move || {
                    let head = store.head().map_or(0, |h| h.0 + 1);
                    assert_eq!(head % TX_LEN, 0, "head() {head} splits a transaction");
                    let read = store.read_all(Start::Beginning);
                    // The snapshot's length: nothing is removed here.
                    let len = read.size_hint().1.unwrap_or(0) as u64;
                    assert_eq!(
                        len % TX_LEN,
                        0,
                        "read_all of {len} events splits a transaction"
                    );
                    if let Some(last) = read.last() {
                        let index = u64::from(last.payload().index);
                        assert_eq!(
                            index,
                            TX_LEN - 1,
                            "read_all of {len} events ends mid-transaction"
                        );
                    }
                    for (&stream, count) in streams.iter().zip(per_stream) {
                        let len = store.read_stream(stream, StreamVersion(0)).count() as u32;
                        assert_eq!(
                            len % count,
                            0,
                            "read_stream of {len} events splits a transaction"
                        );
                    }
                    tail.extend(store)
                        .unwrap_or_else(|e| panic!("{context}: {e}"));
                }
            },
        );

        let snapshot = check_final(&store, "hundred_event_transactions");
        assert_eq!(snapshot.len, u64::from(txs) * TX_LEN);
    });
}

// ---------------------------------------------------------------------------
// Regressions: both of these failed before conflicts and pure checks waited
// for what they saw to be visible, and pure checks locked their streams.
// ---------------------------------------------------------------------------

/// A loser's `VersionMismatch::found` is read under the stream lock and
/// includes the winner's events, which may still be uncommitted when the
/// loser gets its error: right after a conflict reporting version `v`,
/// `stream_head` (and `read_stream`) can still show an older version.
#[test]
fn a_version_conflict_reports_only_a_head_readers_can_already_see() {
    with_watchdog("conflict_head_visible", WATCHDOG, || {
        let (k, rounds, events) = (4, 50, 2_000);
        let store = MemoryStore::new();
        let stream = StreamId::new();
        store
            .insert(Transaction::single(
                stream,
                ExpectedVersion::NoStream,
                Tag::single(k, 0),
            ))
            .unwrap();
        let mut unseen = Vec::new();
        for round in 0..rounds {
            let expected = store.stream_head(stream).unwrap().expect_exact();
            let barrier = Barrier::new(k as usize);
            thread::scope(|scope| {
                let handles: Vec<_> = (0..k)
                    .map(|w| {
                        let (store, barrier) = (&store, &barrier);
                        let tx = build(w, round, &[Append::new(stream, expected, events)]);
                        scope.spawn(move || {
                            barrier.wait();
                            let Err(InsertError::VersionConflict(m)) = store.insert(tx) else {
                                return None;
                            };
                            // Read right after the error: must show at least `found`.
                            let seen = store.stream_head(stream);
                            (seen.map(|h| h.version) < m[0].found.map(|h| h.version))
                                .then_some((round, m[0].found, seen))
                        })
                    })
                    .collect();
                unseen.extend(handles.into_iter().filter_map(|h| h.join().unwrap()));
            });
        }
        assert!(
            unseen.is_empty(),
            "{} of {} losers were told of a head they could not read yet, e.g. \
             (round, found, stream_head after the error) = {:?}",
            unseen.len(),
            rounds * (k - 1),
            unseen[0]
        );
    });
}

/// A zero-event append (a pure check) to a stream that does not exist yet
/// is checked against an unlocked index lookup made at the start of
/// `insert`, not under a lock: a writer can create the stream, and commit,
/// between that lookup and the checker's reservation. The check then passes
/// `NoStream` although the stream has an event before the transaction.
#[test]
fn a_pure_no_stream_check_is_ordered_before_the_write_that_creates_the_stream() {
    with_watchdog("pure_no_stream_check", WATCHDOG, || {
        let rounds = scaled(300, 1_000) as u32;
        let mut late = 0;
        for _ in 0..rounds {
            let store = MemoryStore::new();
            let (checked, busy) = (StreamId::new(), StreamId::new());
            let started = AtomicBool::new(false);
            let barrier = Barrier::new(3);
            // Keeps `busy` locked for a while, so the checker waits on it.
            let hog = build(0, 0, &[Append::new(busy, ExpectedVersion::Any, 10_000)]);
            let check = build(
                1,
                0,
                &[
                    Append::new(checked, ExpectedVersion::NoStream, 0),
                    Append::new(busy, ExpectedVersion::Any, 1),
                ],
            );
            let create = build(2, 0, &[Append::new(checked, ExpectedVersion::NoStream, 1)]);
            let (check, create) = thread::scope(|scope| {
                scope.spawn(|| {
                    barrier.wait();
                    store.insert(hog).unwrap();
                });
                let check = scope.spawn(|| {
                    barrier.wait();
                    started.store(true, Ordering::SeqCst);
                    store.insert(check)
                });
                let create = scope.spawn(|| {
                    barrier.wait();
                    // Not a synchronisation, only a nudge into the window.
                    while !started.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                    store.insert(create).unwrap()
                });
                (check.join().unwrap(), create.join().unwrap())
            });
            // If the check passed, `checked` had no event before it.
            if let Ok(check) = check {
                if check.last_position() > create.last_position() {
                    late += 1;
                }
            }
        }
        assert_eq!(
            late, 0,
            "{late} of {rounds} NoStream checks passed though the stream was created before them"
        );
    });
}
