//! The console's pages, rendered with maud: everything interpolated is escaped.

use std::time::{Duration, SystemTime};

use maud::{DOCTYPE, Markup, html};

use super::filter::{Done, Filter, Notice, datetime_local};
use crate::event::format_utc;
use crate::inbox::{
    AttemptOutcome, AttemptRecord, DeadLetters, InboxStats, JobId, JobRecord, JobState, JobSummary,
    MinuteCounts,
};
use crate::redact::mask_phone_digits;

/// What every page needs: where the console's root is from this page, and what it may show.
pub(super) struct Frame<'a> {
    /// Where links start: the mount path (`/console/`), or the console's root relative to this
    /// page (`""`, `"../"`) when the mount path is not known.
    pub base: &'a str,
    /// The CSRF token of this page's forms (empty for a script, which needs none); `None` when
    /// the page may not post.
    pub csrf: Option<&'a str>,
    /// Whether the job actions are offered.
    pub actions: bool,
    /// Phone numbers and WhatsApp ids in full; masked otherwise.
    pub show_ids: bool,
    /// Whether "show ids" may be offered (it needs what actions need).
    pub may_show_ids: bool,
    /// Whether the browser signed in, and may sign out.
    pub sign_out: bool,
    /// What the action that led here did, to confirm it.
    pub notice: Option<Notice>,
}

impl<'a> Frame<'a> {
    /// The frame of a page that shows nothing of the inbox (a refusal, the sign-in form).
    pub(super) fn bare(base: &'a str) -> Frame<'a> {
        Frame {
            base,
            csrf: None,
            actions: false,
            show_ids: false,
            may_show_ids: false,
            sign_out: false,
            notice: None,
        }
    }

    /// The link to `path` below the console's root.
    pub(super) fn href(&self, path: &str) -> String {
        if path.is_empty() && self.base.is_empty() { "./".to_owned() } else { format!("{}{path}", self.base) }
    }

    /// `text` as this page may show it: phone numbers masked unless ids are shown.
    fn shown(&self, text: &str) -> String {
        if self.show_ids { text.to_owned() } else { mask_phone_digits(text) }
    }

    /// The CSRF token of forms that change the inbox, when they are offered.
    fn action_csrf(&self) -> Option<&str> {
        self.csrf.filter(|_| self.actions)
    }
}

/// `query` with `ids=show` added when ids are shown, so that links keep what the page shows.
pub(super) fn with_ids(query: &str, show_ids: bool) -> String {
    match (show_ids, query.is_empty()) {
        (false, _) => query.to_owned(),
        (true, true) => "ids=show".to_owned(),
        (true, false) => format!("{query}&ids=show"),
    }
}

fn layout(frame: &Frame<'_>, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Periskope inbox" }
                link rel="stylesheet" href=(frame.href("assets/console.css"));
            }
            body {
                header {
                    nav aria-label="Console" {
                        a href=(frame.href("")) { "Overview" }
                        a href=(frame.href("jobs")) { "Jobs" }
                        a href=(frame.href("jobs?state=dead")) { "Dead letters" }
                    }
                    @if let Some(csrf) = frame.csrf.filter(|_| frame.sign_out) {
                        form.sign-out method="post" action=(frame.href("sign-out")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(notice) = frame.notice {
                        p.notice role="status" data-done=(notice.done.as_str()) { (confirmation(notice)) }
                    }
                    (content)
                }
            }
        }
    }
}

/// What a notice confirms, in words.
fn confirmation(notice: Notice) -> String {
    match (notice.done, notice.count) {
        (Done::Retried, 0) => "Nothing was retried: only pending and dead jobs are.".to_owned(),
        (Done::Retried, count) => format!("Retried {}: due now.", jobs_count(count)),
        (Done::Replayed, 0) => "Nothing was replayed: only a handled job is.".to_owned(),
        (Done::Replayed, count) => format!("Replayed {}: due now.", jobs_count(count)),
        (Done::Purged, 0) => "Nothing was purged.".to_owned(),
        (Done::Purged, count) => format!("Purged {}.", jobs_count(count)),
    }
}

