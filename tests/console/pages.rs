//! The console's cases, each generic over the store; `main.rs` runs each on every store.

use std::time::{Duration, SystemTime};

use http::{Method, StatusCode, header};
use periskope_webhook::console::Console;
use periskope_webhook::inbox::{ClaimRequest, ConsoleStore, JobFilter, JobId, JobState, Selection};

use crate::support::{chat_message, delivery};
use crate::{Answer, PHONE_CHAT, Served, TOKEN, seed};

const PREFIX: &str = "/console";

fn console<St>(store: St) -> Console<St> {
    Console::new(store).bearer_token(TOKEN).mount_path(PREFIX)
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// The job ids of a jobs table, in page order.
pub fn job_ids(text: &str) -> Vec<JobId> {
    text.split("data-job-id=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The text of the first `attribute="…"` after `marker`.
fn attribute_after<'a>(text: &'a str, marker: &str, attribute: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)?..];
    let rest = &rest[rest.find(&format!("{attribute}=\""))? + attribute.len() + 2..];
    Some(&rest[..rest.find('"')?])
}

/// `reference` resolved against the path `base` (both below the server's root), as a browser
/// resolves a relative link.
fn resolve(base: &str, reference: &str) -> String {
    if reference.starts_with('/') {
        return reference.to_owned();
    }
    if let Some(query) = reference.strip_prefix('?') {
        return format!("{}?{query}", base.split('?').next().unwrap());
    }
    let base = base.split('?').next().unwrap();
    let mut segments: Vec<&str> = base.split('/').collect();
    segments.pop();
    let (path, query) =
        reference.split_once('?').map_or((reference, None), |(path, query)| (path, Some(query)));
    for part in path.split('/') {
        match part {
            ".." => {
                segments.pop();
            }
            "." => {}
            part => segments.push(part),
        }
    }
    let joined = segments.join("/");
    match query {
        Some(query) => format!("{joined}?{query}"),
        None => joined,
    }
}

async fn state_of<St: ConsoleStore>(store: &St, id: JobId) -> Option<JobState> {
    store.get(id).await.unwrap().map(|job| job.summary.state)
}

/// The first `name=value` pair of a `Set-Cookie` header.
fn cookie_pair(answer: &Answer) -> String {
    answer.header(header::SET_COOKIE).split(';').next().unwrap().to_owned()
}

/// A browser's session: signed in through the form, then a page read for its CSRF token.
pub struct Browser {
    pub cookies: String,
    pub csrf: String,
}

impl Browser {
    pub async fn sign_in(served: &Served, job: JobId) -> Browser {
        let form = format!("token={TOKEN}&next=%2Fjobs%2F{job}");
        let headers =
            [("content-type", "application/x-www-form-urlencoded"), ("sec-fetch-site", "same-origin")];
        let signed_in = served.send(Method::POST, "/sign-in", &headers, &form).await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", signed_in.text);
        assert_eq!(signed_in.header(header::LOCATION), format!("{}/jobs/{job}", served.prefix));
        let cookies = cookie_pair(&signed_in);
        let page = served.send(Method::GET, &format!("/jobs/{job}"), &[("cookie", &cookies)], "").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let csrf = attribute_after(&page.text, "name=\"csrf\"", "value")
            .expect("a form with a CSRF token")
            .to_owned();
        Browser { cookies, csrf }
    }

    /// POSTs a form as a page of the console would: the session's cookie, `origin`.
    pub async fn post(&self, served: &Served, path: &str, csrf: Option<&str>, site: (&str, &str)) -> Answer {
        let body = csrf.map(|csrf| format!("csrf={csrf}")).unwrap_or_default();
        let headers =
            [("cookie", self.cookies.as_str()), ("content-type", "application/x-www-form-urlencoded"), site];
        served.send(Method::POST, path, &headers, &body).await
    }
}

