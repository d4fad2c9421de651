//! [`Timestamp`]: every time format Periskope sends, kept as sent and parsed on demand.
//!
//! ```
//! use periskope_webhook::event::Timestamp;
//!
//! let postgres = Timestamp::from("2024-05-13 11:19:34+00");
//! let iso = Timestamp::from("2024-05-13T11:19:34.000Z");
//! assert_eq!(postgres.unix_millis(), iso.unix_millis());
//! assert_eq!(postgres.unix_millis(), Some(1_715_599_174_000));
//! assert_eq!(postgres.as_text(), Some("2024-05-13 11:19:34+00"));
//!
//! // A value in no known format is kept, not rejected.
//! let odd = Timestamp::from("next tuesday");
//! assert_eq!(odd.parse(), None);
//! assert_eq!(odd.as_text(), Some("next tuesday"));
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

use super::Str;

/// A point in time as Periskope sent it: text in one of several formats, or a number.
///
/// Periskope passes PostgreSQL text through, so one delivery can mix
/// `2024-05-13 11:22:14+00`, `2025-01-11T11:52:27.231+00:00`, `2025-01-17T08:44:02.6+00:00`
/// and `2025-08-15T00:00:00Z`. The original is kept exactly; [`Timestamp::parse`] reads it,
/// accepting a `T` or space separator, 0 to 9 fractional digits, and an offset written `Z`,
/// `±HH`, `±HHMM` or `±HH:MM` (text without an offset is read as UTC).
///
/// Numbers are Unix time. Their unit is not documented: values of at least 10^11 are read as
/// milliseconds (10^11 seconds is the year 5138), smaller ones as seconds.
///
/// Parsing happens on request, so a timestamp costs nothing to decode and a value in no known
/// format still decodes, with [`Timestamp::parse`] returning `None`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timestamp<'a> {
    /// A timestamp sent as a JSON string.
    Text(Str<'a>),
    /// A timestamp sent as a JSON number.
    Number(i64),
}

/// A parsed [`Timestamp`]: an instant plus the UTC offset it was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DateTime {
    unix_seconds: i64,
    nanosecond: u32,
    offset_seconds: i32,
}

impl DateTime {
    /// Whole seconds since the Unix epoch (UTC).
    pub fn unix_seconds(&self) -> i64 {
        self.unix_seconds
    }

    /// Nanoseconds past [`DateTime::unix_seconds`].
    pub fn subsec_nanos(&self) -> u32 {
        self.nanosecond
    }

    /// Milliseconds since the Unix epoch (UTC), saturating at the ends of `i64`.
    pub fn unix_millis(&self) -> i64 {
        self.unix_seconds.saturating_mul(1000).saturating_add(i64::from(self.nanosecond / 1_000_000))
    }

    /// The offset from UTC the text was written with, in seconds (0 for `Z` and numbers).
    pub fn offset_seconds(&self) -> i32 {
        self.offset_seconds
    }

    /// The instant as a [`SystemTime`]; `None` if the platform cannot represent it.
    pub fn to_system_time(&self) -> Option<SystemTime> {
        let seconds = Duration::from_secs(self.unix_seconds.unsigned_abs());
        let whole = if self.unix_seconds >= 0 {
            UNIX_EPOCH.checked_add(seconds)
        } else {
            UNIX_EPOCH.checked_sub(seconds)
        };
        whole?.checked_add(Duration::from_nanos(u64::from(self.nanosecond)))
    }
}

impl<'a> Timestamp<'a> {
    /// The text as sent, if it was sent as a string.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Timestamp::Text(text) => Some(text),
            Timestamp::Number(_) => None,
        }
    }

    /// The number as sent, if it was sent as a number.
    pub fn as_number(&self) -> Option<i64> {
        match self {
            Timestamp::Text(_) => None,
            Timestamp::Number(number) => Some(*number),
        }
    }

    /// Reads the timestamp; `None` when it is in no known format.
    pub fn parse(&self) -> Option<DateTime> {
        match self {
            Timestamp::Text(text) => parse_text(text),
            Timestamp::Number(number) => Some(from_number(*number)),
        }
    }

    /// Milliseconds since the Unix epoch, if the timestamp could be read.
    pub fn unix_millis(&self) -> Option<i64> {
        self.parse().map(|time| time.unix_millis())
    }

    /// Detaches the timestamp from the input it was decoded from.
    pub fn into_owned(self) -> Timestamp<'static> {
        match self {
            Timestamp::Text(text) => Timestamp::Text(text.into_owned()),
            Timestamp::Number(number) => Timestamp::Number(number),
        }
    }
}

