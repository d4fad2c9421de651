//! An operator console for the inbox: see, search, retry, replay and purge its jobs in a browser.
//!
//! ```no_run
//! use axum::Router;
//! use periskope_webhook::console::Console;
//! use periskope_webhook::inbox::SqliteStore;
//!
//! # fn app() -> Result<Router, Box<dyn std::error::Error>> {
//! let store = SqliteStore::open("periskope-inbox.db")?;
//! // Open http://HOST/console/ and sign in with the token (at least 16 bytes).
//! let console = Console::new(store).bearer_token(std::env::var("CONSOLE_TOKEN")?).mount_path("/console");
//! let app: Router = Router::new().nest_service("/console", console);
//! # Ok(app)
//! # }
//! ```
//!
//! [`Console`] is a tower `Service` over `http::Request`, so axum (`nest_service`), hyper and
//! tonic serve it alike, under any prefix. Tell it the prefix with [`Console::mount_path`]: its
//! links and its cookie's `Path` are then built from it, so that it opens at `PREFIX` and at
//! `PREFIX/` alike (behind axum's `nest_service` both arrive as `/`, so the console cannot
//! tell them apart). Without it, its links are relative and it must be opened at `PREFIX/`.
//! Its pages are rendered on the server and work without JavaScript; its stylesheet is its
//! own, so it works offline and under its strict `Content-Security-Policy`.
//!
//! # Routes
//! PREFIX is where it is mounted; STATE is [`JobState::as_str`](crate::inbox::JobState::as_str).
//!
//! | route | what |
//! |---|---|
//! | `GET PREFIX/` | the overview: each state's count in an element with `data-count="STATE"`, queue depth, oldest pending age, a chart of the last hour, dead letters by event |
//! | `GET PREFIX/jobs?state=&event=&chat=&q=&from=&until=&after=` | jobs newest first, 50 a page (`after` = the last job id of the previous page); each row is `<tr data-job-id="ID" data-state="STATE">` |
//! | `GET PREFIX/jobs/ID` | a job: its fields, attempts, body and typed event |
//! | `POST PREFIX/jobs/ID/retry`, `…/replay`, `…/purge` | the job's actions, from `<button>`s whose text is `Retry`, `Replay` and `Purge`; `303` to the job (the jobs, after a purge) |
//! | `GET`/`POST PREFIX/jobs/retry?FILTER`, `PREFIX/jobs/purge?FILTER` | every job the filter selects, behind a confirmation page that shows how many; applied 50 jobs a store call (see [What it costs the store](#what-it-costs-the-store)); `303` to the jobs the filter selects |
//!
//! An action's `303` adds `done=retried|replayed|purged&count=N` (how many jobs it changed) to
//! the page it leads to, which confirms it in a `<p class="notice" role="status" data-done="…">`;
//! the jobs and job pages take these two parameters, together, and no other page does.
//! | `GET`/`POST PREFIX/sign-in` | the sign-in form (a console behind a bearer token), and signing in with the token |
//! | `POST PREFIX/sign-out` | ends the browser's session |
//!
//! Every page also takes `ids=show`: phone numbers and ids in full (see below).
//!
//! # Queries are read strictly
//! A parameter a page does not take, one given twice, or a value the console cannot read (a
//! state that is not one, a time in no form it knows, a job id that is not one) is answered
//! `400` with the code `bad_query` and the parameter's name, and nothing is read or changed:
//! a bulk action never takes a filter it could not read for "every job". Times are read as UTC
//! from a date (`2025-01-20`), what the jobs form's `datetime-local` fields send
//! (`2025-01-20T07:51`) or RFC 3339 (`2025-01-20T07:51:00Z`, `…+02:00`). An empty field sets no
//! condition.
//!
//! # Who gets in
//! Nobody, until one decision is made: [`Console::bearer_token`], [`Console::authorize`] or
//! [`Console::insecure_allow_all`]. Without one, every request is answered `401` (the first
//! one logs a warning). A refused request gets `401` and no data.
//!
//! Behind a bearer token, a script sends `Authorization: Bearer TOKEN`; a person signs in
//! through the sign-in form (which every `401` shows a browser), which POSTs the token. The
//! browser then holds a session cookie: `HttpOnly; SameSite=Strict`, scoped to the mount path,
//! named per console, expiring after [`Console::session_lifetime`]. It holds a session value
//! signed with a key derived from the token, never the token, and no bearer header accepts it.
//! Other servers on the same host can read it (browsers do not separate cookies by port), so
//! what it carries lasts hours, not forever; Sign out clears it from the browser.
//!
//! A POST that a browser authenticates by itself (the session cookie, the app's session) must
//! carry the page's CSRF token, tied to the browser's session, and come from the same origin
//! (`Sec-Fetch-Site` or `Origin`); otherwise it gets `403` and nothing changes. A POST with an
//! `Authorization` header (a script) needs no CSRF token. A `GET` never changes anything.
//!
//! # Which hosts it answers
//! A console under [`Console::insecure_allow_all`], and any console given
//! [`Console::allowed_hosts`], answers `403` (code `host_not_allowed`) to a request whose host
//! (`Host`, or the URI's authority for HTTP/2) is neither a loopback name or address nor a
//! listed host: a page that rebinds its own name to 127.0.0.1 cannot reach it.
//!
//! # What it shows
//! Phone numbers and WhatsApp ids are masked unless a page is asked for them (`?ids=show`),
//! which, like the actions, a [read-only](Console::read_only) console refuses with `403`. While
//! ids are masked, `q=` matches the masked key and error (so a search cannot recover a masked
//! digit), and `chat=` is refused (`403`, code `ids_masked`). Every response carries a
//! `Content-Security-Policy` with no script and `frame-ancestors 'none'`,
//! `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and `Cache-Control:
//! no-store`. Every action is logged with its job ids, never content.
//!
//! # What it costs the store
//! No index serves a masked search: the store reads it step by step
//! ([`ConsoleStore::search_masked`], 1,000 jobs a step; on SQLite the masking runs on the
//! store's read connection). A console runs one such step at a time, however many searches are
//! open, each followed by a pause twice as long as it took, so its masked searches keep a read
//! connection (and a core) busy at most about a third of the time. A bulk action changes 50 jobs a
//! store call, each followed by a pause three times as long: on SQLite each call holds the
//! writer, and the deliveries queued behind it, for a few milliseconds, and the action holds
//! it, and writes to the disk, at most about a quarter of the time.

