//! The query of a console page, read strictly: a parameter the console does not know, or a
//! value it cannot read, refuses the request instead of widening what it selects.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::form;
use crate::event::{Timestamp, format_utc};
use crate::inbox::{JobFilter, JobId, JobState};

/// The jobs a page or a bulk action selects, as the jobs page's form spells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Filter {
    pub state: Option<JobState>,
    pub event: Option<String>,
    pub chat: Option<String>,
    /// Text in the key or the last error.
    pub text: Option<String>,
    pub from: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

/// A page's query, read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Query {
    pub filter: Filter,
    /// Keyset paging: jobs older than this one.
    pub after: Option<JobId>,
    /// `ids=show`: phone numbers and ids in full.
    pub show_ids: bool,
    /// `done=...&count=N`: what the action that led here did.
    pub notice: Option<Notice>,
}

/// What an action did, told by its redirect to the page it lands on, which confirms it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Notice {
    pub done: Done,
    /// How many jobs it changed.
    pub count: u64,
}

/// The actions a notice confirms, named as `done=` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Done {
    Retried,
    Replayed,
    Purged,
}

impl Done {
    const ALL: [Done; 3] = [Done::Retried, Done::Replayed, Done::Purged];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Done::Retried => "retried",
            Done::Replayed => "replayed",
            Done::Purged => "purged",
        }
    }
}

impl Notice {
    /// The notice as the query of the page it lands on.
    pub(super) fn query(&self) -> String {
        format!("done={}&count={}", self.done.as_str(), self.count)
    }
}

/// The parameters a route reads; any other is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Accepts {
    /// `ids` only.
    Ids,
    /// `ids`, and the notice of an action (a job's page, where its actions lead).
    IdsAndNotice,
    /// The filter and `ids` (a bulk action: it covers every page).
    Filter,
    /// The filter, `ids`, `after`, and the notice of an action (the jobs, where a purge and the
    /// bulk actions lead).
    FilterPageAndNotice,
}

impl Accepts {
    fn filter(self) -> bool {
        matches!(self, Accepts::Filter | Accepts::FilterPageAndNotice)
    }

    fn notice(self) -> bool {
        matches!(self, Accepts::IdsAndNotice | Accepts::FilterPageAndNotice)
    }
}

/// A parameter that refused its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct BadParameter {
    /// The parameter's name, as given (shortened).
    pub name: String,
    pub why: &'static str,
}

const FILTER: [&str; 6] = ["state", "event", "chat", "q", "from", "until"];
const NOTICE: [&str; 2] = ["done", "count"];
const NOTICE_PAIR: &str = "`done` and `count` come together";
const TIME_FORMS: &str = "give a date (2025-01-20), a time as the jobs form sends it (2025-01-20T07:51) \
     or RFC 3339 (2025-01-20T07:51:00Z, 2025-01-20T09:51:00+02:00)";

impl Query {
    /// Reads `pairs` for a route that accepts `accepts`.
    pub(super) fn read(pairs: &[(String, String)], accepts: Accepts) -> Result<Query, BadParameter> {
        let mut query = Query::default();
        let mut seen: Vec<&str> = Vec::new();
        let (mut done, mut count) = (None, None);
        for (name, value) in pairs {
            let bad = |why| BadParameter { name: name.chars().take(40).collect(), why };
            let known = name == "ids"
                || (accepts.filter() && FILTER.contains(&name.as_str()))
                || (accepts == Accepts::FilterPageAndNotice && name == "after")
                || (accepts.notice() && NOTICE.contains(&name.as_str()));
            if !known {
                return Err(bad("this page takes no such parameter"));
            }
            if seen.contains(&name.as_str()) {
                return Err(bad("it is given more than once"));
            }
            seen.push(name);
            let value = value.trim();
            // The jobs form sends every field; an empty one sets no condition.
            if value.is_empty() {
                continue;
            }
            let filter = &mut query.filter;
            match name.as_str() {
                "state" => {
                    filter.state = Some(
                        JobState::from_name(value)
                            .ok_or(bad("not a state: pending, running, done or dead"))?,
                    );
                }
                "event" => filter.event = Some(value.to_owned()),
                "chat" => filter.chat = Some(value.to_owned()),
                "q" => filter.text = Some(value.to_owned()),
                "from" => filter.from = Some(read_time(value).ok_or(bad(TIME_FORMS))?),
                "until" => filter.until = Some(read_time(value).ok_or(bad(TIME_FORMS))?),
                "after" => {
                    query.after =
                        Some(value.parse().ok().filter(|id: &JobId| *id > 0).ok_or(bad("not a job id"))?);
                }
                "done" => {
                    done = Some(
                        Done::ALL
                            .into_iter()
                            .find(|done| done.as_str() == value)
                            .ok_or(bad("not an action: retried, replayed or purged"))?,
                    );
                }
                "count" => count = Some(value.parse::<u64>().map_err(|_| bad("not a count of jobs"))?),
                _ => {
                    if value != "show" {
                        return Err(bad("the only value is `show`"));
                    }
                    query.show_ids = true;
                }
            }
        }
        query.notice = match (done, count) {
            (Some(done), Some(count)) => Some(Notice { done, count }),
            (None, None) => None,
            (Some(_), None) => return Err(BadParameter { name: "count".to_owned(), why: NOTICE_PAIR }),
            (None, Some(_)) => return Err(BadParameter { name: "done".to_owned(), why: NOTICE_PAIR }),
        };
        Ok(query)
    }
}

