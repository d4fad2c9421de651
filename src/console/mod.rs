//! An operator console for the inbox: see, search, retry, replay and purge its jobs in a browser.
//!
//! ```no_run
//! use axum::Router;
//! use periskope_webhook::console::Console;
//! use periskope_webhook::inbox::SqliteStore;
//!
//! # fn app() -> Result<Router, Box<dyn std::error::Error>> {
//! let store = SqliteStore::open("periskope-inbox.db")?;
//! let console = Console::new(store).bearer_token(std::env::var("CONSOLE_TOKEN")?);
//! // Open http://HOST/console/?token=... once: the token moves into a cookie.
//! let app: Router = Router::new().nest_service("/console", console);
//! # Ok(app)
//! # }
//! ```
//!
//! [`Console`] is a tower `Service` over `http::Request`, so axum (`nest_service`), hyper and
//! tonic serve it alike, under any prefix: its links are relative (open it at `PREFIX/`, with
//! the slash). Its pages are rendered on the server and work without JavaScript; its
//! stylesheet is its own, so it works offline and under its strict `Content-Security-Policy`.
//!
//! # Routes
//! PREFIX is where it is mounted; STATE is [`JobState::as_str`].
//!
//! | route | what |
//! |---|---|
//! | `GET PREFIX/` | the overview: each state's count in an element with `data-count="STATE"`, queue depth, oldest pending age, a chart of the last hour, dead letters by event |
//! | `GET PREFIX/jobs?state=&event=&chat=&q=&from=&until=&after=` | jobs newest first, 50 a page (`after` = the last job id of the previous page); each row is `<tr data-job-id="ID" data-state="STATE">` |
//! | `GET PREFIX/jobs/ID` | a job: its fields, attempts, body and typed event; `?ids=show` shows phone numbers and ids |
//! | `POST PREFIX/jobs/ID/retry`, `…/replay`, `…/purge` | the job's actions, from `<button>`s whose text is `Retry`, `Replay` and `Purge` |
//! | `GET`/`POST PREFIX/jobs/retry?FILTER`, `PREFIX/jobs/purge?FILTER` | every job the filter selects, behind a confirmation page that shows how many |
//!
//! # Who gets in
//! Nobody, until one decision is made: [`Console::bearer_token`], [`Console::authorize`] or
//! [`Console::insecure_allow_all`]. Without one, every request is answered `401` (the first
//! one logs a warning). A refused request gets `401` and no data.
//!
//! A POST that a browser authenticates by itself (the token's cookie, the app's session) must
//! carry the page's CSRF token, tied to the browser's session, and come from the same origin
//! (`Sec-Fetch-Site` or `Origin`); otherwise it gets `403` and nothing changes. A POST with an
//! `Authorization` header (a script) needs no CSRF token. A `GET` never changes anything.
//!
//! Phone numbers and WhatsApp ids are masked unless a page is asked for them (`?ids=show`),
//! which, like the actions, a [read-only](Console::read_only) console refuses. Every response
//! carries a `Content-Security-Policy` with no script and `frame-ancestors 'none'`,
//! `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and `Cache-Control:
//! no-store`. Every action is logged with its job ids, never content.

mod access;
mod form;
mod pages;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use maud::Markup;
use tower_service::Service;

use self::access::{Access, Proof, SESSION_COOKIE, TOKEN_COOKIE};
use self::pages::Frame;
use crate::event::{Timestamp, WebhookEvent};
use crate::inbox::{ConsoleStore, InboxError, JobFilter, JobId, JobState, Selection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every answer of the console: a small page, fully rendered before it is sent.
type Answer = Response<Full<Bytes>>;

/// Jobs on one page of the jobs table.
const PAGE_SIZE: usize = 50;
/// The largest form a POST may carry (a CSRF token and little else).
const FORM_LIMIT: usize = 16 * 1024;
/// The dead-letter kinds on the overview.
const DEAD_LETTER_KINDS: usize = 5;
/// No script at all, styles and images from the console only, and never in a frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console: a tower `Service` answering its pages for an inbox store.
///
/// See [the module](self) for its routes and how it is protected.
pub struct Console<St> {
    store: St,
    access: Access,
    read_only: bool,
    secure_cookies: bool,
    /// The key of the CSRF tokens: made when the console is, so a restart ends old forms.
    /// `None` when the system had no randomness to give: then only scripts may act.
    secret: Option<Arc<[u8; 32]>>,
    /// Whether the missing access decision was already logged.
    warned: Arc<AtomicBool>,
}

impl<St: Clone> Clone for Console<St> {
    fn clone(&self) -> Self {
        Console {
            store: self.store.clone(),
            access: self.access.clone(),
            read_only: self.read_only,
            secure_cookies: self.secure_cookies,
            secret: self.secret.clone(),
            warned: self.warned.clone(),
        }
    }
}

impl<St> fmt::Debug for Console<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("access", &self.access)
            .field("read_only", &self.read_only)
            .field("secure_cookies", &self.secure_cookies)
            .finish_non_exhaustive()
    }
}