pub async fn nobody_gets_in_without_a_decision_or_the_token<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let undecided = Served::start(Console::new(store.clone()), PREFIX).await;
    for path in ["/", "/jobs", &format!("/jobs/{}", seeded.dead)] {
        let answer = undecided.get(path).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            !answer.text.contains("message.created") && !answer.text.contains("data-count"),
            "no data: {path}"
        );
    }

    let served = Served::start(console(store.clone()), PREFIX).await;
    let wrong = [("authorization", "Bearer not-the-token")];
    for headers in [&[][..], &wrong[..]] {
        let answer = served.send(Method::GET, "/jobs", headers, "").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(!answer.text.contains("data-job-id"));
    }
    let wrong_link = served.send(Method::GET, "/jobs?token=not-the-token", &[], "").await;
    assert_eq!(wrong_link.status, StatusCode::UNAUTHORIZED);
    assert!(wrong_link.headers.get(header::SET_COOKIE).is_none());
    let guessed_session = Browser::sign_in(&served, seeded.dead).await.cookies.replace('.', "0.");
    let guessed = served.send(Method::GET, "/jobs", &[("cookie", &guessed_session)], "").await;
    assert_eq!(guessed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(served.get("/jobs").await.status, StatusCode::OK);

    let by_session = Console::new(store)
        .authorize(|parts| parts.headers.get("x-app-session").is_some_and(|value| value == "valid"));
    let served = Served::start(by_session, PREFIX).await;
    assert_eq!(served.send(Method::GET, "/", &[], "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(served.send(Method::GET, "/", &[("x-app-session", "valid")], "").await.status, StatusCode::OK);
}

pub async fn signing_in_opens_a_session_that_is_not_the_token_and_ends<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let served = Served::start(console(store.clone()), PREFIX).await;
    let form = [("content-type", "application/x-www-form-urlencoded"), ("sec-fetch-site", "same-origin")];

    // A browser without a session is shown the sign-in form, which POSTs the token.
    let page = served.send(Method::GET, "/jobs?state=dead", &[], "").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.text.contains("name=\"token\"") && page.text.contains("type=\"password\""), "{}", page.text);
    assert_eq!(attribute_after(&page.text, "<form", "action"), Some("/console/sign-in"));
    assert_eq!(attribute_after(&page.text, "name=\"next\"", "value"), Some("/jobs"));
    // A token in a link is not taken: it would stay in the browser's history.
    let link = served.send(Method::GET, &format!("/?token={TOKEN}"), &[], "").await;
    assert_eq!(link.status, StatusCode::UNAUTHORIZED);
    assert!(link.headers.get(header::SET_COOKIE).is_none());

    let wrong = served.send(Method::POST, "/sign-in", &form, "token=console-test-token-3f9b").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    let empty = served.send(Method::POST, "/sign-in", &form, "token=").await;
    assert_eq!(empty.status, StatusCode::UNAUTHORIZED);
    let cross_site =
        [("content-type", "application/x-www-form-urlencoded"), ("sec-fetch-site", "cross-site")];
    let forced = served.send(Method::POST, "/sign-in", &cross_site, &format!("token={TOKEN}")).await;
    assert_eq!(forced.status, StatusCode::FORBIDDEN, "another site cannot sign a browser in");
    let offsite =
        served.send(Method::POST, "/sign-in", &form, &format!("token={TOKEN}&next=%2F%2Fevil.example")).await;
    assert_eq!(offsite.header(header::LOCATION), "/console/", "a sign-in never leads off the console");

    let signed_in =
        served.send(Method::POST, "/sign-in", &form, &format!("token={TOKEN}&next=%2Fjobs")).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.header(header::LOCATION), "/console/jobs");
    let cookie = signed_in.header(header::SET_COOKIE).to_owned();
    let (pair, attributes) = cookie.split_once(';').unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    assert!(name.starts_with("periskope_console_"), "{cookie}");
    assert!(
        !value.is_empty() && !value.contains(TOKEN) && !cookie.contains(TOKEN),
        "the token never travels back: {cookie}"
    );
    for attribute in ["Path=/console", "Max-Age=43200", "HttpOnly", "SameSite=Strict"] {
        assert!(attributes.split(';').any(|part| part.trim() == attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP unless told: {cookie}");

    // The session opens pages; its value is no bearer token.
    let page = served.send(Method::GET, "/jobs?state=dead", &[("cookie", pair)], "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(job_ids(&page.text), [seeded.dead]);
    let as_bearer =
        served.send(Method::GET, "/jobs", &[("authorization", &format!("Bearer {value}"))], "").await;
    assert_eq!(as_bearer.status, StatusCode::UNAUTHORIZED);

    // A replica with the same token takes the session and its forms; another token does not.
    let replica = Served::start(console(store.clone()), PREFIX).await;
    assert_eq!(replica.send(Method::GET, "/jobs", &[("cookie", pair)], "").await.status, StatusCode::OK);
    let browser = Browser::sign_in(&served, seeded.dead).await;
    let retried = browser
        .post(
            &replica,
            &format!("/jobs/{}/retry", seeded.dead),
            Some(&browser.csrf),
            ("sec-fetch-site", "same-origin"),
        )
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.text);
    assert_eq!(state_of(&store, seeded.dead).await, Some(JobState::Pending));
    let other = Served::start(
        Console::new(store.clone()).bearer_token("another-console-token").mount_path(PREFIX),
        PREFIX,
    )
    .await;
    assert_eq!(
        other.send(Method::GET, "/jobs", &[("cookie", pair)], "").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Signing out clears the cookie.
    let page = served.send(Method::GET, "/", &[("cookie", pair)], "").await;
    let csrf = attribute_after(&page.text, "sign-out", "value").expect("a Sign out form with its CSRF token");
    let signed_out = served
        .send(
            Method::POST,
            "/sign-out",
            &[
                ("cookie", pair),
                ("content-type", "application/x-www-form-urlencoded"),
                ("sec-fetch-site", "same-origin"),
            ],
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER, "{}", signed_out.text);
    assert!(signed_out.header(header::SET_COOKIE).starts_with(&format!("{name}=;")));
    assert!(signed_out.header(header::SET_COOKIE).contains("Max-Age=0"));

    // Lifetime and Secure as configured; each console its own cookie name.
    let secure = Served::start(
        console(store.clone()).secure_cookies(true).session_lifetime(Duration::from_secs(600)),
        PREFIX,
    )
    .await;
    let signed_in = secure.send(Method::POST, "/sign-in", &form, &format!("token={TOKEN}")).await;
    let cookie = signed_in.header(header::SET_COOKIE);
    assert!(
        cookie.starts_with("__Secure-periskope_console_")
            && cookie.contains("; Secure")
            && cookie.contains("Max-Age=600"),
        "{cookie}"
    );
    let elsewhere = Served::start(Console::new(store).bearer_token(TOKEN).mount_path("/ops"), "/ops").await;
    let there = elsewhere.send(Method::POST, "/sign-in", &form, &format!("token={TOKEN}")).await;
    assert_ne!(
        there.header(header::SET_COOKIE).split('=').next(),
        Some(name),
        "two consoles on one host keep their own cookie"
    );
}

pub async fn every_answer_carries_the_security_headers<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let served = Served::start(console(store), PREFIX).await;
    let answers = [
        served.get("/").await,
        served.get("/jobs").await,
        served.get(&format!("/jobs/{}", seeded.dead)).await,
        served.get("/jobs/999999").await,
        served.get("/assets/console.css").await,
        served.send(Method::GET, "/", &[], "").await,
        served.send(Method::GET, "/jobs?state=deadd", &[("authorization", &bearer())], "").await,
        served
            .send(Method::POST, &format!("/jobs/{}/retry", seeded.dead), &[("authorization", &bearer())], "")
            .await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|answer| answer.status.as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 404, 200, 401, 400, 303]);
    for answer in &answers {
        let policy = answer.header(header::CONTENT_SECURITY_POLICY);
        assert!(
            policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );
        assert!(
            !policy.contains("script-src") && !policy.contains("unsafe-inline"),
            "no script at all: {policy}"
        );
        assert_eq!(answer.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(answer.header(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(answer.header(header::CACHE_CONTROL), "no-store");
    }
    assert!(answers[4].header(header::CONTENT_TYPE).starts_with("text/css"));
}

pub async fn the_overview_counts_every_state<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let served = Served::start(console(store), PREFIX).await;
    let page = served.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    let count = |state: &str| -> u64 {
        let marker = format!("data-count=\"{state}\">");
        let rest =
            &page.text[page.text.find(&marker).unwrap_or_else(|| panic!("{state} counted")) + marker.len()..];
        rest[..rest.find('<').unwrap()].parse().unwrap()
    };
    let pending = seeded.pending.len() as u64 + 1;
    assert_eq!([count("pending"), count("running"), count("done"), count("dead")], [pending, 0, 1, 1]);
    assert!(page.text.contains("<svg"), "the last hour's chart");
    // Its time axis: an hour and minute (UTC) every 15 minutes, the newest at the right edge.
    let times: Vec<&str> = page
        .text
        .split("<text class=\"time\"")
        .skip(1)
        .map(|rest| &rest[rest.find('>').unwrap() + 1..rest.find("</text>").unwrap()])
        .collect();
    assert!((4..=5).contains(&times.len()), "{times:?}");
    for time in &times {
        let digits = time.bytes().filter(u8::is_ascii_digit).count();
        assert!(time.len() == 5 && time.as_bytes()[2] == b':' && digits == 4, "{time}");
    }
    assert!(page.text.contains("times in UTC"));
    assert!(page.text.contains("CRM down"), "the dead kind's latest error");
    assert!(page.text.contains("<title>") && page.text.contains("<html lang=\"en\">"));
}

pub async fn delivery_content_is_escaped_and_phone_numbers_masked<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let served = Served::start(console(store), PREFIX).await;
    let job = served.get(&format!("/jobs/{}", seeded.hostile)).await;
    let list = served.get("/jobs").await;
    for page in [&job, &list] {
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text.contains("<script") && !page.text.contains("<img") && !page.text.contains("<b>"));
        assert!(!page.text.contains("919999912345"), "masked by default");
    }
    assert!(job.text.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"), "the body shows as text");
    assert!(job.text.contains("onerror="), "the attribute shows as text too");
    assert!(job.text.contains("&lt;b&gt;"), "the error shows as text");
    assert!(job.text.contains("Message"), "the typed event");

    let shown = served.get(&format!("/jobs/{}?ids=show", seeded.hostile)).await;
    assert!(shown.text.contains(PHONE_CHAT), "shown when asked");
    assert!(!shown.text.contains("<script"));
}

pub async fn filters_select_exactly_their_jobs_and_pages_cover_each_once<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    for n in 0..60 {
        store.insert(delivery(chat_message("c9", &format!("bulk-{n}")))).await.unwrap();
    }
    let served = Served::start(console(store.clone()), PREFIX).await;
    let ids = |path: String| {
        let served = &served;
        async move {
            let page = served.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{path}");
            job_ids(&page.text)
        }
    };
    assert_eq!(ids("/jobs?state=dead".into()).await, [seeded.dead]);
    let dead_letters = served.get("/jobs?state=dead").await.text;
    assert!(dead_letters.contains("<title>Dead letters · Periskope inbox</title>"), "{dead_letters}");
    assert!(dead_letters.contains("<h1>Dead letters</h1>"));
    assert!(served.get("/jobs").await.text.contains("<h1>Jobs</h1>"));
    assert_eq!(ids("/jobs?state=done".into()).await, [seeded.done]);
    assert_eq!(ids("/jobs?state=running".into()).await, Vec::<JobId>::new());
    assert_eq!(ids("/jobs?chat=c1&ids=show".into()).await.len(), 5);
    assert_eq!(ids("/jobs?q=hostile-1".into()).await, [seeded.hostile]);
    assert_eq!(ids("/jobs?q=CRM+down".into()).await, [seeded.dead]);
    assert_eq!(ids("/jobs?event=reaction.created".into()).await, Vec::<JobId>::new());
    assert_eq!(ids("/jobs?from=2999-01-01T00%3A00".into()).await, Vec::<JobId>::new());
    assert_eq!(ids("/jobs?until=2999-01-01T00%3A00&chat=c1&state=dead&ids=show".into()).await, [seeded.dead]);

    // Newest first, 50 a page, the "older" link to the next page, each job once.
    let all: Vec<JobId> =
        store.search(JobFilter::default().limit(1000)).await.unwrap().into_iter().map(|job| job.id).collect();
    assert_eq!(all.len(), 66);
    let first = served.get("/jobs").await;
    let first_ids = job_ids(&first.text);
    assert_eq!(first_ids, all[..50]);
    let next = attribute_after(&first.text, "rel=\"next\"", "href").expect("a link to older jobs");
    let next = resolve(&format!("{PREFIX}/jobs"), &next.replace("&amp;", "&"));
    let second = served.get(next.strip_prefix(PREFIX).unwrap()).await;
    assert_eq!(job_ids(&second.text), all[50..]);
    assert!(!second.text.contains("rel=\"next\""), "the last page");
}

pub async fn a_browser_post_without_its_csrf_token_or_from_another_site_changes_nothing<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let served = Served::start(console(store.clone()), PREFIX).await;
    let browser = Browser::sign_in(&served, seeded.dead).await;
    let retry = format!("/jobs/{}/retry", seeded.dead);
    let origin = format!("http://{}", served.addr);
    let refusals = [
        browser.post(&served, &retry, None, ("sec-fetch-site", "same-origin")).await,
        browser.post(&served, &retry, Some("0123abcd"), ("sec-fetch-site", "same-origin")).await,
        browser.post(&served, &retry, Some(&browser.csrf), ("sec-fetch-site", "cross-site")).await,
        browser.post(&served, &retry, Some(&browser.csrf), ("origin", "http://evil.example")).await,
    ];
    for refusal in &refusals {
        assert_eq!(refusal.status, StatusCode::FORBIDDEN, "{}", refusal.text);
        assert!(refusal.text.contains("csrf"));
    }
    assert_eq!(state_of(&store, seeded.dead).await, Some(JobState::Dead), "nothing changed");

    // Another session's token is worth nothing in this one.
    let other = Browser::sign_in(&served, seeded.done).await;
    let crossed = browser.post(&served, &retry, Some(&other.csrf), ("sec-fetch-site", "same-origin")).await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    assert_eq!(state_of(&store, seeded.dead).await, Some(JobState::Dead));

    let accepted = browser.post(&served, &retry, Some(&browser.csrf), ("origin", &origin)).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.text);
    assert_eq!(state_of(&store, seeded.dead).await, Some(JobState::Pending));

    // A script with the header needs no CSRF token; a GET changes nothing.
    assert_eq!(
        served.get(&format!("/jobs/{}/replay", seeded.done)).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(state_of(&store, seeded.done).await, Some(JobState::Done));
    let script = served
        .send(Method::POST, &format!("/jobs/{}/replay", seeded.done), &[("authorization", &bearer())], "")
        .await;
    assert_eq!(script.status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&store, seeded.done).await, Some(JobState::Pending));
}