impl Filter {
    /// The query string of the filter's conditions, each in the form it reads back the same.
    pub(super) fn query(&self) -> String {
        let (from, until) = (self.from.map(datetime_local), self.until.map(datetime_local));
        form::encode([
            ("state", self.state.map_or("", JobState::as_str)),
            ("event", self.event.as_deref().unwrap_or("")),
            ("chat", self.chat.as_deref().unwrap_or("")),
            ("q", self.text.as_deref().unwrap_or("")),
            ("from", from.as_deref().unwrap_or("")),
            ("until", until.as_deref().unwrap_or("")),
        ])
    }

    /// Each condition in words, as it was read; `show` writes what may hold an id.
    pub(super) fn describe(&self, show: impl Fn(&str) -> String) -> Vec<String> {
        let mut conditions = Vec::new();
        if let Some(state) = self.state {
            conditions.push(format!("state is {state}"));
        }
        if let Some(event) = &self.event {
            conditions.push(format!("event is {event}"));
        }
        if let Some(chat) = &self.chat {
            conditions.push(format!("chat is {}", show(chat)));
        }
        if let Some(text) = &self.text {
            conditions.push(format!("key or last error contains “{}”", show(text)));
        }
        if let Some(from) = self.from {
            conditions.push(format!("received at or after {}", format_utc(from)));
        }
        if let Some(until) = self.until {
            conditions.push(format!("received before {}", format_utc(until)));
        }
        conditions
    }

    /// The store's filter, the text left out when `text_in_store` is false (the console then
    /// matches it against masked text itself).
    pub(super) fn job_filter(&self, text_in_store: bool) -> JobFilter {
        let mut filter = JobFilter::default();
        filter.state = self.state;
        filter.event = self.event.clone();
        filter.chat = self.chat.clone();
        filter.text = self.text.clone().filter(|_| text_in_store);
        filter.received_from = self.from;
        filter.received_until = self.until;
        filter
    }
}

/// A time as the console reads one: a date (midnight UTC), a `datetime-local` value (UTC,
/// seconds optional), or RFC 3339 with `Z` or an offset.
fn read_time(value: &str) -> Option<SystemTime> {
    let is_date = value.len() == 10 && value.as_bytes()[4] == b'-' && value.as_bytes()[7] == b'-';
    let value = if is_date { format!("{value}T00:00") } else { value.to_owned() };
    Timestamp::from(value.as_str()).parse()?.to_system_time()
}

