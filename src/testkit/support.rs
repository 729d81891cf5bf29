//! What the cases share: the runtime, the watchdog, owned copies of read
//! events, insert helpers and the checks of a whole log.

use super::{StoreFactory, TestEvent, TestKind};
use crate::{
    Committed, CorrelationId, Cursor, EventId, EventRef, EventStore, ExpectedVersion, Metadata,
    Position, StoreError, StreamHead, StreamId, StreamVersion, SubscriberHandle, Transaction, Uuid,
    VersionMismatch,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::Write;
use std::ops::ControlFlow;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, SystemTime};

/// How long a case may run before the watchdog aborts the process.
const WATCHDOG: Duration = Duration::from_secs(120);

/// How long a wait that must succeed may take: only a hang reaches it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// The marker in the message of every panic the kit provokes on purpose.
pub(crate) const EXPECTED_PANIC: &str = "hindsight-testkit: expected panic";

/// A multi-threaded Tokio runtime for one case.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .thread_name("hindsight-testkit")
        .build()
        .expect("failed to build the testkit's Tokio runtime")
}

/// Runs one case: a fresh runtime, a watchdog, quiet expected panics.
pub(crate) fn run<T>(name: &str, body: impl Future<Output = T>) -> T {
    let _watchdog = Watchdog::start(name);
    quiet_expected_panics();
    runtime().block_on(body)
}

/// Aborts the process if the case has not finished after [`WATCHDOG`].
pub(crate) struct Watchdog {
    _finished: mpsc::Sender<()>,
}

impl Watchdog {
    pub(crate) fn start(name: &str) -> Self {
        let (finished, watch) = mpsc::channel::<()>();
        let name = name.to_owned();
        std::thread::spawn(move || {
            // `Disconnected` once the case returned or panicked.
            if let Err(RecvTimeoutError::Timeout) = watch.recv_timeout(WATCHDOG) {
                // Straight to stderr: `eprintln!` would be captured with the
                // case's output, and lost with the process.
                let _ = writeln!(
                    std::io::stderr(),
                    "testkit watchdog: `{name}` still running after {WATCHDOG:?}: deadlock? aborting"
                );
                std::process::abort();
            }
        });
        Watchdog {
            _finished: finished,
        }
    }
}

/// Keeps the panics the kit provokes in handlers out of the test output.
fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if !message.contains(EXPECTED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// A stream id whose order among `sid`s is the order of `n`.
pub(crate) fn sid(n: u128) -> StreamId {
    StreamId::from_uuid(Uuid::from_u128(n))
}

/// `n` untagged events of `kind` with values `first..`.
pub(crate) fn events(kind: TestKind, first: u64, n: u64) -> Vec<TestEvent> {
    (first..first + n)
        .map(|v| TestEvent::new(kind, v))
        .collect()
}

pub(crate) fn ev(value: u64) -> TestEvent {
    TestEvent::new(TestKind::Alpha, value)
}

pub(crate) fn head(version: u64, position: u64) -> StreamHead {
    StreamHead {
        version: StreamVersion(version),
        position: Position(position),
    }
}

pub(crate) fn mismatch(
    stream: StreamId,
    expected: ExpectedVersion,
    found: Option<StreamHead>,
) -> VersionMismatch {
    VersionMismatch {
        stream,
        stream_name: None,
        expected,
        found,
    }
}

/// A committed event, copied out of a read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row<C> {
    pub(crate) cursor: C,
    pub(crate) stream: StreamId,
    pub(crate) version: StreamVersion,
    pub(crate) event_id: EventId,
    pub(crate) correlation_id: Option<CorrelationId>,
    pub(crate) created_at: SystemTime,
    pub(crate) metadata: Metadata,
    pub(crate) event: TestEvent,
}