pub async fn retry_replay_and_purge_act_on_their_job<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let served = Served::start(console(store.clone()), PREFIX).await;
    let post = |path: String| {
        let served = &served;
        async move { served.send(Method::POST, &path, &[("authorization", &bearer())], "").await }
    };
    let page = served.get(&format!("/jobs/{}", seeded.dead)).await;
    assert!(page.text.contains(">Retry</button>") && page.text.contains(">Purge</button>"));
    assert!(!page.text.contains(">Replay</button>"), "only a handled job is replayed");
    let page = served.get(&format!("/jobs/{}", seeded.done)).await;
    assert!(page.text.contains(">Replay</button>") && !page.text.contains(">Retry</button>"));

    let retried = post(format!("/jobs/{}/retry", seeded.dead)).await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER);
    assert_eq!(
        retried.header(header::LOCATION),
        format!("/console/jobs/{}?done=retried&count=1", seeded.dead)
    );
    assert_eq!(state_of(&store, seeded.dead).await, Some(JobState::Pending));

    // A handled job is not retried, a pending one not replayed.
    post(format!("/jobs/{}/retry", seeded.done)).await;
    assert_eq!(state_of(&store, seeded.done).await, Some(JobState::Done));
    post(format!("/jobs/{}/replay", seeded.pending[0])).await;
    let replayed = post(format!("/jobs/{}/replay", seeded.done)).await;
    assert_eq!(replayed.status, StatusCode::SEE_OTHER);
    assert_eq!(state_of(&store, seeded.done).await, Some(JobState::Pending));

    let purged = post(format!("/jobs/{}/purge", seeded.hostile)).await;
    assert_eq!(purged.header(header::LOCATION), "/console/jobs?done=purged&count=1");
    assert_eq!(state_of(&store, seeded.hostile).await, None);
    assert_eq!(served.get(&format!("/jobs/{}", seeded.hostile)).await.status, StatusCode::NOT_FOUND);
}

