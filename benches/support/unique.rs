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
    chat: String,
    chats: u64,
    next: AtomicU64,
}

impl UniqueMessages {
    pub fn new() -> Self {
        let template = String::from_utf8(compact("message.created.envelope.json")).expect("UTF-8");
        let start = template.find(r#""message_id":""#).expect("a message id") + r#""message_id":""#.len();
        let end = start + template[start..].find('"').expect("end of the id");
        let id = template[start..end].to_owned();
        let start = template.find(r#""chat_id":""#).expect("a chat id") + r#""chat_id":""#.len();
        let end = start + template[start..].find('"').expect("end of the chat id");
        let chat = template[start..end].to_owned();
        UniqueMessages { template, id, chat, chats: 1, next: AtomicU64::new(0) }
    }

    /// Bodies spread over `chats` chats in turn (the fixture's chat id with a number appended).
    #[allow(dead_code)] // benches/console.rs sends every delivery in one chat.
    pub fn over_chats(mut self, chats: u64) -> Self {
        self.chats = chats.max(1);
        self
    }

    /// The next body, with the next message id (and the next chat).
    pub fn next(&self) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let unique = format!("{n:0width$}", width = self.id.len().min(20));
        let body = self.template.replacen(&self.id, &unique, 1);
        if self.chats == 1 {
            return Bytes::from(body);
        }
        let chat = format!("{}{}", self.chat, n % self.chats);
        Bytes::from(body.replace(&format!(r#""chat_id":"{}""#, self.chat), &format!(r#""chat_id":"{chat}""#)))
    }
}
