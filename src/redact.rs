//! Printing without secrets: phone numbers in ids and error texts, and credentials in a store
//! argument.
//!
//! ```
//! use periskope_webhook::redact::mask_phone_digits;
//!
//! assert_eq!(mask_phone_digits("CRM refused contact 919999912345@c.us"), "CRM refused contact *@c.us");
//! assert_eq!(mask_phone_digits("true_120363297269676566@g.us_3EB01D1702AD13661CDAEA"), "true_*@g.us_3EB01D1702AD13661CDAEA");
//! assert_eq!(mask_phone_digits("call +1 (415) 555-0100 after 2025-01-20T07:51:48Z"), "call * after 2025-01-20T07:51:48Z");
//! ```

#[cfg(feature = "inbox")]
use std::fmt;
use std::ops::RangeInclusive;
#[cfg(feature = "inbox")]
use std::path::PathBuf;

/// The fewest digits that make a number written on its own a phone number: a subscriber
/// number without its area code has seven (`555-0100`), while counts, status codes and ports
/// (`attempt 3 of 5`, `HTTP 503`, `8080`) have fewer.
const PHONE_DIGITS: usize = 7;

/// The shortest run of digits that is masked inside a longer word, as a phone number glued to
/// letters (`tel919999912345`) is: a phone number with its country code has ten digits or more,
/// while message ids (`3EB01F4653BB9DD05E9859`) rarely hold more than a few in a row.
const GLUED_DIGITS: usize = 10;

/// `text` with the phone numbers in it written `*`, so that it can be printed or logged.
///
/// A number is a group of digits, or several joined by one space, dash or dot each, where a
/// group may be in parentheses and the first may follow a `+`: `+1 (415) 555-0100`,
/// `415.555.0100`, `+44 7911 123456`. Each group is a word of its own, and digits are those of
/// any script (Unicode category Nd: `٩١٩٨٧٦٥٤٣٢١٠`, `９１９８７６５４３２１０`). A number of seven
/// digits or more becomes a single `*`, its `+`, separators and parentheses included, so that
/// neither its length nor its country code shows. Inside a longer word, as a phone number
/// glued to letters (`tel919999912345`), a run of ten digits or more becomes `*`; the shorter
/// runs of a message id (`3EB01F4653BB9DD05E9859`) stay.
///
/// What only looks like a number stays as written:
/// - ISO 8601 dates and times (`2025-01-20`, `2025-01-20T07:51:48.123+05:30`, `07:51:48`) and
///   UUIDs (`123e4567-e89b-12d3-a456-426614174000`, all-digit ones too), recognised first: a
///   number never extends into one;
/// - a decimal number, two groups joined by a dot (`12.9715987`), and an IPv4 address
///   (`192.168.100.200`);
/// - amounts whose thousands are separated by commas (`1,234,567`): a comma never joins groups,
///   as phone numbers are not written with one and lists of ids are.
///
/// Amounts grouped by spaces or dots (`1 234 567`, `1.234.567`), dates in other forms than ISO
/// 8601 (`20.01.2025`) and other bare numbers of seven digits or more, such as Unix times, cannot
/// be told from a phone number (`612 345 678` is a Spanish one) and are masked: in doubt, the
/// mask hides.
///
/// The command line masks ids and error texts with it unless `--show-ids`, the console unless
/// a page shows ids, and [`EventRouter`](crate::EventRouter) masks the handler errors it logs.
pub fn mask_phone_digits(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    // Each step starts where a word may start (at the beginning, or after a character that is
    // neither a letter nor a digit) and consumes a kept date, time or UUID, a number, a word,
    // or one other character; each ends where a word does.
    while let Some(first) = rest.chars().next() {
        let taken = if let Some(len) = kept_length(rest) {
            masked.push_str(&rest[..len]);
            len
        } else if let Some(number) = Number::read(rest) {
            let (opening, digits) = rest[..number.len].split_at(number.unmatched_opening);
            masked.push_str(opening);
            masked.push_str(if number.is_phone_number() { "*" } else { digits });
            number.len
        } else if first.is_alphanumeric() {
            let len = word_length(rest);
            mask_glued_digits(&rest[..len], &mut masked);
            len
        } else {
            masked.push(first);
            first.len_utf8()
        };
        rest = &rest[taken..];
    }
    masked
}