pub(super) fn overview(
    frame: &Frame<'_>,
    stats: &InboxStats,
    minutes: &[MinuteCounts],
    dead_letters: &[DeadLetters],
) -> Markup {
    let count = |state: JobState| match state {
        JobState::Pending => stats.pending,
        JobState::Running => stats.running,
        JobState::Done => stats.done,
        JobState::Dead => stats.dead,
    };
    layout(
        frame,
        "Overview",
        html! {
            section aria-labelledby="states" {
                h2 id="states" { "Jobs by state" }
                ul.counts {
                    @for state in JobState::ALL {
                        li.(state.as_str()) {
                            a href=(frame.href(&format!("jobs?state={}", state.as_str()))) {
                                span.count data-count=(state.as_str()) { (count(state)) }
                                " " (state.as_str())
                            }
                        }
                    }
                }
                p {
                    "Queue depth: " strong { (stats.queue_depth()) }
                    " · oldest pending: "
                    strong { (stats.oldest_pending_age.map_or_else(|| "none".to_owned(), age)) }
                }
            }
            section aria-labelledby="activity" {
                h2 id="activity" { "The last hour" }
                (chart(minutes))
            }
            section aria-labelledby="dead" {
                h2 id="dead" { "Dead letters by event" }
                @if dead_letters.is_empty() {
                    p { "No dead letters." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Event" } th scope="col" { "Dead" } th scope="col" { "Latest error" } } }
                        tbody {
                            @for letters in dead_letters {
                                tr {
                                    td { a href=(frame.href(&format!("jobs?{}", super::form::encode([("state", "dead"), ("event", letters.event.as_str())])))) { (letters.event) } }
                                    td { (letters.count) }
                                    td { (letters.latest_error.as_deref().map(|error| frame.shown(error)).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Received, handled and failed per minute as an inline SVG chart under a time axis (UTC),
/// with the totals in its caption.
fn chart(minutes: &[MinuteCounts]) -> Markup {
    const WIDTH: f64 = 600.0;
    const HEIGHT: f64 = 120.0;
    /// Room under the plot for the axis's times.
    const AXIS: f64 = 18.0;
    /// A time on the axis every this many minutes.
    const TICK: usize = 15;
    let highest = minutes
        .iter()
        .map(|minute| minute.received.max(minute.handled).max(minute.failed))
        .max()
        .unwrap_or(0)
        .max(1);
    let step = WIDTH / (minutes.len().max(2) - 1) as f64;
    let line = |value: fn(&MinuteCounts) -> u64| -> String {
        minutes
            .iter()
            .enumerate()
            .map(|(index, minute)| {
                format!(
                    "{:.1},{:.1}",
                    index as f64 * step,
                    HEIGHT - value(minute) as f64 / highest as f64 * HEIGHT
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    // Counted back from the newest minute, so that the right edge is always labelled.
    let last = minutes.len().saturating_sub(1);
    let ticks: Vec<(f64, &'static str, String)> = minutes
        .iter()
        .enumerate()
        .filter(|(index, _)| (last - index).is_multiple_of(TICK))
        .map(|(index, minute)| {
            let anchor = match index {
                0 => "start",
                _ if index == last => "end",
                _ => "middle",
            };
            (index as f64 * step, anchor, clock(minute.minute))
        })
        .collect();
    let totals = |value: fn(&MinuteCounts) -> u64| minutes.iter().map(value).sum::<u64>();
    html! {
        figure {
            svg.chart viewBox=(format!("0 -4 {WIDTH} {}", HEIGHT + 4.0 + AXIS)) role="img" aria-labelledby="chart-title" {
                title id="chart-title" { "Received, handled and failed per minute over the last hour; at most " (highest) " a minute" }
                line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
                @for (x, anchor, time) in &ticks {
                    line.tick x1=(format!("{x:.1}")) y1=(HEIGHT) x2=(format!("{x:.1}")) y2=(HEIGHT + 4.0) {}
                    text.time x=(format!("{x:.1}")) y=(HEIGHT + AXIS - 2.0) text-anchor=(anchor) { (time) }
                }
                polyline.received points=(line(|minute| minute.received)) {}
                polyline.handled points=(line(|minute| minute.handled)) {}
                polyline.failed points=(line(|minute| minute.failed)) {}
            }
            figcaption {
                span.received { "received " (totals(|minute| minute.received)) }
                " · " span.handled { "handled " (totals(|minute| minute.handled)) }
                " · " span.failed { "failed " (totals(|minute| minute.failed)) }
                " (at most " (highest) " a minute; times in UTC)"
            }
        }
    }
}

/// `time`'s hour and minute in UTC, as the chart's axis shows them: `07:51`.
fn clock(time: SystemTime) -> String {
    let text = format_utc(time);
    text.get(11..16).unwrap_or(&text).to_owned()
}

pub(super) fn jobs(frame: &Frame<'_>, filter: &Filter, jobs: &[JobSummary], next: Option<JobId>) -> Markup {
    let query = with_ids(&filter.query(), frame.show_ids);
    let (from, until) = (filter.from.map(datetime_local), filter.until.map(datetime_local));
    let title = if filter.state == Some(JobState::Dead) { "Dead letters" } else { "Jobs" };
    layout(
        frame,
        title,
        html! {
            form.filter method="get" action=(frame.href("jobs")) {
                label for="state" { "State" }
                select id="state" name="state" {
                    option value="" selected[filter.state.is_none()] { "any" }
                    @for state in JobState::ALL {
                        option value=(state.as_str()) selected[filter.state == Some(state)] { (state.as_str()) }
                    }
                }
                label for="event" { "Event" }
                input id="event" name="event" value=(filter.event.as_deref().unwrap_or_default()) placeholder="message.created";
                @if frame.show_ids {
                    label for="chat" { "Chat" }
                    input id="chat" name="chat" value=(filter.chat.as_deref().unwrap_or_default()) placeholder="919...@c.us";
                    input type="hidden" name="ids" value="show";
                }
                label for="from" { "Received from (UTC)" }
                input id="from" name="from" type="datetime-local" step="any" value=(from.unwrap_or_default());
                label for="until" { "until" }
                input id="until" name="until" type="datetime-local" step="any" value=(until.unwrap_or_default());
                label for="q" { "Text in key or error" }
                input id="q" name="q" type="search" value=(filter.text.as_deref().map(|text| frame.shown(text)).unwrap_or_default());
                button type="submit" { "Filter" }
            }
            @if !frame.show_ids && frame.may_show_ids {
                p { a href=(frame.href(&format!("jobs?{}", with_ids(&filter.query(), true)))) { "Show ids (to filter by chat, or search them)" } }
            }
            @if frame.action_csrf().is_some() {
                p.bulk {
                    a href=(frame.href(&format!("jobs/retry?{query}"))) { "Retry every matching job…" }
                    " · "
                    a href=(frame.href(&format!("jobs/purge?{query}"))) { "Purge every matching job…" }
                }
            }
            @if jobs.is_empty() {
                p { "No job matches." }
            } @else {
                table.jobs {
                    thead {
                        tr {
                            th scope="col" { "Job" } th scope="col" { "Event" } th scope="col" { "State" }
                            th scope="col" { "Attempts" } th scope="col" { "Received" } th scope="col" { "Last error" }
                        }
                    }
                    tbody {
                        @for job in jobs {
                            tr data-job-id=(job.id) data-state=(job.state.as_str()) {
                                td { a href=(frame.href(&format!("jobs/{}{}", job.id, if frame.show_ids { "?ids=show" } else { "" }))) { (job.id) } }
                                td { (job.event) }
                                td { span.(job.state.as_str()) { (job.state.as_str()) } }
                                td { (job.attempts) }
                                td { (format_utc(job.received_at)) }
                                td { (current_error(job).map(|error| frame.shown(error)).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
            @if let Some(last) = next {
                p { a rel="next" href=(frame.href(&format!("jobs?{}", with_ids(&format!("{}{}after={last}", filter.query(), if filter.query().is_empty() { "" } else { "&" }), frame.show_ids)))) { "Older jobs" } }
            }
        },
    )
}

pub(super) fn job(
    frame: &Frame<'_>,
    job: &JobRecord,
    attempts: &[AttemptRecord],
    body: &str,
    typed: &str,
) -> Markup {
    let summary = &job.summary;
    let id = summary.id;
    let time = |time: Option<SystemTime>| time.map(format_utc).unwrap_or_default();
    let runs = runs(attempts);
    layout(
        frame,
        &format!("Job {id}"),
        html! {
            @if let Some(csrf) = frame.action_csrf() {
                div.actions {
                    @if matches!(summary.state, JobState::Pending | JobState::Dead) {
                        (action(frame, id, "retry", "Retry", csrf))
                    }
                    @if summary.state == JobState::Done {
                        (action(frame, id, "replay", "Replay", csrf))
                    }
                    (action(frame, id, "purge", "Purge", csrf))
                }
            }
            @if frame.may_show_ids {
                p {
                    @if frame.show_ids { a href="?" { "Mask ids" } } @else { a href="?ids=show" { "Show ids" } }
                }
            }
            table.fields {
                tbody {
                    tr { th scope="row" { "State" } td data-state=(summary.state.as_str()) { (summary.state.as_str()) } }
                    tr { th scope="row" { "Event" } td { (summary.event) } }
                    tr { th scope="row" { "Key" } td { code { (frame.shown(&summary.key)) } } }
                    tr { th scope="row" { "Chat" } td { (job.ordering_key.as_deref().map(|chat| frame.shown(chat)).unwrap_or_default()) } }
                    tr {
                        th scope="row" { "Attempts" }
                        td data-attempts=(summary.attempts) {
                            (summary.attempts)
                            @if runs.len() > 1 { " since the last retry or replay" }
                        }
                    }
                    tr { th scope="row" { "Last error" } td { (current_error(summary).map(|error| frame.shown(error)).unwrap_or_default()) } }
                    tr { th scope="row" { "Received" } td { (format_utc(summary.received_at)) } }
                    tr { th scope="row" { "Due" } td { (format_utc(summary.run_at)) } }
                    tr { th scope="row" { "Lease until" } td { (time(summary.lease_until)) } }
                    tr { th scope="row" { "Handled" } td { (time(summary.handled_at)) } }
                    tr { th scope="row" { "Path" } td { code { (job.path) } } }
                    tr { th scope="row" { "Verified by" } td { (job.signing_key.as_deref().unwrap_or("not verified")) } }
                }
            }
            h2 { "Attempts" }
            @if attempts.is_empty() {
                p { "No attempt recorded." }
            } @else {
                table.attempts {
                    thead { tr { th scope="col" { "#" } th scope="col" { "Started" } th scope="col" { "Took" } th scope="col" { "Outcome" } th scope="col" { "Error" } } }
                    @for (run, attempts) in runs.iter().enumerate() {
                        tbody data-run=(run + 1) {
                            @if run > 0 {
                                tr.run { th colspan="5" scope="rowgroup" { "Retried or replayed: attempts counted from 1 again" } }
                            }
                            @for attempt in *attempts {
                                tr {
                                    td { (attempt.number) }
                                    td { (format_utc(attempt.started_at)) }
                                    td { (attempt.duration.map(took).unwrap_or_default()) }
                                    td {
                                        (attempt.outcome.as_str())
                                        @if attempt.outcome == AttemptOutcome::Released { " (not counted)" }
                                    }
                                    td { (attempt.error.as_deref().map(|error| frame.shown(error)).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Body" }
            pre.body { (frame.shown(body)) }
            h2 { "Typed event" }
            pre.typed { (frame.shown(typed)) }
        },
    )
}

/// The error of the job's last failed attempt while it still stands: none once the job was
/// handled (its earlier errors stay in its attempts).
fn current_error(job: &JobSummary) -> Option<&str> {
    job.last_error.as_deref().filter(|_| job.state != JobState::Done)
}

/// The attempts split where a retry or a replay counted them from 1 again: an attempt whose
/// number is not above the one before, unless that one was released (a release gives its
/// number back).
fn runs(attempts: &[AttemptRecord]) -> Vec<&[AttemptRecord]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for (index, pair) in attempts.windows(2).enumerate() {
        let [before, after] = pair else { continue };
        if after.number <= before.number && before.outcome != AttemptOutcome::Released {
            runs.push(&attempts[start..=index]);
            start = index + 1;
        }
    }
    runs.push(&attempts[start..]);
    runs
}

fn action(frame: &Frame<'_>, id: i64, name: &str, label: &str, csrf: &str) -> Markup {
    html! {
        form method="post" action=(frame.href(&format!("jobs/{id}/{name}"))) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { (label) }
        }
    }
}

/// `count` jobs, in words.
fn jobs_count(count: u64) -> String {
    if count == 1 { "1 job".to_owned() } else { format!("{count} jobs") }
}

/// The page that asks before a bulk action: the filter as it was read, and how many jobs it
/// selects.
pub(super) fn confirm(frame: &Frame<'_>, verb: &str, matching: u64, filter: &Filter) -> Markup {
    let csrf = frame.action_csrf().unwrap_or_default();
    let conditions = filter.describe(|text| frame.shown(text));
    layout(
        frame,
        &format!("{verb} {}?", jobs_count(matching)),
        html! {
            p { (verb) " the " strong data-matching=(matching) { (matching) } " " (if matching == 1 { "job that matches" } else { "jobs that match" }) " this filter:" }
            @if conditions.is_empty() {
                p.filter { strong { "Every job in the inbox" } " (no condition)" }
            } @else {
                ul.filter { @for condition in &conditions { li { (condition) } } }
            }
            form method="post" action="" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { (verb) " " (jobs_count(matching)) }
            }
            p { a href=(frame.href(&format!("jobs?{}", with_ids(&filter.query(), frame.show_ids)))) { "Cancel" } }
        },
    )
}

/// The sign-in form, with why it is shown (a refusal) when there is a reason; `next` is the
/// page to return to.
pub(super) fn sign_in(frame: &Frame<'_>, refusal: Option<(&str, &str)>, next: &str) -> Markup {
    layout(
        frame,
        "Sign in to the inbox console",
        html! {
            @if let Some((title, code)) = refusal {
                p.problem role="alert" { (title) " (code: " code { (code) } ")" }
            }
            form.sign-in method="post" action=(frame.href("sign-in")) {
                input type="hidden" name="next" value=(next);
                label for="token" { "Console token" }
                input id="token" name="token" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p { "A script sends the token in an " code { "Authorization: Bearer" } " header instead." }
        },
    )
}

pub(super) fn problem(frame: &Frame<'_>, title: &str, code: &str) -> Markup {
    layout(frame, title, html! { p { "Code: " code { (code) } } })
}

fn age(age: Duration) -> String {
    let seconds = age.as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        _ => format!("{} h {} min", seconds / 3600, seconds / 60 % 60),
    }
}

fn took(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

/// The console's stylesheet, served as a file so that the CSP needs no inline style.
pub(super) const STYLESHEET: &str = include_str!("console.css");