mod access;
mod filter;
mod form;
mod hosts;
mod pages;
mod scan;
mod session;

use std::borrow::Cow;
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
use tokio::sync::Semaphore;
use tower_service::Service;

use self::access::{Access, MIN_TOKEN_LEN, Proof};
use self::filter::{Accepts, BadParameter, Done, Notice, Query};
use self::hosts::Hosts;
use self::pages::Frame;
use self::scan::Selected;
use self::session::{SessionKey, SignInCodes};
use crate::event::WebhookEvent;
use crate::inbox::{ConsoleStore, InboxError, JobId, Selection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every answer of the console: a small page, fully rendered before it is sent.
type Answer = Response<Full<Bytes>>;

/// Jobs on one page of the jobs table.
const PAGE_SIZE: usize = 50;
/// The largest form a POST may carry (a CSRF token or the bearer token, and little else).
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
    /// Where the console is mounted (`/console`, or `/` at the root); `None` when it was not
    /// said, and links are then relative.
    mount_path: Option<Arc<str>>,
    /// `None` until the app lists hosts: then the access decision chooses.
    hosts: Option<Hosts>,
    session_lifetime: Duration,
    /// The key of sessions and CSRF tokens: derived from the bearer token, so that replicas
    /// accept each other's; random for a console without one. `None` when the system had no
    /// randomness to give: then only scripts may act.
    key: Option<SessionKey>,
    codes: SignInCodes,
    /// Turns for the steps of masked searches, shared by the console's clones
    /// ([`scan::MASKED_STEPS_AT_ONCE`]).
    masked_turns: Arc<Semaphore>,
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
            mount_path: self.mount_path.clone(),
            hosts: self.hosts.clone(),
            session_lifetime: self.session_lifetime,
            key: self.key.clone(),
            codes: self.codes.clone(),
            masked_turns: self.masked_turns.clone(),
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
            .field("mount_path", &self.mount_path)
            .field("hosts", &self.hosts)
            .field("session_lifetime", &self.session_lifetime)
            .finish_non_exhaustive()
    }
}

