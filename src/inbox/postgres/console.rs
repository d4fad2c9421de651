//! [`ConsoleStore`] on [`PostgresStore`], and the trimming of the attempt history.
//!
//! Each query has an index (schema version 3): keyset pages by state, event or chat walk
//! `(state, id)`, `(event, id)` or `(ordering_key, id)` backwards; received-time ranges and the
//! per-minute counts of deliveries use `(received_at)`; those of attempts `(ended_at, outcome)`;
//! dead letters by event `(dead_at, event)` and `(event, dead_at, id)`, both of dead jobs only;
//! a job's attempts `(job_id, id)`. The text filter (a substring of the key or the last error) has none: it
//! narrows the rows the other conditions, or the primary key for a page, select. Texts are
//! stored escaped (NUL as `\0`, backslash as `\\`), so filters compare and search the escaped
//! form of what they are given.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio_postgres::types::ToSql;

use super::{Connections, PostgresStore, SUMMARY_COLUMNS, escape, job_summary, unescape};
use crate::inbox::filter_sql::{Dialect, Value, filter_clause};
use crate::inbox::queries::{
    AttemptOutcome, AttemptRecord, ConsoleStore, DeadLetters, JobFilter, MinuteCounts, MinuteTally,
};
use crate::inbox::{InboxError, JobId, JobSummary, from_millis, to_millis};

const POSTGRES: Dialect = Dialect {
    placeholder: |n| format!("${n}"),
    text: escape,
    position: "strpos",
    one_of: |column, list| format!("{column} = ANY({list})"),
};

/// The values as statement parameters.
fn parameters(values: &[Value]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    values
        .iter()
        .map(|value| -> Box<dyn ToSql + Sync + Send> {
            match value {
                Value::Text(text) => Box::new(text.clone()),
                Value::Integer(integer) => Box::new(*integer),
                Value::Integers(integers) => Box::new(integers.clone()),
            }
        })
        .collect()
}

fn borrowed(parameters: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    parameters.iter().map(|parameter| parameter.as_ref() as &(dyn ToSql + Sync)).collect()
}

fn sql_limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Forgets the attempts of `jobs` beyond each one's last `kept`. Run after the claim that
/// opened their newest attempt has committed: a statement does not see its own inserts.
pub(super) async fn forget_old_attempts(
    connections: &Connections,
    jobs: &[JobId],
    kept: usize,
) -> Result<(), InboxError> {
    connections
        .execute(
            "DELETE FROM periskope_inbox_attempts AS old WHERE old.job_id = ANY($1) AND old.id <= (
                 SELECT newer.id FROM periskope_inbox_attempts AS newer WHERE newer.job_id = old.job_id
                 ORDER BY newer.id DESC LIMIT 1 OFFSET $2)",
            &[&jobs, &sql_limit(kept)],
        )
        .await?;
    Ok(())
}

