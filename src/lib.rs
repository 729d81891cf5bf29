// The crate's front page is README.md, so that it and the repository's
// README are one text whose examples run as doctests. README.md and
// DESIGN.md link to files beside them, which is right on GitHub; here the
// same link labels are defined first, and in Markdown the first definition
// of a label wins, so rustdoc sends them to the modules below or to the
// published sources on docs.rs.
//! [contract]: crate::contract
//! [design]: crate::design
//! [design-locks]: crate::design#what-is-lock-free-and-what-takes-a-lock
//! [design-backend]: crate::design#a-backend-agnostic-interface-backend-and-the-conformance-kit-testkit
#![cfg_attr(feature = "testkit", doc = "[cases]: crate::testkit::CASES")]
#![cfg_attr(not(feature = "testkit"), doc = concat!("[cases]: https://docs.rs/hindsight/", env!("CARGO_PKG_VERSION"), "/hindsight/testkit/constant.CASES.html"))]
#![doc = concat!("[perf]: https://docs.rs/crate/hindsight/", env!("CARGO_PKG_VERSION"), "/source/PERF.md")]
#![doc = concat!("[bank]: https://docs.rs/crate/hindsight/", env!("CARGO_PKG_VERSION"), "/source/examples/bank.rs")]
#![doc = concat!("[debug-profile]: https://docs.rs/crate/hindsight/", env!("CARGO_PKG_VERSION"), "/source/ci/debug-profile.sh")]
#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
// `loom` is this crate's own model-checking build, never a user's.
#![cfg_attr(docsrs, doc(auto_cfg(hide(loom))))]
#![warn(missing_docs, missing_debug_implementations)]
#![deny(unsafe_op_in_unsafe_fn)]

mod age;
#[cfg(not(loom))]
mod backend;
mod builder;
mod clock;
mod envelope;
mod epoch;
mod error;
mod handle;
mod idempotency;
mod ids;
mod log;
mod metadata;
mod name;
mod positions;
mod read;
#[cfg(all(test, not(loom)))]
mod reclaim_tests;
mod segments;
mod selector;
mod signal;
mod store;
mod stream;
mod subscription;
mod sync;
mod transaction;
#[cfg(all(test, not(loom)))]
mod wake_tests;
mod watermark;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;

/// The contract: what the store promises, as numbered rules.
///
/// The API docs, the tests and the conformance kit cite these rules by
/// number ("rule 7"); the kit checks rules 1-25, 27-30, 32 and 33 on any backend.
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

// The conformance kit: store-agnostic tests of rules 1-25, 27-30, 32 and 33 of the contract.
#[cfg(all(feature = "testkit", not(loom)))]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use age::{max_age_micros, MAX_AGE_LIMIT};
#[cfg(not(loom))]
pub use backend::{
    Cursor, CursorSerde, EventRef, EventStore, MemoryError, MemorySubscriber, StoreError,
    SubscriberHandle,
};
pub use builder::MemoryStoreBuilder;
pub use clock::{Clock, SystemClock, TestClock};
pub use envelope::{Envelope, OwnedEnvelope};
pub use error::{EventIdMismatch, InsertError, StreamNameError, VersionMismatch};
pub use handle::StreamHandle;
pub use idempotency::DEFAULT_IDEMPOTENCY_WINDOW;
pub use ids::{CausationId, CorrelationId, EventId, Position, StreamId, StreamVersion};
pub use metadata::{EventData, Metadata, MetadataError};
pub use name::{StreamName, MAX_STREAM_NAME_LEN};
pub use read::{ReadAll, ReadStream, Start};
pub use selector::{EventType, Selector};
pub use store::{MemoryStore, MAX_TRANSACTION_EVENTS, STORE_CAPACITY};
#[cfg(not(loom))]
pub use subscription::{
    EventContext, Flow, HandlerError, HandlerFailure, Subscriber, SubscriberError, WaitError,
};
pub use subscription::{Subscription, SubscriptionError, SubscriptionIter, SubscriptionStream};
pub use transaction::{Committed, ExpectedVersion, StreamHead, StreamWrite, Transaction};

/// Re-exported so users can build ids without naming the `uuid` crate.
pub use uuid::Uuid;