impl<St> Console<St> {
    /// A console for `store` that lets nobody in until one access decision is made.
    pub fn new(store: St) -> Self {
        Console {
            store,
            access: Access::Undecided,
            read_only: false,
            secure_cookies: false,
            mount_path: None,
            hosts: None,
            session_lifetime: session::DEFAULT_LIFETIME,
            key: SessionKey::random(),
            codes: SignInCodes::default(),
            masked_turns: Arc::new(Semaphore::new(scan::MASKED_STEPS_AT_ONCE)),
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Lets in requests with `Authorization: Bearer TOKEN`, and browsers that signed in with
    /// the token through the sign-in form (or a [one-time code](Console::sign_in_code)).
    ///
    /// # Panics
    /// When `token` is shorter than 16 bytes: a short token is no protection, and an empty
    /// one would let everyone in.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        assert!(
            token.len() >= MIN_TOKEN_LEN,
            "Console::bearer_token: the token must be at least {MIN_TOKEN_LEN} bytes long (this one has {})",
            token.len()
        );
        self.key = Some(SessionKey::from_token(&token));
        self.access = Access::Bearer(Arc::from(token));
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

    /// Lets everyone in, from a loopback host only (unless [`Console::allowed_hosts`] lists
    /// others): for a console bound to loopback, as `periskope-webhook inbox console` binds it,
    /// never on an address others can reach: it shows customer messages.
    pub fn insecure_allow_all(mut self) -> Self {
        self.access = Access::AllowAll;
        self
    }

    /// The hosts the console answers for (`name`, or `name:port` for that port only), beside
    /// loopback names and addresses; any other host gets `403`. Without it, a console under
    /// [`Console::insecure_allow_all`] answers loopback hosts only, and one behind a token or
    /// the app's sessions answers any host. An empty list means loopback only.
    ///
    /// # Panics
    /// When a host is empty or is not a host name (a URL, a path).
    pub fn allowed_hosts<I, H>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = H>,
        H: AsRef<str>,
    {
        self.hosts = Some(Hosts::listed(hosts));
        self
    }

    /// Where the console is mounted, such as `/console` (the prefix given to axum's
    /// `nest_service`), or `/` at the root: its links, redirects and cookie are built from it.
    ///
    /// # Panics
    /// When `path` does not start with `/` or holds characters no plain path has (`?`, `#`,
    /// `;`, spaces, percent escapes).
    pub fn mount_path(mut self, path: &str) -> Self {
        let plain = path.starts_with('/')
            && path.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte));
        assert!(plain, "Console::mount_path: {path:?} is not a plain absolute path such as \"/console\"");
        self.mount_path = Some(Arc::from(path.trim_end_matches('/')));
        self
    }

    /// How long a browser stays signed in, and its CSRF session lasts. Default: 12 hours.
    ///
    /// # Panics
    /// When it is shorter than a minute.
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        assert!(lifetime >= Duration::from_secs(60), "Console::session_lifetime: at least a minute");
        self.session_lifetime = lifetime;
        self
    }

    /// Hides the actions and refuses them (and showing ids) with `403`. Default: off.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Marks the session cookie `Secure` and names it `__Secure-…`, for a console served over
    /// HTTPS. The console does not guess it from `X-Forwarded-Proto`. Default: off.
    pub fn secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// A code that signs one browser in, once, within `valid_for`: open `PREFIX/?code=CODE`.
    /// The console reloads the page without it, and a spent code opens nothing, so a browser's
    /// history keeps a worthless one. Shared by the console's clones, not by other processes.
    /// `None` unless the console has a [bearer token](Console::bearer_token) (or when the
    /// system gives no randomness).
    pub fn sign_in_code(&self, valid_for: Duration) -> Option<String> {
        if !self.access.signs_in() {
            return None;
        }
        self.codes.issue(SystemTime::now(), valid_for)
    }

    fn hosts(&self) -> Hosts {
        match (&self.hosts, &self.access) {
            (Some(hosts), _) => hosts.clone(),
            (None, Access::AllowAll) => Hosts::loopback(),
            (None, _) => Hosts::Any,
        }
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

    /// The notice that confirms this action changed `count` jobs.
    fn notice(self, count: u64) -> Notice {
        let done = match self {
            Action::Retry => Done::Retried,
            Action::Replay => Done::Replayed,
            Action::Purge => Done::Purged,
        };
        Notice { done, count }
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
    SignIn,
    SignOut,
    NotFound,
}

impl Route {
    fn of(path: &str) -> Route {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            [""] => Route::Overview,
            ["assets", "console.css"] => Route::Stylesheet,
            ["sign-in"] => Route::SignIn,
            ["sign-out"] => Route::SignOut,
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

    /// The parameters its query may hold.
    fn accepts(&self) -> Accepts {
        match self {
            Route::Jobs => Accepts::FilterPageAndNotice,
            Route::Job(_) => Accepts::IdsAndNotice,
            Route::Bulk(_) => Accepts::Filter,
            _ => Accepts::Ids,
        }
    }

    /// Whether a sign-in may return to it: a page, not an action.
    fn is_page(&self) -> bool {
        matches!(self, Route::Overview | Route::Jobs | Route::Job(_))
    }
}

/// The console's root relative to `path` (below the prefix): `""`, `"../"`, ...
fn root_of(path: &str) -> String {
    "../".repeat(path.trim_start_matches('/').matches('/').count())
}

/// A failure answered with a page: its status, a short machine-readable code, and a title
/// that names what was wrong (never a value from the request).
struct Refusal {
    status: StatusCode,
    code: &'static str,
    title: Cow<'static, str>,
}

const fn refusal(status: StatusCode, code: &'static str, title: &'static str) -> Refusal {
    Refusal { status, code, title: Cow::Borrowed(title) }
}

static UNAUTHORIZED: Refusal = refusal(StatusCode::UNAUTHORIZED, "unauthorized", "Sign-in needed");
static WRONG_TOKEN: Refusal =
    refusal(StatusCode::UNAUTHORIZED, "unauthorized", "That is not the console's token");
static SPENT_CODE: Refusal = refusal(
    StatusCode::UNAUTHORIZED,
    "sign_in_code_spent",
    "This sign-in link was used already or has expired: sign in with the token",
);
static HOST_NOT_ALLOWED: Refusal = refusal(
    StatusCode::FORBIDDEN,
    "host_not_allowed",
    "This console does not answer for this host name (see Console::allowed_hosts)",
);
static READ_ONLY: Refusal = refusal(StatusCode::FORBIDDEN, "read_only", "This console is read-only");
static IDS_MASKED: Refusal = refusal(
    StatusCode::FORBIDDEN,
    "ids_masked",
    "Filtering by chat needs the ids shown: a chat id is a phone number",
);
static CSRF: Refusal = refusal(
    StatusCode::FORBIDDEN,
    "csrf",
    "This form has expired or came from another site: reload the page and try again",
);
static NOT_FOUND: Refusal = refusal(StatusCode::NOT_FOUND, "not_found", "Not found");
static METHOD: Refusal = refusal(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed");
static BAD_FORM: Refusal = refusal(StatusCode::BAD_REQUEST, "bad_form", "Unreadable form");
static NO_RANDOMNESS: Refusal = refusal(
    StatusCode::SERVICE_UNAVAILABLE,
    "no_randomness",
    "The system gave no randomness to open a session with",
);
static STORE: Refusal =
    refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "The inbox store did not answer");

fn bad_query(bad: &BadParameter) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "bad_query",
        title: Cow::Owned(format!("The parameter “{}” can't be read: {}", bad.name, bad.why)),
    }
}

