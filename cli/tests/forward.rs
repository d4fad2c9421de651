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

/// `periskope-webhook --json forward`, its standard output and error read line by line; killed
/// when dropped.
struct Forward {
    child: Child,
    lines: Receiver<String>,
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
        let mut child = command
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
        Forward { child, lines }
    }

    /// The next JSON line (standard output or error), waiting at most WAIT.
    fn next(&self) -> Value {
        let line = self.lines.recv_timeout(WAIT).expect("forward printed a line in time");
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("{line:?}: {error}"))
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
        assert_eq!((retry["event"].as_str(), retry["answer"].as_str()), (Some(name), Some("503")), "{retry}");
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
    assert!(lost["reason"].as_str().unwrap().starts_with("connection lost"), "{lost}");

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
