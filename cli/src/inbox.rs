//! `inbox`: look into a durable inbox (the embedded file or PostgreSQL), retry and purge jobs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
#[cfg(feature = "postgres")]
use periskope_webhook::inbox::PostgresStore;
use periskope_webhook::inbox::{
    ConsoleStore, InboxError, InboxStats, JobId, JobRecord, JobState, JobSummary, ListQuery, Selection,
    SqliteStore,
};
use periskope_webhook::redact::{StoreLocation, mask_phone_digits};
use serde_json::{Value, json};

use crate::output::{Failure, Output};

/// Look into a durable inbox: list, show, retry and purge its jobs.
///
/// The inbox is the embedded SQLite file a server keeps its deliveries in, or the PostgreSQL
/// database several replicas share. One process writes an embedded file: beside the server
/// that holds it, `list`, `show`, `stats` and `console` read it (the console read-only), and
/// `retry` and `purge` need the server stopped.
#[derive(Args, Debug)]
pub struct InboxArgs {
    /// The inbox: the embedded SQLite file, or, when built with the `postgres` feature, a
    /// PostgreSQL URL (postgres://user:password@host/database, scheme in any case) or libpq
    /// connection string (host=... user=... password=...: any value with `=` in it). Before or
    /// after the subcommand. The value is visible in `ps`: prefer PERISKOPE_INBOX for one with a
    /// password. It is never printed whole: messages name the host and database at most.
    #[arg(long, value_name = "FILE|URL", env = "PERISKOPE_INBOX", hide_env_values = true, global = true)]
    store: Option<String>,

    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// List jobs, oldest first, without their bodies.
    List {
        /// Only jobs in this state: pending, running, done or dead.
        #[arg(long, value_parser = parse_state)]
        state: Option<JobState>,
        /// At most this many jobs.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only jobs after this id (the next page).
        #[arg(long, value_name = "ID")]
        after: Option<JobId>,
        #[command(flatten)]
        ids: Ids,
    },
    /// Show one job: its state, attempts, last error, de-duplication key and, with --body, the
    /// body exactly as received.
    Show {
        /// The job's id, as `list` prints it.
        id: JobId,
        /// Also print the body (it holds the message, names and phone numbers).
        #[arg(long)]
        body: bool,
        #[command(flatten)]
        ids: Ids,
    },
    /// Make dead or pending jobs due now, with their attempts reset: one job, or every job in a
    /// state (usually --state dead, after fixing what made them fail).
    Retry(Target),
    /// Delete jobs: one, or every job in a state. Periskope's next delivery of a purged event
    /// is accepted again.
    Purge(Target),
    /// Count jobs per state, and show the attempts in the queue and the oldest pending job's age.
    Stats,
    /// Serve the operator console for this inbox (overview, jobs, retry, replay, purge) until
    /// Ctrl-C. The first line printed is the link to open: its one-time code signs one browser
    /// in, within 5 minutes. The second gives the fresh token, for the sign-in form and for
    /// scripts. On a file a running server holds, the console is read-only.
    Console {
        /// Where to listen; loopback by default (the console shows customer messages).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: std::net::SocketAddr,
        /// A host name the console answers for, beside loopback names and addresses (repeat it
        /// for several): for a console bound to another address. Any other `Host` gets 403, so
        /// that a page that rebinds its name to this address cannot reach the console.
        #[arg(long = "allowed-host", value_name = "HOST")]
        allowed_hosts: Vec<String>,
    },
}

/// Whether ids and error texts are printed in full.
#[derive(Args, Debug, Clone, Copy)]
struct Ids {
    /// Print keys and error texts in full; by default every phone number in them (seven digits
    /// or more, as in a WhatsApp id) is printed as `*`.
    #[arg(long)]
    show_ids: bool,
}

impl Ids {
    /// `text` as printed: in full with --show-ids, else its phone numbers masked.
    fn show(self, text: &str) -> String {
        if self.show_ids { text.to_owned() } else { mask_phone_digits(text) }
    }
}

/// One job, or every job in a state.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Target {
    /// The job's id.
    id: Option<JobId>,
    /// Every job in this state: pending, running, done or dead.
    #[arg(long, value_parser = parse_state)]
    state: Option<JobState>,
}

