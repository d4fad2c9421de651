//! Why a body is not a Periskope delivery ([`DecodeError`]), and why a delivery's `data` did not
//! fit its type ([`DataError`]).

use std::fmt::{self, Write as _};

/// The body is not a Periskope delivery: no event can be built from it.
///
/// Each variant has a stable [`code`](DecodeError::code). Messages carry positions and
/// categories, never the body's content.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body is not UTF-8 (JSON must be).
    InvalidUtf8 {
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// The body is not JSON.
    Malformed {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The body is JSON but not an object.
    NotAnObject,
    /// The object has neither an `event` nor an `event_type` name.
    MissingEventName,
    /// An envelope field has the wrong type or an unusable value, or a key is repeated.
    InvalidEnvelope {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
}

impl DecodeError {
    /// A short, stable, machine-readable code.
    pub const fn code(&self) -> &'static str {
        match self {
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::Malformed { .. } => "malformed_json",
            DecodeError::NotAnObject => "not_an_object",
            DecodeError::MissingEventName => "missing_event_name",
            DecodeError::InvalidEnvelope { .. } => "invalid_envelope",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::InvalidUtf8 { valid_up_to } => {
                write!(f, "body is not UTF-8 (invalid byte after {valid_up_to} bytes)")
            }
            DecodeError::Malformed { line, column } => {
                write!(f, "body is not valid JSON (line {line}, column {column})")
            }
            DecodeError::NotAnObject => f.write_str("body is not a JSON object"),
            DecodeError::MissingEventName => f.write_str("body has no `event` or `event_type` name"),
            DecodeError::InvalidEnvelope { line, column } => {
                write!(
                    f,
                    "envelope value of the wrong type, unusable, or repeated (line {line}, column {column})"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// A known event whose `data` does not fit its type: where, and why.
///
/// The delivery is not lost: the event still carries its envelope and raw `data`.
#[derive(Clone, PartialEq, Eq)]
pub struct DataError(Box<Misfit>);

/// Boxed in [`DataError`]: few events carry one, and a pointer keeps every [`super::Event`]
/// small enough to move without a `memcpy` call.
#[derive(Clone, PartialEq, Eq)]
struct Misfit {
    path: String,
    reason: String,
}

impl DataError {
    pub(crate) fn new(path: &serde_path_to_error::Path, error: &serde_json::Error) -> Self {
        DataError::at(masked_path(path), strip_position(error))
    }

    pub(crate) fn trailing() -> Self {
        DataError::at("data".to_owned(), "trailing characters".to_owned())
    }

    pub(crate) fn missing() -> Self {
        DataError::at("data".to_owned(), "missing `data`".to_owned())
    }

    fn at(path: String, reason: String) -> Self {
        DataError(Box::new(Misfit { path, reason }))
    }

    /// The JSON path of the offending value, e.g. `data.ticket.priority`, with `[i]` for array
    /// items. Map keys that are not plain identifiers (WhatsApp ids, phone numbers, emails) are
    /// written `*`, as in [drift](crate::drift) reports: `data.members.*.is_admin`.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// What was wrong, from the decoder. It may quote the offending value.
    pub fn reason(&self) -> &str {
        &self.0.reason
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` does not fit the event's type: {}", self.path(), self.reason())
    }
}

impl fmt::Debug for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataError").field("path", &self.path()).field("reason", &self.reason()).finish()
    }
}

impl std::error::Error for DataError {}

fn masked_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::from("data");
    for segment in path {
        match segment {
            // Writing to a String cannot fail.
            Segment::Seq { index } => drop(write!(out, "[{index}]")),
            Segment::Map { key } => {
                out.push('.');
                out.push_str(if is_identifier(key) { key } else { "*" });
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(if is_identifier(variant) { variant } else { "*" });
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// A field name rather than data used as a map key (a WhatsApp id, an email, a label id).
pub(crate) fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// serde_json appends " at line L column C"; within `data` that position is meaningless.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&suffix).map(str::to_owned).unwrap_or(text)
}
