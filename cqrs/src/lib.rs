//! [cqrs-es](https://docs.rs/cqrs-es/0.5)'s `EventStore` over hindsight's
//! in-memory [`MemoryStore`]: a drop-in for cqrs-es's `MemStore` in tests and
//! prototypes that checks the expected version on every commit.
//!
//! cqrs-es's own `MemStore` never compares versions: two commands racing on
//! one aggregate both commit, and the later overwrites the earlier's events
//! (lost writes). [`HindsightStore`] writes each commit as one transaction
//! expecting exactly the version the aggregate was loaded at, so the loser
//! of a race gets `AggregateError::AggregateConflict` (the error cqrs-es's
//! database stores return) and nothing of it is written. Every event also
//! gets a place in the store's one global order, which
//! [`HindsightStore::events`] reads back.
//!
//! Switching is one line:
//!
//! ```
//! use cqrs_es::{Aggregate, CqrsFramework, DomainEvent};
//! use hindsight_cqrs::HindsightStore;
//! # use cqrs_es::event_sink::EventSink;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Default, Serialize, Deserialize)]
//! # struct Counter { count: u64 }
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # struct Incremented;
//! # impl DomainEvent for Incremented {
//! #     fn event_type(&self) -> String { "Incremented".into() }
//! #     fn event_version(&self) -> String { "1".into() }
//! # }
//! # #[derive(Debug)] struct Never;
//! # impl std::fmt::Display for Never { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("never") } }
//! # impl std::error::Error for Never {}
//! # impl Aggregate for Counter {
//! #     const TYPE: &'static str = "counter";
//! #     type Command = ();
//! #     type Event = Incremented;
//! #     type Error = Never;
//! #     type Services = ();
//! #     async fn handle(&mut self, _: (), _: &(), sink: &EventSink<Self>) -> Result<(), Never> {
//! #         sink.write(Incremented, self).await;
//! #         Ok(())
//! #     }
//! #     fn apply(&mut self, _: Incremented) { self.count += 1; }
//! # }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Was: let store = cqrs_es::mem_store::MemStore::<Counter>::default();
//! let store = HindsightStore::<Counter>::new();
//! let cqrs = CqrsFramework::new(store.clone(), vec![], ());
//! cqrs.execute("counter-1", ()).await.unwrap();
//! cqrs.execute("counter-1", ()).await.unwrap();
//! assert_eq!(store.events().len(), 2);
//! # }
//! ```
//!
//! This crate supports cqrs-es 0.5.0 exactly (the version is pinned).

use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore, Query};
use futures_core::Stream;
use hindsight::{
    ExpectedVersion, InsertError, MemoryStore, Position, Selector, Start, StreamId, StreamVersion,
    SubscriptionError, Transaction, Uuid,
};
use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;

/// The namespace of the name-based stream ids (UUIDv5) this crate derives
/// from an aggregate's type and id.
pub const STREAM_NAMESPACE: Uuid = Uuid::from_u128(0x8c1f_4a2e_5b7d_4e90_a3c6_2f1d_9e8b_7a60);

/// One cqrs-es event as the store keeps it: the aggregate it belongs to,
/// the payload and the commit's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent<A: Aggregate> {
    /// The aggregate's id (its type is the store's `A::TYPE`).
    pub aggregate_id: String,
    /// The event.
    pub payload: A::Event,
    /// The metadata of the commit that wrote it (cqrs-es gives every event
    /// of one commit the same map).
    pub metadata: HashMap<String, String>,
}

/// cqrs-es's `EventStore<A>` over a hindsight [`MemoryStore`]; see the
/// [crate docs](crate).
///
/// Each aggregate instance is one stream, named by a UUIDv5 of `A::TYPE`
/// and the aggregate id ([`HindsightStore::stream_id`]). Sequences are
/// cqrs-es's: 1 for an aggregate's first event (hindsight's stream version
/// 0). Clones share one store.
pub struct HindsightStore<A: Aggregate> {
    store: MemoryStore<StoredEvent<A>>,
}

impl<A: Aggregate> HindsightStore<A> {
    /// A store over a new, empty [`MemoryStore`].
    pub fn new() -> Self {
        Self::from_store(MemoryStore::new())
    }

    /// A store over `store`, for instance one built with a test clock
    /// (`MemoryStore::builder()`) or shared with other readers.
    pub fn from_store(store: MemoryStore<StoredEvent<A>>) -> Self {
        Self { store }
    }

    /// The hindsight store inside: global-order reads, subscriptions,
    /// stream reads.
    pub fn store(&self) -> &MemoryStore<StoredEvent<A>> {
        &self.store
    }

