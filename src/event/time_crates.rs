//! Conversions of [`DateTime`] and [`Timestamp`] into `jiff` and `chrono` types (features
//! `jiff` and `chrono`).
//!
//! Each is fallible: a Unix time out of the other crate's range, or an offset it does not
//! accept, gives `None` rather than a wrong instant.

#[cfg(any(feature = "jiff", feature = "chrono"))]
use super::{DateTime, Timestamp};

#[cfg(feature = "jiff")]
#[cfg_attr(docsrs, doc(cfg(feature = "jiff")))]
impl DateTime {
    /// The instant as a [`jiff::Timestamp`]; `None` outside jiff's range.
    ///
    /// ```
    /// use periskope_webhook::event::Timestamp;
    ///
    /// let sent = Timestamp::from("2024-05-13 11:19:34.5+05:30").parse().unwrap();
    /// assert_eq!(sent.to_jiff().unwrap().to_string(), "2024-05-13T05:49:34.5Z");
    /// assert_eq!(sent.to_jiff_zoned().unwrap().offset().seconds(), 5 * 3600 + 30 * 60);
    /// ```
    pub fn to_jiff(&self) -> Option<jiff::Timestamp> {
        // `subsec_nanos` is below 10^9, so it fits an `i32`.
        jiff::Timestamp::new(self.unix_seconds(), i32::try_from(self.subsec_nanos()).ok()?).ok()
    }

    /// The instant in the fixed offset it was written with, as a [`jiff::Zoned`].
    pub fn to_jiff_zoned(&self) -> Option<jiff::Zoned> {
        let offset = jiff::tz::Offset::from_seconds(self.offset_seconds()).ok()?;
        Some(self.to_jiff()?.to_zoned(jiff::tz::TimeZone::fixed(offset)))
    }
}

#[cfg(feature = "jiff")]
#[cfg_attr(docsrs, doc(cfg(feature = "jiff")))]
impl Timestamp<'_> {
    /// Reads the timestamp ([`Timestamp::parse`]) as a [`jiff::Timestamp`].
    pub fn to_jiff(&self) -> Option<jiff::Timestamp> {
        self.parse()?.to_jiff()
    }
}

#[cfg(feature = "chrono")]
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl DateTime {
    /// The instant in the offset it was written with, as a `chrono::DateTime<FixedOffset>`;
    /// `None` outside chrono's range.
    ///
    /// ```
    /// use periskope_webhook::event::Timestamp;
    ///
    /// let sent = Timestamp::from("2024-05-13 11:19:34.5+05:30").parse().unwrap();
    /// let time = sent.to_chrono().unwrap();
    /// assert_eq!(time.offset().local_minus_utc(), 5 * 3600 + 30 * 60);
    /// assert_eq!(time.timestamp_millis(), sent.unix_millis());
    /// assert_eq!(time.timestamp_subsec_millis(), 500);
    /// ```
    pub fn to_chrono(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        let offset = chrono::FixedOffset::east_opt(self.offset_seconds())?;
        let utc = chrono::DateTime::from_timestamp(self.unix_seconds(), self.subsec_nanos())?;
        Some(utc.with_timezone(&offset))
    }

    /// The instant as a `chrono::DateTime<Utc>`; `None` outside chrono's range.
    pub fn to_chrono_utc(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp(self.unix_seconds(), self.subsec_nanos())
    }
}

#[cfg(feature = "chrono")]
#[cfg_attr(docsrs, doc(cfg(feature = "chrono")))]
impl Timestamp<'_> {
    /// Reads the timestamp ([`Timestamp::parse`]) as a `chrono::DateTime<FixedOffset>`.
    pub fn to_chrono(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        self.parse()?.to_chrono()
    }
}

#[cfg(all(test, feature = "jiff", feature = "chrono"))]
mod tests {
    use super::*;

    #[test]
    fn both_crates_agree_with_the_parsed_instant() {
        for text in ["2024-05-13 11:22:14+00", "2025-01-17T08:44:02.6+00:00", "1969-12-31T23:59:59.999-08:00"]
        {
            let parsed = Timestamp::from(text).parse().unwrap();
            let jiff = parsed.to_jiff().unwrap();
            let chrono = parsed.to_chrono().unwrap();
            assert_eq!(jiff.as_millisecond(), parsed.unix_millis(), "{text}");
            assert_eq!(chrono.timestamp_millis(), parsed.unix_millis(), "{text}");
            assert_eq!(chrono.offset().local_minus_utc(), parsed.offset_seconds(), "{text}");
            assert_eq!(jiff.subsec_nanosecond(), chrono.timestamp_subsec_nanos() as i32, "{text}");
        }
        let numeric = Timestamp::Number(1_715_599_174_000);
        assert_eq!(numeric.to_jiff().unwrap().as_second(), 1_715_599_174);
        assert_eq!(numeric.to_chrono().unwrap().timestamp(), 1_715_599_174);
        assert!(Timestamp::from("next tuesday").to_jiff().is_none());
        assert!(Timestamp::from("next tuesday").to_chrono().is_none());
    }
}
