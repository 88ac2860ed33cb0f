//! Spans: the run, each worker's connect and reconnects, each outage, and sampled commands,
//! built on the reporter thread from the workers' trace events (`metrics::trace`) and the
//! outage tracker's live events, and exported over OTLP.
//!
//! The run span is the root of one trace; connect, reconnect and outage spans are its
//! children (a few per run). A sampled command is a trace of its own, with the run's id as an
//! attribute (every span carries the run's labels): one trace holding thousands of commands would be unreadable in Jaeger, while
//! per-command traces can be searched by operation, error and duration.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::metrics::trace::{TraceEvent, TraceKind};

/// A span attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
}

/// Whether the span is a call to a server (a command, a connect) or internal to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Client,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Set for a failed operation: the error status's message.
    pub error: Option<String>,
}

/// Turns monotonic instants into wall-clock times, from one pair taken at the run's start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_ns: u64,
}

impl Clock {
    pub fn new(origin: Instant, wall: SystemTime) -> Self {
        Clock {
            origin,
            origin_unix_ns: wall
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }

    pub fn unix_ns(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.origin) {
            Some(after) => self.origin_unix_ns + after.as_nanos() as u64,
            None => self
                .origin_unix_ns
                .saturating_sub(self.origin.duration_since(at).as_nanos() as u64),
        }
    }

    /// A time given as an offset from the origin.
    pub fn offset_unix_ns(&self, offset: Duration) -> u64 {
        self.origin_unix_ns + offset.as_nanos() as u64
    }
}

/// Makes the run's spans: ids, parentage, attributes.
pub struct SpanFactory {
    clock: Clock,
    rng: Xoshiro256PlusPlus,
    run_trace: [u8; 16],
    run_span: [u8; 8],
    /// Operation names, indexed like the workers' op ids.
    ops: Arc<[String]>,
    /// When the run span starts (before the workers connect).
    began: Instant,
}