/// `time` as a `datetime-local` field holds it, in UTC, to the millisecond.
pub(super) fn datetime_local(time: SystemTime) -> String {
    let text = format_utc(time);
    let text = text.trim_end_matches(" UTC").replacen(' ', "T", 1);
    let millis = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).subsec_millis();
    if millis == 0 { text } else { format!("{text}.{millis:03}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, accepts: Accepts) -> Result<Query, BadParameter> {
        Query::read(&form::parse(text), accepts)
    }

    fn refused(text: &str, accepts: Accepts) -> String {
        read(text, accepts).expect_err(text).name
    }

    fn at(seconds: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(seconds))
    }

    #[test]
    fn every_time_form_is_read_as_utc() {
        let from = |value: &str| read(&format!("from={value}"), Accepts::Filter).unwrap().filter.from;
        assert_eq!(from("2025-01-20T07:51"), at(1_737_359_460), "datetime-local");
        assert_eq!(from("2025-01-20T07:51:48"), at(1_737_359_508));
        assert_eq!(from("2025-01-20T07:51:48Z"), at(1_737_359_508), "RFC 3339 with Z");
        assert_eq!(from("2025-01-20T09:51:48%2B02:00"), at(1_737_359_508), "with an offset");
        assert_eq!(from("2025-01-20"), at(1_737_331_200), "a plain date is its midnight");
        assert_eq!(from(""), None, "an empty field sets nothing");
    }

    #[test]
    fn a_value_that_cannot_be_read_names_its_parameter() {
        for text in ["until=2020-13-01", "until=yesterday", "until=2020-01-01Z", "until=1577836800"] {
            assert_eq!(refused(text, Accepts::Filter), "until", "{text}");
        }
        assert_eq!(refused("state=deadd", Accepts::Filter), "state");
        assert_eq!(refused("state=Dead", Accepts::Filter), "state", "names are lowercase");
        assert_eq!(refused("after=x", Accepts::FilterPageAndNotice), "after");
        assert_eq!(refused("after=-3", Accepts::FilterPageAndNotice), "after");
        assert_eq!(refused("ids=all", Accepts::Ids), "ids");
        assert_eq!(refused("state=dead&state=done", Accepts::Filter), "state", "twice is ambiguous");
    }

    #[test]
    fn a_parameter_the_route_does_not_read_is_refused() {
        assert_eq!(refused("stat=dead", Accepts::Filter), "stat");
        assert_eq!(refused("after=3", Accepts::Filter), "after", "a bulk action covers every page");
        assert_eq!(refused("state=dead", Accepts::Ids), "state");
        assert_eq!(refused("token=abc", Accepts::FilterPageAndNotice), "token");
        assert!(read("ids=show", Accepts::Ids).unwrap().show_ids);
    }

    #[test]
    fn a_notice_is_read_where_actions_lead_and_only_whole() {
        let notice = |text: &str, accepts| read(text, accepts).unwrap().notice;
        let retried = Notice { done: Done::Retried, count: 3 };
        assert_eq!(notice("done=retried&count=3", Accepts::IdsAndNotice), Some(retried));
        assert_eq!(notice("state=dead&done=retried&count=3", Accepts::FilterPageAndNotice), Some(retried));
        assert_eq!(notice(&retried.query(), Accepts::IdsAndNotice), Some(retried), "reads back");
        assert_eq!(refused("done=retried&count=3", Accepts::Ids), "done", "the overview takes none");
        assert_eq!(refused("done=retried&count=3", Accepts::Filter), "done", "nor does a bulk action");
        assert_eq!(refused("done=deleted&count=3", Accepts::IdsAndNotice), "done");
        assert_eq!(refused("done=retried&count=-1", Accepts::IdsAndNotice), "count");
        assert_eq!(refused("done=retried&count=x", Accepts::IdsAndNotice), "count");
        assert_eq!(refused("done=retried", Accepts::IdsAndNotice), "count");
        assert_eq!(refused("count=3", Accepts::IdsAndNotice), "done");
    }

    #[test]
    fn the_filter_reads_back_from_its_own_query() {
        let query = read(
            "state=dead&event=message.created&chat=c1&q=a+b&from=2025-01-20&until=2025-01-21T00:00:00.250Z",
            Accepts::Filter,
        )
        .unwrap();
        let again = read(&query.filter.query(), Accepts::Filter).unwrap();
        assert_eq!(again.filter, query.filter);
        assert_eq!(
            query.filter.describe(str::to_owned),
            [
                "state is dead",
                "event is message.created",
                "chat is c1",
                "key or last error contains “a b”",
                "received at or after 2025-01-20 00:00:00 UTC",
                "received before 2025-01-21 00:00:00 UTC"
            ]
        );
    }
}