impl Target {
    fn selection(&self) -> Selection {
        match (self.id, self.state) {
            (Some(id), _) => Selection::Job(id),
            (None, Some(state)) => Selection::State(state),
            // clap requires one of the two.
            (None, None) => Selection::State(JobState::Dead),
        }
    }
}

impl Action {
    /// Whether the action only reads the inbox, so that it can run beside the server.
    fn only_reads(&self) -> bool {
        matches!(self, Action::List { .. } | Action::Show { .. } | Action::Stats | Action::Console { .. })
    }
}

fn parse_state(name: &str) -> Result<JobState, String> {
    JobState::from_name(name).ok_or_else(|| "expected pending, running, done or dead".to_owned())
}

pub fn inbox(args: InboxArgs, output: &Output) -> Result<(), Failure> {
    // clap cannot require a `global` argument: a missing one is checked here (exit 2, as usage).
    let Some(store) = args.store else {
        return Err(Failure::Error(
            "no inbox: pass --store FILE|URL (before or after the subcommand) or set PERISKOPE_INBOX"
                .to_owned(),
        ));
    };
    let location = StoreLocation::parse(&store).map_err(|error| Failure::Error(error.to_string()))?;
    crate::block_on(async move {
        match &location {
            #[cfg(feature = "postgres")]
            StoreLocation::Postgres(config) => {
                let store = PostgresStore::connect_with(config, 1).await.map_err(failed)?;
                run(store, args.action, None, output).await
            }
            #[cfg(not(feature = "postgres"))]
            StoreLocation::Postgres(_) => Err(Failure::Error(format!(
                "the inbox is a {location}, and this periskope-webhook was built without PostgreSQL \
                 support (feature `postgres`)"
            ))),
            StoreLocation::File(path) => {
                // Opening creates a missing file: a mistyped path would show an empty inbox.
                if !path.is_file() {
                    return Err(Failure::Error(format!("no inbox file at {location}")));
                }
                let (store, read_only) = match SqliteStore::open(path) {
                    Ok(store) => (store, None),
                    // A running server holds the file for writing: read it beside the server.
                    Err(InboxError::Locked { .. }) if args.action.only_reads() => (
                        SqliteStore::options().read_only(true).open(path).map_err(failed)?,
                        Some(
                            "a running server holds this file and alone writes it; stop it to retry, replay or purge",
                        ),
                    ),
                    Err(InboxError::Locked { .. }) => {
                        return Err(Failure::Error(format!(
                            "the inbox at {location} is in use by a running server, which alone writes \
                             it: stop the server to retry or purge (stats, list and show work while it runs)"
                        )));
                    }
                    Err(error) => return Err(failed(error)),
                };
                run(store, args.action, read_only, output).await
            }
        }
    })?
}

fn failed(error: InboxError) -> Failure {
    Failure::Error(error.to_string())
}

/// Runs `action` on `store`; `read_only` says why the store can only be read, if it can't be
/// written.
async fn run<St>(store: St, action: Action, read_only: Option<&str>, output: &Output) -> Result<(), Failure>
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    match action {
        Action::Console { addr, allowed_hosts } => {
            crate::console::serve(store, read_only, addr, &allowed_hosts, output).await?;
        }
        Action::List { state, limit, after, ids } => {
            let mut query = ListQuery::new(state, limit.max(1));
            if let Some(after) = after {
                query = query.after(after);
            }
            let jobs = store.list(query).await.map_err(failed)?;
            for job in &jobs {
                output.line(summary_line(job, ids), summary_json(job, ids));
            }
            if jobs.is_empty() && !output.json() {
                output.note("no jobs", Value::Null);
            }
        }
        Action::Show { id, body, ids } => {
            let Some(job) = store.get(id).await.map_err(failed)? else {
                return Err(Failure::Error(format!("no job {id} in this inbox")));
            };
            show(&job, body, ids, output);
        }
        Action::Retry(target) => {
            let count = store.retry(target.selection(), SystemTime::now()).await.map_err(failed)?;
            output.line(
                format_args!("{count} job{} due again", plural(count)),
                json!({ "type": "retried", "jobs": count }),
            );
        }
        Action::Purge(target) => {
            let count = store.purge(target.selection()).await.map_err(failed)?;
            output.line(
                format_args!("{count} job{} deleted", plural(count)),
                json!({ "type": "purged", "jobs": count }),
            );
        }
        Action::Stats => {
            let stats = store.stats(SystemTime::now()).await.map_err(failed)?;
            output.line(stats_line(&stats), stats_json(&stats));
        }
    }
    Ok(())
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// `ID  STATE  EVENT  attempts  received  [last error]`; the key is left out (it can hold a
/// phone number): `show` prints it. The error is the handler's text, which can quote anything
/// the handler saw (`CRM refused contact 919...@c.us`): masked as ids are.
fn summary_line(job: &JobSummary, ids: Ids) -> String {
    let mut line = format!(
        "{:>6}  {:<7}  {}  attempts={}  received {}",
        job.id,
        job.state.as_str(),
        job.event,
        job.attempts,
        rfc3339(job.received_at)
    );
    if job.state == JobState::Pending && job.run_at > SystemTime::now() {
        line.push_str(&format!("  retry at {}", rfc3339(job.run_at)));
    }
    if let Some(error) = &job.last_error {
        line.push_str(&format!("  last error: {}", ids.show(error)));
    }
    line
}