pub async fn bulk_actions_confirm_the_count_then_act<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let served = Served::start(console(store.clone()), PREFIX).await;
    let confirm = served.get("/jobs/retry?state=dead").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.text.contains("data-matching=\"1\""), "{}", confirm.text);
    assert_eq!(state_of(&store, seeded.dead).await, Some(JobState::Dead), "the confirmation changes nothing");
    let done = served.send(Method::POST, "/jobs/retry?state=dead", &[("authorization", &bearer())], "").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.header(header::LOCATION), "/console/jobs?state=dead&done=retried&count=1");
    assert_eq!(state_of(&store, seeded.dead).await, Some(JobState::Pending));

    let confirm = served.get("/jobs/purge?chat=c1&ids=show").await;
    assert!(confirm.text.contains("data-matching=\"5\""), "{}", confirm.text);
    served.send(Method::POST, "/jobs/purge?chat=c1&ids=show", &[("authorization", &bearer())], "").await;
    let left = store.search(JobFilter::default()).await.unwrap();
    assert_eq!(left.iter().map(|job| job.id).collect::<Vec<_>>(), [seeded.hostile]);
}

pub async fn a_read_only_console_shows_no_actions_and_refuses_them<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let served = Served::start(console(store.clone()).read_only(true), PREFIX).await;
    let page = served.get(&format!("/jobs/{}", seeded.hostile)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("<button") && !page.text.contains("<form method=\"post\""));
    assert!(!page.text.contains("919999912345"), "ids stay masked");
    let shown = served.get(&format!("/jobs/{}?ids=show", seeded.hostile)).await;
    assert_eq!(shown.status, StatusCode::FORBIDDEN, "a read-only console never shows ids");
    assert!(shown.text.contains("read_only") && !shown.text.contains("919999912345"));
    assert!(!served.get("/jobs").await.text.contains("jobs/retry"), "no bulk actions offered");
    for path in [format!("/jobs/{}/retry", seeded.dead), "/jobs/retry?state=dead".to_owned()] {
        let refused = served.send(Method::POST, &path, &[("authorization", &bearer())], "").await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert!(refused.text.contains("read_only"));
    }
    assert_eq!(served.get("/jobs/retry?state=dead").await.status, StatusCode::FORBIDDEN);
    assert_eq!(state_of(&store, seeded.dead).await, Some(JobState::Dead));
}

