//! Printing without secrets: phone numbers in ids and error texts, and credentials in a store
//! argument.
//!
//! ```
//! use periskope_webhook::redact::mask_phone_digits;
//!
//! assert_eq!(mask_phone_digits("CRM refused contact 919999912345@c.us"), "CRM refused contact *@c.us");
//! assert_eq!(mask_phone_digits("true_120363297269676566@g.us_3EB01D1702AD13661CDAEA"), "true_*@g.us_3EB01D1702AD13661CDAEA");
//! ```

#[cfg(feature = "inbox")]
use std::fmt;
#[cfg(feature = "inbox")]
use std::path::PathBuf;

/// The shortest run of digits that is masked when it is a word of its own: a phone number, as in
/// a WhatsApp id (`919289665999@c.us`), a group id (`120363...@g.us`) or `+91 92896 65999`.
const PHONE_WORD_DIGITS: usize = 5;

/// The shortest run of digits that is masked inside a longer word, as a phone number glued to
/// letters (`tel919999912345`) is: a phone number with its country code has ten digits or more,
/// while message ids (`3EB01F4653BB9DD05E9859`) rarely hold more than a few in a row.
const GLUED_DIGITS: usize = 10;

/// `text` with the phone numbers in it written `*`, so that it can be printed or logged.
///
/// A word (a run of ASCII letters and digits) made of five or more digits becomes `*`, and so
/// does a run of ten or more digits inside a longer word. Shorter digits inside a word, as in a
/// message id (`3EB01F4653BB9DD05E9859`) or a UUID, are not a phone number and stay.
///
/// The command line masks ids and error texts with it unless `--show-ids`, and
/// [`EventRouter`](crate::EventRouter) masks the handler errors it logs.
pub fn mask_phone_digits(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            mask_word(&word, &mut masked);
            word.clear();
            masked.push(c);
        }
    }
    mask_word(&word, &mut masked);
    masked
}

/// Appends `word` to `masked`, its phone numbers written `*`.
fn mask_word(word: &str, masked: &mut String) {
    if word.len() >= PHONE_WORD_DIGITS && word.bytes().all(|byte| byte.is_ascii_digit()) {
        masked.push('*');
        return;
    }
    let mut rest = word;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let digits = rest[start..].find(|c: char| !c.is_ascii_digit()).map_or(rest.len() - start, |len| len);
        masked.push_str(&rest[..start]);
        let run = &rest[start..start + digits];
        masked.push_str(if run.len() >= GLUED_DIGITS { "*" } else { run });
        rest = &rest[start + digits..];
    }
    masked.push_str(rest);
}

/// What a store argument (`--store`, `PERISKOPE_INBOX`) names, read without printing it.
///
/// - A URL whose scheme is `postgres` or `postgresql`, in any case (`POSTGRES://...`), is a
///   PostgreSQL database;
/// - so is a text holding `=`: a libpq connection string (`host=db user=app password=...`), as
///   libpq itself reads a database name with `=` in it (write `./a=b.db` for such a file);
/// - another `scheme://` is refused: it is neither;
/// - anything else is the path of an embedded file.
///
/// Its [`Display`](fmt::Display) and [`Debug`](fmt::Debug) never show a password or user name:
/// a PostgreSQL location prints as its kind and host, `PostgreSQL database at db:5432/inbox`.
///
/// ```
/// use periskope_webhook::redact::StoreLocation;
///
/// let url = StoreLocation::parse("POSTGRES://app:S3cret@db/inbox").unwrap();
/// assert_eq!(url, StoreLocation::Postgres("postgres://app:S3cret@db/inbox".to_owned()));
/// assert_eq!(url.to_string(), "PostgreSQL database at db/inbox");
/// let libpq = StoreLocation::parse("host=db user=app password=S3cret dbname=inbox").unwrap();
/// assert_eq!(libpq.to_string(), "PostgreSQL database at db/inbox");
/// assert!(matches!(StoreLocation::parse("periskope-inbox.db"), Ok(StoreLocation::File(_))));
/// assert!(StoreLocation::parse("mysql://app:S3cret@db/inbox").is_err());
/// ```
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A PostgreSQL URL or connection string, for
    /// `PostgresStore::connect` (feature `inbox-postgres`); a URL's scheme is
    /// written in lowercase, the form that reads it as a URL.
    Postgres(String),
    /// The embedded file, for [`SqliteStore::open`](crate::inbox::SqliteStore::open).
    File(PathBuf),
}

/// A store argument with a URL scheme that names no store, such as `mysql://`.
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScheme {
    scheme: String,
}

#[cfg(feature = "inbox")]
impl fmt::Display for UnknownScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {}:// URL is not an inbox: give a file path, or a postgres:// URL", self.scheme)
    }
}