/// The groups of digits at the start of a text, as [`mask_phone_digits`] reads a number.
struct Number {
    /// Its length in bytes.
    len: usize,
    /// The length of its opening parenthesis when no parenthesis closes after it, as in
    /// `(5550100)`: that one encloses the number rather than a group of it, and is not masked
    /// with it; 0 otherwise.
    unmatched_opening: usize,
    digits: usize,
    groups: usize,
    /// Whether nothing but single ASCII dots joins its groups: no `+`, no parenthesis.
    dotted: bool,
    /// Whether every group is an IPv4 address's number: `0` to `255` in ASCII digits, without
    /// a leading zero (`044.123.45.67` is a Swiss phone number).
    octets: bool,
}

impl Number {
    /// The number at the start of `text`: `None` unless it starts with digits, `+` and digits,
    /// or `(` and digits.
    fn read(text: &str) -> Option<Number> {
        let mut number =
            Number { len: 0, unmatched_opening: 0, digits: 0, groups: 0, dotted: true, octets: true };
        let mut open = false;
        let first = text.chars().next()?;
        if is_plus(first) || is_opening(first) {
            number.len = first.len_utf8();
            number.dotted = false;
            if is_opening(first) {
                open = true;
                number.unmatched_opening = first.len_utf8();
            }
        }
        number.add_group(digit_group(&text[number.len..])?);
        while let Some(separator) = Separator::read(&text[number.len..], open) {
            let next = &text[number.len + separator.len..];
            // A date, time or UUID after a number is not part of it (`id 1234567 2025-01-20`).
            if kept_length(next).is_some() {
                break;
            }
            let Some(group) = digit_group(next) else { break };
            number.dotted &= &text[number.len..][..separator.len] == ".";
            if separator.closes {
                number.unmatched_opening = 0;
            }
            open = (open && !separator.closes) || separator.opens;
            number.len += separator.len;
            number.add_group(group);
        }
        Some(number)
    }

    fn add_group(&mut self, group: &str) {
        self.len += group.len();
        self.digits += group.chars().count();
        self.groups += 1;
        self.octets &= (group.len() == 1 || !group.starts_with('0')) && group.parse::<u8>().is_ok();
    }

    fn is_phone_number(&self) -> bool {
        let decimal = self.dotted && self.groups == 2;
        let ipv4 = self.dotted && self.groups == 4 && self.octets;
        self.digits >= PHONE_DIGITS && !decimal && !ipv4
    }
}

/// What joins two groups of a number: a closing parenthesis if one is open, then one space,
/// dash or dot, then an opening parenthesis; any of them, at least one.
struct Separator {
    /// Its length in bytes.
    len: usize,
    closes: bool,
    opens: bool,
}

impl Separator {
    fn read(text: &str, open: bool) -> Option<Separator> {
        let next = |at: usize| text[at..].chars().next();
        let mut separator = Separator { len: 0, closes: false, opens: false };
        if open && let Some(c) = next(0).filter(|&c| is_closing(c)) {
            separator.len += c.len_utf8();
            separator.closes = true;
        }
        if let Some(c) = next(separator.len).filter(|&c| is_group_separator(c)) {
            separator.len += c.len_utf8();
        }
        if (!open || separator.closes)
            && let Some(c) = next(separator.len).filter(|&c| is_opening(c))
        {
            separator.len += c.len_utf8();
            separator.opens = true;
        }
        (separator.len > 0).then_some(separator)
    }
}

fn is_plus(c: char) -> bool {
    matches!(c, '+' | '\u{ff0b}')
}

fn is_opening(c: char) -> bool {
    matches!(c, '(' | '\u{ff08}')
}

fn is_closing(c: char) -> bool {
    matches!(c, ')' | '\u{ff09}')
}

