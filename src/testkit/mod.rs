//! The conformance kit: one store-agnostic test suite that every
//! [`EventStore`] backend runs unchanged (feature `testkit`).
//!
//! Each case is a `pub fn` in [`cases`] that takes a [`StoreFactory`]: a way
//! to create a fresh, empty store, and another handle onto an existing one.
//! A backend's test file runs every case as its own `#[test]` with
//! [`conformance_tests!`](crate::conformance_tests):
//!
//! ```no_run
//! // tests/conformance.rs of a backend crate; for a durable store the
//! // closure would connect to a fresh database or schema.
//! use hindsight::{testkit::TestEvent, MemoryStore};
//! hindsight::conformance_tests!(|| async { MemoryStore::<TestEvent>::new() });
//! ```
//!
//! or all of them in one test with [`run_all`]. Together the cases check
//! rules 1-25, 27-30, 32 and 33 of [the contract](crate::contract); each is named after the
//! first rule it checks, and [`CASES`] lists each with all of its rules.
//!
//! # Events
//!
//! The kit writes [`TestEvent`]s, so a backend runs it as an
//! `EventStore<Event = TestEvent>`. `TestEvent` implements
//! [`EventType`](crate::EventType), `Clone`, `Debug` and `PartialEq`, and with
//! the `serde` feature `Serialize` and `Deserialize`: a durable backend that
//! requires named, serialisable events turns on `hindsight/serde` for its
//! tests.
//!
//! # Runtime
//!
//! Every case runs on a fresh multi-threaded Tokio runtime (4 workers, all
//! of the drivers Tokio was built with), so a backend may use Tokio's
//! database clients; Tokio is an optional dependency that only `testkit`
//! turns on. Concurrent writers and readers are Tokio tasks started together
//! on a barrier. Why the kit is built this way is in
//! [the design](crate::design#the-conformance-kit).
//! (With proptest 1.12, `testkit` needs Rust 1.88; the library alone keeps
//! the crate's `rust-version`.)
//!
//! # No sleeping
//!
//! No case sleeps or measures time: every wait for a subscription is
//! [`SubscriberHandle::wait_processed`](crate::SubscriberHandle::wait_processed)
//! with a generous timeout that only a hang reaches, and every case runs
//! under a watchdog that aborts the process (loudly) after two minutes: a
//! deadlock must not hang CI. The one deliberate timeout is the case that
//! checks that a wait for a position never written does time out.
//!
//! # Rule 24
//!
//! [`TestEvent`] counts its live instances per *ledger* (creating, cloning
//! and deserialising count up, dropping counts down), so the kit can check
//! on any backend that every event a store took is dropped exactly once
//! when the last handle goes: none leaks, none is dropped twice.
//!
//! # Testing application code
//!
//! The rest of the kit tests backends; [`Scenario`] and its parts test the
//! code written *against* [`EventStore`] (command handlers, projections),
//! on any backend, with the user's own events:
//!
//! - [`given`] writes a history (`(stream, events)` pairs) and returns a
//!   [`Mark`] at the store's head; [`Mark::written`] returns the events
//!   committed after it ([`Written`]), so the history is never mistaken for
//!   what the code under test wrote.
//! - [`Written::assert_events`] checks one stream's events and, when they
//!   differ, panics with both lists line by line and the first difference
//!   marked, with versions and positions.
//! - [`Scenario`] puts them together as given/when/then; its [`Outcome`]
//!   checks the command's result ([`then_ok`](Outcome::then_ok),
//!   [`then_error`](Outcome::then_error),
//!   [`then_conflict`](Outcome::then_conflict)) and what it wrote
//!   ([`then_events`](Outcome::then_events),
//!   [`then_nothing_written`](Outcome::then_nothing_written)).
//! - [`Outcome::then_processed`] and [`assert_processed`] wait, without
//!   sleeping, until a projection's subscription has processed what was
//!   written, so a test can read the projection next.
//!
//! ```
//! use hindsight::testkit::Scenario;
//! use hindsight::{EventStore, ExpectedVersion, MemoryStore, StoreError, StreamId, Transaction};
//!
//! /// The command under test: withdraw, if the account has been opened.
//! async fn withdraw<S: EventStore<Event = &'static str>>(store: &S, account: StreamId)
//!     -> Result<(), StoreError<S::Error>>
//! {
//!     let tx = Transaction::single(account, ExpectedVersion::StreamExists, "withdrawn");
//!     store.insert(tx).await.map(drop)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let account = StreamId::new();
//! Scenario::new(MemoryStore::new())
//!     .given(account, ["opened"])
//!     .when(|store| async move { withdraw(&store, account).await })
//!     .await?
//!     .then_events(account, ["withdrawn"]);
//!
//! let outcome = Scenario::new(MemoryStore::new())
//!     .when(|store| async move { withdraw(&store, account).await })
//!     .await?;
//! assert_eq!(outcome.then_conflict()[0].stream, account);
//! outcome.then_nothing_written();
//! # Ok(()) }
//! ```

