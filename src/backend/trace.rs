//! The `tracing` feature's helpers for the spans of the memory store's
//! [`EventStore`](super::EventStore) implementation. Compiled only with the
//! feature; the inherent API is never instrumented (see the README's
//! features).

use super::StoreError;
use crate::selector::Selector;
use crate::subscription::WorkerTrace;
use crate::transaction::{Committed, StreamHead, Transaction};
use smallvec::SmallVec;
use std::fmt;
use tracing::Span;

/// The number of distinct streams `tx` writes to or checks. Evaluated only
/// when the span is enabled (the span macros evaluate fields lazily).
pub(super) fn streams<E>(tx: &Transaction<E>) -> usize {
    let mut ids: SmallVec<[_; 4]> = tx.appends.iter().map(|append| append.stream).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// Records an insert's outcome on its span: the committed positions, or
/// the error (as its `Display`) with an event. A version conflict is normal
/// control flow (reload, decide again, retry), so its event is `DEBUG`; a
/// backend error is `WARN` (the caller gets it too, so it is not `ERROR`).
pub(super) fn record_insert<B: fmt::Display>(
    span: &Span,
    events: usize,
    result: &Result<Committed, StoreError<B>>,
) {
    match result {
        Ok(committed) => {
            if let Some(last) = committed.last_position() {
                // A transaction's events take consecutive positions.
                let first = last.0.saturating_sub(events.saturating_sub(1) as u64);
                span.record("first_position", first);
                span.record("last_position", last.0);
            }
        }
        Err(error) => {
            span.record("error", tracing::field::display(error));
            if error.is_conflict() {
                tracing::debug!(parent: span, %error, "insert: version conflict");
            } else if matches!(error, StoreError::EventIdConflict { .. }) {
                // Like a version conflict, an answer the caller handles.
                tracing::debug!(parent: span, %error, "insert: event id conflict");
            } else {
                tracing::warn!(parent: span, %error, "insert failed");
            }
        }
    }
}

/// Records the outcome of a lifecycle call (`delete_stream`,
/// `tombstone_stream`, `truncate_stream`) on its span: the error, with an
/// event (`DEBUG` for a version conflict or a hard-deleted stream, which
/// application code handles; `WARN` for a backend error).
pub(super) fn record_result<B: fmt::Display>(
    span: &Span,
    call: &str,
    result: &Result<(), StoreError<B>>,
) {
    if let Err(error) = result {
        span.record("error", tracing::field::display(error));
        if matches!(error, StoreError::Backend(_)) {
            tracing::warn!(parent: span, %error, call, "lifecycle call failed");
        } else {
            tracing::debug!(parent: span, %error, call, "lifecycle call refused");
        }
    }
}

/// Records a stream's head (its version and the position of its last event)
/// on `span`; nothing for a stream that does not exist.
pub(super) fn record_head(span: &Span, head: Option<StreamHead>) {
    if let Some(head) = head {
        span.record("version", head.version.0);
        span.record("position", head.position.0);
    }
}

/// The span a subscriber's worker thread runs in, `hindsight.subscriber`
/// (`INFO`, so that a handler's `INFO` events keep it under the usual
/// filters), with the spawning thread's dispatcher.
///
/// A root span that follows from `spawn`: the subscriber outlives the call
/// (and the application span around it) that started it.
pub(super) fn worker<E>(spawn: &Span, selector: &Selector<E>) -> WorkerTrace {
    let span = tracing::info_span!(parent: None, "hindsight.subscriber", ?selector);
    span.follows_from(spawn);
    WorkerTrace {
        span,
        dispatch: tracing::dispatcher::get_default(tracing::Dispatch::clone),
    }
}