impl SpanFactory {
    pub fn new(clock: Clock, began: Instant, ops: Arc<[String]>) -> Self {
        let seed = clock.origin_unix_ns ^ u64::from(std::process::id()).rotate_left(40);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let run_trace = trace_id(&mut rng);
        let run_span = span_id(&mut rng);
        SpanFactory {
            clock,
            rng,
            run_trace,
            run_span,
            ops,
            began,
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// A worker's trace event as a span.
    pub fn from_event(&mut self, event: &TraceEvent) -> Span {
        let mut attributes = vec![("worker", AttrValue::Int(i64::from(event.worker)))];
        if let Some(server) = &event.server {
            let (host, port) = split_host_port(server);
            attributes.push(("server.address", AttrValue::Str(host.to_string())));
            if let Some(port) = port {
                attributes.push(("server.port", AttrValue::Int(i64::from(port))));
            }
        }
        let (name, kind, error, own_trace) = match event.kind {
            TraceKind::Command { op, error } => {
                let name = self.ops.get(op).cloned().unwrap_or_default();
                attributes.push(("db.system", AttrValue::Str("redis".into())));
                attributes.push(("db.system.name", AttrValue::Str("redis".into())));
                attributes.push(("db.operation", AttrValue::Str(name.clone())));
                attributes.push(("db.operation.name", AttrValue::Str(name.clone())));
                if let Some(class) = error {
                    attributes.push(("error.type", AttrValue::Str(class.label().into())));
                }
                let error = error.map(|c| format!("{name} failed: {}", c.label()));
                (name, SpanKind::Client, error, true)
            }
            TraceKind::Connect => ("connect".to_string(), SpanKind::Client, None, false),
            TraceKind::Reconnect { attempts } => {
                if attempts > 0 {
                    attributes.push(("attempts", AttrValue::Int(i64::from(attempts))));
                }
                ("reconnect".to_string(), SpanKind::Client, None, false)
            }
        };
        let (trace_id, parent) = if own_trace {
            (trace_id(&mut self.rng), None)
        } else {
            (self.run_trace, Some(self.run_span))
        };
        Span {
            trace_id,
            span_id: span_id(&mut self.rng),
            parent_span_id: parent,
            name,
            kind,
            start_unix_ns: self.clock.unix_ns(event.start),
            end_unix_ns: self.clock.unix_ns(event.end),
            attributes,
            error,
        }
    }

    /// An outage window (offsets from the run's start); `open` when the run ended first.
    pub fn outage(&mut self, start: Duration, end: Duration, open: bool) -> Span {
        let mut attributes = vec![(
            "outage.duration_ms",
            AttrValue::Float(end.saturating_sub(start).as_secs_f64() * 1e3),
        )];
        if open {
            attributes.push(("outage.open_at_end", AttrValue::Int(1)));
        }
        Span {
            trace_id: self.run_trace,
            span_id: span_id(&mut self.rng),
            parent_span_id: Some(self.run_span),
            name: "outage".into(),
            kind: SpanKind::Internal,
            start_unix_ns: self.clock.offset_unix_ns(start),
            end_unix_ns: self.clock.offset_unix_ns(end),
            attributes,
            error: Some("commands failed: Redis unreachable or unavailable".into()),
        }
    }

    /// The run's root span, from the run's start to `end`, with the resolved configuration
    /// (secrets already redacted) as `config.<key>` attributes.
    pub fn run(&mut self, end: Instant, config: Vec<(&'static str, AttrValue)>) -> Span {
        Span {
            trace_id: self.run_trace,
            span_id: self.run_span,
            parent_span_id: None,
            name: "redis-loadgen run".into(),
            kind: SpanKind::Internal,
            start_unix_ns: self.clock.unix_ns(self.began),
            end_unix_ns: self.clock.unix_ns(end),
            attributes: config,
            error: None,
        }
    }
}

fn trace_id(rng: &mut Xoshiro256PlusPlus) -> [u8; 16] {
    let mut id = [0u8; 16];
    while id == [0; 16] {
        rng.fill_bytes(&mut id);
    }
    id
}

fn span_id(rng: &mut Xoshiro256PlusPlus) -> [u8; 8] {
    let mut id = [0u8; 8];
    while id == [0; 8] {
        rng.fill_bytes(&mut id);
    }
    id
}

/// `host:port` or `[v6]:port` split; a text without a port is all host.
fn split_host_port(text: &str) -> (&str, Option<u16>) {
    match text.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().ok(),
        ),
        _ => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    #[test]
    fn events_become_spans_with_their_times_and_attributes() {
        let origin = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut f = SpanFactory::new(
            Clock::new(origin, wall),
            origin,
            vec!["GET".to_string(), "SET".to_string()].into(),
        );
        let event = TraceEvent {
            kind: TraceKind::Command {
                op: 1,
                error: Some(ErrorClass::Timeout),
            },
            worker: 3,
            start: origin + Duration::from_millis(5),
            end: origin + Duration::from_millis(7),
            server: Some("[::1]:6380".into()),
        };
        let span = f.from_event(&event);
        assert_eq!(span.name, "SET");
        assert_eq!(span.start_unix_ns, 1_000_000_005_000_000);
        assert_eq!(span.end_unix_ns - span.start_unix_ns, 2_000_000);
        assert!(span.parent_span_id.is_none());
        let attr = |k: &str| span.attributes.iter().find(|(n, _)| *n == k).map(|a| &a.1);
        assert_eq!(attr("db.system"), Some(&AttrValue::Str("redis".into())));
        assert_eq!(attr("db.operation"), Some(&AttrValue::Str("SET".into())));
        assert_eq!(attr("server.address"), Some(&AttrValue::Str("::1".into())));
        assert_eq!(attr("server.port"), Some(&AttrValue::Int(6380)));
        assert_eq!(attr("error.type"), Some(&AttrValue::Str("timeout".into())));
        assert!(span.error.is_some());

        let connect = f.from_event(&TraceEvent {
            kind: TraceKind::Connect,
            server: None,
            ..event
        });
        let run = f.run(origin + Duration::from_secs(1), vec![]);
        assert_eq!(connect.trace_id, run.trace_id);
        assert_eq!(connect.parent_span_id, Some(run.span_id));
        assert_ne!(span.trace_id, run.trace_id);
        let outage = f.outage(Duration::from_secs(1), Duration::from_millis(2500), false);
        assert_eq!(outage.end_unix_ns - outage.start_unix_ns, 1_500_000_000);
        assert_eq!(outage.parent_span_id, Some(run.span_id));
    }
}
