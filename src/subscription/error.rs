//! Every error of a subscription, and the context it carries: why a pull
//! subscription cannot go on ([`SubscriptionError`]), how a handler
//! subscriber ended ([`SubscriberError`]), how its handler failed and on
//! which event ([`HandlerError`], [`HandlerFailure`], [`EventContext`]), and
//! why a wait on its progress returned ([`WaitError`]). Each failure has one
//! `Display`, written in one place (`HandlerError`'s and the `write_*`
//! helpers) that every error carrying it writes through.
//!
//! The handler subscriber's errors are left out of loom builds, as the
//! handler subscriber is.

#[cfg(not(loom))]
use crate::backend::MemoryError;
#[cfg(not(loom))]
use crate::envelope::Envelope;
#[cfg(not(loom))]
use crate::ids::{CausationId, CorrelationId, EventId, Position, StreamId, StreamVersion};
use std::fmt;
#[cfg(not(loom))]
use std::time::SystemTime;

/// Why a subscription cannot deliver any more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The store was poisoned (see [`InsertError::Poisoned`](crate::InsertError::Poisoned)):
    /// every committed event was delivered, and no more will ever commit.
    Poisoned,
}

impl fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionError::Poisoned => {
                write!(f, "the store is poisoned: no more events will commit")
            }
        }
    }
}

impl std::error::Error for SubscriptionError {}

/// The event a handler failed on.
#[cfg(not(loom))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    /// Its global position.
    pub position: Position,
    /// Its id.
    pub event_id: EventId,
    /// Its type name, if the selector names types (see
    /// [`Selector::with_type_names`](crate::Selector::with_type_names)); `None` too when naming it panicked
    /// (the failure is then that panic).
    pub event_type: Option<String>,
    /// Its stream.
    pub stream: StreamId,
    /// Its stream version.
    pub version: StreamVersion,
    /// Its transaction's correlation id.
    pub correlation_id: Option<CorrelationId>,
    /// Its own causation id, if it was appended with one (rule 33 of
    /// [the contract](crate::contract)).
    pub causation_id: Option<CausationId>,
    /// Its transaction's creation time.
    pub created_at: SystemTime,
}

#[cfg(not(loom))]
impl EventContext {
    /// The context of `envelope`, named with `event_type` (see
    /// `failure` in `handler.rs` for how it is computed, under the panic
    /// guard).
    pub(super) fn of<E>(envelope: Envelope<'_, E>, event_type: Option<String>) -> Self {
        Self {
            position: envelope.position(),
            event_id: envelope.event_id(),
            event_type,
            stream: envelope.stream_id(),
            version: envelope.version(),
            correlation_id: envelope.correlation_id(),
            causation_id: envelope.metadata().causation_id(),
            created_at: envelope.created_at(),
        }
    }
}

/// How a handler failed.
#[cfg(not(loom))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerFailure<X> {
    /// It returned this error, unchanged.
    Error(X),
    /// It panicked with this message. In a subscriber this is
    /// also how a panic of [`EventType::event_type`](crate::EventType::event_type)
    /// on the event is reported (the selector filters or names types): the
    /// subscription ends exactly as if the handler had panicked.
    Panic(String),
}

/// A handler's failure together with the event it failed on.
#[cfg(not(loom))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError<X> {
    /// What went wrong.
    pub failure: HandlerFailure<X>,
    /// The event the handler was given.
    pub event: EventContext,
}

/// Why a handler subscriber ended other than by [`Flow::Stop`](crate::Flow::Stop)
/// or a cancel: the outcome of the memory store's [`Subscriber`](crate::Subscriber)
/// (`B` is then [`MemoryError`]) and of every backend's
/// [`SubscriberHandle::wait`](crate::SubscriberHandle::wait) (`B` is the
/// backend's [`EventStore::Error`](crate::EventStore::Error)).
///
/// ```
/// use hindsight::{HandlerFailure, MemoryError, SubscriberError};
/// let poisoned: SubscriberError<&str> = SubscriberError::Backend(MemoryError::Poisoned);
/// assert!(poisoned.handler_error().is_none());
/// assert!(poisoned.to_string().starts_with("backend error: the store is poisoned"));
/// let lost: SubscriberError<&str, std::io::Error> =
///     SubscriberError::Backend(std::io::Error::other("connection lost"));
/// assert_eq!(lost.to_string(), "backend error: connection lost");
/// # let _ = HandlerFailure::<()>::Panic(String::new());
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriberError<X, B = MemoryError> {
    /// The handler returned an error (carried unchanged) or panicked, on
    /// the event in the context.
    Handler(HandlerError<X>),
    /// The backend failed; every event before the failure was handled. On
    /// the memory store, [`MemoryError::Poisoned`]: the store was poisoned,
    /// and every committed event was handled.
    Backend(B),
    /// User code that the worker ran outside any event panicked with this
    /// message: the handler's `Drop` (the values it captured), or, when the
    /// worker held the store's last handle, an event's `Drop`. The
    /// subscriber had otherwise ended well (by `Stop` or cancel); after a
    /// handler or backend failure, that stays the outcome.
    Panicked(String),
    /// Not an outcome: returned by [`Subscriber::wait`](crate::Subscriber::wait),
    /// [`Subscriber::into_outcome`](crate::Subscriber::into_outcome) and
    /// [`SubscriberHandle::wait`](crate::SubscriberHandle::wait) when called
    /// from the subscriber's own handler, which would wait for itself
    /// forever. The subscriber has not ended (it ends when the handler
    /// returns and the subscriber is cancelled, stopped or fails).
    OwnHandler,
}