impl<St> Console<St> {
    /// A console for `store` that lets nobody in until one access decision is made.
    pub fn new(store: St) -> Self {
        let mut secret = [0u8; 32];
        let secret = getrandom::fill(&mut secret).is_ok().then(|| Arc::new(secret));
        Console {
            store,
            access: Access::Undecided,
            read_only: false,
            secure_cookies: false,
            secret,
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Lets in requests with `Authorization: Bearer TOKEN`, and browsers that opened a page
    /// with `?token=TOKEN` once (the token is then kept in an `HttpOnly; SameSite=Strict` cookie,
    /// and the page reloaded without it, so that it stays out of history and access logs).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.access = Access::Bearer(Arc::from(token.into()));
        self
    }

    /// Lets in the requests `predicate` accepts: for the app's own sessions (a cookie it
    /// checks, a header its proxy sets).
    pub fn authorize<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.access = Access::Authorize(Arc::new(predicate));
        self
    }

    /// Lets everyone in. Only for a console bound to loopback (as `periskope-webhook inbox
    /// console` binds it), never on an address others can reach: it shows customer messages.
    pub fn insecure_allow_all(mut self) -> Self {
        self.access = Access::AllowAll;
        self
    }

    /// Hides the actions and refuses them (and showing ids) with `403`. Default: off.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Marks the console's cookies `Secure`, for a console served over HTTPS. The console
    /// does not guess it from `X-Forwarded-Proto`. Default: off.
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }
}

impl<St, B> Service<Request<B>> for Console<St>
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let console = self.clone();
        ResponseFuture { inner: Box::pin(async move { Ok(console.respond(request).await) }) }
    }
}

/// The response of [`Console`]. Boxed: the console's pages are not a hot path, and their
/// store calls differ by route.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>,
}

impl Future for ResponseFuture {
    type Output = Result<Answer, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

/// A job action a button POSTs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Retry,
    Replay,
    Purge,
}

impl Action {
    fn from_name(name: &str) -> Option<Action> {
        match name {
            "retry" => Some(Action::Retry),
            "replay" => Some(Action::Replay),
            "purge" => Some(Action::Purge),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Replay => "replay",
            Action::Purge => "purge",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Retry => "Retry",
            Action::Replay => "Replay",
            Action::Purge => "Purge",
        }
    }
}

/// What a request asks for, from its method and its path below the console's prefix.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Stylesheet,
    Overview,
    Jobs,
    Job(JobId),
    JobAction(JobId, Action),
    Bulk(Action),
    NotFound,
}

impl Route {
    fn of(path: &str) -> Route {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            [""] => Route::Overview,
            ["assets", "console.css"] => Route::Stylesheet,
            ["jobs"] => Route::Jobs,
            ["jobs", action @ ("retry" | "purge")] => {
                Action::from_name(action).map_or(Route::NotFound, Route::Bulk)
            }
            ["jobs", id] => id.parse().map_or(Route::NotFound, Route::Job),
            ["jobs", id, action] => match (id.parse(), Action::from_name(action)) {
                (Ok(id), Some(action)) => Route::JobAction(id, action),
                _ => Route::NotFound,
            },
            _ => Route::NotFound,
        }
    }
}

/// The jobs filter as the jobs page's form spells it.
#[derive(Clone, Debug, Default)]
struct Filter {
    state: Option<JobState>,
    event: String,
    chat: String,
    text: String,
    /// `datetime-local` values, in UTC.
    from: String,
    until: String,
    after: Option<JobId>,
}

impl Filter {
    fn from_pairs(pairs: &[(String, String)]) -> Filter {
        let mut filter = Filter::default();
        for (name, value) in pairs {
            let value = value.trim();
            match name.as_str() {
                "state" => filter.state = JobState::from_name(value),
                "event" => filter.event = value.to_owned(),
                "chat" => filter.chat = value.to_owned(),
                "q" => filter.text = value.to_owned(),
                "from" => filter.from = value.to_owned(),
                "until" => filter.until = value.to_owned(),
                "after" => filter.after = value.parse().ok(),
                _ => {}
            }
        }
        filter
    }

