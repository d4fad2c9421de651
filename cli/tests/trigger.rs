//! `trigger`, run as the built binary against the axum example (which de-duplicates) and
//! against `listen --save`: every kind answered 2xx and decoded to its typed kind, fresh ids on
//! every delivery, and `--set` changing the field.

mod common;

use std::ffi::OsStr;
use std::process::Command;

use common::process::{Running, example_binary};
use common::*;
use serde_json::Value;

const KEY: &str = "peri_cli-trigger-test-0000-4000-8000-000000000000";

const KINDS: [&str; 20] = [
    "chat.created",
    "chat.notification.created",
    "chat.custom_properties.updated",
    "message.created",
    "message.updated",
    "message.deleted",
    "message.ack.updated",
    "message.flagged",
    "message.unflagged",
    "message.ticket.attached",
    "reaction.created",
    "reaction.updated",
    "ticket.created",
    "ticket.updated",
    "ticket.deleted",
    "note.created",
    "org.phone.connected",
    "org.phone.disconnected",
    "org.phone.updated",
    "org.phone.qr",
];

fn axum_example() -> Running {
    let binary = example_binary(&workspace_root(), "axum");
    Running::start(
        "axum example",
        Command::new(binary).env("ADDR", "127.0.0.1:0").env("PERISKOPE_SIGNING_KEY", KEY),
    )
}

fn trigger(url: &str, event: &str) -> Command {
    let mut command = cli();
    command.args(["--json", "trigger", event, "--to", url]).env("PERISKOPE_SIGNING_KEY", KEY);
    command
}

/// Asserts that the run answered every request 2xx, and returns its answer lines.
fn answered_2xx(output: &std::process::Output) -> Vec<Value> {
    assert_eq!(output.status.code(), Some(0), "{}\n{}", stdout(output), stderr(output));
    let answers: Vec<Value> =
        json_lines(&stdout(output)).into_iter().filter(|line| line["type"] == "answer").collect();
    for answer in &answers {
        let status = answer["status"].as_u64().unwrap();
        assert!((200..300).contains(&status), "{answer}");
    }
    answers
}

/// Asserts that the example's next line is a typed delivery of `kind`.
fn handled_as_typed(example: &Running, kind: &str) {
    let line = example.next_line();
    assert!(line.starts_with(&format!("delivery {kind} ")) && line.ends_with("-> typed"), "{kind}: {line}");
}

#[test]
fn every_kind_reaches_the_axum_example_as_its_typed_event() {
    let example = axum_example();
    for kind in KINDS {
        let answers = answered_2xx(&run(&mut trigger(&url(&example), kind)));
        assert_eq!(answers.len(), 1, "{kind}");
        assert_eq!(answers[0]["event"], kind);
        handled_as_typed(&example, kind);
    }
}

#[test]
fn two_triggers_of_one_kind_are_both_handled_not_deduplicated() {
    // The example de-duplicates: a second delivery with the first one's ids would be answered
    // without reaching the handler, and print nothing.
    let example = axum_example();
    for kind in ["message.created", "ticket.updated", "org.phone.updated", "chat.created"] {
        for _ in 0..2 {
            answered_2xx(&run(&mut trigger(&url(&example), kind)));
            handled_as_typed(&example, kind);
        }
    }
    let answers = answered_2xx(&run(trigger(&url(&example), "reaction.created").args(["--count", "3"])));
    assert_eq!(answers.len(), 3);
    for _ in 0..3 {
        handled_as_typed(&example, "reaction.created");
    }
}