mod cases_idempotency;
mod cases_lifecycle;
mod cases_metadata;
mod cases_names;
mod cases_read;
mod cases_subscribe;
mod cases_write;
mod concurrency;
mod diff;
mod faults;
mod model;
mod scenario;
mod support;
mod written;

pub use faults::{Faulty, InvalidFraction};
pub use scenario::{assert_processed, given, ConflictError, Outcome, Scenario, PROCESSED_TIMEOUT};
pub use written::{Mark, Written, WrittenEvent};

use crate::EventStore;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Every case of the kit, one `pub fn` each, named after the first rule of
/// [the contract](crate::contract) it checks; [`CASES`] lists the rules of
/// each.
pub mod cases {
    pub use super::cases_idempotency::*;
    pub use super::cases_lifecycle::*;
    pub use super::cases_metadata::*;
    pub use super::cases_names::*;
    pub use super::cases_read::*;
    pub use super::cases_subscribe::*;
    pub use super::cases_write::*;
    pub use super::concurrency::*;
    pub use super::model::*;
}

/// Creates the stores the kit tests: a fresh, empty store per case, and
/// further handles onto a store.
///
/// Implemented for every closure returning a future of a store
/// (`|| async { MemoryStore::new() }`), whose extra handles are clones. A
/// backend whose handles can be more separate than clones (a handle per
/// connection pool, say) implements it by hand and overrides
/// [`another_handle`](StoreFactory::another_handle).
///
/// ```
/// use hindsight::testkit::{StoreFactory, TestEvent};
/// use hindsight::MemoryStore;
/// fn takes<F: StoreFactory>(_: F) {}
/// takes(|| async { MemoryStore::<TestEvent>::new() });
/// ```
pub trait StoreFactory {
    /// The store under test.
    type Store: EventStore<Event = TestEvent>;

    /// A fresh, empty store, separate from every other one it created.
    fn create(&self) -> impl Future<Output = Self::Store>;

    /// Another handle onto `store`: it must share the store (rule 25).
    fn another_handle(&self, store: &Self::Store) -> impl Future<Output = Self::Store> {
        let handle = store.clone();
        async move { handle }
    }
}

impl<F, Fut, S> StoreFactory for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: EventStore<Event = TestEvent>,
{
    type Store = S;

    fn create(&self) -> impl Future<Output = S> {
        self()
    }
}

/// The type of a [`TestEvent`]: what type filters select (rule 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TestKind {
    /// Type name `"Alpha"`.
    Alpha,
    /// Type name `"Beta"`.
    Beta,
    /// Type name `"Gamma"`.
    Gamma,
    /// Type name `"End"`: the kit's end markers.
    End,
}

impl TestKind {
    /// The type name.
    pub fn name(self) -> &'static str {
        match self {
            TestKind::Alpha => "Alpha",
            TestKind::Beta => "Beta",
            TestKind::Gamma => "Gamma",
            TestKind::End => "End",
        }
    }
}

/// The event the kit writes: a type, a value, and a tag saying which writer
/// wrote it and where it sits in its transaction.
///
/// Also counts its live instances per ledger (see the module docs, rule 24);
/// events made with [`TestEvent::new`] and [`TestEvent::tagged`] are on no
/// ledger and count nothing.
///
/// ```
/// use hindsight::testkit::{TestEvent, TestKind};
/// use hindsight::EventType;
/// let event = TestEvent::new(TestKind::Beta, 7);
/// assert_eq!((event.kind(), event.value(), event.event_type()), (TestKind::Beta, 7, "Beta"));
/// assert_eq!(event.clone(), event);
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(from = "TestEventData")
)]
pub struct TestEvent {
    kind: TestKind,
    value: u64,
    writer: u32,
    index: u32,
    len: u32,
    ledger: u64,
}

impl TestEvent {
    /// An event of type `kind` carrying `value`.
    pub fn new(kind: TestKind, value: u64) -> Self {
        Self::tagged(kind, 0, value, 0, 1)
    }

    /// An event tagged as written by `writer` in its transaction number
    /// `tx` (the value), as number `index` of `len` in layout order.
    pub fn tagged(kind: TestKind, writer: u32, tx: u64, index: u32, len: u32) -> Self {
        TestEvent {
            kind,
            value: tx,
            writer,
            index,
            len,
            ledger: 0,
        }
    }

