//! A lock-free in-memory event store.
//!
//! Streams of events, optimistic concurrency by expected version, atomic
//! transactions across several streams, one global commit order, and
//! zero-copy reads: the semantics of a durable event store, embedded in your
//! process, at memory speed. Built to sit under test suites that fire heavy
//! concurrent load at it.
//!
//! ```
//! use hindsight::{ExpectedVersion, MemoryStore, Start, StreamId, Transaction};
//!
//! let store = MemoryStore::new();
//! let (cart, stock) = (StreamId::new(), StreamId::new());
//!
//! // One transaction over two streams: all or nothing, one contiguous range.
//! let done = store.insert(
//!     Transaction::new()
//!         .append(cart, ExpectedVersion::NoStream, ["item added", "checked out"])
//!         .append(stock, ExpectedVersion::Any, ["item reserved"]),
//! ).unwrap();
//!
//! // The next write to `cart` must not race an unseen one.
//! let cart_head = done.stream(cart).unwrap();
//! store.insert(Transaction::single(cart, cart_head.expect_exact(), "paid")).unwrap();
//!
//! assert_eq!(store.read_all(Start::Beginning).count(), 4);
//! assert_eq!(store.read_stream(cart, Default::default()).count(), 3);
//! ```
//!
//! A store is `Send` and `Sync` exactly when its events are: a store of
//! `Rc`s stays on its thread.
//!
//! ```compile_fail
//! fn share<T: Send>(_: T) {}
//! share(hindsight::MemoryStore::<std::rc::Rc<u8>>::new());
//! ```
//!
//! The rules the store keeps are in [`contract`]; the design, and why each
//! ordering is enough, is in [`design`].

#![warn(missing_docs, missing_debug_implementations)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(loom))]
mod backend;
mod envelope;
mod error;
mod ids;
mod log;
mod read;
mod segments;
mod selector;
mod signal;
mod store;
mod stream;
#[cfg(not(loom))]
mod subscriber;
mod subscription;
mod sync;
mod transaction;
mod watermark;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;

/// The contract: what the store promises, as numbered rules.
///
/// The API docs, the tests and the conformance kit cite these rules by
/// number ("rule 7"). Every backend that passes the kit keeps rules 1-25.
#[doc = include_str!("contract.md")]
pub mod contract {}

/// The design: how the store works and why each choice is enough, from the
/// repository's `DESIGN.md`.
#[doc = ""]
#[doc = "[contract]: crate::contract"]
#[cfg_attr(feature = "testkit", doc = "[cases]: crate::testkit::CASES")]
#[cfg_attr(not(feature = "testkit"), doc = concat!("[cases]: https://docs.rs/hindsight/", env!("CARGO_PKG_VERSION"), "/hindsight/testkit/constant.CASES.html"))]
#[doc = ""]
#[doc = include_str!("../DESIGN.md")]
pub mod design {}

// The conformance kit: store-agnostic tests of rules 1-25 of the contract.
#[cfg(all(feature = "testkit", not(loom)))]
pub mod testkit;

#[cfg(not(loom))]
pub use backend::{
    Cursor, CursorSerde, EventRef, EventStore, MemoryError, MemorySubscription, StoreError,
    StreamWrite, SubscriptionFailure, SubscriptionHandle,
};
pub use envelope::Envelope;
pub use error::{InsertError, VersionMismatch};
pub use ids::{CorrelationId, EventId, Position, StreamId, StreamVersion};
pub use read::{ReadAll, ReadStream, Start};
pub use selector::{EventType, Selector};
pub use store::MemoryStore;
#[cfg(not(loom))]
pub use subscriber::{
    EventContext, Flow, HandlerError, HandlerFailure, Subscriber, SubscriberError, WaitError,
};
pub use subscription::{Subscription, SubscriptionError};
pub use transaction::{Committed, ExpectedVersion, StreamHead, Transaction};

/// Re-exported so users can build ids without naming the `uuid` crate.
pub use uuid::Uuid;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