/// What people put between a phone number's groups: a space, a dash or a dot, or one of their
/// typographic and fullwidth forms: the no-break spaces U+00A0 and U+202F, the hyphens and
/// dashes U+2010 to U+2013 (U+2012, the figure dash, is meant for phone numbers), and the
/// ideographic space and the fullwidth hyphen-minus and full stop that go with fullwidth digits.
/// Never a comma, a slash or a line break.
fn is_group_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '\u{a0}' | '\u{202f}' | '\u{3000}' | '\u{ff0d}' | '\u{ff0e}')
        || ('\u{2010}'..='\u{2013}').contains(&c)
}

/// The length in bytes of the word at the start of `text`: its letters and digits.
fn word_length(text: &str) -> usize {
    text.find(|c: char| !c.is_alphanumeric()).unwrap_or(text.len())
}

/// The word at the start of `text` when it is made of decimal digits only.
fn digit_group(text: &str) -> Option<&str> {
    let group = &text[..word_length(text)];
    (!group.is_empty() && group.chars().all(is_decimal_digit)).then_some(group)
}

/// Appends `word` to `masked`, its runs of [`GLUED_DIGITS`] digits or more written `*`.
fn mask_glued_digits(word: &str, masked: &mut String) {
    let mut rest = word;
    while let Some(start) = rest.find(is_decimal_digit) {
        let len = rest[start..].find(|c: char| !is_decimal_digit(c)).unwrap_or(rest.len() - start);
        let run = &rest[start..start + len];
        masked.push_str(&rest[..start]);
        masked.push_str(if run.chars().count() >= GLUED_DIGITS { "*" } else { run });
        rest = &rest[start + len..];
    }
    masked.push_str(rest);
}

/// The zero of each run of decimal digits (Unicode general category Nd) in Unicode 16.0,
/// ascending, as listed in its character database.
///
/// Unicode's stability policy keeps decimal digits in runs of ten consecutive code points from
/// zero to nine, so a character is one when it lies within nine above one of these zeros. The
/// standard library has no test for Nd alone: `char::is_numeric` also takes `²`, `½`, `①` and
/// `Ⅻ`, and `char::to_digit` only ASCII.
const DECIMAL_ZEROS: [u32; 76] = [
    0x0030, // ASCII
    0x0660, 0x06F0, 0x07C0, // Arabic-Indic, Extended Arabic-Indic, NKo
    0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, // Devanagari, Bengali, Gurmukhi, Gujarati, Oriya
    0x0BE6, 0x0C66, 0x0CE6, 0x0D66, 0x0DE6, // Tamil, Telugu, Kannada, Malayalam, Sinhala Lith
    0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, // Thai, Lao, Tibetan, Myanmar, Myanmar Shan
    0x17E0, 0x1810, 0x1946, 0x19D0, // Khmer, Mongolian, Limbu, New Tai Lue
    0x1A80, 0x1A90, 0x1B50, 0x1BB0, // Tai Tham Hora, Tai Tham Tham, Balinese, Sundanese
    0x1C40, 0x1C50, 0xA620, 0xA8D0, // Lepcha, Ol Chiki, Vai, Saurashtra
    0xA900, 0xA9D0, 0xA9F0, 0xAA50, // Kayah Li, Javanese, Myanmar Tai Laing, Cham
    0xABF0, 0xFF10, // Meetei Mayek, fullwidth
    0x104A0, 0x10D30, 0x10D40, // Osmanya, Hanifi Rohingya, Garay
    0x11066, 0x110F0, 0x11136, 0x111D0, // Brahmi, Sora Sompeng, Chakma, Sharada
    0x112F0, 0x11450, 0x114D0, 0x11650, // Khudawadi, Newa, Tirhuta, Modi
    0x116C0, 0x116D0, 0x116DA, // Takri, Myanmar Pao, Myanmar Eastern Pwo Karen
    0x11730, 0x118E0, 0x11950, 0x11BF0, // Ahom, Warang Citi, Dives Akuru, Sunuwar
    0x11C50, 0x11D50, 0x11DA0, 0x11F50, // Bhaiksuki, Masaram Gondi, Gunjala Gondi, Kawi
    0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, // Gurung Khema, Mro, Tangsa, Pahawh Hmong, Kirat Rai
    0x1CCF0, // outlined
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, // the five mathematical styles
    0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, // Nyiakeng Puachue Hmong, Wancho, Nag Mundari, Ol Onal
    0x1E950, 0x1FBF0, // Adlam, segmented
];