impl<C: Cursor> Row<C> {
    pub(crate) fn of(event: EventRef<'_, TestEvent, C>) -> Self {
        Row {
            cursor: event.cursor,
            stream: event.stream,
            version: event.version,
            event_id: event.event_id,
            correlation_id: event.correlation_id,
            created_at: event.created_at,
            metadata: event.metadata.clone(),
            event: event.payload.clone(),
        }
    }

    pub(crate) fn position(&self) -> Position {
        self.cursor.position()
    }

    pub(crate) fn head(&self) -> StreamHead {
        StreamHead {
            version: self.version,
            position: self.position(),
        }
    }
}

pub(crate) type RowsOf<S> = Vec<Row<<S as EventStore>::Cursor>>;

/// Every committed event after `after`, in the order read.
pub(crate) async fn read_all<S: EventStore<Event = TestEvent>>(
    store: &S,
    after: Option<S::Cursor>,
) -> RowsOf<S> {
    let mut rows = Vec::new();
    store
        .read_all(after, |event| {
            rows.push(Row::of(event));
            ControlFlow::Continue(())
        })
        .await
        .unwrap_or_else(|error| panic!("read_all failed: {error}"));
    rows
}

/// The committed events of `stream` from version `from`, in the order read.
pub(crate) async fn read_stream<S: EventStore<Event = TestEvent>>(
    store: &S,
    stream: StreamId,
    from: StreamVersion,
) -> RowsOf<S> {
    let mut rows = Vec::new();
    store
        .read_stream(stream, from, |event| {
            rows.push(Row::of(event));
            ControlFlow::Continue(())
        })
        .await
        .unwrap_or_else(|error| panic!("read_stream failed: {error}"));
    rows
}

/// The payload values of `stream`, oldest first.
pub(crate) async fn values<S: EventStore<Event = TestEvent>>(
    store: &S,
    stream: StreamId,
) -> Vec<u64> {
    read_stream(store, stream, StreamVersion(0))
        .await
        .iter()
        .map(|row| row.event.value())
        .collect()
}

pub(crate) async fn store_head<S: EventStore>(store: &S) -> Option<Position> {
    store
        .head()
        .await
        .unwrap_or_else(|error| panic!("head failed: {error}"))
        .map(Cursor::position)
}

pub(crate) async fn stream_head<S: EventStore>(store: &S, stream: StreamId) -> Option<StreamHead> {
    store
        .stream_head(stream)
        .await
        .unwrap_or_else(|error| panic!("stream_head failed: {error}"))
}

/// Inserts `tx`, which must succeed.
#[track_caller]
pub(crate) fn insert<'a, S: EventStore<Event = TestEvent>>(
    store: &'a S,
    tx: Transaction<TestEvent>,
) -> impl Future<Output = Committed> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        match store.insert(tx).await {
            Ok(committed) => committed,
            Err(error) => panic!("{caller}: the insert failed: {error}"),
        }
    }
}

/// Inserts `tx`, which must fail with a version conflict; its mismatches.
#[track_caller]
pub(crate) fn conflict<'a, S: EventStore<Event = TestEvent>>(
    store: &'a S,
    tx: Transaction<TestEvent>,
) -> impl Future<Output = Vec<VersionMismatch>> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        match store.insert(tx).await {
            Err(StoreError::VersionConflict(mismatches)) => mismatches,
            Ok(committed) => {
                panic!("{caller}: expected a version conflict, the insert succeeded: {committed:?}")
            }
            Err(error) => panic!("{caller}: expected a version conflict, got: {error}"),
        }
    }
}

