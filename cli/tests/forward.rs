//! `forward`, run as the built binary between a socket.io server that plays Periskope's
//! real-time API (`node/periskope-socket.js`, on the npm `socket.io` package, which the tests
//! install with `npm ci` when it is missing) and the axum example or `listen`: every fixture
//! object forwarded, answered 2xx and decoded; an unknown name forwarded; a refused key exiting
//! 2; a restarted server reconnected to. Without Node or npm they are skipped with a note.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::process::{Running, WAIT, example_binary};
use common::*;
use serde_json::Value;

const SIGNING_KEY: &str = "peri_cli-forward-test-0000-4000-8000-000000000000";
const API_KEY: &str = "periskope-api-key-forward-test-7a21";
const PHONE: &str = "919876543210";

/// The socket.io server on `port` (0: a free one), letting in API_KEY with `phones`, emitting
/// `files`' objects then one unknown event to each connection; `None` (the test skips) without
/// Node or npm.
fn periskope(port: u16, phones: &str, files: &[PathBuf]) -> Option<Running> {
    periskope_then(port, phones, files, &[])
}

/// [`periskope`], emitting `files_after`' objects after the unknown event.
fn periskope_then(port: u16, phones: &str, files: &[PathBuf], files_after: &[PathBuf]) -> Option<Running> {
    let mut node = node_with_packages()?;
    Some(Running::start(
        "periskope-socket.js",
        node.arg(node_dir().join("periskope-socket.js"))
            .arg(port.to_string())
            .args(files)
            .arg("--then")
            .args(files_after)
            .env("PERISKOPE_API_KEY", API_KEY)
            .env("PERISKOPE_PHONE", phones),
    ))
}

fn axum_example() -> Running {
    let binary = example_binary(&workspace_root(), "axum");
    Running::start(
        "axum example",
        Command::new(binary).env("ADDR", "127.0.0.1:0").env("PERISKOPE_SIGNING_KEY", SIGNING_KEY),
    )
}

/// `periskope-webhook --json forward`, its standard output and error read line by line, run in
/// a directory of its own (where it keeps undelivered events); killed when dropped.
struct Forward {
    child: Child,
    lines: Receiver<String>,
    dir: tempfile::TempDir,
}

/// `forward --to TO` from `server` with `api_key`, without PERISKOPE_PHONE.
fn forward(server: &Running, to: &str, api_key: &str) -> Command {
    let mut command = cli();
    command
        .args(["--json", "forward", "--to", to, "--api-url"])
        .arg(format!("http://{}", server.addr))
        .env("PERISKOPE_SIGNING_KEY", SIGNING_KEY)
        .env("PERISKOPE_API_KEY", api_key)
        .env_remove("PERISKOPE_PHONE");
    command
}

impl Forward {
    fn start(server: &Running, to: &str, args: &[&str], api_key: &str) -> Self {
        Forward::spawn(forward(server, to, api_key).args(args))
    }

    fn spawn(command: &mut Command) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = command
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the periskope-webhook binary starts");
        let (sender, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Forward { child, lines, dir }
    }

    /// The next line (standard output or error), waiting at most WAIT.
    fn next_text(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("forward printed a line in time")
    }

    /// The next JSON line (standard output or error), waiting at most WAIT.
    fn next(&self) -> Value {
        let line = self.next_text();
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("{line:?}: {error}"))
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    fn interrupt(&self) {
        self.signal("-INT");
    }

