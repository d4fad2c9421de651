//! `send`, run as the built binary against the axum example and against `listen`: every
//! delivery fixture answered 2xx, tampered copies 401, unexpected answers failing the run, and
//! bodies compacted exactly as `JSON.stringify` writes them.

mod common;

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use common::process::{Running, example_binary};
use common::*;
use serde_json::Value;

const KEY: &str = "peri_cli-send-test-0000-4000-8000-000000000000";

fn axum_example() -> Running {
    let binary = example_binary(&workspace_root(), "axum");
    Running::start(
        "axum example",
        Command::new(binary).env("ADDR", "127.0.0.1:0").env("PERISKOPE_SIGNING_KEY", KEY),
    )
}

fn send(url: &str, key: &str) -> Command {
    let mut command = cli();
    command.args(["--json", "send", url]).env("PERISKOPE_SIGNING_KEY", key);
    command
}

fn answers(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|line| line["type"] == "answer").collect()
}

fn summary(lines: &[Value]) -> &Value {
    lines.iter().find(|line| line["type"] == "summary").expect("a summary line")
}

#[test]
fn send_posts_every_fixture_to_the_axum_example_and_tampered_copies_get_401() {
    let example = axum_example();
    let output = run(send(&url(&example), KEY).arg(deliveries_dir()).arg("--tamper"));
    assert_eq!(output.status.code(), Some(0), "{}\n{}", stdout(&output), stderr(&output));

    let lines = json_lines(&stdout(&output));
    let fixtures = delivery_fixtures();
    let answers = answers(&lines);
    assert_eq!(answers.len(), 2 * fixtures.len());
    for fixture in &fixtures {
        let file = fixture.file_name().and_then(|n| n.to_str()).unwrap();
        let of_file: Vec<_> =
            answers.iter().filter(|a| a["file"].as_str().unwrap().ends_with(&format!("/{file}"))).collect();
        let statuses: Vec<(bool, u64)> = of_file
            .iter()
            .map(|a| (a["tampered"].as_bool().unwrap(), a["status"].as_u64().unwrap()))
            .collect();
        assert_eq!(statuses.len(), 2, "{file}: {statuses:?}");
        assert!(statuses.contains(&(true, 401)), "{file}: {statuses:?}");
        assert!(
            statuses.iter().any(|&(tampered, status)| !tampered && (200..300).contains(&status)),
            "{file}"
        );
    }
    let summary = summary(&lines);
    assert_eq!(summary["unexpected"], 0);
    assert_eq!(summary["requests"], 2 * fixtures.len());

    // Every genuine delivery reached the example's handler, as a typed event; the tampered
    // copies were rejected before it.
    for _ in &fixtures {
        let line = example.next_line();
        let line = if line.starts_with("rejected") { example.next_line() } else { line };
        assert!(line.starts_with("delivery ") || line.starts_with("rejected 401"), "{line}");
    }

    // The directory the README's Quickstart sends holds deliveries only: nothing is skipped.
    let notes = json_lines(&stderr(&output));
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn a_wrong_key_fails_the_run_with_each_status_printed() {
    let example = axum_example();
    let fixture = deliveries_dir().join("note.created.envelope.json");
    let mut command = cli();
    command.args(["send", &url(&example)]).arg(&fixture).env("PERISKOPE_SIGNING_KEY", "peri_not-the-key");
    let output = run(&mut command);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("401") && lines[0].contains("note.created"), "{text}");
    assert!(lines[0].contains("signature_mismatch") && lines[0].contains("UNEXPECTED"), "{text}");
    assert!(lines[1].starts_with("sent 1 request in") && lines[1].ends_with("1 unexpected"), "{text}");
}

#[test]
fn pretty_json_is_sent_as_json_stringify_writes_it() {
    // The published vector's body is JSON.stringify of the pretty reaction fixture.
    let vector = vector();
    let capture = tempfile::tempdir().unwrap();
    let listener = listen(&vector.key, &[OsStr::new("--save"), capture.path().as_os_str()]);
    let output =
        run(send(&url(&listener), &vector.key).arg(deliveries_dir().join("reaction.created.envelope.json")));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let line = listener.next_line();
    assert!(line.contains(" 200 reaction.created 947 B "), "{line}");

    let saved = std::fs::read(capture.path().join("000001-reaction.created.json")).unwrap();
    assert_eq!(String::from_utf8(saved).unwrap(), vector.body);
}