/// Checks contract rules 1-3 over a read of the whole log: positions 0, 1, ...
/// without gaps, cursors in the same order and converting without loss,
/// versions 0, 1, ... per stream in position order, unique event ids, and
/// every transaction of tagged events (same writer and value, indexes
/// `0..len`) whole and contiguous.
pub(crate) fn check_log<C: Cursor>(rows: &[Row<C>]) -> Result<(), String> {
    let mut versions: HashMap<StreamId, u64> = HashMap::new();
    let mut ids = HashSet::new();
    for (index, row) in rows.iter().enumerate() {
        let position = row.position();
        if position != Position(index as u64) {
            return Err(format!(
                "event {index} sits at {position:?}: a gap or a repeat"
            ));
        }
        if C::from_position(position) != row.cursor {
            return Err(format!("cursor {:?} does not convert back", row.cursor));
        }
        if index > 0 && rows[index - 1].cursor >= row.cursor {
            return Err(format!("cursors out of order at {position:?}"));
        }
        let version = versions.entry(row.stream).or_insert(0);
        if row.version != StreamVersion(*version) {
            return Err(format!(
                "{position:?}: stream {} has version {:?}, expected {version}",
                row.stream, row.version
            ));
        }
        *version += 1;
        if !ids.insert(row.event_id) {
            return Err(format!(
                "{position:?}: event id {} used twice",
                row.event_id
            ));
        }
        let event = &row.event;
        if event.writer() != 0 && event.index() == 0 {
            let len = event.len() as usize;
            let Some(tx) = rows.get(index..index + len) else {
                return Err(format!("{position:?}: a transaction of {len} is cut off"));
            };
            for (i, other) in tx.iter().enumerate() {
                let e = &other.event;
                if (e.writer(), e.value(), e.index() as usize, e.len() as usize)
                    != (event.writer(), event.value(), i, len)
                {
                    return Err(format!(
                        "{position:?}: transaction not whole and contiguous"
                    ));
                }
                if other.created_at != row.created_at {
                    return Err(format!("{position:?}: one transaction, two timestamps"));
                }
            }
        }
        if event.writer() != 0 && event.index() > 0 {
            let starts = index.checked_sub(event.index() as usize);
            let ok = starts.is_some_and(|start| {
                let first = &rows[start].event;
                (first.writer(), first.value(), first.index()) == (event.writer(), event.value(), 0)
            });
            if !ok {
                return Err(format!(
                    "{position:?}: part of a transaction without its start"
                ));
            }
        }
    }
    Ok(())
}

/// Checks the whole store: [`check_log`] over `read_all`, and every stream
/// read, stream head and the head agreeing with it. Returns the rows.
pub(crate) async fn assert_well_formed<S: EventStore<Event = TestEvent>>(store: &S) -> RowsOf<S> {
    let rows = read_all(store, None).await;
    if let Err(problem) = check_log(&rows) {
        panic!("the log is not well formed: {problem}");
    }
    assert_eq!(
        store_head(store).await,
        rows.last().map(Row::position),
        "head"
    );
    let mut per_stream: HashMap<StreamId, Vec<Row<S::Cursor>>> = HashMap::new();
    for row in &rows {
        per_stream.entry(row.stream).or_default().push(row.clone());
    }
    for (stream, expected) in per_stream {
        let read = read_stream(store, stream, StreamVersion(0)).await;
        assert_eq!(
            read, expected,
            "read_stream of {stream} disagrees with read_all"
        );
        let last = expected.last().expect("a listed stream has events");
        assert_eq!(stream_head(store, stream).await, Some(last.head()));
    }
    rows
}

/// What a subscriber recorded: every event it got, in order.
pub(crate) type Recorded<C> = Arc<Mutex<Vec<Row<C>>>>;

/// Starts a subscription that records every event it gets.
pub(crate) async fn record<S: EventStore<Event = TestEvent>>(
    store: &S,
    selector: crate::Selector<TestEvent>,
) -> (S::Subscriber<std::convert::Infallible>, Recorded<S::Cursor>) {
    let rows: Recorded<S::Cursor> = Arc::default();
    let sink = Arc::clone(&rows);
    let subscription = store
        .spawn_subscriber(selector, move |event| {
            sink.lock().unwrap().push(Row::of(event));
            Ok::<_, std::convert::Infallible>(crate::Flow::Continue)
        })
        .await
        .unwrap_or_else(|error| panic!("spawn_subscriber failed: {error}"));
    (subscription, rows)
}

