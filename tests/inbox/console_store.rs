//! The console's queries (`ConsoleStore`) on every store: filters and keyset pages, attempt
//! history, per-minute counts, dead letters by event, replay and bulk actions. Each case is
//! generic; `memory.rs`, `store.rs` and `postgres.rs` run it on their store.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use periskope_webhook::inbox::{
    AttemptOutcome, ClaimRequest, ConsoleStore, JobFilter, JobState, ListQuery, NewDelivery,
};

use crate::support::{chat_message, delivery};

fn claim(limit: usize, now: SystemTime) -> ClaimRequest {
    let mut request = ClaimRequest::new(limit, Duration::from_secs(60), 2);
    request.now = now;
    request
}

fn reaction(chat: &str, id: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"event":"reaction.created","data":{{"reaction_id":"{id}","chat_id":"{chat}","message_id":"m-{id}","reaction":"x"}},"org_id":"org-1"}}"#
    ))
}

fn received(body: Bytes, at: SystemTime) -> NewDelivery {
    let mut delivery = delivery(body);
    delivery.received_at = at;
    delivery
}

fn filter() -> JobFilter {
    JobFilter::default()
}

/// Stores m1..m4 in chat c1 (messages) and r1..r3 in chat c2 (reactions), a minute apart, and
/// fails r1 into a dead letter.
async fn seed<St: ConsoleStore>(store: &St, start: SystemTime) {
    for (n, body) in [
        chat_message("c1", "m1"),
        reaction("c2", "r1"),
        chat_message("c1", "m2"),
        reaction("c2", "r2"),
        chat_message("c1", "m3"),
        reaction("c2", "r3"),
        chat_message("c1", "m4"),
    ]
    .into_iter()
    .enumerate()
    {
        store.insert(received(body, start + Duration::from_secs(60 * n as u64))).await.unwrap();
    }
    let now = start + Duration::from_secs(600);
    let jobs = store.claim(claim(2, now)).await.unwrap();
    let r1 = jobs.iter().find(|job| job.event == "reaction.created").expect("r1 claimed");
    store.fail(r1.lease(), "CRM refused r1".to_owned(), None).await.unwrap();
    let m1 = jobs.iter().find(|job| job.event == "message.created").expect("m1 claimed");
    store.complete(m1.lease(), now).await.unwrap();
}

pub async fn search_filters_and_pages_newest_first<St: ConsoleStore>(store: St) {
    let start = SystemTime::now() - Duration::from_secs(3600);
    seed(&store, start).await;
    let ids = |jobs: Vec<periskope_webhook::inbox::JobSummary>| {
        jobs.into_iter().map(|job| job.id).collect::<Vec<_>>()
    };
    let all = ids(store.search(filter()).await.unwrap());
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|pair| pair[0] > pair[1]), "newest first: {all:?}");

    // Keyset pages of 3 cover everything once, in order.
    let mut paged: Vec<i64> = Vec::new();
    let mut page = ids(store.search(filter().limit(3)).await.unwrap());
    while !page.is_empty() {
        assert!(page.len() <= 3);
        paged.extend(&page);
        page = ids(store.search(filter().limit(3).before(*page.last().unwrap())).await.unwrap());
    }
    assert_eq!(paged, all);

    let mut dead = filter();
    dead.state = Some(JobState::Dead);
    let found = store.search(dead.clone()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].event, "reaction.created");
    assert_eq!(store.count(dead).await.unwrap(), 1);

    let mut messages = filter();
    messages.event = Some("message.created".to_owned());
    assert_eq!(store.count(messages).await.unwrap(), 4);

    let mut chat = filter();
    chat.chat = Some("c2".to_owned());
    assert_eq!(store.count(chat.clone()).await.unwrap(), 3);
    chat.chat = Some("c".to_owned());
    assert_eq!(store.count(chat).await.unwrap(), 0, "a chat id matches exactly");

    let mut text = filter();
    text.text = Some("refused r1".to_owned());
    assert_eq!(store.count(text.clone()).await.unwrap(), 1, "in the last error");
    text.text = Some("m3".to_owned());
    assert_eq!(store.count(text).await.unwrap(), 1, "in the key");

    // Received in the second, third and fourth minutes.
    let mut range = filter();
    range.received_from = Some(start + Duration::from_secs(60));
    range.received_until = Some(start + Duration::from_secs(240));
    assert_eq!(store.count(range).await.unwrap(), 3);
}

/// The jobs `search_masked` finds for `text`, newest first, walking steps of `limit` jobs
/// from the newest, and how many steps it took.
async fn masked_walk<St: ConsoleStore>(store: &St, text: &str, limit: usize) -> (Vec<i64>, usize) {
    let (mut found, mut steps, mut next) = (Vec::new(), 0, None);
    loop {
        let mut step_filter = filter().limit(limit);
        step_filter.before = next;
        let step = store.search_masked(step_filter, text.to_owned()).await.unwrap();
        steps += 1;
        found.extend(step.found.iter().map(|job| job.id));
        next = step.next;
        let Some(next) = next else { return (found, steps) };
        assert!(step.found.iter().all(|job| job.id >= next), "a step ends at its last job");
    }
}