    /// Its type.
    pub fn kind(&self) -> TestKind {
        self.kind
    }

    /// Its value (a transaction number for tagged events).
    pub fn value(&self) -> u64 {
        self.value
    }

    /// The writer that wrote it (0 if untagged).
    pub fn writer(&self) -> u32 {
        self.writer
    }

    /// Its place in its transaction (layout order).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The number of events in its transaction.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether its transaction has no events (never true for a stored one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn on_ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = ledger.0;
        ledger_add(ledger.0, 1);
        self
    }
}

impl Clone for TestEvent {
    fn clone(&self) -> Self {
        ledger_add(self.ledger, 1);
        TestEvent { ..*self }
    }
}

impl Drop for TestEvent {
    fn drop(&mut self) {
        ledger_add(self.ledger, -1);
    }
}

impl crate::EventType for TestEvent {
    fn event_type(&self) -> &str {
        self.kind.name()
    }
}

/// `TestEvent`'s serialised form: deserialising counts on the ledger.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct TestEventData {
    kind: TestKind,
    value: u64,
    writer: u32,
    index: u32,
    len: u32,
    ledger: u64,
}

#[cfg(feature = "serde")]
impl From<TestEventData> for TestEvent {
    fn from(data: TestEventData) -> Self {
        ledger_add(data.ledger, 1);
        TestEvent {
            kind: data.kind,
            value: data.value,
            writer: data.writer,
            index: data.index,
            len: data.len,
            ledger: data.ledger,
        }
    }
}

/// A count of live [`TestEvent`]s (rule 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ledger(u64);

static NEXT_LEDGER: AtomicU64 = AtomicU64::new(1);
static LEDGERS: Mutex<BTreeMap<u64, i64>> = Mutex::new(BTreeMap::new());

impl Ledger {
    fn open() -> Self {
        let ledger = Ledger(NEXT_LEDGER.fetch_add(1, Ordering::Relaxed));
        ledger_add(ledger.0, 0);
        ledger
    }

    /// Live events on this ledger.
    fn live(self) -> i64 {
        LEDGERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&self.0)
            .copied()
            .unwrap_or(0)
    }
}

fn ledger_add(ledger: u64, delta: i64) {
    if ledger == 0 {
        return;
    }
    let mut ledgers = LEDGERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *ledgers.entry(ledger).or_insert(0) += delta;
}

/// One case of the kit: its name and the rules of
/// [the contract](crate::contract) it checks.
#[derive(Clone, Copy)]
pub struct Case {
    /// The name of its function in [`cases`].
    pub name: &'static str,
    /// The rules it checks.
    pub rules: &'static [u8],
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rules {:?})", self.name, self.rules)
    }
}

macro_rules! case_table {
    ($($name:ident => [$($rule:literal),*]),* $(,)?) => {
        /// Every case of the kit with the rules of [the contract](crate::contract)
        /// it checks, in the order [`run_all`] runs them.
        ///
        /// ```
        /// let covered: std::collections::BTreeSet<u8> = hindsight::testkit::CASES
        ///     .iter().flat_map(|case| case.rules.iter().copied()).collect();
        /// assert_eq!(covered, (1..=25).chain([27, 28, 29, 30, 32, 33]).collect());
        /// ```
        pub const CASES: &[Case] = &[$(Case { name: stringify!($name), rules: &[$($rule),*] }),*];

        /// Runs every case against stores from `factory`, one after another;
        /// panics on the first failure.
        ///
        /// ```
        /// use hindsight::{testkit::TestEvent, MemoryStore};
        /// hindsight::testkit::run_all(&|| async { MemoryStore::<TestEvent>::new() });
        /// ```
        pub fn run_all<F: StoreFactory>(factory: &F) {
            $(cases::$name(factory);)*
        }

        /// Expands to one `#[test]` per case of the kit, each running the
        /// case against stores from the factory expression (evaluated once
        /// per test): the conformance suite of a backend in one line.
        ///
        /// ```no_run
        /// use hindsight::{testkit::TestEvent, MemoryStore};
        /// hindsight::conformance_tests!(|| async { MemoryStore::<TestEvent>::new() });
        /// ```
        #[macro_export]
        #[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
        macro_rules! conformance_tests {
            ($factory:expr) => {
                $(
                    #[test]
                    fn $name() {
                        $crate::testkit::cases::$name(&$factory);
                    }
                )*
            };
        }
    };
}

