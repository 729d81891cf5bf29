//! The model-based test: random operation sequences against the store and
//! against a single-threaded reference model, comparing every result.

use super::support::*;
use super::{StoreFactory, TestEvent, TestKind};
use crate::{
    Committed, CorrelationId, Cursor, EventId, EventStore, ExpectedVersion, Position, StoreError,
    StreamHead, StreamId, StreamVersion, Transaction, VersionMismatch,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

/// Random cases per run unless `PROPTEST_CASES` says otherwise: enough to
/// find ordering and expectation bugs, few enough to keep the whole kit
/// well under its time budget on a durable backend, which pays for a fresh
/// store per case.
const CASES: u32 = 64;

/// Streams the operations pick from (by index; ids ascend with the index).
const STREAMS: u8 = 4;

/// Handles the operations spread over.
const HANDLES: u8 = 3;

/// An expectation, resolved against the model when the operation runs, so
/// that a good share of them pass.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// The stream's current version (fails on a missing stream).
    ExactCurrent,
    /// A version `1 + n` past the current one (always fails).
    ExactAhead(u64),
    /// One version before the current one (always fails).
    ExactBehind,
    /// The stream's current last position (fails on a missing stream).
    PositionCurrent,
    /// Some position.
    PositionAt(u64),
}

#[derive(Debug, Clone)]
struct Append {
    stream: u8,
    expect: Expect,
    events: u8,
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        handle: u8,
        appends: Vec<Append>,
        correlate: bool,
    },
    ReadAll {
        handle: u8,
        after: Option<u64>,
    },
    ReadStream {
        handle: u8,
        stream: u8,
        from: u64,
    },
    StreamHead {
        handle: u8,
        stream: u8,
    },
    Head {
        handle: u8,
    },
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        Just(Expect::ExactCurrent),
        Just(Expect::ExactCurrent),
        (0u64..3).prop_map(Expect::ExactAhead),
        Just(Expect::ExactBehind),
        Just(Expect::PositionCurrent),
        (0u64..24).prop_map(Expect::PositionAt),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let append = (0..STREAMS, expect(), 0u8..=3).prop_map(|(stream, expect, events)| Append {
        stream,
        expect,
        events,
    });
    prop_oneof![
        6 => (0..HANDLES, vec(append, 1..=3), any::<bool>())
            .prop_map(|(handle, appends, correlate)| Op::Insert { handle, appends, correlate }),
        1 => (0..HANDLES, proptest::option::of(0u64..24))
            .prop_map(|(handle, after)| Op::ReadAll { handle, after }),
        1 => (0..HANDLES, 0..STREAMS, 0u64..5)
            .prop_map(|(handle, stream, from)| Op::ReadStream { handle, stream, from }),
        1 => (0..HANDLES, 0..STREAMS).prop_map(|(handle, stream)| Op::StreamHead { handle, stream }),
        1 => (0..HANDLES).prop_map(|handle| Op::Head { handle }),
    ]
}

/// One event of the model.
#[derive(Debug, Clone)]
struct ModelEvent {
    stream: StreamId,
    version: u64,
    kind: TestKind,
    value: u64,
    correlation_id: Option<CorrelationId>,
    /// Which successful insert wrote it.
    tx: usize,
}

/// The reference: a log and a stream index, one thread, no cleverness.
#[derive(Default)]
struct Model {
    log: Vec<ModelEvent>,
    streams: BTreeMap<StreamId, Vec<u64>>,
    transactions: usize,
}

/// The writes of a transaction as the model takes them.
type ModelAppends = Vec<(StreamId, ExpectedVersion, Vec<(TestKind, u64)>)>;

type ModelResult = Result<(Option<Position>, Vec<(StreamId, StreamHead)>), Vec<VersionMismatch>>;

impl Model {
    fn head_of(&self, stream: StreamId) -> Option<StreamHead> {
        let positions = self.streams.get(&stream)?;
        let last = *positions.last()?;
        Some(StreamHead {
            version: StreamVersion(positions.len() as u64 - 1),
            position: Position(last),
        })
    }

    fn resolve(&self, expect: Expect, stream: StreamId) -> ExpectedVersion {
        let head = self.head_of(stream);
        let version = head.map(|h| h.version.get());
        match expect {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::StreamExists => ExpectedVersion::StreamExists,
            Expect::ExactCurrent => ExpectedVersion::Exact(StreamVersion(version.unwrap_or(0))),
            Expect::ExactAhead(n) => {
                ExpectedVersion::Exact(StreamVersion(version.map_or(n, |v| v + 1 + n)))
            }
            Expect::ExactBehind => {
                ExpectedVersion::Exact(StreamVersion(version.map_or(0, |v| v.wrapping_sub(1))))
            }
            Expect::PositionCurrent => {
                ExpectedVersion::ExactPosition(head.map_or(Position(0), |h| h.position))
            }
            Expect::PositionAt(p) => ExpectedVersion::ExactPosition(Position(p)),
        }
    }

