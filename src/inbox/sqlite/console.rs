//! [`ConsoleStore`] on [`SqliteStore`], and the attempt history the worker's calls keep.
//!
//! Each query has an index (schema version 3): keyset pages by state, event or chat walk
//! `(state, id)`, `(event, id)` or `(ordering_key, id)` backwards; received-time ranges and the
//! per-minute counts of deliveries use `(received_at)`; those of attempts `(ended_at, outcome)`;
//! dead letters by event `(event, dead_at, id) WHERE state = 'dead'`; a job's attempts
//! `(job_id, id)`. The text filter (a substring of the key or the last error) has none: it
//! narrows the rows the other conditions, or the primary key for a page, select.
//!
//! The queries run on the store's read-only connections, beside the writer (at most
//! [`read_connections`](super::SqliteOptions::read_connections) at once), a masked search's
//! masking included; replay and the bulk actions run on the writer, a bulk action in a
//! transaction of its own.

use std::future::Future;
use std::time::{Duration, SystemTime};

use rusqlite::types::ToSql;
use rusqlite::{Connection, params, params_from_iter};

use super::{SUMMARY_COLUMNS, SqliteStore, job_summary};
use crate::inbox::filter_sql::{Dialect, Value, filter_clause};
use crate::inbox::queries::{
    AttemptOutcome, AttemptRecord, ConsoleStore, DeadLetters, JobFilter, MaskedStep, MinuteCounts,
    MinuteTally, masked_text_holds,
};
use crate::inbox::{ClaimedJob, InboxError, JobId, JobSummary, from_millis, to_millis};

const SQLITE: Dialect = Dialect {
    placeholder: |n| format!("?{n}"),
    text: str::to_owned,
    position: "instr",
    // The list is bound as a JSON array: one statement, cached once, for any batch.
    one_of: |column, list| format!("{column} IN (SELECT value FROM json_each({list}))"),
};

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Value::Text(text) => text.to_sql(),
            Value::Integer(integer) => integer.to_sql(),
            Value::Integers(integers) => Ok(rusqlite::types::ToSqlOutput::from(json_list(integers))),
        }
    }
}

/// `[1,2,3]`: a list of ids as `json_each` reads it.
fn json_list(integers: &[i64]) -> String {
    let items: Vec<String> = integers.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(","))
}

/// Opens the attempt `job` starts at `now`, and forgets the job's attempts beyond the last
/// `kept`: only once it has been claimed more than `kept` times, as each claim opens one
/// attempt (a job stored before schema 4, whose claims count from there, is trimmed once it
/// has been claimed that often since).
pub(super) fn open_attempt(
    connection: &Connection,
    job: &ClaimedJob,
    now: i64,
    kept: usize,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO periskope_inbox_attempts (job_id, number, started_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![job.id, job.attempt, now])?;
    if job.fencing_token <= kept as u64 {
        return Ok(());
    }
    connection
        .prepare_cached(
            "DELETE FROM periskope_inbox_attempts WHERE job_id = ?1 AND id <= (
                 SELECT id FROM periskope_inbox_attempts WHERE job_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![job.id, i64::try_from(kept).unwrap_or(i64::MAX)])?;
    Ok(())
}

/// Ends the job's running attempt, if it has one.
pub(super) fn end_attempt(
    connection: &Connection,
    job: JobId,
    outcome: AttemptOutcome,
    at: i64,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "UPDATE periskope_inbox_attempts SET outcome = ?2, ended_at = ?3, error = ?4
             WHERE job_id = ?1 AND outcome = 'running'",
        )?
        .execute(params![job, outcome.as_str(), at, error])?;
    Ok(())
}

