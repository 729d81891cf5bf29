//! [cqrs-es](https://crates.io/crates/cqrs-es) 0.5's in-memory event store,
//! `cqrs_es::mem_store::MemStore`, through the benchmark traits.
//!
//! # How the adapter maps onto cqrs-es
//!
//! cqrs-es stores the events of an aggregate type: a `MemStore<A>` is keyed
//! by aggregate id, and an event is an `A::Event`. [`PayloadAggregate`] is
//! the smallest aggregate that stores a [`Payload`]: its event
//! [`PayloadEvent`] wraps one, and its state counts the events applied to
//! it. The adapter calls the `cqrs_es::EventStore` trait methods that
//! `CqrsFramework::execute_with_metadata` calls, leaving out only the
//! command handler in between (`cqrs-es-0.5.0/src/cqrs.rs:173-184`). Every
//! future `MemStore` returns is ready on its first poll (it takes a `std`
//! `RwLock` and never awaits anything else), so `futures_executor::block_on`
//! drives it on the calling thread; no tokio runtime is needed.
//!
//! - **Streams.** [`Contender::Stream`] is the aggregate id, a `String`;
//!   index `i` is the id `"stream-{i}"`.
//! - **[`Contender::append`].** `load_aggregate(id)`, then
//!   `commit(events, context, HashMap::new())`, as `execute` does. Both
//!   calls cost time in the stream's length: `load_aggregate` copies every
//!   stored event of the aggregate and applies each one to a fresh
//!   aggregate (`mem_store.rs:96-113`), and `commit` copies them all again
//!   and writes back the whole, longer `Vec` (`mem_store.rs:129-141`).
//! - **[`Contender::read_stream`].** `load_events(id)`, which returns a
//!   copy of the aggregate's events (`mem_store.rs:56-71`, `83-94`).
//! - `MemStore` prints a line with `println!` on every `load_events` (so on
//!   every append and every read) and on every `commit`
//!   (`mem_store.rs:88-92`, `133-136`). That is part of its cost, and the
//!   adapter leaves it in.
//!
//! # Semantics it lacks
//!
//! Only [`Contender`] is implemented: cqrs-es has none of the rest.
//!
//! - **Concurrent appends to one aggregate lose events.** `commit` copies
//!   the stored events under the read lock (`mem_store.rs:129`, through
//!   `load_committed_events`, `mem_store.rs:60-68`), releases it, pushes the
//!   new events onto the copy, and then replaces the stored `Vec` with the
//!   copy under the write lock (`mem_store.rs:138-141`). Whatever another
//!   writer committed in between is overwritten, and both commits return
//!   `Ok`. Two threads each running 5,000 `load_aggregate` + `commit`
//!   pairs on one aggregate (2 cores) kept between 5,426 and 7,887 of the
//!   10,000 events in ten runs, every commit returning `Ok`.
//! - **No optimistic concurrency check.** `commit` numbers the new events
//!   from the context's `current_sequence` (`mem_store.rs:121-123`,
//!   `148-165`) and never compares it with the stored sequence, so a
//!   commit from a stale context succeeds: two contexts loaded at sequence
//!   0 both commit, and the aggregate holds two events with sequence 1.
//!   `AggregateError::AggregateConflict` exists, but only the
//!   `PersistedEventStore` path over a database repository returns it
//!   (`cqrs-es-0.5.0/src/persist/error.rs:25`); `MemStore` never does. So
//!   there is no exact expectation to benchmark, even on one stream.
//! - **No multi-stream transactions.** `commit` takes one aggregate's
//!   context (`cqrs-es-0.5.0/src/store.rs:29-34`).
//! - **No global order.** Events live in a `HashMap` from aggregate id to
//!   `Vec` (`mem_store.rs:30`), with no position across aggregates and no
//!   call that reads across them.
//! - **No subscriptions.** The only push is `CqrsFramework` dispatching
//!   each command's committed events to its `Query` processors
//!   (`cqrs.rs:188-191`): live only, with no catch-up from the store and
//!   no order across aggregates.
//!
//! [`Contender`]: crate::harness::contender::Contender

use crate::harness::contender::Contender;
use crate::harness::Payload;
use cqrs_es::event_sink::EventSink;
use cqrs_es::mem_store::MemStore;
use cqrs_es::{Aggregate, DomainEvent, EventStore};
use futures_executor::block_on;
use std::collections::HashMap;
use std::convert::Infallible;

/// The cqrs-es event of [`PayloadAggregate`]: one [`Payload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PayloadEvent(pub Payload);

impl DomainEvent for PayloadEvent {
    fn event_type(&self) -> String {
        "PayloadEvent".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// The smallest cqrs-es aggregate that stores [`Payload`]s: its state is
/// the number of events applied to it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PayloadAggregate {
    /// How many events have been applied.
    pub events: u64,
}

impl Aggregate for PayloadAggregate {
    const TYPE: &'static str = "payload";
    /// Record these payloads, in order.
    type Command = Vec<Payload>;
    type Event = PayloadEvent;
    type Error = Infallible;
    type Services = ();

    async fn handle(
        &mut self,
        command: Vec<Payload>,
        _service: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Infallible> {
        for payload in command {
            sink.write(PayloadEvent(payload), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, _event: PayloadEvent) {
        self.events += 1;
    }
}

/// cqrs-es's `MemStore` of [`PayloadAggregate`]s, under benchmark.
#[derive(Debug, Default)]
pub struct CqrsEs {
    store: MemStore<PayloadAggregate>,
}

impl Contender for CqrsEs {
    const NAME: &'static str = "cqrs-es";
    type Stream = String;

    fn new() -> Self {
        CqrsEs::default()
    }

    fn stream(&self, index: u64) -> String {
        format!("stream-{index}")
    }

    fn append(&self, stream: &String, events: &[Payload]) {
        block_on(async {
            let context = self
                .store
                .load_aggregate(stream)
                .await
                .expect("MemStore loads never fail");
            self.store
                .commit(
                    events.iter().copied().map(PayloadEvent).collect(),
                    context,
                    HashMap::new(),
                )
                .await
                .expect("MemStore commits never fail");
        });
    }

    fn read_stream(&self, stream: &String, mut visit: impl FnMut(&Payload)) -> u64 {
        let events = block_on(self.store.load_events(stream)).expect("MemStore loads never fail");
        for envelope in &events {
            visit(&envelope.payload.0);
        }
        events.len() as u64
    }
}