#[test]
fn set_changes_the_field_of_the_signed_delivery() {
    let capture = tempfile::tempdir().unwrap();
    let listener = listen(KEY, &[OsStr::new("--save"), capture.path().as_os_str()]);
    let output = run(trigger(&url(&listener), "message.created").args([
        "--set",
        "data.body=hello from trigger",
        "--set",
        "data.ack=3",
        "--set",
        "data.sender_phone=919876543210",
        "--set",
        "data.mentioned_ids.0=919999999999@c.us",
        "--set-json",
        "data.is_forwarded=true",
    ]));
    answered_2xx(&output);
    let line = listener.next_line();
    assert!(line.contains(" 200 message.created "), "{line}");

    let saved = std::fs::read(capture.path().join("000001-message.created.json")).unwrap();
    let text = String::from_utf8(saved).unwrap();
    assert!(
        text.starts_with(r#"{"event":"message.created","data":{"#),
        "compact, in Periskope's order: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["data"]["body"], "hello from trigger");
    // Where the template has a string, as Periskope sends these, the value stays a string.
    assert_eq!(body["data"]["ack"], "3");
    assert_eq!(body["data"]["sender_phone"], "919876543210");
    // An index one past the end appends: the help's own example.
    assert_eq!(body["data"]["mentioned_ids"], serde_json::json!(["919999999999@c.us"]));
    assert_eq!(body["data"]["is_forwarded"], true);
}

#[test]
fn set_keeps_the_template_string_so_the_app_decodes_the_delivery_typed() {
    let example = axum_example();
    let output = run(trigger(&url(&example), "message.created").args([
        "--set",
        "data.sender_phone=919876543210",
        "--set",
        "data.ack=3",
    ]));
    answered_2xx(&output);
    handled_as_typed(&example, "message.created");
}

#[test]
fn json_print_wraps_each_body_unchanged_in_a_typed_line() {
    let output = run(cli().args(["--json", "trigger", "reaction.created", "--print", "--count", "2"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in lines {
        let prefix =
            r#"{"type":"delivery","event":"reaction.created","body":{"event":"reaction.created","data":{"#;
        assert!(line.starts_with(prefix), "the type wraps the body, in Periskope's order: {line}");
        let wrapped: Value = serde_json::from_str(line).unwrap();
        // The body is the one `--print` writes without --json: no member added.
        assert!(wrapped["body"].get("type").is_none(), "{line}");
        assert_eq!(wrapped["body"]["data"]["org_id"], wrapped["body"]["org_id"], "{line}");
    }
}

#[test]
fn print_writes_fresh_bodies_without_a_key() {
    let output =
        run(cli().args(["trigger", "note.created", "--print", "--count", "2", "--set", "data.body=x"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let bodies: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(bodies.len(), 2, "{text}");
    assert_ne!(bodies[0]["data"]["message_id"], bodies[1]["data"]["message_id"]);
    assert_ne!(bodies[0]["timestamp"], bodies[1]["timestamp"]);
    assert!(bodies.iter().all(|body| body["event"] == "note.created" && body["data"]["body"] == "x"));
    // The envelope's time is in the fixtures' form: 2025-01-20T07:51:48.209+00:00.
    let time = bodies[0]["timestamp"].as_str().unwrap();
    assert_eq!(time.len(), 29, "{time}");
    assert!(time.ends_with("+00:00") && &time[10..11] == "T" && &time[19..20] == ".", "{time}");
}

#[test]
fn usage_errors_exit_2() {
    let cases: [(&[&str], &str); 6] = [
        (&["trigger", "contact.merged", "--print"], "possible values"),
        (&["trigger", "message.created", "--print", "--set", "data.body"], "PATH=VALUE"),
        (&["trigger", "message.created", "--print", "--set", "data.body.x=1"], "--set data.body.x"),
        (&["trigger", "message.created", "--print", "--set-json", "data.body=hello"], "not JSON"),
        (&["trigger", "message.created", "--print", "--set", "data.mentioned_ids.1=x"], "0 to 0"),
        (&["trigger", "message.created", "--to", "https://example.com/hook"], "https is not supported"),
    ];
    for (args, needle) in cases {
        let output = run(cli().args(args).env("PERISKOPE_SIGNING_KEY", KEY));
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(needle), "{args:?}: {}", stderr(&output));
    }
    // Sending needs a key; printing does not.
    let output = run(cli().args(["trigger", "message.created", "--to", "http://127.0.0.1:9/x"]));
    assert_eq!(output.status.code(), Some(2));
    assert_one_error_line(&output);
    assert!(stderr(&output).contains("no signing key"), "{}", stderr(&output));
}