impl ConsoleStore for PostgresStore {
    fn search(&self, filter: JobFilter) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let (clause, mut values) = filter_clause(&filter, true, 1, &POSTGRES);
            let limit_at = values.len() + 1;
            values.push(Value::Integer(sql_limit(filter.effective_limit())));
            let parameters = parameters(&values);
            let rows = connections
                .query(
                    &format!(
                        "SELECT {SUMMARY_COLUMNS} FROM periskope_inbox_jobs WHERE {clause}
                         ORDER BY id DESC LIMIT ${limit_at}"
                    ),
                    &borrowed(&parameters),
                )
                .await?;
            rows.iter().map(job_summary).collect()
        }
    }

    fn count(&self, filter: JobFilter) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let (clause, values) = filter_clause(&filter, false, 1, &POSTGRES);
            let parameters = parameters(&values);
            let rows = connections
                .query(
                    &format!("SELECT count(*) FROM periskope_inbox_jobs WHERE {clause}"),
                    &borrowed(&parameters),
                )
                .await?;
            Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0).unsigned_abs()))
        }
    }

    fn attempts(&self, id: JobId) -> impl Future<Output = Result<Vec<AttemptRecord>, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let rows = connections
                .query(
                    "SELECT number, started_at, ended_at, outcome, error FROM periskope_inbox_attempts
                     WHERE job_id = $1 ORDER BY id",
                    &[&id],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    let started: i64 = row.get(1);
                    let outcome: &str = row.get(3);
                    Ok(AttemptRecord {
                        number: row.get::<_, i32>(0).unsigned_abs(),
                        started_at: from_millis(started),
                        duration: row.get::<_, Option<i64>>(2).map(|ended| {
                            Duration::from_millis(ended.saturating_sub(started).max(0).unsigned_abs())
                        }),
                        outcome: AttemptOutcome::from_name(outcome).ok_or_else(|| {
                            InboxError::Storage(format!("unknown attempt outcome {outcome}"))
                        })?,
                        error: row.get::<_, Option<String>>(4).map(unescape),
                    })
                })
                .collect()
        }
    }

    fn per_minute(
        &self,
        since: SystemTime,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<MinuteCounts>, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let (since, now) = (to_millis(since), to_millis(now));
            let mut tally = MinuteTally::new(since, now);
            let rows = connections
                .query(
                    "SELECT received_at / 60000, 'received', count(*) FROM periskope_inbox_jobs
                     WHERE received_at >= $1 AND received_at <= $2 GROUP BY 1
                     UNION ALL
                     SELECT ended_at / 60000, outcome, count(*) FROM periskope_inbox_attempts
                     WHERE ended_at >= $1 AND ended_at <= $2 AND outcome IN ('handled', 'failed')
                     GROUP BY 1, 2",
                    &[&since, &now],
                )
                .await?;
            for row in rows {
                // 'received' is no outcome: the row counts deliveries.
                tally.add(
                    row.get(0),
                    AttemptOutcome::from_name(row.get(1)),
                    row.get::<_, i64>(2).unsigned_abs(),
                );
            }
            Ok(tally.into_counts())
        }
    }

    fn dead_letters_by_event(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetters>, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let rows = connections
                .query(
                    "SELECT event, count(*) AS dead,
                         (SELECT last_error FROM periskope_inbox_jobs AS latest
                          WHERE latest.state = 'dead' AND latest.event = letters.event
                          ORDER BY dead_at DESC, id DESC LIMIT 1)
                     FROM periskope_inbox_jobs AS letters WHERE state = 'dead'
                     GROUP BY event ORDER BY dead DESC, event LIMIT $1",
                    &[&sql_limit(limit)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| DeadLetters {
                    event: unescape(row.get(0)),
                    count: row.get::<_, i64>(1).unsigned_abs(),
                    latest_error: row.get::<_, Option<String>>(2).map(unescape),
                })
                .collect())
        }
    }

    fn replay(&self, id: JobId, now: SystemTime) -> impl Future<Output = Result<bool, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let replayed = connections
                .execute(
                    "UPDATE periskope_inbox_jobs
                     SET state = 'pending', attempts = 0, run_at = $2, handled_at = NULL, lease_until = NULL, waiting = false
                     WHERE id = $1 AND state = 'done'",
                    &[&id, &to_millis(now)],
                )
                .await?;
            Ok(replayed == 1)
        }
    }

    fn retry_matching(
        &self,
        filter: JobFilter,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let (clause, mut values) = filter_clause(&filter, false, 2, &POSTGRES);
            values.insert(0, Value::Integer(to_millis(now)));
            let parameters = parameters(&values);
            connections
                .execute(
                    &format!(
                        "UPDATE periskope_inbox_jobs
                         SET state = 'pending', attempts = 0, run_at = $1, lease_until = NULL, dead_at = NULL,
                             waiting = false
                         WHERE state IN ('pending', 'dead') AND {clause}"
                    ),
                    &borrowed(&parameters),
                )
                .await
        }
    }

    fn purge_matching(&self, filter: JobFilter) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let connections = self.connections();
        async move {
            let (clause, values) = filter_clause(&filter, false, 1, &POSTGRES);
            let parameters = parameters(&values);
            connections
                .execute(&format!("DELETE FROM periskope_inbox_jobs WHERE {clause}"), &borrowed(&parameters))
                .await
        }
    }
}