fn summary_json(job: &JobSummary, ids: Ids) -> Value {
    json!({
        "type": "job",
        "id": job.id,
        "state": job.state.as_str(),
        "event": job.event,
        "attempts": job.attempts,
        "last_error": job.last_error.as_deref().map(|error| ids.show(error)),
        "received_at": rfc3339(job.received_at),
        "run_at": rfc3339(job.run_at),
        "lease_until": job.lease_until.map(rfc3339),
        "handled_at": job.handled_at.map(rfc3339),
    })
}

fn show(job: &JobRecord, with_body: bool, ids: Ids, output: &Output) {
    let summary = &job.summary;
    let key = ids.show(&summary.key);
    let ordering_key = job.ordering_key.as_deref().map(|key| ids.show(key));
    let mut object = summary_json(summary, ids);
    object["key"] = json!(key);
    object["ordering_key"] = json!(ordering_key);
    object["signing_key"] = json!(job.signing_key);
    object["bytes"] = json!(job.body.len());
    if with_body {
        object["body"] = json!(String::from_utf8_lossy(&job.body));
    }
    let mut text = summary_line(summary, ids);
    text.push_str(&format!("\n  key: {key}"));
    if let Some(ordering) = &ordering_key {
        text.push_str(&format!("\n  ordered within: {ordering}"));
    }
    let verified_by = job
        .signing_key
        .as_deref()
        .map_or_else(|| "nothing (verification was off)".to_owned(), crate::key::explain_label);
    text.push_str(&format!("\n  verified by: {verified_by}"));
    if let Some(handled) = summary.handled_at {
        text.push_str(&format!("\n  handled at: {}", rfc3339(handled)));
    }
    text.push_str(&format!("\n  body: {} bytes", job.body.len()));
    if with_body {
        text.push_str(&format!("\n{}", String::from_utf8_lossy(&job.body)));
    }
    output.line(text, object);
}

fn stats_line(stats: &InboxStats) -> String {
    let oldest =
        stats.oldest_pending_age.map_or_else(|| "none".to_owned(), |age| format!("{} s", age.as_secs()));
    format!(
        "pending {}, running {}, done {}, dead {}; attempts in the queue {}; oldest pending {oldest}",
        stats.pending, stats.running, stats.done, stats.dead, stats.attempts_in_queue
    )
}

fn stats_json(stats: &InboxStats) -> Value {
    json!({
        "type": "stats",
        "pending": stats.pending,
        "running": stats.running,
        "done": stats.done,
        "dead": stats.dead,
        "queue_depth": stats.queue_depth(),
        "attempts_in_queue": stats.attempts_in_queue,
        "oldest_pending_seconds": stats.oldest_pending_age.map(|age| age.as_secs_f64()),
    })
}

/// `time` in UTC as RFC 3339, to the second: `2026-11-30T02:47:09Z`.
fn rfc3339(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, for dates after 1970).
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", of_day / 3600, of_day / 60 % 60, of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |seconds: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_737_359_508), "2025-01-20T07:51:48Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