    /// The query string of the filter's conditions (no page).
    fn query(&self) -> String {
        form::encode([
            ("state", self.state.map_or("", JobState::as_str)),
            ("event", self.event.as_str()),
            ("chat", self.chat.as_str()),
            ("q", self.text.as_str()),
            ("from", self.from.as_str()),
            ("until", self.until.as_str()),
        ])
    }

    /// The conditions in words, for the confirmation page.
    fn describe(&self) -> String {
        let query = form::parse(&self.query());
        if query.is_empty() {
            return "every job".to_owned();
        }
        query.iter().map(|(name, value)| format!("{name} = {value}")).collect::<Vec<_>>().join(", ")
    }

    fn job_filter(&self) -> JobFilter {
        let text = |value: &str| (!value.is_empty()).then(|| value.to_owned());
        JobFilter {
            state: self.state,
            event: text(&self.event),
            chat: text(&self.chat),
            text: text(&self.text),
            received_from: utc_input(&self.from),
            received_until: utc_input(&self.until),
            before: self.after,
            limit: PAGE_SIZE,
        }
    }
}

/// A `datetime-local` input's value (`2025-01-20T07:51`, seconds optional) read as UTC.
fn utc_input(value: &str) -> Option<SystemTime> {
    let with_seconds = if value.len() == 16 { format!("{value}:00") } else { value.to_owned() };
    Timestamp::from(format!("{with_seconds}+00:00").as_str()).parse()?.to_system_time()
}

/// The console's root relative to `path` (below the prefix): `""`, `"../"`, ...
fn root_of(path: &str) -> String {
    "../".repeat(path.trim_start_matches('/').matches('/').count())
}

/// A failure answered with a page: its status and a short machine-readable code.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
}

const UNAUTHORIZED: Refusal =
    Refusal { status: StatusCode::UNAUTHORIZED, code: "unauthorized", title: "Sign-in needed" };
const READ_ONLY: Refusal =
    Refusal { status: StatusCode::FORBIDDEN, code: "read_only", title: "This console is read-only" };
const CSRF: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    code: "csrf",
    title: "This form has expired or came from another site: reload the page and try again",
};
const NOT_FOUND: Refusal = Refusal { status: StatusCode::NOT_FOUND, code: "not_found", title: "Not found" };
const METHOD: Refusal = Refusal {
    status: StatusCode::METHOD_NOT_ALLOWED,
    code: "method_not_allowed",
    title: "Method not allowed",
};
const BAD_FORM: Refusal =
    Refusal { status: StatusCode::BAD_REQUEST, code: "bad_form", title: "Unreadable form" };
const STORE: Refusal = Refusal {
    status: StatusCode::SERVICE_UNAVAILABLE,
    code: "store_unavailable",
    title: "The inbox store did not answer",
};