impl<'a> From<&'a str> for Timestamp<'a> {
    fn from(text: &'a str) -> Self {
        Timestamp::Text(text.into())
    }
}

impl From<String> for Timestamp<'_> {
    fn from(text: String) -> Self {
        Timestamp::Text(text.into())
    }
}

impl From<i64> for Timestamp<'_> {
    fn from(number: i64) -> Self {
        Timestamp::Number(number)
    }
}

impl fmt::Display for Timestamp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timestamp::Text(text) => f.write_str(text),
            Timestamp::Number(number) => write!(f, "{number}"),
        }
    }
}

impl Serialize for Timestamp<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Timestamp::Text(text) => serializer.serialize_str(text),
            Timestamp::Number(number) => serializer.serialize_i64(*number),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Timestamp<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl<'de> Visitor<'de> for TimestampVisitor {
    type Value = Timestamp<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a timestamp string or number")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Timestamp::Text(Str::borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Timestamp::Text(text.to_owned().into()))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
        Ok(Timestamp::Number(number))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
        i64::try_from(number)
            .map(Timestamp::Number)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(number), &self))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
        if number.fract() == 0.0 && number.abs() < 9.007_199_254_740_992e15 {
            Ok(Timestamp::Number(number as i64))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(number), &self))
        }
    }
}

const MILLIS_THRESHOLD: i64 = 100_000_000_000;

fn from_number(number: i64) -> DateTime {
    let (unix_seconds, nanosecond) = if number.unsigned_abs() >= MILLIS_THRESHOLD as u64 {
        (number.div_euclid(1000), (number.rem_euclid(1000) as u32) * 1_000_000)
    } else {
        (number, 0)
    };
    DateTime { unix_seconds, nanosecond, offset_seconds: 0 }
}

/// A cursor over ASCII digits and separators; every step is bounds-checked, so no input panics.
struct Cursor<'t> {
    bytes: &'t [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, count: usize) -> Option<u32> {
        let end = self.pos.checked_add(count)?;
        let slice = self.bytes.get(self.pos..end)?;
        let mut value = 0u32;
        for &byte in slice {
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(byte - b'0');
        }
        self.pos = end;
        Some(value)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