/// Waits (with [`PATIENCE`]) until `subscription` has processed `position`.
#[track_caller]
pub(crate) fn reach<'a, X, H>(
    subscription: &'a H,
    position: Position,
) -> impl Future<Output = ()> + 'a
where
    H: SubscriberHandle<X>,
{
    let caller = std::panic::Location::caller();
    async move {
        if let Err(error) = subscription
            .wait_processed(H::Cursor::from_position(position), PATIENCE)
            .await
        {
            panic!("{caller}: the subscription did not reach {position:?}: {error}");
        }
    }
}

pub(crate) fn snapshot<C: Clone>(rows: &Recorded<C>) -> Vec<Row<C>> {
    rows.lock().unwrap().clone()
}

/// A fresh store and `extra` more handles onto it.
pub(crate) async fn store_and_handles<F: StoreFactory>(
    factory: &F,
    extra: usize,
) -> (F::Store, Vec<F::Store>) {
    let store = factory.create().await;
    let mut handles = Vec::with_capacity(extra);
    for _ in 0..extra {
        handles.push(factory.another_handle(&store).await);
    }
    (store, handles)
}

// ---- Digests: hash chains over what a reader or subscriber saw ----

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(hash: u64, word: u64) -> u64 {
    word.to_le_bytes().iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// A hash chain over (position, event id, stream, version) of every event
/// in delivery order, checking the order as it goes.
#[derive(Debug, Clone)]
pub(crate) struct Digest {
    hash: u64,
    pub(crate) count: u64,
    /// `None` for all streams: positions must be 0, 1, 2, ...
    scope: Option<StreamId>,
    last: Option<Position>,
    versions: HashMap<StreamId, u64>,
    /// The first order violation seen, if any.
    pub(crate) problem: Option<String>,
}

impl Digest {
    pub(crate) fn new(scope: Option<StreamId>) -> Self {
        Digest {
            hash: FNV_OFFSET,
            count: 0,
            scope,
            last: None,
            versions: HashMap::new(),
            problem: None,
        }
    }

    pub(crate) fn push<C: Cursor>(&mut self, event: EventRef<'_, TestEvent, C>) {
        let position = event.position();
        let problem = match self.scope {
            None if position != Position(self.count) => Some("a gap or a repeat"),
            Some(stream) if event.stream != stream => Some("another stream"),
            _ if self.last >= Some(position) => Some("out of position order"),
            _ => None,
        };
        let version = self.versions.entry(event.stream).or_default();
        let problem =
            problem.or((event.version != StreamVersion(*version)).then_some("versions not dense"));
        if let (Some(problem), None) = (problem, &self.problem) {
            self.problem = Some(format!("{problem} at {position:?}"));
        }
        *version += 1;
        self.last = Some(position);
        self.count += 1;
        let (id_high, id_low) = event.event_id.as_uuid().as_u64_pair();
        let (stream_high, stream_low) = event.stream.as_uuid().as_u64_pair();
        self.hash = [
            position.get(),
            id_high,
            id_low,
            stream_high,
            stream_low,
            event.version.get(),
        ]
        .into_iter()
        .fold(self.hash, fnv);
    }

    pub(crate) fn summary(&self) -> (u64, u64) {
        (self.hash, self.count)
    }
}

/// The digest of a read of everything (`scope` `None`) or of one stream.
pub(crate) async fn digest_of_read<S: EventStore<Event = TestEvent>>(
    store: &S,
    scope: Option<StreamId>,
) -> Digest {
    let mut digest = Digest::new(scope);
    let visit = |event: EventRef<'_, TestEvent, S::Cursor>| {
        digest.push(event);
        ControlFlow::Continue(())
    };
    match scope {
        None => store.read_all(None, visit).await,
        Some(stream) => store.read_stream(stream, StreamVersion(0), visit).await,
    }
    .unwrap_or_else(|error| panic!("read failed: {error}"));
    digest
}
