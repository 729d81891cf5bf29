//! A `tracing` subscriber that records every span (name, level, fields,
//! parent, follows-from) and event, for the tests of the `tracing` feature
//! (tests/tracing.rs here and in hindsight-postgres, which includes this
//! file by path): no `tracing-subscriber` needed.
//!
//! Install one per test (`with_default`, or `WithSubscriber` on a future):
//! tests then run in parallel without seeing each other's spans.
#![allow(dead_code)] // each test binary uses its own part

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// A span as the collector saw it.
#[derive(Debug, Clone)]
pub struct SpanSeen {
    pub id: u64,
    pub name: &'static str,
    pub level: Level,
    pub fields: BTreeMap<&'static str, String>,
    pub parent: Option<u64>,
    pub follows_from: Vec<u64>,
}

/// An event as the collector saw it: `parent` is its explicit parent or the
/// span current on its thread.
#[derive(Debug, Clone)]
pub struct EventSeen {
    pub level: Level,
    pub fields: BTreeMap<&'static str, String>,
    pub parent: Option<u64>,
    pub thread: ThreadId,
}

#[derive(Default)]
struct Seen {
    next_id: u64,
    spans: Vec<SpanSeen>,
    events: Vec<EventSeen>,
}

/// Records every span (name, level, fields, parent, follows-from) and event.
#[derive(Clone, Default)]
pub struct Collector(Arc<Mutex<Seen>>);

thread_local! {
    /// The spans entered on this thread, innermost last (ids of whichever
    /// collector the thread uses: one per thread here).
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

fn current() -> Option<u64> {
    ENTERED.with(|entered| entered.borrow().last().copied())
}

struct Fields<'a>(&'a mut BTreeMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name(), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name(), value.to_string());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

impl Subscriber for Collector {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut seen = self.0.lock().unwrap();
        seen.next_id += 1;
        let id = seen.next_id;
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let parent = if span.is_root() {
            None
        } else {
            span.parent().map(Id::into_u64).or_else(current)
        };
        seen.spans.push(SpanSeen {
            id,
            name: span.metadata().name(),
            level: *span.metadata().level(),
            fields,
            parent,
            follows_from: Vec::new(),
        });
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut seen = self.0.lock().unwrap();
        let span = seen
            .spans
            .iter_mut()
            .find(|s| s.id == span.into_u64())
            .unwrap();
        values.record(&mut Fields(&mut span.fields));
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        let mut seen = self.0.lock().unwrap();
        let span = seen
            .spans
            .iter_mut()
            .find(|s| s.id == span.into_u64())
            .unwrap();
        span.follows_from.push(follows.into_u64());
    }

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let parent = if event.is_root() {
            None
        } else {
            event.parent().map(Id::into_u64).or_else(current)
        };
        self.0.lock().unwrap().events.push(EventSeen {
            level: *event.metadata().level(),
            fields,
            parent,
            thread: std::thread::current().id(),
        });
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|id| *id == span.into_u64()) {
                entered.remove(at);
            }
        });
    }
}

impl Collector {
    pub fn spans(&self) -> Vec<SpanSeen> {
        self.0.lock().unwrap().spans.clone()
    }

    pub fn named(&self, name: &str) -> Vec<SpanSeen> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    pub fn events(&self) -> Vec<EventSeen> {
        self.0.lock().unwrap().events.clone()
    }
}

/// A span's field, as recorded.
pub fn field<'a>(span: &'a SpanSeen, name: &str) -> Option<&'a str> {
    span.fields.get(name).map(String::as_str)
}