fn parse_text(text: &str) -> Option<DateTime> {
    let mut cursor = Cursor { bytes: text.trim().as_bytes(), pos: 0 };
    let year = cursor.digits(4)?;
    cursor.expect(b'-')?;
    let month = cursor.digits(2)?;
    cursor.expect(b'-')?;
    let day = cursor.digits(2)?;
    if !(cursor.eat(b'T') || cursor.eat(b't') || cursor.eat(b' ')) {
        return None;
    }
    let hour = cursor.digits(2)?;
    cursor.expect(b':')?;
    let minute = cursor.digits(2)?;
    let second = if cursor.eat(b':') { cursor.digits(2)? } else { 0 };
    let mut nanosecond = 0u32;
    if cursor.eat(b'.') {
        let mut scale = 100_000_000u32;
        let mut count = 0;
        while let Some(digit) = cursor.peek().filter(u8::is_ascii_digit) {
            count += 1;
            if count > 9 {
                return None;
            }
            nanosecond += u32::from(digit - b'0') * scale;
            scale /= 10;
            cursor.pos += 1;
        }
        if count == 0 {
            return None;
        }
    }
    let offset_seconds = parse_offset(&mut cursor)?;
    if !cursor.at_end() {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let local = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(DateTime { unix_seconds: local - i64::from(offset_seconds), nanosecond, offset_seconds })
}

fn parse_offset(cursor: &mut Cursor<'_>) -> Option<i32> {
    if cursor.at_end() {
        return Some(0);
    }
    if cursor.eat(b'Z') || cursor.eat(b'z') {
        return Some(0);
    }
    let sign = if cursor.eat(b'+') {
        1
    } else if cursor.eat(b'-') {
        -1
    } else {
        return None;
    };
    let hours = cursor.digits(2)?;
    let minutes = if cursor.at_end() {
        0
    } else {
        cursor.eat(b':');
        cursor.digits(2)?
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60) as i32)
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `time` in UTC to the second, as people read it: `2025-01-20 07:51:48 UTC`.
#[cfg(feature = "console")]
pub(crate) fn format_utc(time: SystemTime) -> String {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01: the inverse of
/// [`days_from_civil`] (H. Hinnant's `civil_from_days`).
#[cfg(feature = "console")]
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * shifted_month + 2) / 5 + 1).unwrap_or(1);
    let month =
        u32::try_from(if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 }).unwrap_or(1);
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "console")]
    #[test]
    fn utc_texts_and_their_dates_round_trip() {
        let at = |seconds: u64| format_utc(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_737_359_508), "2025-01-20 07:51:48 UTC");
        assert_eq!(format_utc(SystemTime::UNIX_EPOCH - Duration::from_secs(1)), "1969-12-31 23:59:59 UTC");
        for days in [-800_000, -1, 0, 59, 11_016, 20_000, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }

    fn millis(text: &str) -> Option<i64> {
        Timestamp::from(text).unix_millis()
    }

    #[test]
    fn every_documented_format_parses_to_the_same_instant_scale() {
        assert_eq!(millis("2024-05-13 11:22:14+00"), Some(1_715_599_334_000));
        assert_eq!(millis("2025-01-11T11:52:27.231+00:00"), Some(1_736_596_347_231));
        assert_eq!(millis("2024-12-15T11:47:26.668505+00:00"), Some(1_734_263_246_668));
        assert_eq!(millis("2025-01-17T08:44:02.6+00:00"), Some(1_737_103_442_600));
        assert_eq!(millis("2024-05-13T17:27:15+00:00"), Some(1_715_621_235_000));
        assert_eq!(millis("2025-08-15T00:00:00Z"), Some(1_755_216_000_000));
        assert_eq!(Timestamp::Number(1_731_984_657_443).unix_millis(), Some(1_731_984_657_443));
        assert_eq!(Timestamp::Number(1_731_984_657).unix_millis(), Some(1_731_984_657_000));
    }

    #[test]
    fn offsets_shift_the_instant_and_are_kept() {
        let plus = Timestamp::from("2024-05-13T17:27:15+05:30").parse().unwrap();
        assert_eq!(plus.offset_seconds(), 19_800);
        assert_eq!(plus.unix_seconds(), 1_715_621_235 - 19_800);
        assert_eq!(millis("2024-05-13T17:27:15+0530"), Some((1_715_621_235 - 19_800) * 1000));
        assert_eq!(millis("2024-05-13T17:27:15-03"), Some((1_715_621_235 + 3 * 3600) * 1000));
        assert_eq!(millis("2024-05-13T17:27:15"), Some(1_715_621_235_000));
    }

    #[test]
    fn nine_fraction_digits_keep_nanoseconds() {
        let time = Timestamp::from("1970-01-01T00:00:00.123456789Z").parse().unwrap();
        assert_eq!(time.subsec_nanos(), 123_456_789);
        assert_eq!(Timestamp::from("1970-01-01T00:00:00.1234567891Z").parse(), None);
    }

    #[test]
    fn invalid_text_is_kept_and_unparsed() {
        for text in [
            "",
            "2024",
            "2024-13-01T00:00:00Z",
            "2023-02-29 00:00:00+00",
            "2024-05-13T25:00:00Z",
            "2024-05-13T10:00:00+",
            "2024-05-13T10:00:00.Z",
            "2024-05-13T10:00:00+00:00x",
        ] {
            let stamp = Timestamp::from(text);
            assert_eq!(stamp.parse(), None, "{text}");
            assert_eq!(stamp.as_text(), Some(text));
        }
        assert!(Timestamp::from("2024-02-29 00:00:00+00").parse().is_some());
    }

    #[test]
    fn decodes_strings_and_numbers_and_round_trips() {
        let text: Timestamp<'_> = serde_json::from_str(r#""2024-05-13 11:22:14+00""#).unwrap();
        assert_eq!(text, Timestamp::from("2024-05-13 11:22:14+00"));
        let number: Timestamp<'_> = serde_json::from_str("1731984657443").unwrap();
        assert_eq!(number, Timestamp::Number(1_731_984_657_443));
        assert_eq!(serde_json::to_string(&number).unwrap(), "1731984657443");
        assert_eq!(serde_json::to_string(&text).unwrap(), r#""2024-05-13 11:22:14+00""#);
    }

    #[test]
    fn system_time_matches_millis() {
        let time = Timestamp::from("2025-01-11T11:52:27.231+00:00").parse().unwrap();
        let since = time.to_system_time().unwrap().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(since.as_millis() as i64, time.unix_millis());
    }
}