/// Whether `c` is a decimal digit of any script (Unicode general category Nd).
fn is_decimal_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    let code = u32::from(c);
    let zeros_at_or_below = DECIMAL_ZEROS.partition_point(|&zero| zero <= code);
    zeros_at_or_below > 0 && code - DECIMAL_ZEROS[zeros_at_or_below - 1] < 10
}

/// The length of the ISO 8601 date or time, or the UUID, at the start of `text`, when a word
/// ends there: whatever digits they hold, these are not phone numbers.
fn kept_length(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let len = uuid_length(bytes).or_else(|| date_length(bytes)).or_else(|| time_length(bytes))?;
    // The length covers ASCII bytes only, so it ends on a character boundary.
    let ends_word = !text[len..].chars().next().is_some_and(char::is_alphanumeric);
    ends_word.then_some(len)
}

/// Eight, four, four, four and twelve hexadecimal digits joined by dashes, in either case.
fn uuid_length(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    for (index, count) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if index > 0 {
            at = byte_at(bytes, at, b"-")?;
        }
        bytes.get(at..at + count)?.iter().all(u8::is_ascii_hexdigit).then_some(())?;
        at += count;
    }
    Some(at)
}

/// `2025-01-20`, then possibly `T` and a [time](time_length).
fn date_length(bytes: &[u8]) -> Option<usize> {
    let at = digits_at(bytes, 0, 4, 0..=9999)?;
    let at = byte_at(bytes, at, b"-")?;
    let at = digits_at(bytes, at, 2, 1..=12)?;
    let at = byte_at(bytes, at, b"-")?;
    let date = digits_at(bytes, at, 2, 1..=31)?;
    let date_time = byte_at(bytes, date, b"Tt").and_then(|at| Some(at + time_length(&bytes[at..])?));
    Some(date_time.unwrap_or(date))
}

/// `07:51`, `07:51:48` or `07:51:48.123` (or `,123`), then possibly a zone: `Z`, `+05:30`,
/// `-0800` or `+05`.
fn time_length(bytes: &[u8]) -> Option<usize> {
    let at = digits_at(bytes, 0, 2, 0..=24)?;
    let at = byte_at(bytes, at, b":")?;
    let mut at = digits_at(bytes, at, 2, 0..=59)?;
    if let Some(seconds) = byte_at(bytes, at, b":").and_then(|at| digits_at(bytes, at, 2, 0..=60)) {
        at = seconds;
        if let Some(fraction) = byte_at(bytes, at, b".,") {
            let digits = bytes[fraction..].iter().take_while(|byte| byte.is_ascii_digit()).count();
            if digits > 0 {
                at = fraction + digits;
            }
        }
    }
    Some(at + zone_length(&bytes[at..]).unwrap_or(0))
}

fn zone_length(bytes: &[u8]) -> Option<usize> {
    if byte_at(bytes, 0, b"Zz").is_some() {
        return Some(1);
    }
    let at = byte_at(bytes, 0, b"+-")?;
    let hours = digits_at(bytes, at, 2, 0..=23)?;
    let at = byte_at(bytes, hours, b":").unwrap_or(hours);
    Some(digits_at(bytes, at, 2, 0..=59).unwrap_or(hours))
}

/// Where the `count` ASCII digits at `at` end, when their value is within `range`.
fn digits_at(bytes: &[u8], at: usize, count: usize, range: RangeInclusive<u32>) -> Option<usize> {
    let value = bytes
        .get(at..at + count)?
        .iter()
        .try_fold(0, |value, &byte| byte.is_ascii_digit().then(|| value * 10 + u32::from(byte - b'0')))?;
    range.contains(&value).then_some(at + count)
}