    /// Whether `expected` holds of a stream whose last event is `head`.
    fn holds(expected: ExpectedVersion, head: Option<StreamHead>) -> bool {
        match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => head.is_none(),
            ExpectedVersion::StreamExists => head.is_some(),
            ExpectedVersion::Exact(v) => head.is_some_and(|h| h.version == v),
            ExpectedVersion::ExactPosition(p) => head.is_some_and(|h| h.position == p),
        }
    }

    fn insert(
        &mut self,
        appends: ModelAppends,
        correlation_id: Option<CorrelationId>,
    ) -> ModelResult {
        // Merge per stream: first expectation wins, events concatenated.
        let mut merged: BTreeMap<StreamId, (ExpectedVersion, Vec<(TestKind, u64)>)> =
            BTreeMap::new();
        for (stream, expected, events) in appends {
            merged
                .entry(stream)
                .or_insert_with(|| (expected, Vec::new()))
                .1
                .extend(events);
        }
        let mismatches: Vec<VersionMismatch> = merged
            .iter()
            .filter(|(stream, (expected, _))| !Self::holds(*expected, self.head_of(**stream)))
            .map(|(stream, (expected, _))| VersionMismatch {
                stream: *stream,
                stream_name: None,
                expected: *expected,
                found: self.head_of(*stream),
            })
            .collect();
        if !mismatches.is_empty() {
            return Err(mismatches);
        }
        let tx = self.transactions;
        let mut heads = Vec::new();
        for (stream, (_, events)) in merged {
            if events.is_empty() {
                continue;
            }
            for (kind, value) in events {
                let positions = self.streams.entry(stream).or_default();
                self.log.push(ModelEvent {
                    stream,
                    version: positions.len() as u64,
                    kind,
                    value,
                    correlation_id,
                    tx,
                });
                positions.push(self.log.len() as u64 - 1);
            }
            heads.push((stream, self.head_of(stream).expect("just written")));
        }
        if heads.is_empty() {
            return Ok((None, Vec::new()));
        }
        self.transactions += 1;
        Ok((Some(Position(self.log.len() as u64 - 1)), heads))
    }
}

/// What the reads have seen so far, to check ids and timestamps are stable.
#[derive(Default)]
struct Seen {
    ids: HashMap<u64, EventId>,
    times: HashMap<usize, SystemTime>,
}

impl Seen {
    fn check<C: Cursor>(
        &mut self,
        model: &Model,
        rows: &[Row<C>],
        expected: &[u64],
    ) -> Result<(), TestCaseError> {
        let got: Vec<u64> = rows.iter().map(|r| r.position().get()).collect();
        prop_assert_eq!(&got, expected, "positions read");
        for row in rows {
            let position = row.position().get();
            let model_event = &model.log[position as usize];
            prop_assert_eq!(row.cursor, C::from_position(row.position()));
            prop_assert_eq!(row.stream, model_event.stream, "stream at {}", position);
            prop_assert_eq!(
                row.version.get(),
                model_event.version,
                "version at {}",
                position
            );
            prop_assert_eq!(
                &row.event,
                &TestEvent::new(model_event.kind, model_event.value),
                "payload at {}",
                position
            );
            prop_assert_eq!(
                row.correlation_id,
                model_event.correlation_id,
                "correlation id at {}",
                position
            );
            let id = *self.ids.entry(position).or_insert(row.event_id);
            prop_assert_eq!(row.event_id, id, "the id at {} changed", position);
            let time = *self.times.entry(model_event.tx).or_insert(row.created_at);
            prop_assert_eq!(
                row.created_at,
                time,
                "a transaction with two timestamps at {}",
                position
            );
        }
        let unique: HashSet<EventId> = self.ids.values().copied().collect();
        prop_assert_eq!(unique.len(), self.ids.len(), "event ids repeat");
        Ok(())
    }
}