impl<St> Console<St>
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    async fn respond<B>(&self, request: Request<B>) -> Answer
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let root = root_of(&path);
        let query = form::parse(parts.uri.query().unwrap_or(""));
        let route = Route::of(&path);
        if route == Route::Stylesheet {
            return secured(stylesheet());
        }
        let bare = Frame { root: &root, csrf: None, show_ids: false, may_show_ids: false };

        if let Some((_, token)) = query.iter().find(|(name, _)| name == "token") {
            if !self.access.accepts_link_token(token) {
                return secured(refused(&bare, &UNAUTHORIZED));
            }
            let rest: Vec<(&str, &str)> = query
                .iter()
                .filter(|(name, _)| name != "token")
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let mut response = redirect(&format!("?{}", form::encode(rest)));
            append_cookie(&mut response, &access::set_cookie(TOKEN_COOKIE, token, self.secure_cookies));
            return secured(response);
        }
        let Some(proof) = self.access.check(&parts) else {
            if matches!(self.access, Access::Undecided) && !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the inbox console has no access decision (bearer_token, authorize or insecure_allow_all): \
                     every request is refused"
                );
            }
            return secured(refused(&bare, &UNAUTHORIZED));
        };

        let session = access::cookie(&parts.headers, SESSION_COOKIE).filter(|session| !session.is_empty());
        let new_session = session.is_none().then(|| access::random_hex(16));
        let session = session.map(str::to_owned).or_else(|| new_session.clone()).unwrap_or_default();
        let csrf =
            self.secret.as_ref().map(|secret| access::csrf_token(&**secret, &session)).unwrap_or_default();
        let frame = Frame {
            root: &root,
            csrf: (!self.read_only && self.secret.is_some()).then_some(csrf.as_str()),
            show_ids: !self.read_only && query.iter().any(|(name, value)| name == "ids" && value == "show"),
            may_show_ids: !self.read_only,
        };

        let reading = parts.method == Method::GET || parts.method == Method::HEAD;
        let response = match (&route, reading) {
            (Route::NotFound, _) => refused(&frame, &NOT_FOUND),
            (Route::JobAction(..) | Route::Bulk(_), _) if self.read_only => refused(&frame, &READ_ONLY),
            (Route::JobAction(..) | Route::Bulk(_), false) if parts.method == Method::POST => {
                match self.authorize_action(proof, &parts, body).await {
                    Err(refusal) => refused(&frame, refusal),
                    Ok(()) => self
                        .act(&route, &root, &query)
                        .await
                        .unwrap_or_else(|error| store_failed(&frame, &error)),
                }
            }
            (Route::JobAction(..), _) | (_, false) => refused(&frame, &METHOD),
            (_, true) => {
                self.page(&route, &frame, &query).await.unwrap_or_else(|error| store_failed(&frame, &error))
            }
        };
        let mut response = secured(response);
        if let Some(session) = new_session.filter(|session| !session.is_empty()) {
            append_cookie(&mut response, &access::set_cookie(SESSION_COOKIE, &session, self.secure_cookies));
        }
        response
    }

    /// Whether a POST may act: a script's header is enough; a browser's request needs its
    /// session's CSRF token and the console's origin.
    async fn authorize_action<B>(&self, proof: Proof, parts: &Parts, body: B) -> Result<(), &'static Refusal>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if proof == Proof::Header {
            return Ok(());
        }
        let form = Limited::new(body, FORM_LIMIT).collect().await.map_err(|_| &BAD_FORM)?.to_bytes();
        let fields = form::parse(std::str::from_utf8(&form).map_err(|_| &BAD_FORM)?);
        let token = fields.iter().find(|(name, _)| name == "csrf").map(|(_, value)| value.as_str());
        let Some(secret) = &self.secret else { return Err(&CSRF) };
        if access::csrf_holds(&**secret, &parts.headers, token) { Ok(()) } else { Err(&CSRF) }
    }

    async fn page(
        &self,
        route: &Route,
        frame: &Frame<'_>,
        query: &[(String, String)],
    ) -> Result<Answer, InboxError> {
        let now = SystemTime::now();
        Ok(match *route {
            Route::Overview => {
                let stats = self.store.stats(now).await?;
                let since = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
                let minutes = self.store.per_minute(since, now).await?;
                let dead_letters = self.store.dead_letters_by_event(DEAD_LETTER_KINDS).await?;
                page(StatusCode::OK, pages::overview(frame, &stats, &minutes, &dead_letters))
            }
            Route::Jobs => {
                let filter = Filter::from_pairs(query);
                let jobs = self.store.search(filter.job_filter()).await?;
                let next =
                    (jobs.len() == PAGE_SIZE).then(|| jobs.last().map(|job| job.id)).flatten().map(|last| {
                        let conditions = filter.query();
                        let separator = if conditions.is_empty() { "" } else { "&" };
                        format!("{conditions}{separator}after={last}")
                    });
                page(StatusCode::OK, pages::jobs(frame, &filter, &jobs, next))
            }
            Route::Job(id) => match self.store.get(id).await? {
                None => refused(frame, &NOT_FOUND),
                Some(job) => {
                    let attempts = self.store.attempts(id).await?;
                    let body = serde_json::from_slice::<serde_json::Value>(&job.body)
                        .and_then(|value| serde_json::to_string_pretty(&value))
                        .unwrap_or_else(|_| String::from_utf8_lossy(&job.body).into_owned());
                    let typed = match WebhookEvent::decode(job.body.clone()) {
                        Ok(event) => format!("{:#?}", event.event()),
                        Err(error) => format!("The body does not decode: {error}"),
                    };
                    page(StatusCode::OK, pages::job(frame, &job, &attempts, &body, &typed))
                }
            },
            Route::Bulk(action) => {
                let filter = Filter::from_pairs(query);
                let matching = self.store.count(bulk_filter(&filter)).await?;
                page(StatusCode::OK, pages::confirm(frame, action.verb(), matching, &filter))
            }
            Route::Stylesheet | Route::JobAction(..) | Route::NotFound => refused(frame, &NOT_FOUND),
        })
    }

    async fn act(&self, route: &Route, root: &str, query: &[(String, String)]) -> Result<Answer, InboxError> {
        let now = SystemTime::now();
        Ok(match *route {
            Route::JobAction(id, action) => {
                let changed = match action {
                    Action::Retry => self.store.retry(Selection::Job(id), now).await?,
                    Action::Replay => u64::from(self.store.replay(id, now).await?),
                    Action::Purge => self.store.purge(Selection::Job(id)).await?,
                };
                tracing::info!(action = action.name(), job = id, changed, "inbox console action");
                if action == Action::Purge {
                    redirect(&format!("{root}jobs"))
                } else {
                    redirect(&format!("{root}jobs/{id}"))
                }
            }
            Route::Bulk(action) => {
                let filter = Filter::from_pairs(query);
                let selected = bulk_filter(&filter);
                let changed = match action {
                    Action::Retry => self.store.retry_matching(selected, now).await?,
                    _ => self.store.purge_matching(selected).await?,
                };
                tracing::info!(action = action.name(), jobs = changed, "inbox console bulk action");
                // From PREFIX/jobs/retry, the jobs page is one level up.
                redirect(&format!("{root}jobs?{}", filter.query()))
            }
            _ => return Err(InboxError::Storage("not an action".to_owned())),
        })
    }
}

