//! Application code written once against `EventStore`, run here on the
//! memory store: bank accounts with expected versions, retries on conflict,
//! transfers as one multi-stream transaction, and a balance projection kept
//! up to date by a subscription.
//!
//! ```text
//! cargo run --example bank
//! ```
//!
//! Nothing below `main` names `MemoryStore`: the same `Bank` runs on any
//! backend that implements `EventStore<Event = AccountEvent>`. `main` runs
//! it twice: on the memory store, and on the same store wrapped in the
//! testkit's `Faulty`, which answers a seeded fifth of the inserts with a
//! version conflict, so the retry path is tested on every run.
//!
//! `cargo test --example bank` runs the tests at the end: given/when/then
//! tests of single commands with the testkit's `Scenario`.

use hindsight::testkit::Faulty;
use hindsight::{
    Cursor, EventRef, EventStore, EventType, ExpectedVersion, Flow, MemoryStore, Selector,
    StoreError, StreamHead, StreamId, StreamVersion, SubscriberHandle, Transaction,
};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happens to an account.
#[derive(Debug, Clone, PartialEq)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
    SentTransfer { to: StreamId, amount: u64 },
    ReceivedTransfer { from: StreamId, amount: u64 },
}

/// Names events, as a durable backend would store them.
impl EventType for AccountEvent {
    fn event_type(&self) -> &str {
        match self {
            AccountEvent::Opened { .. } => "AccountOpened",
            AccountEvent::Deposited { .. } => "MoneyDeposited",
            AccountEvent::Withdrawn { .. } => "MoneyWithdrawn",
            AccountEvent::SentTransfer { .. } => "TransferSent",
            AccountEvent::ReceivedTransfer { .. } => "TransferReceived",
        }
    }
}

impl AccountEvent {
    /// How the event changes the balance.
    fn delta(&self) -> i64 {
        match self {
            AccountEvent::Opened { .. } => 0,
            AccountEvent::Deposited { amount } | AccountEvent::ReceivedTransfer { amount, .. } => {
                *amount as i64
            }
            AccountEvent::Withdrawn { amount } | AccountEvent::SentTransfer { amount, .. } => {
                -(*amount as i64)
            }
        }
    }
}

#[derive(Debug)]
enum BankError<E> {
    Store(StoreError<E>),
    /// The command is refused (no such account, insufficient funds).
    Refused(String),
}

impl<E: std::fmt::Display> std::fmt::Display for BankError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BankError::Store(error) => write!(f, "{error}"),
            BankError::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl<E> From<StoreError<E>> for BankError<E> {
    fn from(error: StoreError<E>) -> Self {
        BankError::Store(error)
    }
}

/// The command side, generic over the store.
struct Bank<S> {
    store: S,
    /// Commands that lost a race and were decided again.
    retries: AtomicU64,
}

