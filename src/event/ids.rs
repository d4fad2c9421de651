//! [`WaId`]: the WhatsApp id object, under each of the spellings Periskope uses.
//!
//! ```
//! use periskope_webhook::event::WaId;
//!
//! // Webhook examples write `fromMe` and `_serialized`; REST and chat notifications write
//! // `from_me` and `serialized`. Both decode to the same value.
//! let webhook: WaId<'_> = serde_json::from_str(
//!     r#"{"id":"3EB0","fromMe":true,"remote":"1203@g.us","_serialized":"true_1203@g.us_3EB0"}"#,
//! ).unwrap();
//! let rest: WaId<'_> = serde_json::from_str(
//!     r#"{"id":"3EB0","from_me":true,"remote":"1203@g.us","serialized":"true_1203@g.us_3EB0"}"#,
//! ).unwrap();
//! assert_eq!(webhook, rest);
//! assert_eq!(webhook.serialized.as_deref(), Some("true_1203@g.us_3EB0"));
//! ```

use serde::{Deserialize, Serialize};

use super::Str;

/// A WhatsApp message or reaction id: `{ id, fromMe, remote, _serialized }`.
///
/// Accepts `fromMe` or `from_me`, and `_serialized` or `serialized`; writes the webhook
/// spelling (`fromMe`, `_serialized`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaId<'a> {
    /// The bare WhatsApp message id, e.g. `3EB01F4653BB9DD05E9859`.
    #[serde(borrow)]
    pub id: Option<Str<'a>>,
    /// Whether the org phone sent it.
    #[serde(rename = "fromMe", alias = "from_me")]
    pub from_me: Option<bool>,
    /// The chat id (`…@c.us` or `…@g.us`).
    #[serde(borrow)]
    pub remote: Option<Str<'a>>,
    /// The serialized id, `<fromMe>_<chat id>_<message id>[_<participant>]`.
    #[serde(rename = "_serialized", alias = "serialized", borrow)]
    pub serialized: Option<Str<'a>>,
}

impl<'a> WaId<'a> {
    /// A WhatsApp id from its parts.
    pub fn new(
        id: impl Into<Str<'a>>,
        from_me: bool,
        remote: impl Into<Str<'a>>,
        serialized: impl Into<Str<'a>>,
    ) -> Self {
        WaId {
            id: Some(id.into()),
            from_me: Some(from_me),
            remote: Some(remote.into()),
            serialized: Some(serialized.into()),
        }
    }
}