#[test]
fn directories_give_their_deliveries_and_skip_the_rest_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let copy =
        |from: std::path::PathBuf, name: &str| std::fs::copy(from.join(name), dir.path().join(name)).unwrap();
    copy(deliveries_dir(), "message.created.envelope.json");
    copy(deliveries_dir(), "field-observed.message.created.event_type-variant.json");
    copy(fixtures_dir(), "message.created.json");
    std::fs::write(dir.path().join("notes.txt"), "not JSON").unwrap();
    std::fs::write(dir.path().join("broken.json"), "{\"event\":").unwrap();
    std::fs::write(dir.path().join("list.json"), "[1, 2]").unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();

    let listener = listen(KEY, &[]);
    let mut command = cli();
    command.args(["send", &url(&listener)]).arg(dir.path()).env("PERISKOPE_SIGNING_KEY", KEY);
    let output = run(&mut command);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let sent: Vec<String> =
        stdout(&output).lines().filter(|l| l.starts_with("200")).map(str::to_owned).collect();
    assert_eq!(sent.len(), 2, "{}", stdout(&output));
    let notes = stderr(&output);
    for skipped in [
        "broken.json: not JSON",
        "list.json: not a delivery",
        "message.created.json: not a delivery",
        "nested: a directory",
        "notes.txt: not a .json file",
    ] {
        assert!(
            notes.lines().any(|note| note.starts_with("skipped ") && note.contains(skipped)),
            "{skipped}: {notes}"
        );
    }
    assert_eq!(notes.lines().count(), 5, "{notes}");
    let first = listener.next_line();
    let second = listener.next_line();
    assert!(
        first.contains(" 200 message.created ") && second.contains(" 200 message.created "),
        "{first}\n{second}"
    );
}

