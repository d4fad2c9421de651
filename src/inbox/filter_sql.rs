//! The `WHERE` clause of a [`JobFilter`], shared by the SQL stores.
//!
//! Only the conditions that are set appear in the clause, so that the planner sees plain
//! equalities and ranges and picks the index for them (`state`, `event`, the chat's
//! `ordering_key`, `received_at`, each followed by `id` for keyset pages). The text condition
//! has no index of its own: it only narrows the rows another condition (or the primary key, for
//! a page) already selected, and a substring match cannot use a B-tree index anyway.

use super::queries::JobFilter;
use super::to_millis;

/// A value bound to one placeholder of the clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Value {
    Text(String),
    Integer(i64),
    /// A list of ids, bound to one placeholder (see [`Dialect::one_of`]).
    Integers(Vec<i64>),
}

/// How a store's SQL spells what differs.
pub(super) struct Dialect {
    /// The n-th placeholder.
    pub placeholder: fn(usize) -> String,
    /// A text value as the store stores it.
    pub text: fn(&str) -> String,
    /// The function that gives the position of a substring (`haystack, needle`), 0 when absent.
    pub position: &'static str,
    /// `column` is one of the list bound to `placeholder` (one placeholder whatever the list's
    /// length, so that the statement stays the same for any batch).
    pub one_of: fn(column: &str, placeholder: &str) -> String,
}

/// The conditions of `filter` joined by `AND` (`TRUE` when none is set), and the values of
/// their placeholders, numbered from `first`. `before` is skipped unless `paged`.
pub(super) fn filter_clause(
    filter: &JobFilter,
    paged: bool,
    first: usize,
    dialect: &Dialect,
) -> (String, Vec<Value>) {
    let Dialect { placeholder, text, position, one_of } = *dialect;
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut bind = |value: Value| {
        values.push(value);
        placeholder(first + values.len() - 1)
    };
    if let Some(state) = filter.state {
        conditions.push(format!("state = {}", bind(Value::Text(state.as_str().to_owned()))));
    }
    if let Some(event) = &filter.event {
        conditions.push(format!("event = {}", bind(Value::Text(text(event)))));
    }
    if let Some(chat) = &filter.chat {
        conditions.push(format!("ordering_key = {}", bind(Value::Text(text(&format!("chat|{chat}"))))));
    }
    if let Some(from) = filter.received_from {
        conditions.push(format!("received_at >= {}", bind(Value::Integer(to_millis(from)))));
    }
    if let Some(until) = filter.received_until {
        conditions.push(format!("received_at < {}", bind(Value::Integer(to_millis(until)))));
    }
    if let Some(needle) = &filter.text {
        let needle = bind(Value::Text(text(needle)));
        conditions.push(format!(
            "({position}(dedup_key, {needle}) > 0 OR {position}(coalesce(last_error, ''), {needle}) > 0)"
        ));
    }
    if let Some(ids) = &filter.ids {
        conditions.push(one_of("id", &bind(Value::Integers(ids.clone()))));
    }
    if let Some(before) = filter.before.filter(|_| paged) {
        conditions.push(format!("id < {}", bind(Value::Integer(before))));
    }
    if conditions.is_empty() {
        return ("TRUE".to_owned(), values);
    }
    (conditions.join(" AND "), values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::JobState;

    const NUMBERED: Dialect = Dialect {
        placeholder: |n| format!("${n}"),
        text: str::to_owned,
        position: "strpos",
        one_of: |column, list| format!("{column} = ANY({list})"),
    };

    #[test]
    fn only_the_conditions_that_are_set_are_written() {
        let mut filter = JobFilter::default();
        assert_eq!(filter_clause(&filter, true, 1, &NUMBERED), ("TRUE".to_owned(), vec![]));
        filter.state = Some(JobState::Dead);
        filter.chat = Some("c1".to_owned());
        filter.before = Some(42);
        let (clause, values) = filter_clause(&filter, true, 3, &NUMBERED);
        assert_eq!(clause, "state = $3 AND ordering_key = $4 AND id < $5");
        assert_eq!(
            values,
            [Value::Text("dead".to_owned()), Value::Text("chat|c1".to_owned()), Value::Integer(42)]
        );
        let (clause, _) = filter_clause(&filter, false, 1, &NUMBERED);
        assert_eq!(clause, "state = $1 AND ordering_key = $2", "no page for counts and bulk actions");
        filter.ids = Some(vec![7, 9]);
        let (clause, values) = filter_clause(&filter, false, 1, &NUMBERED);
        assert_eq!(clause, "state = $1 AND ordering_key = $2 AND id = ANY($3)");
        assert_eq!(values[2], Value::Integers(vec![7, 9]));
    }
}