/// Where the byte at `at` ends, when it is one of `expected`.
fn byte_at(bytes: &[u8], at: usize, expected: &[u8]) -> Option<usize> {
    bytes.get(at).filter(|byte| expected.contains(byte)).map(|_| at + 1)
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
/// The credentials are found where the PostgreSQL driver finds them: in a URL, everything up
/// to the first `@` (so `app:pa/ss@db` has the password `pa/ss`). A password that holds an `@`
/// is written `%40`; written as it is, the rest of the URL holds a piece of it, and the
/// location prints as an unreadable address instead.
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

/// A store argument that names no store: a URL of another scheme, such as `mysql://`, or a
/// PostgreSQL location that cannot be read without showing a piece of its password.
#[cfg(feature = "inbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "inbox")))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScheme {
    /// The scheme, lowercase; `None` for an unreadable PostgreSQL location.
    scheme: Option<String>,
}

#[cfg(feature = "inbox")]
impl fmt::Display for UnknownScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheme {
            Some(scheme) => {
                write!(f, "a {scheme}:// URL is not an inbox: give a file path, or a postgres:// URL")
            }
            None => f.write_str(
                "the PostgreSQL location cannot be read without showing a piece of its password: \
                 in a URL, write an `@` in the password as %40; in a connection string, close \
                 every quote",
            ),
        }
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
    /// [`UnknownScheme`] for a URL of another scheme than `postgres` or `postgresql`, and for
    /// a PostgreSQL location whose address cannot be told from its password (an `@` written as
    /// it is in a URL's password, an unclosed quote in a connection string): the driver would
    /// take a piece of the password for the host. Its message names the scheme only.
    pub fn parse(text: &str) -> Result<StoreLocation, UnknownScheme> {
        let config = match url_scheme(text) {
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql") =>
            {
                format!("{}://{rest}", scheme.to_ascii_lowercase())
            }
            Some((scheme, _)) => return Err(UnknownScheme { scheme: Some(scheme.to_ascii_lowercase()) }),
            None if text.contains('=') => text.to_owned(),
            None => return Ok(StoreLocation::File(PathBuf::from(text))),
        };
        if postgres_address(&config).is_none() {
            return Err(UnknownScheme { scheme: None });
        }
        Ok(StoreLocation::Postgres(config))
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

/// `host[:port]/database` of a PostgreSQL URL or connection string, found where
/// tokio-postgres finds them, so that no user, password or other parameter shows; `None` when
/// the text cannot be read without risking a piece of a password.
#[cfg(feature = "inbox")]
fn postgres_address(config: &str) -> Option<String> {
    if let Some((_, rest)) = url_scheme(config) {
        // tokio-postgres ends the user info at the first `@` of the whole text, wherever it is
        // (`app:pa/ss@db` has the password `pa/ss`), the host at the next `/` or `?`, and the
        // database at `?`.
        let rest = rest.split_once('@').map_or(rest, |(_, after)| after);
        // A second `@` means the password held one: what follows the first is part of it.
        if rest.contains('@') {
            return None;
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, path) = rest.split_at(end);
        let database = path.strip_prefix('/').map_or("", |path| path.split('?').next().unwrap_or_default());
        return Some(format!("{host}/{database}"));
    }
    let mut host = None;
    let mut port = None;
    let mut database = None;
    for (keyword, value) in libpq_parameters(config)? {
        match keyword {
            // The first host, as libpq takes it.
            "host" | "hostaddr" if host.is_none() => host = Some(value),
            "port" => port = Some(value),
            "dbname" => database = Some(value),
            _ => {}
        }
    }
    let host = host.unwrap_or_else(|| "localhost".to_owned());
    let port = port.map(|port| format!(":{port}")).unwrap_or_default();
    Some(format!("{host}{port}/{}", database.unwrap_or_default()))
}

/// The `keyword=value` pairs of a libpq connection string, read as tokio-postgres reads them: a
/// value is `'quoted'` or runs to the next space, and `\` escapes the next character; `None`
/// when the text is not one, since a misread value could be a piece of a password.
#[cfg(feature = "inbox")]
fn libpq_parameters(config: &str) -> Option<Vec<(&str, String)>> {
    let mut parameters = Vec::new();
    let mut rest = config.trim_start();
    while !rest.is_empty() {
        let end = rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(rest.len());
        let (keyword, after) = rest.split_at(end);
        let after = after.trim_start().strip_prefix('=')?.trim_start();
        let quoted = after.starts_with('\'');
        let mut chars = after.char_indices().skip(usize::from(quoted));
        let mut value = String::new();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?.1),
                '\'' if quoted => {
                    end = Some(at + 1);
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = Some(at);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = match end {
            Some(end) => end,
            // An unterminated quote.
            None if quoted => return None,
            None => after.len(),
        };
        if keyword.is_empty() || (value.is_empty() && !quoted) {
            return None;
        }
        parameters.push((keyword, value));
        rest = after[end..].trim_start();
    }
    Some(parameters)
}

/// What a PostgreSQL location prints as.
#[cfg(feature = "inbox")]
fn postgres_location(config: &str) -> String {
    match postgres_address(config) {
        Some(address) => address,
        None => "an unreadable address (write an `@` in a password as %40)".to_owned(),
    }
}

#[cfg(feature = "inbox")]
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Postgres(config) => {
                write!(f, "PostgreSQL database at {}", postgres_location(config))
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
                f.debug_tuple("Postgres").field(&postgres_location(config)).finish()
            }
            StoreLocation::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_masked_whole() {
        let cases = [
            ("+1 (415) 555-0100", "*"),
            ("(415) 555-0100", "*"),
            ("tel:+1-415-555-0100", "tel:*"),
            ("415.555.0100", "*"),
            ("555-0100", "*"),
            ("+44 7911 123456", "*"),
            ("0044 7911 123456", "*"),
            ("+44 (0) 20 7946 0958", "*"),
            ("+91 98765 43210", "*"),
            ("+33 6 12 34 56 78", "*"),
            ("01.23.45.67.89", "*"),
            ("044.123.45.67", "*"),
            ("+1\u{a0}415\u{a0}555\u{2011}0100", "*"),
            ("٩١٩٨٧٦٥٤٣٢١٠", "*"),
            ("+٩١ ٩٨٧٦٥ ٤٣٢١٠", "*"),
            ("９１９８７６５４３２１０", "*"),
            ("＋９１－９８７６５－４３２１０", "*"),
            ("call (5550100) now", "call (*) now"),
            ("call(+14155550100).", "call(*)."),
            ("919876543210@c.us", "*@c.us"),
            ("120363297269676566@g.us", "*@g.us"),
            ("true_919876543210@c.us_3EB0C767D26A1D8E", "true_*@c.us_3EB0C767D26A1D8E"),
            (
                "true_120363297269676566@g.us_3EB01D1702AD13661CDAEA_919289665999@c.us",
                "true_*@g.us_3EB01D1702AD13661CDAEA_*@c.us",
            ),
            ("CRM refused contact 919999912345@c.us", "CRM refused contact *@c.us"),
            ("tel919999912345 and wa:919999912345x", "tel* and wa:*x"),
            ("919876543210,919876543211", "*,*"),
            ("job 1234567 at 2025-01-20", "job * at 2025-01-20"),
            ("07:51:48+919876543210", "07:51:48*"),
            // Seven digits or more that are not a date, time, UUID, decimal or address: masked.
            ("at 1737359508", "at *"),
            ("1 234 567", "*"),
            ("1.234.567", "*"),
            ("20.01.2025", "*"),
        ];
        for (text, masked) in cases {
            assert_eq!(mask_phone_digits(text), masked, "{text}");
        }
    }

    #[test]
    fn ids_dates_times_and_short_numbers_stay() {
        let kept = [
            "3EB01F4653BB9DD05E9859",
            "3EB0C767D26A1D8E",
            "BAE5F4A1B2C3D4E5",
            "3EB012345678F",
            "ref1234567",
            "123e4567-e89b-12d3-a456-426614174000",
            "2997DD64-89BF-48D3-9A22-B314FCA017E5",
            "12345678-1234-1234-1234-123456789012",
            "job 12345678-1234-1234-1234-123456789012 failed",
            "2025-01-20",
            "2025-01-20T07:51:48Z",
            "2025-01-20T07:51:48.123+05:30",
            "2025-01-20t07:51:48,123456789-0800",
            "2025-01-20 07:51:48.123456789",
            "07:51:48",
            "07:51",
            "Mon, 20 Jan 2025 07:51:48 GMT",
            "attempt 3 of 5",
            "HTTP 503",
            "port 8080",
            "1234",
            "123456",
            "+1 234",
            "(attempt 3)",
            "v1.2.3",
            "1,234",
            "1,234,567",
            "12,345,678.90",
            "latitude 12.9715987, longitude 77.5945627",
            "192.168.100.200:5432",
            "",
        ];
        for text in kept {
            assert_eq!(mask_phone_digits(text), text);
        }
    }

    #[test]
    fn decimal_digits_are_those_of_category_nd() {
        for zero in DECIMAL_ZEROS {
            for code in zero..zero + 10 {
                let digit = char::from_u32(code).unwrap();
                assert!(is_decimal_digit(digit) && digit.is_numeric(), "{code:#x}");
            }
        }
        assert!(DECIMAL_ZEROS.windows(2).all(|pair| pair[0] + 10 <= pair[1]), "ascending runs of ten");
        for other in ['²', '½', '①', 'Ⅻ', '〇', '٫', 'a', '/', '\u{0DE5}', '\u{1FBFA}'] {
            assert!(!is_decimal_digit(other), "{other}");
        }
    }

    #[cfg(feature = "inbox")]
    #[test]
    fn store_locations_print_without_credentials() {
        const UNREADABLE: &str =
            "PostgreSQL database at an unreadable address (write an `@` in a password as %40)";
        let cases = [
            ("postgres://app:S3cret@db:5433/inbox", "PostgreSQL database at db:5433/inbox"),
            ("PostgreSQL://app:S3cret@db/inbox?password=S3cret", "PostgreSQL database at db/inbox"),
            ("postgres://app:S3/cret@db/inbox", "PostgreSQL database at db/inbox"),
            ("postgres://app:S3?cret@db/inbox", "PostgreSQL database at db/inbox"),
            ("postgres://app:S3#cret@db/inbox", "PostgreSQL database at db/inbox"),
            ("postgres://app:S3:cret@db:5433/inbox", "PostgreSQL database at db:5433/inbox"),
            ("postgres://app:S3%40cret@db/inbox", "PostgreSQL database at db/inbox"),
            ("postgres://app:S3@cret@db/inbox", UNREADABLE),
            ("postgres://app:S3@cr/et@db/inbox", UNREADABLE),
            ("postgres://app:S3@cr?et@db/inbox", UNREADABLE),
            ("host=db password='S3 host=cret' dbname=inbox", "PostgreSQL database at db/inbox"),
            ("password='S3 host=cret' host=db", "PostgreSQL database at db/"),
            (r"password=S3\ host=cret host=db", "PostgreSQL database at db/"),
            ("host=db password='S3 host=cret", UNREADABLE),
            ("postgresql://db", "PostgreSQL database at db/"),
            (
                "host=db port=5433 user=app password=S3cret dbname=inbox",
                "PostgreSQL database at db:5433/inbox",
            ),
            ("password=S3cret", "PostgreSQL database at localhost/"),
            ("inbox.db", "inbox.db"),
        ];
        for (text, shown) in cases {
            let location = match StoreLocation::parse(text) {
                Ok(location) => {
                    assert_ne!(shown, UNREADABLE, "{text} is read");
                    location
                }
                // Refused by `parse`, and printed without a piece of the password when built.
                Err(refused) => {
                    assert_eq!(shown, UNREADABLE, "{text} is refused");
                    assert!(refused.to_string().contains("%40"), "{refused}");
                    assert!(!refused.to_string().contains("cret"), "{refused}");
                    StoreLocation::Postgres(text.to_owned())
                }
            };
            assert_eq!(location.to_string(), shown, "{text}");
            let debug = format!("{location:?}");
            assert!(!debug.contains("S3") && !debug.contains("cret") && !debug.contains("app"), "{debug}");
        }
        let refused = StoreLocation::parse("MySQL://app:S3cret@db/inbox").unwrap_err().to_string();
        assert!(refused.starts_with("a mysql:// URL is not an inbox"), "{refused}");
        assert!(!refused.contains("S3cret"), "{refused}");
    }
}