pub async fn links_work_under_any_prefix<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    // With its mount path, the console opens at its prefix with or without the slash (behind
    // `nest_service` both arrive as `/`); without it, at the prefix's slash, as documented.
    let cases = [
        ("", "/", true),
        ("/console", "", true),
        ("/console", "/", true),
        ("/ops/inbox/console", "", true),
        ("/console", "/", false),
        ("/ops/inbox/console", "/", false),
    ];
    for (prefix, opened_at, mounted) in cases {
        let mut console = Console::new(store.clone()).bearer_token(TOKEN);
        if mounted {
            console = console.mount_path(if prefix.is_empty() { "/" } else { prefix });
        }
        let served = Served::start(console, prefix).await;
        let case = format!("{prefix} opened at {opened_at:?}, mount path told: {mounted}");
        let absolute = |path: &str| format!("{prefix}{path}");
        let overview = served.get(opened_at).await;
        assert_eq!(overview.status, StatusCode::OK, "{case}");
        let jobs_link = overview
            .text
            .split("href=\"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .find(|href| href.ends_with("jobs"));
        let jobs_path = resolve(&absolute(opened_at), jobs_link.expect("a link to the jobs"));
        assert_eq!(jobs_path, absolute("/jobs"), "{case}");

        let jobs = served.get("/jobs").await;
        let job_link =
            attribute_after(&jobs.text, &format!("data-job-id=\"{}\"", seeded.dead), "href").unwrap();
        let job_path = resolve(&jobs_path, job_link);
        assert_eq!(job_path, absolute(&format!("/jobs/{}", seeded.dead)), "{case}");
        let job = served.get(job_path.strip_prefix(prefix).unwrap()).await;
        assert!(job.text.contains(&format!("Job {}", seeded.dead)));

        let action = attribute_after(&job.text, "<form method=\"post\"", "action").unwrap();
        assert_eq!(resolve(&job_path, action), absolute(&format!("/jobs/{}/retry", seeded.dead)), "{case}");
        let stylesheet =
            resolve(&job_path, attribute_after(&job.text, "rel=\"stylesheet\"", "href").unwrap());
        let css = served.send(Method::GET, stylesheet.strip_prefix(prefix).unwrap(), &[], "").await;
        assert_eq!(css.status, StatusCode::OK, "{stylesheet}");
        let retried = served
            .send(Method::POST, &format!("/jobs/{}/retry", seeded.dead), &[("authorization", &bearer())], "")
            .await;
        let back =
            resolve(&absolute(&format!("/jobs/{}/retry", seeded.dead)), retried.header(header::LOCATION));
        assert_eq!(back, absolute(&format!("/jobs/{}?done=retried&count=1", seeded.dead)), "{case}");
    }
}