#[test]
fn repeat_and_concurrency_send_every_copy() {
    let listener = listen(KEY, &[]);
    let files = [
        deliveries_dir().join("ticket.created.envelope.json"),
        deliveries_dir().join("org.phone.qr.envelope.json"),
    ];
    let output = run(send(&url(&listener), KEY).args(&files).args([
        "--repeat",
        "3",
        "--concurrency",
        "4",
        "--rate",
        "50",
        "--tamper",
    ]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines = json_lines(&stdout(&output));
    assert_eq!(summary(&lines)["statuses"], serde_json::json!({ "200": 6, "401": 6 }));
    let mut received = Vec::new();
    for _ in 0..12 {
        received.push(listener.next_line());
    }
    assert_eq!(
        received.iter().filter(|line| line.contains(" 200 ticket.created ")).count(),
        3,
        "{received:?}"
    );
    assert_eq!(received.iter().filter(|line| line.contains(" 200 org.phone.qr ")).count(), 3, "{received:?}");
    assert_eq!(received.iter().filter(|line| line.contains(" 401 rejected signature_mismatch")).count(), 6);
}

#[test]
fn a_refused_connection_is_a_network_setup_error_exit_2() {
    // A port that was free a moment ago: the connection is refused.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/webhooks/periskope");
    let output = run(send(&url, KEY)
        .arg(deliveries_dir().join("note.created.envelope.json"))
        .args(["--timeout", "5"]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let lines = json_lines(&stdout(&output));
    let answer = answers(&lines)[0];
    assert_eq!(answer["status"], Value::Null);
    assert!(answer["error"].as_str().unwrap().to_lowercase().contains("refused"), "{answer}");
    assert_eq!(summary(&lines)["statuses"], serde_json::json!({ "error": 1 }));
    // And one error line that says so, as every setup error.
    assert_one_error_line(&output);
    let error = json_lines(&stderr(&output)).remove(0);
    assert_eq!(error["type"], "error");
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("cannot connect to {url}: ")), "{error}");
    // Each cause once: "Connection refused (os error 111)" is not repeated.
    let refused = "Connection refused (os error 111)";
    assert_eq!(message.matches(refused).count(), 1, "{message}");
}

#[test]
fn a_dash_sends_the_delivery_on_standard_input() {
    let vector = vector();
    let capture = tempfile::tempdir().unwrap();
    let listener = listen(&vector.key, &[OsStr::new("--save"), capture.path().as_os_str()]);
    let pretty = std::fs::read(deliveries_dir().join("reaction.created.envelope.json")).unwrap();
    let output = run_with_stdin(send(&url(&listener), &vector.key).arg("-"), &pretty);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines = json_lines(&stdout(&output));
    assert_eq!(answers(&lines)[0]["file"], "standard input");
    assert!(listener.next_line().contains(" 200 reaction.created 947 B "));
    // Compacted and signed as a file is.
    let saved = std::fs::read(capture.path().join("000001-reaction.created.json")).unwrap();
    assert_eq!(String::from_utf8(saved).unwrap(), vector.body);

    // Not JSON: one line, exit 2, nothing sent.
    let output = run_with_stdin(send(&url(&listener), &vector.key).arg("-"), b"not json");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_one_error_line(&output);
    assert!(stderr(&output).contains("standard input"), "{}", stderr(&output));
}

#[test]
fn usage_errors_exit_2() {
    let fixture = deliveries_dir().join("note.created.envelope.json");
    let missing = Path::new("no/such/file.json");
    let cases: Vec<(Vec<&OsStr>, &str)> = vec![
        (vec![OsStr::new("https://example.com/hook"), fixture.as_os_str()], "https is not supported"),
        (vec![OsStr::new("127.0.0.1:3000"), fixture.as_os_str()], "http:// URL"),
        (vec![OsStr::new("http://127.0.0.1:9/x")], "PATH"),
        (vec![OsStr::new("http://127.0.0.1:9/x"), missing.as_os_str()], "no/such/file.json"),
        (
            vec![
                OsStr::new("http://127.0.0.1:9/x"),
                fixture.as_os_str(),
                OsStr::new("--concurrency"),
                OsStr::new("0"),
            ],
            "concurrency",
        ),
    ];
    for (args, needle) in cases {
        let output = run(cli().arg("send").args(&args).env("PERISKOPE_SIGNING_KEY", KEY));
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(needle), "{args:?}: {}", stderr(&output));
        assert!(!stderr(&output).contains("panicked"));
    }
    let empty = tempfile::tempdir().unwrap();
    let output =
        run(cli().args(["send", "http://127.0.0.1:9/x"]).arg(empty.path()).env("PERISKOPE_SIGNING_KEY", KEY));
    assert_eq!(output.status.code(), Some(2));
    assert_one_error_line(&output);
    assert!(stderr(&output).contains("no deliveries"), "{}", stderr(&output));
}

/// `GET path` on `addr` over plain HTTP/1.1; the body.
fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::process::WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

#[test]
fn the_axum_example_serves_the_counts_of_a_send_on_metrics() {
    let binary = example_binary(&workspace_root(), "axum");
    let example = Running::start(
        "axum example with METRICS=1",
        Command::new(binary).env("ADDR", "127.0.0.1:0").env("PERISKOPE_SIGNING_KEY", KEY).env("METRICS", "1"),
    );
    let output = run(send(&url(&example), KEY).arg(deliveries_dir()).arg("--tamper"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let mut expected = std::collections::BTreeMap::<String, usize>::new();
    for fixture in delivery_fixtures() {
        let json: Value = serde_json::from_slice(&std::fs::read(&fixture).unwrap()).unwrap();
        let kind = json.get("event").or_else(|| json.get("event_type")).and_then(Value::as_str).unwrap();
        *expected
            .entry(format!("periskope_webhook_deliveries_total{{kind=\"{kind}\",outcome=\"handled\"}}"))
            .or_default() += 1;
    }
    expected.insert(
        "periskope_webhook_rejections_total{code=\"signature_mismatch\"}".to_owned(),
        delivery_fixtures().len(),
    );
    expected.insert("periskope_webhook_body_bytes_count".to_owned(), 2 * delivery_fixtures().len());

    let text = get(example.addr, "/metrics");
    for (series, count) in expected {
        assert!(
            text.lines().any(|line| line == format!("{series} {count}")),
            "{series} {count} missing from:\n{text}"
        );
    }
    for histogram in ["periskope_webhook_verify_seconds", "periskope_webhook_decode_seconds"] {
        assert!(text.contains(&format!("# TYPE {histogram} ")), "{histogram} missing from:\n{text}");
    }
}