case_table! {
    rule_01_events_keep_their_stream_and_one_unique_id => [1],
    rule_02_positions_are_dense_and_reads_start_after_a_cursor => [2, 7, 14],
    rule_03_versions_are_dense_and_follow_position_order => [3],
    rule_04_streams_exist_from_their_first_event => [4, 6],
    rule_05_the_correlation_id_is_on_every_event => [5],
    rule_06_any_always_passes => [6],
    rule_06_no_stream_passes_only_on_a_missing_stream => [6],
    rule_06_stream_exists_passes_only_on_an_existing_stream => [6],
    rule_06_exact_version_passes_only_on_the_last_version => [6],
    rule_06_exact_position_passes_only_on_the_last_position => [6],
    rule_06_every_kind_inside_multi_stream_transactions => [6, 7],
    rule_07_a_failure_writes_nothing_and_reports_every_failing_stream => [7, 2, 4],
    rule_08_insert_results_are_the_next_expectations => [8, 6],
    rule_09_transactions_are_laid_out_by_stream_id_contiguously => [9],
    rule_10_composition_concatenates_and_the_left_expectation_wins => [10],
    rule_11_one_timestamp_per_transaction => [11],
    rule_12_every_handle_reads_its_writes_at_once => [12, 25],
    rule_13_exactly_one_of_2_racing_writers_wins => [13, 7],
    rule_13_exactly_one_of_10_racing_writers_wins => [13, 7],
    rule_13_exactly_one_of_100_racing_writers_wins => [13, 7],
    rule_13_concurrent_any_writers_all_succeed => [13, 2, 3],
    rule_13_opposite_orders_never_deadlock => [13],
    rule_14_empty_writes_and_bad_input => [14, 4, 6],
    rule_15_readers_see_only_whole_transactions_under_concurrent_writers => [15, 7, 9, 2, 3],
    rule_16_subscriptions_select_a_stream_and_start_after_a_cursor => [16],
    rule_17_history_then_live_without_a_seam => [17, 12],
    rule_17_subscribers_started_before_during_and_after_writes_agree => [17, 15, 21],
    rule_18_type_filters_skip_events_that_still_advance => [18, 23],
    rule_19_stop_ends_the_subscription_inside_a_transaction => [19],
    rule_20_a_handler_error_or_panic_ends_it_with_the_event => [20],
    rule_21_cancel_is_idempotent_wakes_and_returns_once_stopped => [21],
    rule_22_a_slow_subscriber_loses_nothing_and_slows_no_writer => [22],
    rule_23_waits_count_passed_events_and_time_out => [23],
    rule_24_every_event_is_dropped_once_when_the_last_handle_goes => [24],
    rule_25_every_handle_sees_one_order => [25, 13, 17],
    rule_27_waits_from_the_own_handler_answer_at_once => [27, 23],
    rule_28_drops_never_block_and_abandoned_waits_release_everything => [28, 21, 24],
    rule_32_names_give_fixed_ids_and_the_store_keeps_the_first => [32],
    rule_32_a_conflict_on_a_named_stream_names_it => [32, 7],
    rule_32_category_subscriptions_deliver_exactly_the_category_in_order => [32, 17, 16],
    rule_30_a_soft_delete_hides_the_stream_and_a_write_continues_its_versions => [30, 3, 4, 32],
    rule_30_deletes_check_expectations_and_a_deleted_stream_is_missing => [30, 6, 7],
    rule_30_a_hard_delete_refuses_every_later_write => [30, 7],
    rule_30_truncate_hides_versions_below_and_never_moves_back => [30, 3],
    rule_30_subscriptions_skip_events_removed_before_they_reach_them => [30, 16, 17],
    rule_30_a_max_count_keeps_the_last_events_visible => [30, 3],
    rule_30_a_max_age_hides_events_older_than_it_when_reached => [30, 16, 17],
    rule_30_deleting_all_streams_is_a_logical_reset => [30, 2, 3, 17],
    rule_33_each_event_keeps_its_own_metadata_through_reads_and_subscriptions => [33, 9, 10],
    rule_33_metadata_at_its_limits_round_trips_exactly => [33],
    rule_29_a_retry_returns_the_original_result_and_writes_nothing => [29, 8, 12],
    rule_29_a_multi_stream_retry_is_recognised_only_whole => [29, 7],
    rule_29_other_content_place_or_extent_is_a_conflict => [29, 7],
    rule_29_an_id_twice_in_one_transaction_is_refused => [29, 14],
    rule_29_client_ids_read_back_everywhere => [29, 1, 17],
    rule_29_removed_events_still_count => [29, 30],
    model_random_operations_match_a_reference_model => [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 25],
}