impl<S: EventStore<Event = AccountEvent>> Bank<S> {
    /// Replays an account: its balance and the head that balance is at
    /// (`None`: no account). One read, so the two always agree.
    async fn load(
        &self,
        account: StreamId,
    ) -> Result<(i64, Option<StreamHead>), BankError<S::Error>> {
        let (mut balance, mut head) = (0, None);
        let replay = |event: EventRef<'_, AccountEvent, S::Cursor>| {
            balance += event.payload.delta();
            head = Some(StreamHead {
                version: event.version,
                position: event.position(),
            });
            ControlFlow::Continue(())
        };
        let read = self
            .store
            .read_stream(account, StreamVersion(0), replay)
            .await;
        read.map_err(StoreError::Backend)?;
        Ok((balance, head))
    }

    async fn open(&self, owner: &str) -> Result<StreamId, BankError<S::Error>> {
        let account = StreamId::new();
        let opened = AccountEvent::Opened {
            owner: owner.into(),
        };
        // `NoStream`: opening the same account twice is a conflict.
        let tx = Transaction::single(account, ExpectedVersion::NoStream, opened);
        self.store.insert(tx).await?;
        Ok(account)
    }

    /// Decides on the current state and writes expecting that state; when
    /// another writer got there first, loads again and decides again.
    /// `decide` gets the accounts' balances and returns one event each.
    async fn command<D>(&self, accounts: &[StreamId], decide: D) -> Result<(), BankError<S::Error>>
    where
        D: Fn(&[i64]) -> Result<Vec<AccountEvent>, BankError<S::Error>>,
    {
        loop {
            let mut balances = Vec::new();
            let mut heads = Vec::new();
            for &account in accounts {
                let (balance, head) = self.load(account).await?;
                heads.push(head.ok_or(BankError::Refused(format!("no account {account}")))?);
                balances.push(balance);
            }
            // Real handlers await other things between deciding and writing;
            // that is when another teller gets in first.
            tokio::task::yield_now().await;
            // Each stream expects exactly the version it was decided on.
            let tx = accounts
                .iter()
                .zip(heads)
                .zip(decide(&balances)?)
                .fold(Transaction::new(), |tx, ((account, head), event)| {
                    tx.append(*account, head.expect_exact(), [event])
                });
            match self.store.insert(tx).await {
                Ok(_) => return Ok(()),
                Err(StoreError::VersionConflict(_)) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn deposit(&self, account: StreamId, amount: u64) -> Result<(), BankError<S::Error>> {
        self.command(&[account], |_| Ok(vec![AccountEvent::Deposited { amount }]))
            .await
    }

    async fn withdraw(&self, account: StreamId, amount: u64) -> Result<(), BankError<S::Error>> {
        self.command(&[account], |balances| {
            covered(balances[0], amount)?;
            Ok(vec![AccountEvent::Withdrawn { amount }])
        })
        .await
    }

    /// One transaction over both streams: both change, or neither.
    async fn transfer(
        &self,
        from: StreamId,
        to: StreamId,
        amount: u64,
    ) -> Result<(), BankError<S::Error>> {
        self.command(&[from, to], |balances| {
            covered(balances[0], amount)?;
            let sent = AccountEvent::SentTransfer { to, amount };
            Ok(vec![sent, AccountEvent::ReceivedTransfer { from, amount }])
        })
        .await
    }
}

fn covered<E>(balance: i64, wanted: u64) -> Result<(), BankError<E>> {
    match balance < wanted as i64 {
        true => Err(BankError::Refused(format!(
            "{wanted} wanted, {balance} there"
        ))),
        false => Ok(()),
    }
}

/// The read side: balances per account, and the last cursor applied: the
/// checkpoint a durable projection would store with them.
type Balances<C> = (BTreeMap<StreamId, i64>, Option<C>);

/// Runs the scenario on any store; `opened` runs once the accounts are
/// open. Returns whether every check held, and how many commands were
/// retried after a version conflict.
async fn run<S: EventStore<Event = AccountEvent>>(
    store: S,
    opened: impl FnOnce(),
) -> Result<(bool, u64), BankError<S::Error>> {
    let projection: Arc<Mutex<Balances<S::Cursor>>> = Arc::default();
    let sink = Arc::clone(&projection);
    let subscription = store
        .spawn_subscriber(Selector::all(), move |event| {
            let (balances, checkpoint) = &mut *sink.lock().unwrap();
            *balances.entry(event.stream).or_default() += event.payload.delta();
            *checkpoint = Some(event.cursor);
            Ok::<_, std::convert::Infallible>(Flow::Continue)
        })
        .await
        .map_err(StoreError::Backend)?;

    let bank = Arc::new(Bank {
        store: store.clone(),
        retries: AtomicU64::new(0),
    });
    let accounts = [
        bank.open("alice").await?,
        bank.open("bob").await?,
        bank.open("carol").await?,
    ];
    let [_, bob, carol] = accounts;
    opened();

    // Concurrent tellers: deposits, then transfers round the ring, all
    // racing on the same streams. Losers retry; nothing is lost.
    let tellers: Vec<_> = (0..6)
        .map(|teller| {
            let bank = Arc::clone(&bank);
            tokio::spawn(async move {
                for round in 0..20 {
                    let from = accounts[(teller + round) % 3];
                    let to = accounts[(teller + round + 1) % 3];
                    bank.deposit(from, 10).await?;
                    bank.transfer(from, to, 5).await?;
                }
                Ok::<_, BankError<S::Error>>(())
            })
        })
        .collect();
    for teller in tellers {
        teller.await.expect("a teller panicked")?;
    }
    bank.withdraw(carol, 7).await?;
    let refused = match bank.withdraw(bob, 1_000_000).await {
        Err(error @ BankError::Refused(_)) => {
            println!("overdraft {error}");
            true
        }
        _ => false,
    };

    // No sleep: wait until the projection has applied everything written.
    let head = store
        .head()
        .await
        .map_err(StoreError::Backend)?
        .expect("events were written");
    subscription
        .wait_processed(head, Duration::from_secs(30))
        .await
        .expect("the projection fell behind");
    subscription.cancel().await;

    let (projected, checkpoint) = projection.lock().unwrap().clone();
    let mut all_agree = refused && checkpoint == Some(head);
    let mut total = 0;
    for (name, account) in ["alice", "bob", "carol"].iter().zip(accounts) {
        let (balance, _) = bank.load(account).await?;
        let projected = projected.get(&account).copied().unwrap_or(0);
        println!("{name:>6}: {balance:>4} (projection: {projected})");
        all_agree &= balance == projected;
        total += balance;
    }
    all_agree &= total == 6 * 20 * 10 - 7;
    let retries = bank.retries.load(Ordering::Relaxed);
    println!(
        "total {total} in {} events; {retries} commands retried after a version conflict",
        head.position().get() + 1,
    );
    Ok((all_agree, retries))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    println!("-- on the memory store");
    let plain = run(MemoryStore::new(), || {}).await;
    report(&plain);

    // The same code against a store that answers a seeded fifth of the
    // tellers' inserts with a version conflict (the testkit's `Faulty`):
    // the retry path runs every time, and every balance still adds up.
    println!("-- with a fifth of the tellers' inserts failing (injected conflicts)");
    let store = Faulty::new(MemoryStore::new());
    let faults = store.clone();
    let faulty = run(store.clone(), move || {
        faults.fail_fraction(0.2, 7).expect("0.2 is a fraction");
    })
    .await;
    report(&faulty);
    let injected = store.injected();
    let retried_each = match &faulty {
        Ok((_, retries)) => *retries >= injected && injected > 0,
        Err(_) => false,
    };
    println!("{injected} conflicts injected, each one retried: {retried_each}");

    match (plain, faulty) {
        (Ok((true, _)), Ok((true, _))) if retried_each => std::process::ExitCode::SUCCESS,
        _ => std::process::ExitCode::FAILURE,
    }
}

fn report<E: std::fmt::Display>(outcome: &Result<(bool, u64), BankError<E>>) {
    match outcome {
        Ok((true, _)) => println!("every balance agrees with the projection"),
        Ok((false, _)) => eprintln!("a check failed"),
        Err(error) => eprintln!("bank error: {error}"),
    }
}

/// Given/when/then tests of the bank's commands, with the testkit's
/// `Scenario` (`cargo test --example bank`): each starts from a history,
/// runs one command, and checks its result and the events it wrote.
#[cfg(test)]
mod tests {
    use super::*;
    use hindsight::testkit::Scenario;

    fn bank<S>(store: S) -> Bank<S> {
        Bank {
            store,
            retries: AtomicU64::new(0),
        }
    }

    /// An account of 50.
    fn opened_with_50() -> [AccountEvent; 2] {
        [
            AccountEvent::Opened {
                owner: "alice".into(),
            },
            AccountEvent::Deposited { amount: 50 },
        ]
    }

    #[tokio::test]
    async fn a_covered_withdrawal_is_written() {
        let account = StreamId::new();
        let outcome = Scenario::new(MemoryStore::new())
            .given(account, opened_with_50())
            .when(|store| async move { bank(store).withdraw(account, 30).await })
            .await
            .expect("the store failed");
        outcome.then_ok();
        outcome.then_events(account, [AccountEvent::Withdrawn { amount: 30 }]);
    }

    #[tokio::test]
    async fn an_overdraft_is_refused_and_writes_nothing() {
        let account = StreamId::new();
        let outcome = Scenario::new(MemoryStore::new())
            .given(account, opened_with_50())
            .when(|store| async move { bank(store).withdraw(account, 80).await })
            .await
            .expect("the store failed");
        assert!(matches!(outcome.then_error(), BankError::Refused(_)));
        outcome.then_nothing_written();
    }

    /// Another teller got in first (a conflict injected by `Faulty`): the
    /// withdrawal is decided again and written once.
    #[tokio::test]
    async fn a_withdrawal_that_lost_a_race_is_retried_and_written_once() {
        let store = Faulty::new(MemoryStore::new());
        let account = StreamId::new();
        let faults = store.clone();
        let outcome = Scenario::new(store)
            .given(account, opened_with_50())
            .when(|store| async move {
                faults.fail_next(account, 1); // after the history is written
                let bank = bank(store);
                bank.withdraw(account, 30).await?;
                Ok::<_, BankError<_>>(bank.retries.load(Ordering::Relaxed))
            })
            .await
            .expect("the store failed");
        assert_eq!(*outcome.then_ok(), 1, "retries");
        outcome.then_events(account, [AccountEvent::Withdrawn { amount: 30 }]);
    }
}