fn sql_limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl ConsoleStore for SqliteStore {
    fn search(&self, filter: JobFilter) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send {
        self.read(move |connection| {
            let (clause, mut values) = filter_clause(&filter, true, 1, &SQLITE);
            let limit_at = values.len() + 1;
            values.push(Value::Integer(sql_limit(filter.effective_limit())));
            connection
                .prepare_cached(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM periskope_inbox_jobs WHERE {clause}
                     ORDER BY id DESC LIMIT ?{limit_at}"
                ))?
                .query_map(params_from_iter(values), job_summary)?
                .collect()
        })
    }

    fn search_masked(
        &self,
        filter: JobFilter,
        text: String,
    ) -> impl Future<Output = Result<MaskedStep, InboxError>> + Send {
        self.read(move |connection| {
            let limit = filter.effective_limit();
            let (clause, mut values) = filter_clause(&filter, true, 1, &SQLITE);
            let limit_at = values.len() + 1;
            values.push(Value::Integer(sql_limit(limit)));
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM periskope_inbox_jobs WHERE {clause}
                 ORDER BY id DESC LIMIT ?{limit_at}"
            ))?;
            let mut rows = statement.query(params_from_iter(values))?;
            let (mut found, mut looked, mut last) = (Vec::new(), 0, None);
            while let Some(row) = rows.next()? {
                looked += 1;
                last = Some(row.get::<_, JobId>(0)?);
                // The key and error are masked where SQLite holds them; only a job that
                // matches is copied out.
                let (key, error) = (row.get_ref(2)?.as_str()?, row.get_ref(5)?.as_str_or_null()?);
                if masked_text_holds(key, error, &text) {
                    found.push(job_summary(row)?);
                }
            }
            Ok(MaskedStep { found, next: last.filter(|_| looked == limit) })
        })
    }

    fn count(&self, filter: JobFilter) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.read(move |connection| {
            let (clause, values) = filter_clause(&filter, false, 1, &SQLITE);
            let count: i64 = connection
                .prepare_cached(&format!("SELECT count(*) FROM periskope_inbox_jobs WHERE {clause}"))?
                .query_row(params_from_iter(values), |row| row.get(0))?;
            Ok(count.unsigned_abs())
        })
    }

    fn attempts(&self, id: JobId) -> impl Future<Output = Result<Vec<AttemptRecord>, InboxError>> + Send {
        self.read(move |connection| {
            connection
                .prepare_cached(
                    "SELECT number, started_at, ended_at, outcome, error FROM periskope_inbox_attempts
                     WHERE job_id = ?1 ORDER BY id",
                )?
                .query_map([id], |row| {
                    let started: i64 = row.get(1)?;
                    let outcome: String = row.get(3)?;
                    Ok(AttemptRecord {
                        number: row.get(0)?,
                        started_at: from_millis(started),
                        duration: row.get::<_, Option<i64>>(2)?.map(|ended| {
                            Duration::from_millis(ended.saturating_sub(started).max(0).unsigned_abs())
                        }),
                        outcome: AttemptOutcome::from_name(&outcome).ok_or_else(|| {
                            rusqlite::Error::FromSqlConversionFailure(
                                3,
                                rusqlite::types::Type::Text,
                                format!("unknown attempt outcome {outcome}").into(),
                            )
                        })?,
                        error: row.get(4)?,
                    })
                })?
                .collect()
        })
    }

    fn per_minute(
        &self,
        since: SystemTime,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<MinuteCounts>, InboxError>> + Send {
        self.read(move |connection| {
            let (since, now) = (to_millis(since), to_millis(now));
            let mut tally = MinuteTally::new(since, now);
            let mut received = connection.prepare_cached(
                "SELECT received_at / 60000, count(*) FROM periskope_inbox_jobs
                 WHERE received_at >= ?1 AND received_at <= ?2 GROUP BY 1",
            )?;
            for row in
                received.query_map(params![since, now], |row| Ok((row.get(0)?, row.get::<_, i64>(1)?)))?
            {
                let (minute, count) = row?;
                tally.add(minute, None, count.unsigned_abs());
            }
            let mut ended = connection.prepare_cached(
                "SELECT ended_at / 60000, outcome, count(*) FROM periskope_inbox_attempts
                 WHERE ended_at >= ?1 AND ended_at <= ?2 AND outcome IN ('handled', 'failed') GROUP BY 1, 2",
            )?;
            for row in ended.query_map(params![since, now], |row| {
                Ok((row.get(0)?, AttemptOutcome::from_name(&row.get::<_, String>(1)?), row.get::<_, i64>(2)?))
            })? {
                let (minute, outcome, count) = row?;
                if outcome.is_some() {
                    tally.add(minute, outcome, count.unsigned_abs());
                }
            }
            Ok(tally.into_counts())
        })
    }

    fn dead_letters_by_event(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetters>, InboxError>> + Send {
        self.read(move |connection| {
            connection
                .prepare_cached(
                    "SELECT event, count(*) AS dead,
                         (SELECT last_error FROM periskope_inbox_jobs AS latest
                          WHERE latest.state = 'dead' AND latest.event = letters.event
                          ORDER BY dead_at DESC, id DESC LIMIT 1)
                     FROM periskope_inbox_jobs AS letters INDEXED BY periskope_inbox_dead_event
                     WHERE state = 'dead'
                     GROUP BY event ORDER BY dead DESC, event LIMIT ?1",
                )?
                .query_map([sql_limit(limit)], |row| {
                    Ok(DeadLetters {
                        event: row.get(0)?,
                        count: row.get::<_, i64>(1)?.unsigned_abs(),
                        latest_error: row.get(2)?,
                    })
                })?
                .collect()
        })
    }

    fn replay(&self, id: JobId, now: SystemTime) -> impl Future<Output = Result<bool, InboxError>> + Send {
        self.call(move |connection| {
            let replayed = connection
                .prepare_cached(
                    "UPDATE periskope_inbox_jobs
                     SET state = 'pending', attempts = 0, run_at = ?2, handled_at = NULL, lease_until = NULL, waiting = 0
                     WHERE id = ?1 AND state = 'done'",
                )?
                .execute(params![id, to_millis(now)])?;
            Ok(replayed == 1)
        })
    }

    fn retry_matching(
        &self,
        filter: JobFilter,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.call_alone(move |connection| {
            let (clause, mut values) = filter_clause(&filter, false, 2, &SQLITE);
            values.insert(0, Value::Integer(to_millis(now)));
            let changed = connection
                .prepare_cached(&format!(
                    "UPDATE periskope_inbox_jobs
                     SET state = 'pending', attempts = 0, run_at = ?1, lease_until = NULL, dead_at = NULL,
                         waiting = 0
                     WHERE state IN ('pending', 'dead') AND {clause}"
                ))?
                .execute(params_from_iter(values))?;
            Ok(changed as u64)
        })
    }

    fn purge_matching(&self, filter: JobFilter) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.call_alone(move |connection| {
            let (clause, values) = filter_clause(&filter, false, 1, &SQLITE);
            let deleted = connection
                .prepare_cached(&format!("DELETE FROM periskope_inbox_jobs WHERE {clause}"))?
                .execute(params_from_iter(values))?;
            Ok(deleted as u64)
        })
    }
}