    /// Sends the signal `kill` names so (`-INT`, `-TERM`).
    fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(name).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill {name}");
    }

    /// Every line printed until the command ended, and how it ended (within WAIT).
    fn end(&mut self) -> (ExitStatus, Vec<String>) {
        let status = self.exit_within(WAIT);
        // The readers end at the pipes' end, which the exit brings.
        let mut lines = Vec::new();
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return (status, lines),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("forward's output still open after it exited"),
            }
        }
    }

    /// The next line of type `kind`, passing over the others.
    fn next_of(&self, kind: &str) -> Value {
        let deadline = Instant::now() + WAIT * 3;
        while Instant::now() < deadline {
            let line = self.next();
            if line["type"] == kind {
                return line;
            }
        }
        panic!("no {kind} line");
    }

    /// Waits at most `limit` for the command to end.
    fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "forward still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn event_name(file: &Path) -> String {
    let json: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    json.get("event").or_else(|| json.get("event_type")).and_then(Value::as_str).unwrap().to_owned()
}

#[test]
fn every_fixture_object_reaches_the_axum_example_typed_and_the_unknown_name_too() {
    let fixtures = delivery_fixtures();
    let Some(server) = periskope(0, PHONE, &fixtures) else { return };
    let example = axum_example();
    let forward = Forward::start(&server, &url(&example), &["--phone", PHONE], API_KEY);
    assert_eq!(forward.next_of("connected")["phone"], "*", "the phone's digits are masked");

    let mut names: Vec<String> = fixtures.iter().map(|file| event_name(file)).collect();
    names.push("contact.merged".to_owned());
    for name in &names {
        let line = forward.next_of("forwarded");
        assert_eq!(&line["event"], name, "{line}");
        assert_eq!(line["delivered"], true, "{line}");
        assert!((200..300).contains(&line["status"].as_u64().unwrap()), "{line}");
        assert_eq!(line["attempts"], 1, "{line}");
    }
    for name in &names[..fixtures.len()] {
        let line = example.next_line();
        assert!(
            line.starts_with(&format!("delivery {name} ")) && line.ends_with("-> typed"),
            "{name}: {line}"
        );
    }
    let line = example.next_line();
    assert!(line.starts_with("delivery contact.merged ") && line.contains("unknown event"), "{line}");
}