/// A browser's session with the console, as its request carries it.
struct Session {
    /// The cookie's name for this console.
    cookie: String,
    /// Its live value, if the request carries one.
    value: Option<String>,
}

impl<St> Console<St>
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    /// Where links start: the mount path, or relative to `path` when it is not known.
    fn base(&self, path: &str) -> String {
        match &self.mount_path {
            Some(mount) => format!("{mount}/"),
            None => root_of(path),
        }
    }

    /// The cookie's `Path`: the mount path, `/` at the root or when it was not said.
    fn cookie_path(&self) -> &str {
        self.mount_path.as_deref().filter(|path| !path.is_empty()).unwrap_or("/")
    }

    fn session(&self, parts: &Parts, now: SystemTime) -> Option<Session> {
        let key = self.key.as_ref()?;
        let cookie = key.cookie_name(self.cookie_path(), self.secure_cookies);
        let value = access::cookie(&parts.headers, &cookie)
            .filter(|value| key.holds(value, now, self.session_lifetime))
            .map(str::to_owned);
        Some(Session { cookie, value })
    }

    fn set_cookie(&self, response: &mut Answer, session: &Session, value: &str) {
        let cookie = session::set_cookie(
            &session.cookie,
            value,
            self.cookie_path(),
            self.session_lifetime,
            self.secure_cookies,
        );
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }

    /// A new session for the browser: its cookie set on `response`. `None` when the system
    /// gives no randomness.
    fn open_session(&self, response: &mut Answer, session: &Session, now: SystemTime) -> Option<()> {
        let value = self.key.as_ref()?.issue(now)?;
        self.set_cookie(response, session, &value);
        Some(())
    }

    async fn respond<B>(&self, request: Request<B>) -> Answer
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let now = SystemTime::now();
        let path = parts.uri.path().to_owned();
        let base = self.base(&path);
        let route = Route::of(&path);
        let bare = Frame::bare(&base);
        let hosts = self.hosts();
        if !hosts.allow(&parts) {
            return secured(refused(&bare, &HOST_NOT_ALLOWED));
        }
        if route == Route::Stylesheet {
            return secured(stylesheet());
        }
        let session = self.session(&parts, now);
        let pairs = form::parse(parts.uri.query().unwrap_or(""));

        if let (Route::Overview, [(name, code)]) = (&route, pairs.as_slice())
            && name == "code"
            && self.access.signs_in()
        {
            return secured(self.spend_code(code, &bare, session.as_ref(), now));
        }
        if route == Route::SignIn {
            return secured(match parts.method {
                _ if !self.access.signs_in() => refused(&bare, &NOT_FOUND),
                Method::GET | Method::HEAD => sign_in_page(&bare, StatusCode::OK, None, "/"),
                Method::POST => self.sign_in(&parts, body, &hosts, &bare, session.as_ref(), now).await,
                _ => refused(&bare, &METHOD),
            });
        }

        let signed_in =
            self.access.signs_in() && session.as_ref().is_some_and(|session| session.value.is_some());
        let Some(proof) = self.access.check(&parts, signed_in) else {
            if matches!(self.access, Access::Undecided) && !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the inbox console has no access decision (bearer_token, authorize or insecure_allow_all): \
                     every request is refused"
                );
            }
            if self.access.signs_in() {
                let next = if route.is_page() { path.as_str() } else { "/" };
                return secured(sign_in_page(&bare, StatusCode::UNAUTHORIZED, Some(&UNAUTHORIZED), next));
            }
            return secured(refused(&bare, &UNAUTHORIZED));
        };
        let query = match Query::read(&pairs, route.accepts()) {
            Ok(query) => query,
            Err(bad) => return secured(refused(&bare, &bad_query(&bad))),
        };
        if query.show_ids && self.read_only {
            return secured(refused(&bare, &READ_ONLY));
        }
        if query.filter.chat.is_some() && !query.show_ids {
            return secured(refused(&bare, &IDS_MASKED));
        }

        // A browser's forms need a session to tie their CSRF token to: one that signed in has
        // it; under the app's sessions or on loopback, one is opened here.
        let (csrf_session, opened) = match (&session, proof) {
            (Some(Session { value: Some(value), .. }), Proof::Ambient) => (Some(value.clone()), false),
            (Some(_), Proof::Ambient) => (self.key.as_ref().and_then(|key| key.issue(now)), true),
            _ => (None, false),
        };
        let csrf =
            csrf_session.as_deref().zip(self.key.as_ref()).map(|(session, key)| key.csrf_token(session));
        let frame = Frame {
            base: &base,
            // A script's header needs no CSRF token: its page shows the actions all the same.
            csrf: if proof == Proof::Header { Some("") } else { csrf.as_deref() },
            actions: !self.read_only,
            show_ids: query.show_ids,
            may_show_ids: !self.read_only,
            sign_out: signed_in && proof == Proof::Ambient,
            notice: query.notice,
        };

        let reading = parts.method == Method::GET || parts.method == Method::HEAD;
        let acting = matches!(route, Route::JobAction(..) | Route::Bulk(_) | Route::SignOut);
        let response = match (&route, reading) {
            (Route::NotFound, _) => refused(&frame, &NOT_FOUND),
            (Route::SignOut, _) if !self.access.signs_in() => refused(&frame, &NOT_FOUND),
            (Route::JobAction(..) | Route::Bulk(_), _) if self.read_only => refused(&frame, &READ_ONLY),
            (_, false) if acting && parts.method == Method::POST => {
                let live = csrf_session.as_deref().filter(|_| !opened);
                match self.authorize_action(proof, &parts, body, &hosts, live).await {
                    Err(refusal) => refused(&frame, refusal),
                    Ok(()) if route == Route::SignOut => {
                        let mut response = redirect(&frame.href("sign-in"));
                        if let Some(session) = &session {
                            self.set_cookie(&mut response, session, "");
                        }
                        return secured(response);
                    }
                    Ok(()) => self
                        .act(&route, &frame, &query)
                        .await
                        .unwrap_or_else(|error| store_failed(&frame, &error)),
                }
            }
            (Route::JobAction(..) | Route::SignOut, _) | (_, false) => refused(&frame, &METHOD),
            (_, true) => {
                self.page(&route, &frame, &query).await.unwrap_or_else(|error| store_failed(&frame, &error))
            }
        };
        let mut response = secured(response);
        if let (true, Some(session), Some(value)) = (opened, &session, &csrf_session) {
            self.set_cookie(&mut response, session, value);
        }
        response
    }

    /// `?code=CODE`: a one-time code opens a session, and the page reloads without it.
    fn spend_code(
        &self,
        code: &str,
        frame: &Frame<'_>,
        session: Option<&Session>,
        now: SystemTime,
    ) -> Answer {
        let Some(session) = session.filter(|_| self.codes.spend(code, now)) else {
            return sign_in_page(frame, StatusCode::UNAUTHORIZED, Some(&SPENT_CODE), "/");
        };
        let mut response = redirect(&frame.href(""));
        match self.open_session(&mut response, session, now) {
            Some(_) => response,
            None => refused(frame, &NO_RANDOMNESS),
        }
    }

    /// The sign-in form's POST: the token opens a session, and the browser returns to the page
    /// it came from.
    async fn sign_in<B>(
        &self,
        parts: &Parts,
        body: B,
        hosts: &Hosts,
        frame: &Frame<'_>,
        session: Option<&Session>,
        now: SystemTime,
    ) -> Answer
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if !hosts.same_origin(parts) {
            return refused(frame, &CSRF);
        }
        let Ok(fields) = read_form(body).await else { return refused(frame, &BAD_FORM) };
        let field = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let next =
            field("next").filter(|next| is_plain_path(next) && Route::of(next).is_page()).unwrap_or("/");
        if !self.access.accepts_token(field("token").unwrap_or("")) {
            return sign_in_page(frame, StatusCode::UNAUTHORIZED, Some(&WRONG_TOKEN), next);
        }
        let mut response = redirect(&frame.href(next.trim_start_matches('/')));
        match session.and_then(|session| self.open_session(&mut response, session, now)) {
            Some(_) => response,
            None => refused(frame, &NO_RANDOMNESS),
        }
    }

    /// Whether a POST may act: a script's header is enough; a browser's request needs its
    /// session's CSRF token and the console's origin.
    async fn authorize_action<B>(
        &self,
        proof: Proof,
        parts: &Parts,
        body: B,
        hosts: &Hosts,
        session: Option<&str>,
    ) -> Result<(), &'static Refusal>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if proof == Proof::Header {
            return Ok(());
        }
        let fields = read_form(body).await.map_err(|()| &BAD_FORM)?;
        let token = fields.iter().find(|(name, _)| name == "csrf").map(|(_, value)| value.as_str());
        let (Some(key), Some(session), Some(token)) = (&self.key, session, token) else { return Err(&CSRF) };
        if access::same_secret(token, &key.csrf_token(session)) && hosts.same_origin(parts) {
            Ok(())
        } else {
            Err(&CSRF)
        }
    }

    async fn page(&self, route: &Route, frame: &Frame<'_>, query: &Query) -> Result<Answer, InboxError> {
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
                let selected = Selected::new(&query.filter, query.show_ids, &self.masked_turns);
                let jobs = selected.page(&self.store, query.after, PAGE_SIZE).await?;
                let next = (jobs.len() == PAGE_SIZE).then(|| jobs.last().map(|job| job.id)).flatten();
                page(StatusCode::OK, pages::jobs(frame, &query.filter, &jobs, next))
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
                let matching = Selected::new(&query.filter, query.show_ids, &self.masked_turns)
                    .count(&self.store)
                    .await?;
                page(StatusCode::OK, pages::confirm(frame, action.verb(), matching, &query.filter))
            }
            _ => refused(frame, &NOT_FOUND),
        })
    }

    async fn act(&self, route: &Route, frame: &Frame<'_>, query: &Query) -> Result<Answer, InboxError> {
        let now = SystemTime::now();
        Ok(match *route {
            Route::JobAction(id, action) => {
                let changed = match action {
                    Action::Retry => self.store.retry(Selection::Job(id), now).await?,
                    Action::Replay => u64::from(self.store.replay(id, now).await?),
                    Action::Purge => self.store.purge(Selection::Job(id)).await?,
                };
                tracing::info!(action = action.name(), job = id, changed, "inbox console action");
                let notice = pages::with_ids(&action.notice(changed).query(), frame.show_ids);
                if action == Action::Purge {
                    redirect(&frame.href(&format!("jobs?{notice}")))
                } else {
                    redirect(&frame.href(&format!("jobs/{id}?{notice}")))
                }
            }
            Route::Bulk(action) => {
                let selected = Selected::new(&query.filter, query.show_ids, &self.masked_turns);
                let changed = match action {
                    Action::Retry => {
                        selected
                            .in_batches(&self.store, |batch| self.store.retry_matching(batch, now))
                            .await?
                    }
                    _ => selected.in_batches(&self.store, |batch| self.store.purge_matching(batch)).await?,
                };
                tracing::info!(action = action.name(), jobs = changed, "inbox console bulk action");
                let filter = query.filter.query();
                let notice = action.notice(changed).query();
                let joined = if filter.is_empty() { notice } else { format!("{filter}&{notice}") };
                redirect(&frame.href(&format!("jobs?{}", pages::with_ids(&joined, frame.show_ids))))
            }
            _ => return Err(InboxError::Storage("not an action".to_owned())),
        })
    }
}

