//! The messages of the scenario kit's failed assertions: expected and
//! written events listed line by line, the first difference marked.

use super::written::{Written, WrittenEvent};
use crate::ids::{Position, StreamId};
use std::fmt::{self, Debug, Write};

/// The marker of the first differing line; other lines are indented as
/// wide.
const MARK: &str = "  > ";
const NO_MARK: &str = "    ";

/// `None` if the events `written` to `stream` are `expected`, in order;
/// otherwise the message that says where they first differ.
pub(crate) fn stream_mismatch<E: Debug + PartialEq>(
    written: &Written<E>,
    stream: StreamId,
    expected: &[E],
) -> Option<String> {
    let actual: Vec<&WrittenEvent<E>> = written.stream(stream).collect();
    let first = first_difference(expected, &actual)?;
    let mut message = String::new();
    // Writing to a `String` cannot fail.
    let _ = write_stream_mismatch(&mut message, written, stream, expected, &actual, first);
    Some(message)
}

/// `None` if nothing was written; otherwise the message that lists what
/// was.
pub(crate) fn something_written<E: Debug>(written: &Written<E>) -> Option<String> {
    if written.is_empty() {
        return None;
    }
    let mut message = String::new();
    let _ = write_something_written(&mut message, written);
    Some(message)
}

/// The index of the first pair that differs, or the shorter length if one
/// list is a prefix of the other; `None` if they are equal.
fn first_difference<E: PartialEq>(expected: &[E], actual: &[&WrittenEvent<E>]) -> Option<usize> {
    let differs = expected
        .iter()
        .zip(actual)
        .position(|(expected, actual)| *expected != actual.event);
    match differs {
        Some(index) => Some(index),
        None if expected.len() != actual.len() => Some(expected.len().min(actual.len())),
        None => None,
    }
}

fn write_stream_mismatch<E: Debug>(
    out: &mut String,
    written: &Written<E>,
    stream: StreamId,
    expected: &[E],
    actual: &[&WrittenEvent<E>],
    first: usize,
) -> fmt::Result {
    write!(
        out,
        "events written to stream {stream} {}: first difference at #{first}",
        since(written.after())
    )?;
    match actual.get(first) {
        Some(event) => writeln!(
            out,
            " (version {}, position {})",
            event.version, event.position
        )?,
        None => writeln!(out, " (not written)")?,
    }

    writeln!(out, "expected, {}:", count(expected.len()))?;
    for (index, event) in expected.iter().enumerate() {
        writeln!(out, "{}#{index}  {event:?}", marker(index == first))?;
    }
    if first == expected.len() {
        writeln!(out, "{MARK}#{first}  (nothing more)")?;
    }

    writeln!(out, "written, {}:", count(actual.len()))?;
    for (index, event) in actual.iter().enumerate() {
        writeln!(
            out,
            "{}#{index}  version {}, position {}: {:?}",
            marker(index == first),
            event.version,
            event.position,
            event.event
        )?;
    }
    if first == actual.len() {
        writeln!(out, "{MARK}#{first}  (nothing more)")?;
    }

    // A wrong stream id is a common slip: say where the events went.
    let others: Vec<(StreamId, usize)> = written
        .streams()
        .into_iter()
        .filter(|&other| other != stream)
        .map(|other| (other, written.stream(other).count()))
        .collect();
    if others.is_empty() {
        write!(out, "no other stream was written")
    } else {
        write!(out, "other streams written:")?;
        for (other, events) in others {
            write!(out, " {other} ({})", count(events))?;
        }
        Ok(())
    }
}

fn write_something_written<E: Debug>(out: &mut String, written: &Written<E>) -> fmt::Result {
    write!(
        out,
        "expected nothing written {}, but {} {} written:",
        since(written.after()),
        count(written.len()),
        if written.len() == 1 { "was" } else { "were" }
    )?;
    for event in written.events() {
        write!(
            out,
            "\n{NO_MARK}stream {}, version {}, position {}: {:?}",
            event.stream, event.version, event.position, event.event
        )?;
    }
    Ok(())
}

fn since(after: Option<Position>) -> String {
    match after {
        Some(position) => format!("since the mark (after position {position})"),
        None => "since the mark (an empty store)".to_owned(),
    }
}

fn count(events: usize) -> String {
    match events {
        1 => "1 event".to_owned(),
        n => format!("{n} events"),
    }
}

fn marker(first: bool) -> &'static str {
    if first {
        MARK
    } else {
        NO_MARK
    }
}
