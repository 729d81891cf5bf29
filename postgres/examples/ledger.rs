//! Hindsight's testing pattern, in Rust: application code and a projection
//! written once against `EventStore`, run on the memory store in tests and
//! on PostgreSQL in production. The projection's read model and its
//! checkpoint live in PostgreSQL whichever store feeds it.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:54329/postgres \
//!     cargo run -p hindsight-postgres --example ledger
//! cargo test -p hindsight-postgres --example ledger
//! ```
//!
//! `main` runs the ledger on `PgStore` when `DATABASE_URL` is set, and on
//! the memory store (without the projection, which needs a database)
//! when it is not. The tests run the same scenario on both stores: the
//! commands on the memory store always; the projection, fed by the memory
//! store and by `PgStore`, when `DATABASE_URL` is set (and they fail when
//! it is not but `CI` is).

use hindsight::{
    EventRef, EventStore, EventType, ExpectedVersion, MemoryStore, Position, Selector, StoreError,
    StreamHead, StreamId, StreamVersion, Transaction,
};
use hindsight_postgres::{PgStore, Projection, ProjectionHandle};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

/// What happens to an account.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum LedgerEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl EventType for LedgerEvent {
    fn event_type(&self) -> &str {
        match self {
            LedgerEvent::Opened { .. } => "AccountOpened",
            LedgerEvent::Deposited { .. } => "MoneyDeposited",
            LedgerEvent::Withdrawn { .. } => "MoneyWithdrawn",
        }
    }
}

/// Why a command did not happen.
#[derive(Debug)]
enum LedgerError<B> {
    /// The store failed (not a conflict: those are retried).
    Store(StoreError<B>),
    /// The account does not exist.
    NoAccount(StreamId),
    /// A withdrawal larger than the balance.
    Insufficient { balance: u64, wanted: u64 },
}

impl<B: std::fmt::Display> std::fmt::Display for LedgerError<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerError::Store(error) => write!(f, "{error}"),
            LedgerError::NoAccount(account) => write!(f, "no account {account}"),
            LedgerError::Insufficient { balance, wanted } => {
                write!(f, "{wanted} wanted, {balance} there")
            }
        }
    }
}

/// The command side, generic over the store: nothing here names a backend.
struct Ledger<S> {
    store: S,
}

impl<S: EventStore<Event = LedgerEvent>> Ledger<S> {
    /// The account's balance and the head it is at (`None`: no account).
    async fn load(
        &self,
        account: StreamId,
    ) -> Result<(u64, Option<StreamHead>), LedgerError<S::Error>> {
        let (mut balance, mut head) = (0u64, None);
        self.store
            .read_stream(
                account,
                StreamVersion(0),
                |event: EventRef<'_, LedgerEvent, S::Cursor>| {
                    match event.payload {
                        LedgerEvent::Opened { .. } => {}
                        LedgerEvent::Deposited { amount } => balance += amount,
                        LedgerEvent::Withdrawn { amount } => balance -= amount,
                    }
                    head = Some(StreamHead {
                        version: event.version,
                        position: event.position(),
                    });
                    ControlFlow::Continue(())
                },
            )
            .await
            .map_err(|error| LedgerError::Store(StoreError::Backend(error)))?;
        Ok((balance, head))
    }

    async fn open(&self, owner: &str) -> Result<StreamId, LedgerError<S::Error>> {
        let account = StreamId::new();
        let opened = LedgerEvent::Opened {
            owner: owner.into(),
        };
        self.store
            .insert(Transaction::single(
                account,
                ExpectedVersion::NoStream,
                opened,
            ))
            .await
            .map_err(LedgerError::Store)?;
        Ok(account)
    }

    /// Decides on the loaded state and writes expecting exactly that
    /// state; another writer got in first: load and decide again.
    async fn command(
        &self,
        account: StreamId,
        decide: impl Fn(u64) -> Result<LedgerEvent, LedgerError<S::Error>>,
    ) -> Result<(), LedgerError<S::Error>> {
        loop {
            let (balance, head) = self.load(account).await?;
            let head = head.ok_or(LedgerError::NoAccount(account))?;
            let tx = Transaction::single(account, head.expect_exact(), decide(balance)?);
            match self.store.insert(tx).await {
                Ok(_) => return Ok(()),
                Err(StoreError::VersionConflict(_)) => continue,
                Err(error) => return Err(LedgerError::Store(error)),
            }
        }
    }

    async fn deposit(&self, account: StreamId, amount: u64) -> Result<(), LedgerError<S::Error>> {
        self.command(account, |_| Ok(LedgerEvent::Deposited { amount }))
            .await
    }

    async fn withdraw(&self, account: StreamId, amount: u64) -> Result<(), LedgerError<S::Error>> {
        self.command(account, |balance| match balance >= amount {
            true => Ok(LedgerEvent::Withdrawn { amount }),
            false => Err(LedgerError::Insufficient {
                balance,
                wanted: amount,
            }),
        })
        .await
    }
}