async fn check_ops<F: StoreFactory>(factory: &F, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (store, more) = store_and_handles(factory, usize::from(HANDLES) - 1).await;
    let handles: Vec<F::Store> = std::iter::once(store).chain(more).collect();
    let streams: Vec<StreamId> = (0..STREAMS).map(|i| sid(u128::from(i) + 1)).collect();
    let mut model = Model::default();
    let mut seen = Seen::default();
    let mut values = 0u64;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Insert {
                handle,
                appends,
                correlate,
            } => {
                let correlation_id = correlate.then(CorrelationId::new);
                let mut planned = Vec::new();
                let mut tx = Transaction::new();
                for append in appends {
                    let stream = streams[usize::from(append.stream)];
                    let expected = model.resolve(append.expect, stream);
                    let events: Vec<(TestKind, u64)> = (0..append.events)
                        .map(|i| {
                            values += 1;
                            (
                                [TestKind::Alpha, TestKind::Beta, TestKind::Gamma]
                                    [usize::from(i) % 3],
                                values,
                            )
                        })
                        .collect();
                    tx = tx.append(
                        stream,
                        expected,
                        events.iter().map(|(k, v)| TestEvent::new(*k, *v)),
                    );
                    planned.push((stream, expected, events));
                }
                if let Some(id) = correlation_id {
                    tx = tx.with_correlation_id(id);
                }
                let expected = model.insert(planned, correlation_id);
                let got = handles[usize::from(handle)].insert(tx).await;
                match (got, expected) {
                    (Ok(done), Ok(model_done)) => {
                        let done: Committed = done;
                        prop_assert_eq!(
                            (done.last_position(), done.streams().to_vec()),
                            model_done,
                            "step {}: the insert's result",
                            step
                        );
                    }
                    (Err(StoreError::VersionConflict(found)), Err(model_found)) => {
                        prop_assert_eq!(found, model_found, "step {}: the conflict", step);
                    }
                    (got, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "step {step}: the store answered {got:?}, the model {expected:?}"
                        )))
                    }
                }
            }
            Op::ReadAll { handle, after } => {
                let rows = read_all(
                    &handles[usize::from(handle)],
                    after.map(|p| Cursor::from_position(Position(p))),
                )
                .await;
                let first = after.map_or(0, |p| p + 1);
                let expected: Vec<u64> = (first..model.log.len() as u64).collect();
                seen.check(&model, &rows, &expected)?;
            }
            Op::ReadStream {
                handle,
                stream,
                from,
            } => {
                let stream = streams[usize::from(stream)];
                let rows =
                    read_stream(&handles[usize::from(handle)], stream, StreamVersion(from)).await;
                let expected: Vec<u64> = model
                    .streams
                    .get(&stream)
                    .map(|positions| positions.iter().skip(from as usize).copied().collect())
                    .unwrap_or_default();
                seen.check(&model, &rows, &expected)?;
            }
            Op::StreamHead { handle, stream } => {
                let stream = streams[usize::from(stream)];
                prop_assert_eq!(
                    stream_head(&handles[usize::from(handle)], stream).await,
                    model.head_of(stream),
                    "step {}: stream_head",
                    step
                );
            }
            Op::Head { handle } => {
                let expected = (model.log.len() as u64).checked_sub(1).map(Position);
                prop_assert_eq!(
                    store_head(&handles[usize::from(handle)]).await,
                    expected,
                    "step {}: head",
                    step
                );
            }
        }
    }
    // Finally every read on every handle.
    for handle in &handles {
        let rows = read_all(handle, None).await;
        seen.check(
            &model,
            &rows,
            &(0..model.log.len() as u64).collect::<Vec<_>>(),
        )?;
        prop_assert_eq!(
            store_head(handle).await,
            (model.log.len() as u64).checked_sub(1).map(Position)
        );
        for stream in &streams {
            let rows = read_stream(handle, *stream, StreamVersion(0)).await;
            let expected = model.streams.get(stream).cloned().unwrap_or_default();
            seen.check(&model, &rows, &expected)?;
            prop_assert_eq!(stream_head(handle, *stream).await, model.head_of(*stream));
        }
    }
    Ok(())
}

/// Contract rules 1-12, 14 and 25, by model: random sequences of inserts (streams
/// from a small pool, 1-3 appends of 0-3 events, every kind of expectation,
/// passing and failing, with and without correlation ids) and reads, over
/// three handles, against a single-threaded reference model (a `Vec` log and
/// a `BTreeMap` stream index). Every insert result, every `read_all`,
/// `read_stream`, `stream_head` and `head` must equal the model's; event ids
/// and timestamps must be stable and unique per event and transaction.
///
/// 64 cases by default, `PROPTEST_CASES` to change it (proptest: a failure
/// is shrunk to a minimal sequence and printed).
pub fn model_random_operations_match_a_reference_model<F: StoreFactory>(factory: &F) {
    let _watchdog = Watchdog::start("model");
    let runtime = runtime();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&vec(op(), 1..40), |ops| {
        runtime.block_on(check_ops(factory, ops))
    });
    if let Err(error) = result {
        panic!("the store disagrees with the model: {error}");
    }
}