    /// The stream of the aggregate `aggregate_id` of type `A::TYPE`: a
    /// UUIDv5 in [`STREAM_NAMESPACE`] of `"{A::TYPE}/{aggregate_id}"`, the
    /// same in every process.
    ///
    /// ```
    /// # use cqrs_es::{Aggregate, DomainEvent};
    /// # use cqrs_es::event_sink::EventSink;
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Default, Serialize, Deserialize)] struct Counter;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] struct Incremented;
    /// # impl DomainEvent for Incremented {
    /// #     fn event_type(&self) -> String { "Incremented".into() }
    /// #     fn event_version(&self) -> String { "1".into() }
    /// # }
    /// # #[derive(Debug)] struct Never;
    /// # impl std::fmt::Display for Never { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("never") } }
    /// # impl std::error::Error for Never {}
    /// # impl Aggregate for Counter {
    /// #     const TYPE: &'static str = "counter";
    /// #     type Command = (); type Event = Incremented; type Error = Never; type Services = ();
    /// #     async fn handle(&mut self, _: (), _: &(), _: &EventSink<Self>) -> Result<(), Never> { Ok(()) }
    /// #     fn apply(&mut self, _: Incremented) {}
    /// # }
    /// use hindsight_cqrs::HindsightStore;
    /// let a = HindsightStore::<Counter>::stream_id("counter-1");
    /// assert_eq!(a, HindsightStore::<Counter>::stream_id("counter-1"));
    /// assert_ne!(a, HindsightStore::<Counter>::stream_id("counter-2"));
    /// ```
    pub fn stream_id(aggregate_id: &str) -> StreamId {
        let name = format!("{}/{aggregate_id}", A::TYPE);
        StreamId::from_uuid(Uuid::new_v5(&STREAM_NAMESPACE, name.as_bytes()))
    }

    /// Every event of every aggregate in the store's global commit order,
    /// as cqrs-es envelopes (copies).
    pub fn events(&self) -> Vec<EventEnvelope<A>> {
        self.store
            .read_all(Start::Beginning)
            .map(|event| envelope(event.version(), event.payload()))
            .collect()
    }
}

impl<A: Aggregate> HindsightStore<A>
where
    A::Event: Send + Sync,
{
    /// Feeds `query` every event of every aggregate in the store's global
    /// commit order: first those committed already (after `after`, a
    /// position the query has processed, or from the beginning), then each
    /// new one as it commits, one `dispatch` per event, never two at once.
    ///
    /// Unlike `CqrsFramework`'s queries, which see only the commits made
    /// through that framework after they were added, this catches a new or
    /// rebuilt query up on the whole history without a seam. The future
    /// runs until the store is poisoned (then it returns the error, every
    /// event before that having been dispatched) or until it is dropped:
    /// spawn it, and abort the task to stop it. Dropping it loses nothing
    /// that was dispatched; an event whose `dispatch` was cut short by the
    /// drop is dispatched again by a runner started after the position
    /// before it.
    ///
    /// ```
    /// # use cqrs_es::{Aggregate, CqrsFramework, DomainEvent, EventEnvelope, Query};
    /// # use cqrs_es::event_sink::EventSink;
    /// # use serde::{Deserialize, Serialize};
    /// # use std::sync::{Arc, Mutex};
    /// # #[derive(Default, Serialize, Deserialize)] struct Counter;
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] struct Incremented;
    /// # impl DomainEvent for Incremented {
    /// #     fn event_type(&self) -> String { "Incremented".into() }
    /// #     fn event_version(&self) -> String { "1".into() }
    /// # }
    /// # #[derive(Debug)] struct Never;
    /// # impl std::fmt::Display for Never { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("never") } }
    /// # impl std::error::Error for Never {}
    /// # impl Aggregate for Counter {
    /// #     const TYPE: &'static str = "counter";
    /// #     type Command = (); type Event = Incremented; type Error = Never; type Services = ();
    /// #     async fn handle(&mut self, _: (), _: &(), sink: &EventSink<Self>) -> Result<(), Never> {
    /// #         sink.write(Incremented, self).await;
    /// #         Ok(())
    /// #     }
    /// #     fn apply(&mut self, _: Incremented) {}
    /// # }
    /// use hindsight_cqrs::HindsightStore;
    ///
    /// /// Counts events per aggregate, and says when it has seen `until`.
    /// struct Tally(Arc<Mutex<Vec<String>>>, Arc<tokio::sync::Notify>, usize);
    /// #[async_trait::async_trait]
    /// impl Query<Counter> for Tally {
    ///     async fn dispatch(&self, id: &str, _: &[EventEnvelope<Counter>]) {
    ///         let mut seen = self.0.lock().unwrap();
    ///         seen.push(id.to_owned());
    ///         if seen.len() == self.2 {
    ///             self.1.notify_one();
    ///         }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = HindsightStore::<Counter>::new();
    /// let cqrs = CqrsFramework::new(store.clone(), vec![], ());
    /// cqrs.execute("a", ()).await.unwrap(); // history, before the query exists
    ///
    /// let (seen, done) = (Arc::default(), Arc::new(tokio::sync::Notify::new()));
    /// let runner = tokio::spawn(store.clone().run_query(Tally(Arc::clone(&seen), done.clone(), 3), None));
    /// cqrs.execute("b", ()).await.unwrap(); // live
    /// cqrs.execute("a", ()).await.unwrap();
    /// done.notified().await;
    /// assert_eq!(*seen.lock().unwrap(), ["a", "b", "a"]);
    /// runner.abort();
    /// # }
    /// ```
    pub async fn run_query<Q: Query<A>>(
        self,
        query: Q,
        after: Option<Position>,
    ) -> Result<(), SubscriptionError> {
        let selector = match after {
            Some(position) => Selector::all().after(position),
            None => Selector::all(),
        };
        let mut events = self.store.subscribe(selector).into_stream();
        loop {
            let next = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx)).await;
            let event = match next {
                Some(event) => event?,
                // A subscription's stream only ends after its error.
                None => return Ok(()),
            };
            let stored = event.payload();
            let envelope = envelope(event.version(), stored);
            query.dispatch(&stored.aggregate_id, &[envelope]).await;
        }
    }
}