/// The read model: `"<schema>".balances (account, owner, balance)`, kept by
/// a checkpointed projection named `balances` in the same schema, fed by
/// any store whose cursor is a position.
async fn run_balances<S>(
    pool: &sqlx::PgPool,
    schema: &str,
    store: &S,
) -> Result<ProjectionHandle<Position, sqlx::Error, S::Error>, Box<dyn std::error::Error>>
where
    S: EventStore<Event = LedgerEvent, Cursor = Position>,
    S::Error: std::error::Error + 'static,
{
    let projection = Projection::open(pool.clone(), schema, "balances").await?;
    sqlx::raw_sql(&format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".balances \
         (account UUID PRIMARY KEY, owner TEXT NOT NULL, balance BIGINT NOT NULL)"
    ))
    .execute(pool)
    .await?;
    let (open, change) = (
        format!("INSERT INTO \"{schema}\".balances VALUES ($1, $2, 0)"),
        format!("UPDATE \"{schema}\".balances SET balance = balance + $2 WHERE account = $1"),
    );
    let runner = projection
        .run(store, Selector::all(), move |db, event| {
            let account = *event.stream.as_uuid();
            let (sql, owner, delta) = match event.payload {
                LedgerEvent::Opened { owner } => (open.clone(), Some(owner.clone()), 0),
                LedgerEvent::Deposited { amount } => (change.clone(), None, *amount as i64),
                LedgerEvent::Withdrawn { amount } => (change.clone(), None, -(*amount as i64)),
            };
            Box::pin(async move {
                let query = sqlx::query(&sql).bind(account);
                match owner {
                    Some(owner) => query.bind(owner),
                    None => query.bind(delta),
                }
                .execute(db)
                .await?;
                Ok(())
            })
        })
        .await?;
    Ok(runner)
}