/// The text of the `<p class="notice">` of a page, if it has one.
fn notice(page: &str) -> Option<&str> {
    let rest = &page[page.find("<p class=\"notice\"")?..];
    let rest = &rest[rest.find('>')? + 1..];
    Some(&rest[..rest.find("</p>")?])
}

pub async fn an_action_is_confirmed_on_the_page_it_leads_to<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    let served = Served::start(console(store.clone()), PREFIX).await;
    let post = |path: String| {
        let served = &served;
        async move { served.send(Method::POST, &path, &[("authorization", &bearer())], "").await }
    };
    let follow = |answer: Answer| {
        let served = &served;
        async move {
            assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
            let page = served.get(answer.header(header::LOCATION).strip_prefix(PREFIX).unwrap()).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            page
        }
    };

    let retried = follow(post(format!("/jobs/{}/retry", seeded.dead)).await).await;
    assert_eq!(notice(&retried.text), Some("Retried 1 job: due now."));
    assert!(retried.text.contains("role=\"status\"") && retried.text.contains("data-done=\"retried\""));
    let nothing = follow(post(format!("/jobs/{}/retry", seeded.done)).await).await;
    assert_eq!(notice(&nothing.text), Some("Nothing was retried: only pending and dead jobs are."));
    let replayed = follow(post(format!("/jobs/{}/replay", seeded.done)).await).await;
    assert_eq!(notice(&replayed.text), Some("Replayed 1 job: due now."));
    let purged = follow(post(format!("/jobs/{}/purge", seeded.hostile)).await).await;
    assert_eq!(notice(&purged.text), Some("Purged 1 job."));

    // A bulk action lands on its filter's jobs, with the count; the page's own links do not
    // carry the notice on.
    let pending = seeded.pending.len() + 2;
    let bulk = post("/jobs/retry?state=pending".to_owned()).await;
    assert_eq!(
        bulk.header(header::LOCATION),
        format!("/console/jobs?state=pending&done=retried&count={pending}")
    );
    let bulk = follow(bulk).await;
    assert_eq!(notice(&bulk.text), Some(format!("Retried {pending} jobs: due now.").as_str()));
    let retry_link = attribute_after(&bulk.text, "class=\"bulk\"", "href").unwrap();
    assert_eq!(retry_link, "/console/jobs/retry?state=pending");
    assert_eq!(notice(&served.get("/jobs").await.text), None, "no action, no notice");

    // Read strictly: the two together, a known action, a count, on the pages actions lead to.
    for (path, parameter) in [
        (format!("/jobs/{}?done=deleted&count=1", seeded.dead), "done"),
        (format!("/jobs/{}?done=retried&count=many", seeded.dead), "count"),
        (format!("/jobs/{}?done=retried", seeded.dead), "count"),
        ("/jobs?count=1".to_owned(), "done"),
        ("/?done=retried&count=1".to_owned(), "done"),
        ("/jobs/retry?state=dead&done=retried&count=1".to_owned(), "done"),
    ] {
        let refused = served.get(&path).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            refused.text.contains("bad_query") && refused.text.contains(&format!("“{parameter}”")),
            "{path}: {}",
            refused.text
        );
    }
}

