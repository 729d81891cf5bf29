//! The `tracing` feature's helpers for the spans of [`PgStore`]'s
//! [`EventStore`](hindsight::EventStore) implementation (the same spans and
//! fields as the memory store's). Compiled only with the feature.
//!
//! [`PgStore`]: crate::PgStore

use crate::error::PgError;
use hindsight::{Committed, EventRef, Position, StoreError, StreamHead};
use std::fmt;
use std::ops::ControlFlow;
use tracing::Span;

/// Records an insert's outcome on its span: the committed positions, or
/// the error (as its `Display`) with an event. A version conflict is normal
/// control flow (reload, decide again, retry), so its event is `DEBUG`; a
/// backend error is `WARN` (the caller gets it too, so it is not `ERROR`).
pub(crate) fn record_insert<B: fmt::Display>(
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
/// `tombstone_stream`, `truncate_stream`) on its span, as the memory
/// store does: `DEBUG` for a refusal application code handles (a version
/// conflict, a hard-deleted stream), `WARN` for a backend error.
pub(crate) fn record_result(span: &Span, call: &str, result: &Result<(), StoreError<PgError>>) {
    if let Err(error) = result {
        span.record("error", tracing::field::display(error));
        if matches!(error, StoreError::Backend(_)) {
            tracing::warn!(parent: span, %error, call, "lifecycle call failed");
        } else {
            tracing::debug!(parent: span, %error, call, "lifecycle call refused");
        }
    }
}

/// Records a stream's head (its version and last position), or the error.
pub(crate) fn record_head(span: &Span, head: &Result<Option<StreamHead>, PgError>) {
    match head {
        Ok(Some(head)) => {
            span.record("version", head.version.0);
            span.record("position", head.position.0);
        }
        Ok(None) => {}
        Err(error) => {
            span.record("error", tracing::field::display(error));
        }
    }
}

/// Records how many events a read handed to its closure, and its error.
pub(crate) fn record_read(span: &Span, visited: u64, result: &Result<(), PgError>) {
    span.record("visited", visited);
    if let Err(error) = result {
        span.record("error", tracing::field::display(error));
    }
}

/// `visit`, counting its calls in `visited`.
pub(crate) fn counted<'c, E, F>(
    mut visit: F,
    visited: &'c mut u64,
) -> impl FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send + 'c
where
    F: FnMut(EventRef<'_, E, Position>) -> ControlFlow<()> + Send + 'c,
{
    move |event| {
        *visited += 1;
        visit(event)
    }
}
