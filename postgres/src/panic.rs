//! The message of a caught panic, shared by subscriptions and projections.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The panic's message (a `&str` or `String` payload), and the payload
/// dropped under its own guard.
pub(crate) fn panic_message(panic: Box<dyn Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned());
    // The payload is user code too: its `Drop` may panic.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(panic)));
    message
}