/// The cqrs-es envelope of the event at stream version `version`.
fn envelope<A: Aggregate>(version: StreamVersion, stored: &StoredEvent<A>) -> EventEnvelope<A> {
    EventEnvelope {
        aggregate_id: stored.aggregate_id.clone(),
        // Below 2^40 (the store's capacity), so it fits a `usize` on
        // 64-bit targets; cqrs-es counts from 1.
        sequence: version.get() as usize + 1,
        payload: stored.payload.clone(),
        metadata: stored.metadata.clone(),
    }
}

impl<A: Aggregate> Default for HindsightStore<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate> Clone for HindsightStore<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
        }
    }
}

impl<A: Aggregate> fmt::Debug for HindsightStore<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HindsightStore")
            .field("aggregate_type", &A::TYPE)
            .field("store", &self.store)
            .finish()
    }
}

/// An aggregate loaded from a [`HindsightStore`], with the sequence a commit
/// will expect.
#[derive(Debug)]
pub struct HindsightAggregateContext<A: Aggregate> {
    /// The aggregate's id.
    pub aggregate_id: String,
    /// Its state after every loaded event.
    pub aggregate: A,
    /// The sequence of its last event when loaded, 0 if it had none: a
    /// commit expects exactly this.
    pub current_sequence: usize,
}

impl<A: Aggregate> AggregateContext<A> for HindsightAggregateContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A: Aggregate> EventStore<A> for HindsightStore<A> {
    type AC = HindsightAggregateContext<A>;

    /// Every event of the aggregate, oldest first. Never fails.
    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let stream = Self::stream_id(aggregate_id);
        Ok(self
            .store
            .read_stream(stream, StreamVersion(0))
            .map(|event| envelope(event.version(), event.payload()))
            .collect())
    }

    /// The aggregate with every event applied, and the sequence to expect.
    /// Never fails.
    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<HindsightAggregateContext<A>, AggregateError<A::Error>> {
        let stream = Self::stream_id(aggregate_id);
        let mut aggregate = A::default();
        let mut current_sequence = 0;
        for event in self.store.read_stream(stream, StreamVersion(0)) {
            current_sequence = event.version().get() as usize + 1;
            aggregate.apply(event.payload().payload.clone());
        }
        Ok(HindsightAggregateContext {
            aggregate_id: aggregate_id.to_owned(),
            aggregate,
            current_sequence,
        })
    }

    /// Writes `events` as one transaction expecting the aggregate exactly as
    /// `context` loaded it, and returns their envelopes.
    ///
    /// # Errors
    ///
    /// `AggregateConflict` if another commit to the aggregate landed since
    /// it was loaded (nothing of this one is written: reload and retry);
    /// `DatabaseConnectionError` with the store's `InsertError` if the store
    /// refused otherwise (full, poisoned, too large a commit).
    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: HindsightAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let HindsightAggregateContext {
            aggregate_id,
            current_sequence,
            ..
        } = context;
        let expected = match current_sequence {
            0 => ExpectedVersion::NoStream,
            sequence => ExpectedVersion::Exact(StreamVersion(sequence as u64 - 1)),
        };
        let envelopes: Vec<EventEnvelope<A>> = events
            .into_iter()
            .enumerate()
            .map(|(i, payload)| EventEnvelope {
                aggregate_id: aggregate_id.clone(),
                sequence: current_sequence + i + 1,
                payload,
                metadata: metadata.clone(),
            })
            .collect();
        let stored = envelopes.iter().map(|envelope| StoredEvent {
            aggregate_id: aggregate_id.clone(),
            payload: envelope.payload.clone(),
            metadata: envelope.metadata.clone(),
        });
        let tx = Transaction::new().append(Self::stream_id(&aggregate_id), expected, stored);
        match self.store.insert(tx) {
            Ok(_) => Ok(envelopes),
            Err(InsertError::VersionConflict(_)) => Err(AggregateError::AggregateConflict),
            Err(error) => Err(AggregateError::DatabaseConnectionError(Box::new(error))),
        }
    }
}