#[cfg(not(loom))]
impl<X, B> SubscriberError<X, B> {
    /// The handler's failure and its event, if the handler failed.
    pub fn handler_error(&self) -> Option<&HandlerError<X>> {
        match self {
            SubscriberError::Handler(error) => Some(error),
            _ => None,
        }
    }
}

/// The one `Display` of a handler's failure, which [`SubscriberError`]
/// writes through.
///
/// ```
/// use hindsight::{EventContext, EventId, HandlerError, HandlerFailure, Position, StreamId, StreamVersion};
/// let event = EventContext {
///     position: Position(3),
///     event_id: EventId::from_uuid(hindsight::Uuid::nil()),
///     event_type: Some("Deposited".into()),
///     stream: StreamId::from_uuid(hindsight::Uuid::nil()),
///     version: StreamVersion(0),
///     correlation_id: None,
///     causation_id: None,
///     created_at: std::time::SystemTime::UNIX_EPOCH,
/// };
/// let error = HandlerError { failure: HandlerFailure::Error("no such account"), event };
/// let text = error.to_string();
/// assert!(text.starts_with("handler failed: no such account (event "));
/// assert!(text.ends_with("at position 3, stream 00000000-0000-0000-0000-000000000000 version 0, type Deposited)"));
/// ```
#[cfg(not(loom))]
impl<X: fmt::Display> fmt::Display for HandlerError<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let HandlerError { failure, event } = self;
        match failure {
            HandlerFailure::Error(error) => write!(f, "handler failed: {error}")?,
            HandlerFailure::Panic(message) => write!(f, "handler panicked: {message}")?,
        }
        write!(
            f,
            " (event {} at position {}, stream {} version {}",
            event.event_id, event.position, event.stream, event.version
        )?;
        if let Some(event_type) = &event.event_type {
            write!(f, ", type {event_type}")?;
        }
        write!(f, ")")
    }
}

#[cfg(not(loom))]
impl<X: std::error::Error + 'static> std::error::Error for HandlerError<X> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            HandlerFailure::Error(error) => Some(error),
            HandlerFailure::Panic(_) => None,
        }
    }
}

/// What [`SubscriberError::Panicked`] says.
#[cfg(not(loom))]
pub(crate) fn write_panicked(f: &mut fmt::Formatter<'_>, message: &str) -> fmt::Result {
    write!(f, "a drop run by the subscriber panicked: {message}")
}

/// What [`SubscriberError::OwnHandler`] says.
#[cfg(not(loom))]
pub(crate) fn write_own_handler(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(
        f,
        "waited on a subscription from its own handler, which would wait forever"
    )
}

#[cfg(not(loom))]
impl<X: fmt::Display, B: fmt::Display> fmt::Display for SubscriberError<X, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriberError::Handler(error) => fmt::Display::fmt(error, f),
            // As `StoreError::Backend` says it; the memory store's poisoning
            // reads "backend error: the store is poisoned: ...".
            SubscriberError::Backend(error) => write!(f, "backend error: {error}"),
            SubscriberError::Panicked(message) => write_panicked(f, message),
            SubscriberError::OwnHandler => write_own_handler(f),
        }
    }
}

#[cfg(not(loom))]
impl<X, B> std::error::Error for SubscriberError<X, B>
where
    X: std::error::Error + 'static,
    B: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SubscriberError::Handler(error) => std::error::Error::source(error),
            SubscriberError::Backend(error) => Some(error),
            _ => None,
        }
    }
}

/// Why a wait on a subscriber's progress returned without reaching its goal.
///
/// Non-exhaustive: a backend may one day have another reason (match with a
/// wildcard arm).
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// The subscriber ended (Stop, cancel, failure) before passing the
    /// position; [`Subscriber::wait`](crate::Subscriber::wait) says how.
    Ended,
    /// The timeout passed first.
    TimedOut,
    /// Called from the subscription's own handler for a position it has not
    /// passed: it cannot pass it while its handler waits, so the wait
    /// answers at once instead of waiting for its timeout.
    OwnHandler,
}

#[cfg(not(loom))]
impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Ended => write!(f, "the subscriber ended before reaching the position"),
            WaitError::TimedOut => write!(f, "timed out waiting for the subscriber"),
            WaitError::OwnHandler => write!(
                f,
                "waited on a subscriber from its own handler for a position it has not passed"
            ),
        }
    }
}

#[cfg(not(loom))]
impl std::error::Error for WaitError {}
