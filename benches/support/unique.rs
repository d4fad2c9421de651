//! Deliveries that are never duplicates, for the benchmarks that store them. A benchmark that
//! includes this file includes `support` too: the bodies are made from its fixture.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::support::compact;

/// `message.created` bodies, each with a message id of its own, so that none is a duplicate:
/// the compact fixture with its message id replaced by a counter of the same width.
pub struct UniqueMessages {
    template: String,
    id: String,
    next: AtomicU64,
}

impl UniqueMessages {
    pub fn new() -> Self {
        let template = String::from_utf8(compact("message.created.envelope.json")).expect("UTF-8");
        let start = template.find(r#""message_id":""#).expect("a message id") + r#""message_id":""#.len();
        let end = start + template[start..].find('"').expect("end of the id");
        let id = template[start..end].to_owned();
        UniqueMessages { template, id, next: AtomicU64::new(0) }
    }

    /// The next body, with the next message id.
    pub fn next(&self) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let unique = format!("{n:0width$}", width = self.id.len().min(20));
        Bytes::from(self.template.replacen(&self.id, &unique, 1))
    }
}