pub async fn a_masked_search_matches_the_masked_text_step_by_step<St: ConsoleStore>(store: St) {
    let start = SystemTime::now() - Duration::from_secs(3600);
    seed(&store, start).await;
    let jobs = store.claim(claim(1, start + Duration::from_secs(700))).await.unwrap();
    let contact = jobs[0].id;
    store.fail(jobs[0].lease(), "CRM refused contact 919876543210@c.us".to_owned(), None).await.unwrap();
    let all: Vec<i64> = store.search(filter()).await.unwrap().iter().map(|job| job.id).collect();

    // Every job holds the empty text: steps of 3 look at each once, newest first, and the last
    // step, short of its limit, says no job is left.
    assert_eq!(masked_walk(&store, "", 3).await, (all.clone(), 3));
    // A step that looks at exactly its limit cannot know: one more step finds nothing.
    assert_eq!(masked_walk(&store, "", 7).await, (all, 2));

    // The number is masked whole: none of its digits matches, its mask does.
    for guess in ["919876543210", "3210@c.us", "0@c", "98765"] {
        assert_eq!(masked_walk(&store, guess, 3).await.0, Vec::<i64>::new(), "{guess}");
    }
    assert_eq!(masked_walk(&store, "contact *@c.us", 3).await.0, [contact]);
    assert_eq!(masked_walk(&store, "refused r1", 3).await.0.len(), 1, "in the last error");
    assert_eq!(masked_walk(&store, "m3", 3).await.0.len(), 1, "in the key");

    // The store's conditions hold too: both refused jobs are dead letters.
    let in_state = |state| {
        let mut filter = filter().limit(10);
        filter.state = Some(state);
        store.search_masked(filter, "refused".to_owned())
    };
    let dead = in_state(JobState::Dead).await.unwrap();
    assert_eq!(dead.found.len(), 2);
    assert!(dead.found.iter().all(|job| job.state == JobState::Dead));
    assert_eq!(dead.next, None);
    assert_eq!(in_state(JobState::Pending).await.unwrap().found, []);
}

pub async fn attempts_are_kept_with_their_outcomes<St: ConsoleStore>(store: St) {
    store.insert(delivery(chat_message("c", "m"))).await.unwrap();
    let now = SystemTime::now();
    let first = store.claim(claim(1, now)).await.unwrap().remove(0);
    store.fail(first.lease(), "timeout talking to the CRM".to_owned(), Some(now)).await.unwrap();
    let second = store.claim(claim(1, now + Duration::from_secs(1))).await.unwrap().remove(0);
    let running = store.attempts(second.id).await.unwrap();
    assert_eq!(running.last().unwrap().outcome, AttemptOutcome::Running);
    store.complete(second.lease(), now + Duration::from_secs(2)).await.unwrap();

    let history = store.attempts(second.id).await.unwrap();
    let summary: Vec<_> = history.iter().map(|attempt| (attempt.number, attempt.outcome)).collect();
    assert_eq!(summary, [(1, AttemptOutcome::Failed), (2, AttemptOutcome::Handled)]);
    assert_eq!(history[0].error.as_deref(), Some("timeout talking to the CRM"));
    assert_eq!(history[1].error, None);
    assert!(history.iter().all(|attempt| attempt.duration.is_some()));
    assert!(store.attempts(second.id + 1000).await.unwrap().is_empty());
}

pub async fn per_minute_counts_and_dead_letters_by_event<St: ConsoleStore>(store: St) {
    let start = SystemTime::now() - Duration::from_secs(3600);
    seed(&store, start).await;
    // The failure is recorded when it happens (now), the success at the time given.
    let minutes = store.per_minute(start, SystemTime::now()).await.unwrap();
    assert!((60..=62).contains(&minutes.len()), "one entry per minute, zeros included: {}", minutes.len());
    assert!(minutes.windows(2).all(|pair| pair[0].minute < pair[1].minute));
    assert_eq!(minutes.iter().map(|minute| minute.received).sum::<u64>(), 7);
    assert_eq!(minutes.iter().map(|minute| minute.handled).sum::<u64>(), 1);
    assert_eq!(minutes.iter().map(|minute| minute.failed).sum::<u64>(), 1);
    assert_eq!(minutes.iter().filter(|minute| minute.received > 0).count(), 7, "a minute apart");

    let dead = store.dead_letters_by_event(5).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].event.as_str(), dead[0].count), ("reaction.created", 1));
    assert_eq!(dead[0].latest_error.as_deref(), Some("CRM refused r1"));
}

pub async fn a_handled_job_is_replayed_and_bulk_actions_follow_the_filter<St: ConsoleStore>(store: St) {
    let start = SystemTime::now() - Duration::from_secs(3600);
    seed(&store, start).await;
    let done = store.list(ListQuery::new(Some(JobState::Done), 10)).await.unwrap().remove(0);
    let pending = store.list(ListQuery::new(Some(JobState::Pending), 1)).await.unwrap().remove(0);
    assert!(!store.replay(pending.id, SystemTime::now()).await.unwrap(), "only handled jobs replay");
    assert!(store.replay(done.id, SystemTime::now()).await.unwrap());
    let replayed = store.get(done.id).await.unwrap().unwrap().summary;
    assert_eq!(replayed.state, JobState::Pending);
    let again = store.claim(claim(10, SystemTime::now() + Duration::from_secs(1))).await.unwrap();
    let job = again.iter().find(|job| job.id == done.id).expect("the replayed job runs again");
    assert_eq!(job.attempt, 1);
    assert_eq!(store.attempts(done.id).await.unwrap().len(), 2, "the history is kept");

    // Retry every dead reaction, then purge what is left of chat c2.
    let mut dead_reactions = filter();
    dead_reactions.state = Some(JobState::Dead);
    dead_reactions.event = Some("reaction.created".to_owned());
    assert_eq!(store.retry_matching(dead_reactions.clone(), SystemTime::now()).await.unwrap(), 1);
    assert_eq!(store.count(dead_reactions).await.unwrap(), 0);
    let mut chat = filter();
    chat.chat = Some("c2".to_owned());
    assert_eq!(store.purge_matching(chat.clone()).await.unwrap(), 3);
    assert_eq!(store.count(chat).await.unwrap(), 0);
    assert_eq!(store.count(filter()).await.unwrap(), 4);
}