/// The scenario both stores run: two accounts, concurrent deposits from
/// four tasks (conflicts retried), one refused withdrawal. Returns the
/// accounts with their owners and balances as the commands see them.
async fn scenario<S>(store: S) -> BTreeMap<StreamId, (String, u64)>
where
    S: EventStore<Event = LedgerEvent> + Clone + Send + Sync + 'static,
    S::Error: std::fmt::Debug + std::fmt::Display,
{
    let ledger = Ledger {
        store: store.clone(),
    };
    let ada = ledger.open("ada").await.unwrap();
    let bob = ledger.open("bob").await.unwrap();
    let tellers: Vec<_> = (0..4u64)
        .map(|teller| {
            let ledger = Ledger {
                store: store.clone(),
            };
            tokio::spawn(async move {
                for n in 0..10 {
                    let account = if (teller + n) % 2 == 0 { ada } else { bob };
                    ledger.deposit(account, 10 + n).await.unwrap();
                }
            })
        })
        .collect();
    for teller in tellers {
        teller.await.unwrap();
    }
    ledger.withdraw(ada, 50).await.unwrap();
    let refused = ledger.withdraw(bob, 1_000_000).await;
    let (bob_balance, _) = ledger.load(bob).await.unwrap();
    match refused {
        Err(LedgerError::Insufficient { balance, wanted }) => {
            assert_eq!((balance, wanted), (bob_balance, 1_000_000))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let missing = ledger.deposit(StreamId::new(), 1).await;
    assert!(
        matches!(missing, Err(LedgerError::NoAccount(_))),
        "{missing:?}"
    );
    println!(
        "refused: {}",
        ledger.withdraw(bob, 1_000_000).await.unwrap_err()
    );
    let mut accounts = BTreeMap::new();
    for (account, owner) in [(ada, "ada"), (bob, "bob")] {
        let (balance, _) = ledger.load(account).await.unwrap();
        accounts.insert(account, (owner.to_owned(), balance));
    }
    accounts
}

/// The read model's rows, once the projection applied everything up to
/// the store's head.
async fn projected<S>(
    pool: &sqlx::PgPool,
    schema: &str,
    store: &S,
) -> BTreeMap<StreamId, (String, u64)>
where
    S: EventStore<Event = LedgerEvent, Cursor = Position>,
    S::Error: std::error::Error + 'static,
{
    let runner = run_balances(pool, schema, store).await.unwrap();
    let head = store.head().await.unwrap().unwrap();
    runner
        .wait_checkpoint(head, Duration::from_secs(30))
        .await
        .unwrap();
    runner.cancel().await;
    let rows: Vec<(hindsight::Uuid, String, i64)> = sqlx::query_as(&format!(
        "SELECT account, owner, balance FROM \"{schema}\".balances"
    ))
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(account, owner, balance)| (StreamId::from(account), (owner, balance as u64)))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        let accounts = scenario(MemoryStore::new()).await;
        println!("on the memory store (set DATABASE_URL for PostgreSQL and the projection):");
        for (account, (owner, balance)) in accounts {
            println!("  {owner} ({account}): {balance}");
        }
        return Ok(());
    };
    let store = PgStore::connect(&url, "ledger_example").await?;
    let accounts = scenario(store.clone()).await;
    let read_model = projected(store.pool(), "ledger_example", &store).await;
    println!("on PostgreSQL (schema ledger_example): commands / read model");
    for (account, (owner, balance)) in &accounts {
        println!(
            "  {owner} ({account}): {balance} / {:?}",
            read_model.get(account)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `DATABASE_URL`, or `None` after one line on stderr; panics when `CI`
    /// is set: there the PostgreSQL tests must run.
    fn database_url() -> Option<String> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) => {
                panic!("DATABASE_URL is not set, but CI is: the PostgreSQL tests must run in CI")
            }
            _ => {
                eprintln!("ledger example: DATABASE_URL is not set; skipping its PostgreSQL tests");
                None
            }
        }
    }

    fn fresh_schema() -> String {
        format!("hs_ledger_{}", hindsight::Uuid::new_v4().simple())
    }

    async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
        sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(pool)
            .await
            .unwrap();
    }

    /// 40 deposits of 10..=19 (4 tellers x 10), ada's 50 withdrawn.
    fn expected_total(accounts: &BTreeMap<StreamId, (String, u64)>) {
        let total: u64 = accounts.values().map(|(_, balance)| balance).sum();
        assert_eq!(total, 4 * (10..20).sum::<u64>() - 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deposits_on_the_memory_store_lose_nothing() {
        let accounts = scenario(MemoryStore::new()).await;
        expected_total(&accounts);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_projection_fed_by_the_memory_store_agrees_with_the_commands() {
        let Some(url) = database_url() else { return };
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let schema = fresh_schema();
        let store = MemoryStore::new();
        let accounts = scenario(store.clone()).await;
        expected_total(&accounts);
        assert_eq!(projected(&pool, &schema, &store).await, accounts);
        drop_schema(&pool, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_code_on_postgres_agrees_with_its_projection() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let store = PgStore::connect(&url, &schema).await.unwrap();
        let accounts = scenario(store.clone()).await;
        expected_total(&accounts);
        assert_eq!(projected(store.pool(), &schema, &store).await, accounts);
        drop_schema(store.pool(), &schema).await;
    }
}
