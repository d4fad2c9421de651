//! [`Phone`]: the `data` of `org.phone.*` events.
//!
//! ```
//! use periskope_webhook::event::{Phone, WaState};
//!
//! let phone: Phone<'_> = serde_json::from_str(
//!     r#"{"phone_id": "phone-bqzv", "wa_state": "CONNECTED", "qr_code": null}"#,
//! ).unwrap();
//! assert_eq!(phone.wa_state, Some(WaState::Connected));
//! assert_eq!(phone.qr_code, None);
//! ```

use serde::{Deserialize, Serialize};

use super::list;
use super::open_enum::open_enum;
use super::{Map, Str, Timestamp};

/// One of the organisation's WhatsApp phones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Phone<'a> {
    /// Organisation id.
    pub org_id: Option<Str<'a>>,
    /// The phone's WhatsApp id.
    pub org_phone: Option<Str<'a>>,
    /// Phone id, e.g. `phone-bqzvyibhmwkaergr`.
    pub phone_id: Option<Str<'a>>,
    /// Display name.
    pub phone_name: Option<Str<'a>>,
    /// Image URL.
    pub phone_image: Option<Str<'a>>,
    /// Connection state. Docs examples show `CONNECTED` even on disconnect events.
    pub wa_state: Option<WaState>,
    /// QR code to scan; null when connected.
    pub qr_code: Option<Str<'a>>,
    /// Ready to send.
    pub is_ready: Option<bool>,
    /// First connection time.
    pub first_connected_at: Option<Timestamp<'a>>,
    /// Creation time.
    pub created_at: Option<Timestamp<'a>>,
    /// Last update.
    pub updated_at: Option<Timestamp<'a>>,
    /// Label ids.
    pub label_ids: Option<Map<'a, bool>>,
    /// Label names.
    #[serde(default, deserialize_with = "list::opt_strs")]
    pub labels: Option<Vec<Str<'a>>>,
    /// Whether the server-side session is open.
    pub is_browser_open: Option<bool>,
    /// State on WhatsApp.
    pub phone_state: Option<Str<'a>>,
    /// WhatsApp version.
    pub wa_version: Option<Str<'a>>,
}

open_enum! {
    /// A phone's WhatsApp connection state.
    pub enum WaState {
        /// `CONNECTED`.
        Connected = "CONNECTED",
        /// `DISCONNECTED`.
        Disconnected = "DISCONNECTED",
        /// `OPENING`.
        Opening = "OPENING",
        /// `PAIRING`.
        Pairing = "PAIRING",
        /// `TIMEOUT`.
        Timeout = "TIMEOUT",
        /// `CONFLICT`.
        Conflict = "CONFLICT",
        /// `UNPAIRED`.
        Unpaired = "UNPAIRED",
        /// `UNLAUNCHED`.
        Unlaunched = "UNLAUNCHED",
    }
}