#[test]
fn the_body_is_the_webhook_envelope_signed_as_send_signs() {
    let fixture = deliveries_dir().join("reaction.created.envelope.json");
    let Some(server) = periskope(0, PHONE, std::slice::from_ref(&fixture)) else { return };
    let capture = tempfile::tempdir().unwrap();
    let listener = listen(SIGNING_KEY, &[std::ffi::OsStr::new("--save"), capture.path().as_os_str()]);
    let kept = tempfile::tempdir().unwrap();
    let forward = Forward::spawn(
        forward(&server, &url(&listener), API_KEY).args(["--phone", PHONE, "--save"]).arg(kept.path()),
    );
    for _ in 0..2 {
        assert_eq!(forward.next_of("forwarded")["status"], 200);
    }
    assert!(listener.next_line().contains(" 200 reaction.created "));
    let saved = std::fs::read_to_string(capture.path().join("000001-reaction.created.json")).unwrap();
    let original: Value = serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
    let body: Value = serde_json::from_str(&saved).unwrap();
    let members: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(saved.starts_with(r#"{"event":"reaction.created","data":{"#), "{saved}");
    assert!(!saved.contains(": ") && !saved.contains('\n'), "compact: {saved}");
    assert_eq!(body["data"], original["data"]);
    assert_eq!(body["org_id"], original["data"]["org_id"]);
    assert!(members.len() == 4 && body.get("previous_attributes").is_none(), "{members:?}");
    let time = body["timestamp"].as_str().unwrap();
    assert!(time.len() == 29 && time.ends_with("+00:00"), "{time}");

    // --save kept exactly what was sent, with its headers, as `listen --save` does.
    let sent = std::fs::read_to_string(kept.path().join("000001-reaction.created.json")).unwrap();
    assert_eq!(sent, saved);
    let headers: Value = serde_json::from_slice(
        &std::fs::read(kept.path().join("000001-reaction.created.headers.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(headers["path"], "/webhooks/periskope");
    assert_eq!(headers["headers"]["content-type"], "application/json");
    assert!(kept.path().join("000002-contact.merged.json").is_file());
}

#[test]
fn a_non_2xx_answer_is_retried_then_reported_and_forwarding_goes_on() {
    let Some(server) = periskope(0, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    let listener = listen(SIGNING_KEY, &[std::ffi::OsStr::new("--status"), std::ffi::OsStr::new("503")]);
    let forward = Forward::start(&server, &url(&listener), &["--phone", PHONE, "--retries", "1"], API_KEY);
    for name in ["note.created", "contact.merged"] {
        let retry = forward.next_of("retry");
        assert_eq!((retry["event"].as_str(), retry["status"].as_u64()), (Some(name), Some(503)), "{retry}");
        assert_eq!(retry["reason"], "Service Unavailable", "{retry}");
        let line = forward.next_of("forwarded");
        assert_eq!(line["event"], name, "{line}");
        assert_eq!(
            (line["status"].as_u64(), line["delivered"].as_bool()),
            (Some(503), Some(false)),
            "{line}"
        );
        assert_eq!(line["attempts"], 2, "{line}");
        for _ in 0..2 {
            let received = listener.next_line();
            assert!(received.contains(&format!(" 503 {name} ")), "{received}");
        }
    }
}

#[test]
fn a_server_unreachable_at_start_is_retried_until_it_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listener = listen(SIGNING_KEY, &[]);
    let forward = Forward::spawn(
        cli()
            .args(["--json", "forward", "--to", &url(&listener), "--phone", PHONE, "--api-url"])
            .arg(format!("http://127.0.0.1:{port}"))
            .env("PERISKOPE_SIGNING_KEY", SIGNING_KEY)
            .env("PERISKOPE_API_KEY", API_KEY),
    );
    let line = forward.next_of("disconnected");
    assert!(line["reason"].as_str().unwrap().starts_with("cannot connect"), "{line}");
    assert_eq!(line["retry_in_seconds"], 1);

    let Some(_server) = periskope(port, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    forward.next_of("connected");
    assert_eq!(forward.next_of("forwarded")["event"], "note.created");
    assert!(listener.next_line().contains(" 200 note.created "));
}

#[test]
fn a_refused_api_key_exits_2_within_10_s_with_one_line_naming_no_key() {
    let Some(server) = periskope(0, PHONE, &[]) else { return };
    let wrong = "periskope-the-wrong-api-key-0000";
    let mut forward = Forward::start(&server, "http://127.0.0.1:9/x", &["--phone", PHONE], wrong);
    let status = forward.exit_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    let lines: Vec<String> = forward.lines.try_iter().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let error: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(error["type"], "error");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("refused the connection"), "{message}");
    for secret in [wrong, API_KEY, SIGNING_KEY, PHONE] {
        assert!(!message.contains(secret), "{message}");
    }
    assert_eq!(server.next_line(), "refused");

    // A phone the server does not know is refused the same way.
    let mut forward = Forward::start(&server, "http://127.0.0.1:9/x", &["--phone", "910000000000"], API_KEY);
    assert_eq!(forward.exit_within(Duration::from_secs(10)).code(), Some(2));
}

#[test]
fn after_the_server_restarts_forward_reconnects_and_forwards_the_new_events() {
    let Some(server) = periskope(0, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    let port = server.addr.port();
    let example = axum_example();
    let forward = Forward::start(&server, &url(&example), &["--phone", PHONE], API_KEY);
    forward.next_of("connected");
    assert_eq!(forward.next_of("forwarded")["event"], "note.created");
    assert!(example.next_line().starts_with("delivery note.created "));
    assert_eq!(forward.next_of("forwarded")["event"], "contact.merged");
    assert!(example.next_line().starts_with("delivery contact.merged "));

    server.stop();
    let lost = forward.next_of("disconnected");
    assert!(lost["reason"].as_str().unwrap().starts_with("connection to http://127.0.0.1:"), "{lost}");
    assert!(lost["reason"].as_str().unwrap().contains(" lost: "), "{lost}");

    // A new message after the restart (new ids: the example would absorb a copy of the old one).
    let dir = tempfile::tempdir().unwrap();
    let mut delivery: Value = serde_json::from_slice(
        &std::fs::read(deliveries_dir().join("message.created.envelope.json")).unwrap(),
    )
    .unwrap();
    delivery["data"]["message_id"] =
        "true_120363297269676566@g.us_3EB0AFTERRESTART0000001_919004389372@c.us".into();
    let file = dir.path().join("after-restart.json");
    std::fs::write(&file, delivery.to_string()).unwrap();
    let Some(_restarted) = periskope(port, PHONE, &[file]) else { return };

    forward.next_of("connected");
    let line = forward.next_of("forwarded");
    assert_eq!(
        (line["event"].as_str(), line["delivered"].as_bool()),
        (Some("message.created"), Some(true)),
        "{line}"
    );
    let line = example.next_line();
    assert!(
        line.starts_with("delivery message.created ") && line.contains("3EB0AFTERRESTART0000001"),
        "{line}"
    );
}

#[test]
fn one_connection_per_phone_and_events_restricts_the_names() {
    let other = "918888888888";
    // Each connection emits note.created, the unknown contact.merged, then reaction.created.
    let Some(server) = periskope_then(
        0,
        &format!("{PHONE},{other}"),
        &[deliveries_dir().join("note.created.envelope.json")],
        &[deliveries_dir().join("reaction.created.envelope.json")],
    ) else {
        return;
    };
    let listener = listen(SIGNING_KEY, &[]);
    // PERISKOPE_PHONE may hold several phones.
    let forward = Forward::spawn(
        forward(&server, &url(&listener), API_KEY)
            .args(["--events", "note.created,reaction.created", "--show-ids"])
            .env("PERISKOPE_PHONE", format!("{PHONE},{other}")),
    );

    // Every line up to each phone's reaction.created: forward handles a connection's events in
    // the order they came, so by then it has handled that phone's contact.merged.
    let mut lines = Vec::new();
    let mut forwarded: HashMap<String, Vec<String>> = HashMap::new();
    while forwarded.values().map(Vec::len).sum::<usize>() < 4 {
        let line = forward.next();
        if line["type"] == "forwarded" {
            let phone = line["phone"].as_str().unwrap().to_owned();
            forwarded.entry(phone).or_default().push(line["event"].as_str().unwrap().to_owned());
        }
        lines.push(line);
    }
    let both = ["note.created", "reaction.created"];
    for phone in [PHONE, other] {
        assert!(forwarded.get(phone).is_some_and(|events| *events == both), "{phone}: {lines:?}");
    }
    assert!(lines.iter().all(|line| !line.to_string().contains("contact.merged")), "{lines:?}");
    for _ in 0..4 {
        let received = listener.next_line();
        assert!(received.contains(" 200 note.created ") || received.contains(" 200 reaction.created "));
    }
}

/// An HTTP endpoint on 127.0.0.1 that reads each request and never answers: a delivery to it
/// stays in flight. Each request's first line is sent on the receiver.
fn silent_endpoint() -> (String, Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhooks/periskope", listener.local_addr().unwrap());
    let (sender, requests) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_ok() && sender.send(line.trim_end().to_owned()).is_err() {
                break;
            }
            held.push(stream);
        }
    });
    (url, requests)
}

/// The files of `dir` whose names end with `suffix`, sorted.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Waits, at most WAIT, until `dir` holds `count` saved bodies.
fn await_saved(dir: &Path, count: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + WAIT;
    loop {
        let bodies: Vec<PathBuf> = files_ending(dir, ".json")
            .into_iter()
            .filter(|path| !path.to_string_lossy().ends_with(".headers.json"))
            .collect();
        if bodies.len() >= count {
            return bodies;
        }
        assert!(Instant::now() < deadline, "{} bodies saved, not {count}", bodies.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one undelivered-events file of `dir`, and its lines.
fn undelivered_file(dir: &Path) -> (PathBuf, Vec<String>) {
    let files = files_ending(dir, ".jsonl");
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    (files[0].clone(), text.lines().map(str::to_owned).collect())
}

/// Asserts that `send` resends `file` as it is written: `listen --save` receives each line's
/// bytes exactly, verified with the signing key.
fn send_resends(file: &Path, lines: &[String]) {
    let capture = tempfile::tempdir().unwrap();
    let listener = listen(SIGNING_KEY, &[std::ffi::OsStr::new("--save"), capture.path().as_os_str()]);
    let output =
        run(cli().args(["send", &url(&listener)]).arg(file).env("PERISKOPE_SIGNING_KEY", SIGNING_KEY));
    assert_eq!(output.status.code(), Some(0), "{}{}", stdout(&output), stderr(&output));
    let received = await_saved(capture.path(), lines.len());
    assert_eq!(received.len(), lines.len());
    for (line, saved) in lines.iter().zip(received) {
        assert_eq!(&std::fs::read_to_string(saved).unwrap(), line, "resent byte for byte");
    }
}

#[test]
fn ctrl_c_keeps_the_events_in_flight_and_queued_for_send_and_a_second_one_stops_at_once() {
    let Some(server) = periskope(0, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    let (endpoint, requests) = silent_endpoint();
    let saved = tempfile::tempdir().unwrap();
    let mut forward = Forward::spawn(
        forward(&server, &endpoint, API_KEY)
            .args(["--phone", PHONE, "--timeout", "3600", "--save"])
            .arg(saved.path()),
    );
    // note.created is in flight (the endpoint holds it), contact.merged waits in the queue:
    // --save wrote both when they were received.
    assert!(requests.recv_timeout(WAIT).unwrap().starts_with("POST /webhooks/periskope "));
    let bodies = await_saved(saved.path(), 2);
    let received: Vec<String> = bodies.iter().map(|path| std::fs::read_to_string(path).unwrap()).collect();

    forward.interrupt();
    let stopping = forward.next_of("stopping");
    assert!(stopping["time"].is_string(), "{stopping}");
    // The first Ctrl-C waits for the answer in flight (for up to an hour here); the second does not.
    forward.interrupt();
    let (status, lines) = forward.end();
    assert_eq!(status.code(), Some(130), "{lines:?}");
    let lines: Vec<Value> = lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    let report = lines.iter().find(|line| line["type"] == "undelivered").expect("an undelivered line");
    assert_eq!(report["count"], 2, "{report}");

    // The file is in the --save directory, named in the report with the command that resends it.
    let (file, kept) = undelivered_file(saved.path());
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("periskope-undelivered-"), "{name}");
    assert!(report["file"].as_str().unwrap().ends_with(name), "{report}");
    assert!(report["command"].as_str().unwrap().starts_with(&format!("periskope-webhook send {endpoint} ")));
    assert_eq!(kept, received, "the events in order, each as it was to be sent");
    send_resends(&file, &kept);
}

#[test]
fn ctrl_c_or_sigterm_during_retries_stops_them_and_keeps_the_event_in_the_current_directory() {
    for signal in ["-INT", "-TERM"] {
        stop_during_retries(signal);
    }
}

fn stop_during_retries(signal: &str) {
    let Some(server) = periskope(0, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    let listener = listen(SIGNING_KEY, &[std::ffi::OsStr::new("--status"), std::ffi::OsStr::new("503")]);
    let mut forward =
        Forward::start(&server, &url(&listener), &["--phone", PHONE, "--retries", "100"], API_KEY);
    let retry = forward.next_of("retry");
    assert_eq!((retry["status"].as_u64(), retry["event"].as_str()), (Some(503), Some("note.created")));

    forward.signal(signal);
    let dir = forward.dir.path().to_owned();
    let (status, lines) = forward.end();
    assert_eq!(status.code(), Some(130), "{lines:?}");
    let lines: Vec<Value> = lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    let given_up = lines.iter().find(|line| line["type"] == "forwarded").expect("a forwarded line");
    assert_eq!(
        (given_up["event"].as_str(), given_up["delivered"].as_bool(), given_up["gave_up"].as_str()),
        (Some("note.created"), Some(false), Some("stopped")),
        "{signal}: {given_up}"
    );
    let report = lines.iter().find(|line| line["type"] == "undelivered").expect("an undelivered line");
    let (file, kept) = undelivered_file(&dir);
    assert_eq!(report["count"].as_u64(), Some(kept.len() as u64), "{report}");
    assert!(kept[0].starts_with(r#"{"event":"note.created","data":{"#), "{kept:?}");
    send_resends(&file, &kept);
}

#[test]
fn a_permanent_refusal_is_not_retried_and_the_event_is_kept() {
    let Some(server) = periskope(0, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    // The app checks signatures with another key: 401 signature_mismatch, which no retry changes.
    let listener = listen("peri_another-key-0000", &[]);
    let mut forward = Forward::start(&server, &url(&listener), &["--phone", PHONE], API_KEY);
    // The second event may be forwarded before the first one's `kept` line is printed: the
    // lines are matched by event, not by order.
    let mut forwarded: HashMap<String, Value> = HashMap::new();
    let mut kept: HashMap<String, Value> = HashMap::new();
    while forwarded.len() < 2 || kept.len() < 2 {
        let line = forward.next();
        let event = line["event"].as_str().unwrap_or_default().to_owned();
        match line["type"].as_str() {
            Some("forwarded") => forwarded.insert(event, line),
            Some("kept") => kept.insert(event, line),
            _ => None,
        };
    }
    for name in ["note.created", "contact.merged"] {
        let line = &forwarded[name];
        assert_eq!(
            (line["status"].as_u64(), line["code"].as_str(), line["attempts"].as_u64()),
            (Some(401), Some("signature_mismatch"), Some(1)),
            "{line}"
        );
        assert_eq!(line["delivered"], false, "{line}");
        assert_eq!(line["gave_up"], "refused for good: not retried", "{line}");
        assert!(kept.contains_key(name), "{name} was not kept: {kept:?}");
    }
    forward.interrupt();
    let dir = forward.dir.path().to_owned();
    let (status, lines) = forward.end();
    assert_eq!(status.code(), Some(130), "events were left: {lines:?}");
    assert!(lines.iter().all(|line| !line.contains(r#""type":"retry""#)), "{lines:?}");
    let (file, kept) = undelivered_file(&dir);
    assert_eq!(kept.len(), 2);
    // With the right key, `send` delivers them.
    send_resends(&file, &kept);
}

#[test]
fn a_refusal_note_in_text_names_the_status_the_code_the_reason_and_the_key_hint() {
    let Some(server) = periskope(0, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    let listener = listen("peri_another-key-0000", &[]);
    let to = url(&listener);
    let mut command = cli();
    command
        .args(["forward", "--to", &to, "--phone", PHONE, "--api-url"])
        .arg(format!("http://{}", server.addr))
        .env("PERISKOPE_SIGNING_KEY", SIGNING_KEY)
        .env("PERISKOPE_API_KEY", API_KEY)
        .env_remove("PERISKOPE_PHONE");
    let forward = Forward::spawn(&mut command);
    let connected = forward.next_text();
    // HH:MM:SS, then where the events come from and go, and how to stop.
    assert!(connected.as_bytes()[2] == b':' && connected.as_bytes()[5] == b':', "{connected}");
    assert!(
        connected.ends_with(&format!(
            " connected to http://{} as phone *: forwarding its events to {to}; Ctrl-C stops",
            server.addr
        )),
        "{connected}"
    );
    let line = forward.next_text();
    assert!(line.as_bytes()[2] == b':' && line.contains(&format!(" 401   note.created -> {to} ")), "{line}");
    assert!(
        line.contains(
            "NOT DELIVERED, refused for good: not retried: 401 Unauthorized (code: signature_mismatch); \
             the app checks signatures with another signing key than this one"
        ),
        "{line}"
    );
    assert!(!line.contains(PHONE) && !line.contains(SIGNING_KEY), "{line}");
}

#[test]
fn unknown_event_names_are_refused_with_the_nearest_and_a_star_forwards_everything() {
    let output = run(cli().args([
        "forward",
        "--to",
        "http://127.0.0.1:9/x",
        "--phone",
        PHONE,
        "--events",
        "note.created,message.craeted",
    ]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let error = stderr(&output);
    assert!(
        error.contains("`message.craeted` is not an event name")
            && error.contains("did you mean `message.created`?"),
        "{error}"
    );

    let Some(server) = periskope(0, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    let listener = listen(SIGNING_KEY, &[]);
    let forward = Forward::start(&server, &url(&listener), &["--phone", PHONE, "--events", "*"], API_KEY);
    for name in ["note.created", "contact.merged"] {
        let line = forward.next_of("forwarded");
        assert_eq!((line["event"].as_str(), line["delivered"].as_bool()), (Some(name), Some(true)), "{line}");
    }
}

#[test]
fn an_api_url_that_is_not_a_socket_io_server_exits_2_at_once() {
    // An HTTP server that answers every request 405, as a web app would a GET it does not serve.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let _ = BufReader::new(stream.try_clone().unwrap()).read_line(&mut line);
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let mut forward = Forward::spawn(
        cli()
            .args([
                "--json",
                "forward",
                "--to",
                "http://127.0.0.1:9/x",
                "--phone",
                PHONE,
                "--api-url",
                &origin,
            ])
            .env("PERISKOPE_SIGNING_KEY", SIGNING_KEY)
            .env("PERISKOPE_API_KEY", API_KEY),
    );
    assert_eq!(forward.exit_within(WAIT).code(), Some(2));
    let error = forward.next_of("error");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{origin} is not Periskope's real-time API"))
            && message.contains("405 Method Not Allowed")
            && message.contains("--api-url"),
        "{message}"
    );
}

#[test]
fn every_kind_is_forwarded_with_the_org_id_it_carries() {
    let fixtures = delivery_fixtures();
    let Some(server) = periskope(0, PHONE, &fixtures) else { return };
    let capture = tempfile::tempdir().unwrap();
    let listener = listen(SIGNING_KEY, &[std::ffi::OsStr::new("--save"), capture.path().as_os_str()]);
    let _forward = Forward::start(&server, &url(&listener), &["--phone", PHONE], API_KEY);
    let saved = await_saved(capture.path(), fixtures.len() + 1);
    let mut kinds = std::collections::BTreeSet::new();
    for (fixture, saved) in fixtures.iter().zip(&saved) {
        let original: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
        let body: Value = serde_json::from_slice(&std::fs::read(saved).unwrap()).unwrap();
        let data = &original["data"];
        // Where the payload carries it: its own, or a ticket event's ticket (and chat).
        let carried = data.get("org_id").or_else(|| data["ticket"].get("org_id"));
        assert_eq!(body.get("org_id"), carried, "{}", fixture.display());
        if carried.is_some() {
            kinds.insert(body["event"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(kinds.len(), 20, "every kind carries an org_id, and keeps it: {kinds:?}");
}

#[test]
fn messages_name_one_of_several_phones_by_position_and_help_hides_the_phones() {
    // Not the help's own example, 919876543210.
    let other = "918888888888";
    let Some(server) = periskope(0, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    let listener = listen(SIGNING_KEY, &[]);
    let mut command = cli();
    command
        .args(["forward", "--to", &url(&listener), "--api-url"])
        .arg(format!("http://{}", server.addr))
        .env("PERISKOPE_SIGNING_KEY", SIGNING_KEY)
        .env("PERISKOPE_API_KEY", API_KEY)
        .env("PERISKOPE_PHONE", format!("{other},{PHONE}"));
    let forward = Forward::spawn(&mut command);
    // The server lets in PHONE only: the first phone of the list is refused, by its position.
    let mut lines = Vec::new();
    let mut forward = forward;
    let status = forward.exit_within(WAIT);
    while let Ok(line) = forward.lines.recv_timeout(Duration::from_millis(0)) {
        lines.push(line);
    }
    assert_eq!(status.code(), Some(2), "{lines:?}");
    let error = lines.iter().find(|line| line.contains("error:")).expect("an error line");
    assert!(error.contains("refused the connection for phone 1 of 2 (*)"), "{error}");
    assert!(lines.iter().all(|line| !line.contains(PHONE) && !line.contains(other)), "{lines:?}");

    let help = run(cli().args(["forward", "--help"]).env("PERISKOPE_PHONE", format!("{other},917777777777")));
    let text = stdout(&help);
    assert!(
        text.contains("PERISKOPE_PHONE") && !text.contains(other) && !text.contains("917777777777"),
        "{text}"
    );
}

#[test]
fn with_the_app_down_the_notes_say_why_each_cause_once() {
    let Some(server) = periskope(0, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    // A port that was free a moment ago: the connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let to = format!("http://127.0.0.1:{port}/webhooks/periskope");
    let forward = Forward::start(&server, &to, &["--phone", PHONE, "--retries", "1"], API_KEY);
    let retry = forward.next_of("retry");
    assert_eq!(
        (retry["status"].clone(), retry["code"].as_str()),
        (Value::Null, Some("unreachable")),
        "{retry}"
    );
    assert_eq!(retry["to"], to.as_str(), "{retry}");
    let reason = retry["reason"].as_str().unwrap();
    assert_eq!(reason.matches("Connection refused (os error 111)").count(), 1, "{reason}");
    let line = forward.next_of("forwarded");
    assert_eq!((line["delivered"].as_bool(), line["attempts"].as_u64()), (Some(false), Some(2)), "{line}");
    assert_eq!(line["gave_up"], "gave up after 2 attempts", "{line}");
}

#[test]
fn events_that_cannot_be_kept_are_counted_and_the_exit_status_is_2() {
    let Some(_) = node_with_packages() else { return };
    // The server is not up yet: forward waits for it, in a directory removed meanwhile.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listener = listen("peri_another-key-0000", &[]);
    let mut forward = Forward::spawn(
        cli()
            .args(["--json", "forward", "--to", &url(&listener), "--phone", PHONE, "--api-url"])
            .arg(format!("http://127.0.0.1:{port}"))
            .env("PERISKOPE_SIGNING_KEY", SIGNING_KEY)
            .env("PERISKOPE_API_KEY", API_KEY),
    );
    forward.next_of("disconnected");
    std::fs::remove_dir(forward.dir.path()).unwrap();
    let Some(_server) = periskope(port, PHONE, &[deliveries_dir().join("note.created.envelope.json")]) else {
        return;
    };
    // note.created is refused for good (another key), and cannot be kept: forward stops, and
    // counts it with whatever was queued behind it (contact.merged, if it came in time).
    let (status, lines) = forward.end();
    assert_eq!(status.code(), Some(2), "{lines:?}");
    let error: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    let message = error["message"].as_str().unwrap();
    let (count, rest) = message.split_once(' ').unwrap();
    assert!(
        error["type"] == "error"
            && matches!(count, "1" | "2")
            && rest.contains(" not delivered could not be kept in ./periskope-undelivered-")
            && (message.contains(", and is lost: ") || message.contains(", and are lost: ")),
        "{error}"
    );
}
