//! Two writers race 5,000 deposits each on one aggregate through cqrs-es's
//! `CqrsFramework`, first on cqrs-es's `MemStore`, then on
//! `HindsightStore`; prints what each kept and what each told the writers.
//!
//! ```text
//! cargo run --release -p hindsight-cqrs --example race | grep -v '^loading\|^storing'
//! ```
//!
//! (`MemStore` prints a line per load and per commit; the `grep` hides them.)

use cqrs_es::event_sink::EventSink;
use cqrs_es::mem_store::MemStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent, EventStore};
use hindsight_cqrs::HindsightStore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited(u64);

impl DomainEvent for Deposited {
    fn event_type(&self) -> String {
        "Deposited".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = u64;
    type Event = Deposited;
    type Error = Never;
    type Services = ();

    async fn handle(&mut self, amount: u64, _: &(), sink: &EventSink<Self>) -> Result<(), Never> {
        sink.write(Deposited(amount), self).await;
        Ok(())
    }

    fn apply(&mut self, event: Deposited) {
        self.balance += event.0;
    }
}

const WRITERS: usize = 2;
const COMMITS: usize = 5_000;

/// Returns (events kept, commands acknowledged, conflicts reported).
async fn race<ES>(store: ES) -> (usize, usize, usize)
where
    ES: EventStore<Account> + Clone + 'static,
    ES::AC: Send,
{
    let cqrs = Arc::new(CqrsFramework::new(store.clone(), vec![], ()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let cqrs = Arc::clone(&cqrs);
            tokio::spawn(async move {
                let (mut ok, mut conflicts) = (0, 0);
                for _ in 0..COMMITS {
                    match cqrs.execute("account-1", 1).await {
                        Ok(()) => ok += 1,
                        Err(AggregateError::AggregateConflict) => conflicts += 1,
                        Err(other) => panic!("{other}"),
                    }
                }
                (ok, conflicts)
            })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for writer in writers {
        let (o, c) = writer.await.expect("a writer panicked");
        ok += o;
        conflicts += c;
    }
    let kept = store.load_events("account-1").await.expect("a load").len();
    (kept, ok, conflicts)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mem = race(MemStore::<Account>::default()).await;
    let ours = race(HindsightStore::<Account>::new()).await;
    println!("{WRITERS} writers x {COMMITS} deposits on one aggregate:");
    for (name, (kept, ok, conflicts)) in [("cqrs-es MemStore", mem), ("HindsightStore", ours)] {
        println!(
            "  {name:<17} {ok:>5} acknowledged, {kept:>5} events kept, {conflicts:>5} told of a conflict, {:>5} lost",
            ok.saturating_sub(kept)
        );
    }
}
