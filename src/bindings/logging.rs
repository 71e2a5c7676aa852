//! Bridges the core's `tracing` events to Python's `logging`.
//!
//! Events are formatted where they happen and handed over a channel to one forwarding thread,
//! which takes the GIL and calls `logging.getLogger(target).log(level, message)`; so no tokio
//! thread ever waits for the GIL. Logger names are the event targets (`headrace.worker`, …).

use pyo3::prelude::*;
use std::fmt::Write;
use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(install_log_bridge, m)?)
}

struct Record {
    logger: String,
    level: u8,
    message: String,
}

static FORWARDER: OnceLock<Sender<Record>> = OnceLock::new();

/// Python `logging` level numbers.
fn python_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG | Level::TRACE => 10,
    }
}

struct PythonLogging {
    min_level: u8,
    sender: Sender<Record>,
}

/// Collects an event's message and its other fields as ` key=value` pairs.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// A span's fields as ` key=value` text, kept in the span's extensions.
struct SpanFields(String);

impl<S> Layer<S> for PythonLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut visitor = MessageVisitor::default();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(visitor.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = python_level(event.metadata().level());
        if level < self.min_level {
            return;
        }
        let target = event.metadata().target();
        let logger = if target.starts_with("headrace") {
            target.to_string()
        } else {
            format!("headrace.{}", target.replace("::", "."))
        };
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        // Enclosing spans, outermost first: "outbox.batch{worker=w1 items=100}: message".
        let mut context = String::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let fields = span
                    .extensions()
                    .get::<SpanFields>()
                    .map(|f| f.0.trim().to_string());
                match fields.filter(|f| !f.is_empty()) {
                    Some(fields) => {
                        let _ = write!(context, "{}{{{fields}}}: ", span.name());
                    }
                    None => {
                        let _ = write!(context, "{}: ", span.name());
                    }
                }
            }
        }
        let message = context + &visitor.message + &visitor.fields;
        let _ = self.sender.send(Record {
            logger,
            level,
            message,
        });
    }
}

/// Forwards the core's log events at `level` (a Python level number) and above to `logging`.
/// Called once by `headrace` on import; later calls change nothing.
#[pyfunction]
#[pyo3(signature = (level=20))]
fn install_log_bridge(level: u8) -> bool {
    if FORWARDER.get().is_some() {
        return false;
    }
    let (sender, inbox) = channel::<Record>();
    let spawned = std::thread::Builder::new()
        .name("headrace-log".into())
        .spawn(move || {
            while let Ok(record) = inbox.recv() {
                // Once the interpreter exits, taking the GIL from this thread would abort the
                // process: late records are dropped instead.
                if crate::bindings::runtime::exiting() {
                    continue;
                }
                Python::try_attach(|py| {
                    let logged = py
                        .import("logging")
                        .and_then(|logging| logging.call_method1("getLogger", (&record.logger,)))
                        .and_then(|logger| {
                            logger.call_method1("log", (record.level, &record.message))
                        });
                    if let Err(err) = logged {
                        err.print(py);
                    }
                });
            }
        });
    if spawned.is_err() || FORWARDER.set(sender.clone()).is_err() {
        return false;
    }
    let subscriber = tracing_subscriber::registry().with(PythonLogging {
        min_level: level,
        sender,
    });
    tracing::subscriber::set_global_default(subscriber).is_ok()
}