#[cfg(feature = "inbox")]
impl std::error::Error for UnknownScheme {}

#[cfg(feature = "inbox")]
impl StoreLocation {
    /// Reads a store argument; see the [type](StoreLocation)'s rules.
    ///
    /// # Errors
    ///
    /// [`UnknownScheme`] for a URL of another scheme than `postgres` or `postgresql`. Its
    /// message names the scheme only.
    pub fn parse(text: &str) -> Result<StoreLocation, UnknownScheme> {
        if let Some((scheme, rest)) = url_scheme(text) {
            return if scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql") {
                Ok(StoreLocation::Postgres(format!("{}://{rest}", scheme.to_ascii_lowercase())))
            } else {
                Err(UnknownScheme { scheme: scheme.to_ascii_lowercase() })
            };
        }
        if text.contains('=') {
            return Ok(StoreLocation::Postgres(text.to_owned()));
        }
        Ok(StoreLocation::File(PathBuf::from(text)))
    }
}

/// The scheme of `scheme://rest` (letters, digits, `+`, `-`, `.`, a letter first) and the rest.
#[cfg(feature = "inbox")]
fn url_scheme(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// `host[:port]/database` of a PostgreSQL URL or connection string: no user, password or
/// other parameter.
#[cfg(feature = "inbox")]
fn postgres_address(config: &str) -> String {
    if let Some((_, rest)) = url_scheme(config) {
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
        // The user info ends at the last `@`: a password may hold one, a host never does.
        let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        return format!("{host}/{database}");
    }
    let mut host = "";
    let mut port = "";
    let mut database = "";
    for pair in config.split_whitespace() {
        match pair.split_once('=') {
            Some(("host" | "hostaddr", value)) if host.is_empty() => host = value,
            Some(("port", value)) => port = value,
            Some(("dbname", value)) => database = value,
            _ => {}
        }
    }
    let host = if host.is_empty() { "localhost" } else { host };
    let port = if port.is_empty() { String::new() } else { format!(":{port}") };
    format!("{host}{port}/{database}")
}

#[cfg(feature = "inbox")]
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Postgres(config) => {
                write!(f, "PostgreSQL database at {}", postgres_address(config))
            }
            StoreLocation::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(feature = "inbox")]
impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Postgres(config) => {
                f.debug_tuple("Postgres").field(&postgres_address(config)).finish()
            }
            StoreLocation::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_masked_and_other_ids_kept() {
        let cases = [
            ("919289665999@c.us", "*@c.us"),
            ("120363297269676566@g.us", "*@g.us"),
            (
                "true_120363297269676566@g.us_3EB01D1702AD13661CDAEA_919289665999@c.us",
                "true_*@g.us_3EB01D1702AD13661CDAEA_*@c.us",
            ),
            ("2997dd64-89bf-48d3-9a22-b314fca017e5", "2997dd64-89bf-48d3-9a22-b314fca017e5"),
            ("+91 92896 65999", "+91 * *"),
            ("1234", "1234"),
            ("CRM refused contact 919999912345@c.us", "CRM refused contact *@c.us"),
            ("tel919999912345 and wa:919999912345x", "tel* and wa:*x"),
            ("3EB012345678F", "3EB012345678F"),
            ("", ""),
        ];
        for (text, masked) in cases {
            assert_eq!(mask_phone_digits(text), masked, "{text}");
        }
    }

    #[cfg(feature = "inbox")]
    #[test]
    fn store_locations_print_without_credentials() {
        let cases = [
            ("postgres://app:S3cret@db:5433/inbox", "PostgreSQL database at db:5433/inbox"),
            ("PostgreSQL://app:S3@cret@db/inbox?password=S3cret", "PostgreSQL database at db/inbox"),
            ("postgresql://db", "PostgreSQL database at db/"),
            (
                "host=db port=5433 user=app password=S3cret dbname=inbox",
                "PostgreSQL database at db:5433/inbox",
            ),
            ("password=S3cret", "PostgreSQL database at localhost/"),
            ("inbox.db", "inbox.db"),
        ];
        for (text, shown) in cases {
            let location = StoreLocation::parse(text).unwrap();
            assert_eq!(location.to_string(), shown, "{text}");
            let debug = format!("{location:?}");
            assert!(!debug.contains("S3") && !debug.contains("app"), "{debug}");
        }
        let refused = StoreLocation::parse("MySQL://app:S3cret@db/inbox").unwrap_err().to_string();
        assert!(refused.starts_with("a mysql:// URL is not an inbox"), "{refused}");
        assert!(!refused.contains("S3cret"), "{refused}");
    }
}
