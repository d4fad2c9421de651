//! What `tracing` spans were opened on this thread, with their fields and parents: a
//! subscriber layer for the span tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span as it was opened and recorded.
#[derive(Clone, Debug, Default)]
pub struct SpanSeen {
    pub name: &'static str,
    pub parent: Option<&'static str>,
    pub fields: BTreeMap<String, String>,
}

/// Every span opened on this thread while installed, in order, by its id.
#[derive(Clone, Default)]
pub struct Spans(Arc<Mutex<Vec<(u64, SpanSeen)>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut seen = SpanSeen { name: attributes.metadata().name(), ..SpanSeen::default() };
        seen.parent = context.span(id).and_then(|span| span.parent()).map(|parent| parent.name());
        attributes.record(&mut Fields(&mut seen.fields));
        self.0.lock().unwrap().push((id.into_u64(), seen));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, seen)) = spans.iter_mut().rev().find(|(seen_id, _)| *seen_id == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

impl Spans {
    /// Records the spans opened on this thread until the guard is dropped (the current-thread
    /// runtime of `#[tokio::test]` keeps the server's and the worker's tasks on it).
    pub fn start() -> (Spans, tracing::subscriber::DefaultGuard) {
        let spans = Spans::default();
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
        Spans::listen_everywhere();
        (spans, guard)
    }

    /// Asks every span site again whether a subscriber wants it. A site first reached by
    /// another test's thread (no subscriber there) while this one's was being installed can
    /// keep the answer "never" for the whole process; asking again once the subscriber is in
    /// place, and again before the traffic, settles it.
    pub fn listen_everywhere() {
        tracing::callsite::rebuild_interest_cache();
    }

    /// The spans seen so far, in the order they were opened.
    pub fn seen(&self) -> Vec<SpanSeen> {
        self.0.lock().unwrap().iter().map(|(_, seen)| seen.clone()).collect()
    }
}