pub async fn a_handled_job_shows_no_old_error_and_the_attempts_its_count_counts<St>(store: St)
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let seeded = seed(&store).await;
    // The dead letter (one failed attempt, "CRM down") retried and handled; a pending job
    // released once, then claimed again.
    let claim = || store.claim(ClaimRequest::new(1, Duration::from_secs(60), 5));
    store.retry(Selection::Job(seeded.dead), SystemTime::now()).await.unwrap();
    let dead = claim().await.unwrap().remove(0);
    assert_eq!(dead.id, seeded.dead, "the retried job is first in its chat");
    store.complete(dead.lease(), SystemTime::now()).await.unwrap();
    let released = claim().await.unwrap().remove(0);
    store.release(released.lease(), SystemTime::now()).await.unwrap();
    let again = claim().await.unwrap().remove(0);
    assert_eq!(again.id, released.id, "the released job is claimed again");
    let later = Some(SystemTime::now() + Duration::from_secs(3600));
    store.fail(again.lease(), "CRM slow".to_owned(), later).await.unwrap();
    let served = Served::start(console(store.clone()), PREFIX).await;

    let page = served.get(&format!("/jobs/{}", seeded.dead)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(attribute_after(&page.text, "<td data-state", "data-state"), Some("done"));
    let last_error = &page.text[page.text.find(">Last error</th>").unwrap()..];
    assert!(
        last_error.starts_with(">Last error</th><td></td>"),
        "no error stands once handled: {last_error}"
    );
    assert!(page.text.contains("CRM down"), "the failed attempt keeps its error in the table");
    assert_eq!(attribute_after(&page.text, "<td data-attempts", "data-attempts"), Some("1"));
    assert!(page.text.contains("1 since the last retry or replay"), "{}", page.text);
    // Two runs: the failed attempt before the retry, the handled one after, each numbered 1.
    let runs: Vec<&str> = page
        .text
        .split("<tbody data-run=")
        .skip(1)
        .map(|run| &run[..run.find("</tbody>").unwrap()])
        .collect();
    assert_eq!(runs.len(), 2, "{}", page.text);
    assert!(runs[0].contains("<td>failed</td>") && runs[0].contains("CRM down"), "{}", runs[0]);
    assert!(runs[1].contains("<td>handled</td>") && !runs[1].contains("failed"), "{}", runs[1]);
    let jobs = served.get("/jobs?state=done").await;
    let row = &jobs.text[jobs.text.find(&format!("data-job-id=\"{}\"", seeded.dead)).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(!row.contains("CRM down"), "the list shows no old error either: {row}");

    // A released attempt is not counted, and starts no new run.
    let page = served.get(&format!("/jobs/{}", released.id)).await;
    assert_eq!(attribute_after(&page.text, "<td data-attempts", "data-attempts"), Some("1"));
    assert!(!page.text.contains("since the last retry"), "{}", page.text);
    assert_eq!(page.text.matches("<tbody data-run=").count(), 1);
    assert!(page.text.contains("released (not counted)"), "{}", page.text);
    assert!(page.text.contains("CRM slow"), "a pending job's last error stands");
}