/// What a bulk action touches: the filter's jobs, every page of them.
fn bulk_filter(filter: &Filter) -> JobFilter {
    JobFilter { before: None, ..filter.job_filter() }
}

fn page(status: StatusCode, markup: Markup) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(markup.into_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

fn refused(frame: &Frame<'_>, refusal: &Refusal) -> Answer {
    page(refusal.status, pages::problem(frame, refusal.title, refusal.code))
}

fn store_failed(frame: &Frame<'_>, error: &InboxError) -> Answer {
    tracing::warn!(%error, "the inbox console could not read or change the store");
    refused(frame, &STORE)
}

fn stylesheet() -> Answer {
    let mut response = Response::new(Full::new(Bytes::from_static(pages::STYLESHEET.as_bytes())));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    response
}

/// A `303 See Other` to `location`, relative to the request's URL.
fn redirect(location: &str) -> Answer {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn append_cookie(response: &mut Answer, cookie: &str) {
    if let Ok(cookie) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
}

/// Adds the headers every console response carries.
fn secured(mut response: Answer) -> Answer {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_from_the_path_below_the_prefix() {
        assert_eq!(Route::of("/"), Route::Overview);
        assert_eq!(Route::of(""), Route::Overview);
        assert_eq!(Route::of("/jobs"), Route::Jobs);
        assert_eq!(Route::of("/jobs/"), Route::Jobs);
        assert_eq!(Route::of("/jobs/42"), Route::Job(42));
        assert_eq!(Route::of("/jobs/42/replay"), Route::JobAction(42, Action::Replay));
        assert_eq!(Route::of("/jobs/retry"), Route::Bulk(Action::Retry));
        assert_eq!(Route::of("/jobs/purge"), Route::Bulk(Action::Purge));
        assert_eq!(Route::of("/jobs/replay"), Route::NotFound);
        assert_eq!(Route::of("/jobs/x"), Route::NotFound);
        assert_eq!(Route::of("/jobs/42/delete"), Route::NotFound);
        assert_eq!(Route::of("/assets/console.css"), Route::Stylesheet);
        assert_eq!(Route::of("/../etc"), Route::NotFound);
    }

    #[test]
    fn links_climb_to_the_console_root() {
        assert_eq!(root_of("/"), "");
        assert_eq!(root_of("/jobs"), "");
        assert_eq!(root_of("/jobs/42"), "../");
        assert_eq!(root_of("/jobs/42/retry"), "../../");
    }

    #[test]
    fn datetime_inputs_are_read_as_utc() {
        let at = |seconds| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(utc_input("2025-01-20T07:51"), at(1_737_359_460));
        assert_eq!(utc_input("2025-01-20T07:51:48"), at(1_737_359_508));
        assert_eq!(utc_input("yesterday"), None);
        assert_eq!(utc_input(""), None);
    }
}