/// A POSTed form's fields, read up to [`FORM_LIMIT`].
async fn read_form<B>(body: B) -> Result<Vec<(String, String)>, ()>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let form = Limited::new(body, FORM_LIMIT).collect().await.map_err(|_| ())?.to_bytes();
    Ok(form::parse(std::str::from_utf8(&form).map_err(|_| ())?))
}

/// A path below the prefix that a sign-in may return to: no scheme, host or query, so that it
/// cannot lead off the console.
fn is_plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && path.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"/-._".contains(&byte))
}

fn page(status: StatusCode, markup: Markup) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(markup.into_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

fn refused(frame: &Frame<'_>, refusal: &Refusal) -> Answer {
    page(refusal.status, pages::problem(frame, &refusal.title, refusal.code))
}

fn sign_in_page(frame: &Frame<'_>, status: StatusCode, refusal: Option<&Refusal>, next: &str) -> Answer {
    page(status, pages::sign_in(frame, refusal.map(|refusal| (refusal.title.as_ref(), refusal.code)), next))
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

/// A `303 See Other` to `location`.
fn redirect(location: &str) -> Answer {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
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
        assert_eq!(Route::of("/sign-in"), Route::SignIn);
        assert_eq!(Route::of("/sign-out"), Route::SignOut);
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
    fn a_sign_in_returns_only_to_a_plain_path() {
        for path in ["/", "/jobs", "/jobs/42"] {
            assert!(is_plain_path(path), "{path}");
        }
        for path in ["//evil.example", "https://evil.example", "jobs", "/jobs?x=1", "/a\\b", ""] {
            assert!(!is_plain_path(path), "{path}");
        }
    }
}
