//! `listen`, run as the built binary: a Node sender signing `JSON.stringify` output with Node's
//! crypto HMAC, one line per request, rejections by code, masked ids, captures that `send`
//! replays, and `--status`, `--insecure`, `--json`.

mod common;

use std::ffi::OsStr;

use common::process::Running;
use common::*;

const KEY: &str = "peri_cli-listen-test-0000-4000-8000-000000000000";

/// The lines `listening` prints for `count` requests.
fn lines(listener: &Running, count: usize) -> Vec<String> {
    (0..count).map(|_| listener.next_line()).collect()
}

fn send(listener: &Running, key: &str, paths: &[&std::path::Path]) -> std::process::Output {
    run(cli().args(["send", &url(listener)]).args(paths).env("PERISKOPE_SIGNING_KEY", key))
}

#[test]
fn listen_prints_one_line_per_delivery_of_a_node_sender() {
    let Some(mut node) = node() else { return };
    let capture = tempfile::tempdir().unwrap();
    let listener = listen(KEY, &[OsStr::new("--save"), capture.path().as_os_str()]);
    let fixtures =
        ["message.created.envelope.json", "reaction.created.envelope.json", "ticket.updated.envelope.json"];
    let sender = node
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/sender.js"))
        .arg(url(&listener))
        .args(fixtures.map(|name| deliveries_dir().join(name)))
        .env("PERISKOPE_SIGNING_KEY", KEY)
        .output()
        .expect("node runs");
    let sent = stdout(&sender);
    assert!(sender.status.success(), "{sent}{}", stderr(&sender));
    assert_eq!(sent, "200 message.created\n200 reaction.created\n200 ticket.updated\n200 contact.merged\n");

    let lines = lines(&listener, 4);
    assert!(
        lines[0].contains(" 200 message.created 1851 B org=2997dd64-89bf-48d3-9a22-b314fca017e5 "),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(" 200 reaction.created 947 B "), "{}", lines[1]);
    // Phone digits are masked: the reaction's chat is a group, its sender a phone number.
    assert!(lines[1].contains(" chat=*@g.us ") && !lines[1].contains("919289665999"), "{}", lines[1]);
    assert!(lines[2].contains(" 200 ticket.updated "), "{}", lines[2]);
    assert!(lines[3].contains(" 200 contact.merged (unknown event) "), "{}", lines[3]);
    for line in &lines {
        assert!(line.ends_with(".json") && line.contains("  saved 00000"), "{line}");
    }
    // The body is saved exactly as Node sent it: the signature test vector's bytes.
    let saved = std::fs::read_to_string(capture.path().join("000002-reaction.created.json")).unwrap();
    assert_eq!(saved, vector().body);
    assert_nothing_more(listener);
}

#[test]
fn refused_requests_print_their_code_and_other_paths_404() {
    let listener = listen(KEY, &[]);
    let fixture = deliveries_dir().join("note.created.envelope.json");
    let forged = send(&listener, "peri_not-the-key", &[&fixture]);
    assert_eq!(forged.status.code(), Some(1));
    let line = listener.next_line();
    assert!(line.contains(" 401 rejected signature_mismatch ("), "{line}");

    let elsewhere = run(cli()
        .args(["send", &format!("http://{}/elsewhere", listener.addr)])
        .arg(&fixture)
        .env("PERISKOPE_SIGNING_KEY", KEY));
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(stdout(&elsewhere).starts_with("404"), "{}", stdout(&elsewhere));
    let line = listener.next_line();
    assert!(line.ends_with(" 404 POST to another path than /webhooks/periskope"), "{line}");
    assert_nothing_more(listener);
}

#[test]
fn a_capture_is_replayed_by_send() {
    let capture = tempfile::tempdir().unwrap();
    let first = listen(KEY, &[OsStr::new("--save"), capture.path().as_os_str()]);
    let fixtures = delivery_fixtures();
    let paths: Vec<&std::path::Path> = fixtures.iter().map(|p| p.as_path()).collect();
    let output = send(&first, KEY, &paths);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let received = lines(&first, fixtures.len());
    drop(first);

    // The capture directory holds a body and a headers file per delivery.
    let names: Vec<String> = std::fs::read_dir(capture.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2 * fixtures.len(), "{names:?}");
    let headers: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(capture.path().join("000001-chat.created.headers.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(headers["headers"]["content-type"], "application/json");
    assert_eq!(headers["signature"], "verified with key-0 (the first signing key the server was given)");
    assert!(headers["headers"].get("x-periskope-signature").is_none(), "{headers}");

    // Replayed to a fresh listener: every delivery again, the same lines, and the headers
    // files passed over without a note.
    let second = listen(KEY, &[]);
    let replay = send(&second, KEY, &[capture.path()]);
    assert_eq!(replay.status.code(), Some(0), "{}", stderr(&replay));
    assert_eq!(stderr(&replay), "");
    let replayed = lines(&second, fixtures.len());
    let strip = |line: &String| line[9..].split("  saved").next().unwrap().to_owned();
    assert_eq!(
        replayed.iter().map(strip).collect::<Vec<_>>(),
        received.iter().map(strip).collect::<Vec<_>>()
    );

    // A second listener on the same directory numbers on after the deliveries in it.
    let third = listen(KEY, &[OsStr::new("--save"), capture.path().as_os_str()]);
    send(&third, KEY, &[&fixtures[0]]);
    assert!(third.next_line().ends_with(&format!("saved {:06}-chat.created.json", fixtures.len() + 1)));
}

/// Saved deliveries hold messages and phone numbers: only their owner may read them.
#[cfg(unix)]
#[test]
fn saved_files_and_created_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let root = tempfile::tempdir().unwrap();
    let capture = root.path().join("captures").join("today");
    let listener = listen(KEY, &[OsStr::new("--save"), capture.as_os_str()]);
    let output = send(&listener, KEY, &[&deliveries_dir().join("chat.created.envelope.json")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(listener.next_line().contains("saved 000001-chat.created.json"));
    drop(listener);

    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    for dir in [root.path().join("captures"), capture.clone()] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let files: Vec<_> = std::fs::read_dir(&capture).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[test]
fn status_answers_verified_deliveries_with_the_chosen_code() {
    let listener = listen(KEY, &[OsStr::new("--status"), OsStr::new("503")]);
    let output = send(&listener, KEY, &[&deliveries_dir().join("org.phone.qr.envelope.json")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).starts_with("503"), "{}", stdout(&output));
    assert!(listener.next_line().contains(" 503 org.phone.qr "));
}

#[test]
fn show_ids_prints_ids_in_full() {
    let fixture = deliveries_dir().join("reaction.created.envelope.json");
    let listener = listen(KEY, &[OsStr::new("--show-ids")]);
    send(&listener, KEY, &[&fixture]);
    let line = listener.next_line();
    assert!(line.contains(" chat=120363297269676566@g.us "), "{line}");
    assert!(line.contains("_919289665999@c.us"), "{line}");
}

#[test]
fn insecure_accepts_any_signature_and_takes_no_key() {
    let listener = Running::start(
        "periskope-webhook listen --insecure",
        cli().args(["listen", "--addr", "127.0.0.1:0", "--insecure"]),
    );
    let output = send(&listener, "peri_any-key", &[&deliveries_dir().join("note.created.envelope.json")]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(listener.next_line().contains(" 200 note.created "));

    let conflict = run(cli().args(["listen", "--insecure", "--key", KEY]));
    assert_eq!(conflict.status.code(), Some(2));
    assert!(stderr(&conflict).contains("--insecure"), "{}", stderr(&conflict));
    assert!(!stderr(&conflict).contains(KEY));
}

#[test]
fn json_prints_one_object_per_request() {
    let listener = Running::start(
        "periskope-webhook --json listen",
        cli().args(["--json", "listen", "--addr", "127.0.0.1:0"]).env("PERISKOPE_SIGNING_KEY", KEY),
    );
    let fixture = deliveries_dir().join("reaction.created.envelope.json");
    send(&listener, KEY, &[&fixture]);
    send(&listener, "peri_not-the-key", &[&fixture]);
    let lines = json_lines(&lines(&listener, 2).join("\n"));
    assert_eq!(lines[0]["type"], "delivery");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["event"], "reaction.created");
    assert_eq!(lines[0]["decoded"], "typed");
    assert_eq!(lines[0]["bytes"], 947);
    assert_eq!(lines[0]["ids"]["chat"], "*@g.us");
    assert_eq!(lines[1]["type"], "rejection");
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(lines[1]["code"], "signature_mismatch");
}

#[test]
fn a_busy_address_is_one_error_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(cli().args(["listen", "--addr", &addr]).env("PERISKOPE_SIGNING_KEY", KEY));
    assert_eq!(output.status.code(), Some(2));
    assert_one_error_line(&output);
    assert!(stderr(&output).contains(&format!("listening on {addr}")), "{}", stderr(&output));
}

/// Stops the listener and checks that it printed nothing more than what was read.
fn assert_nothing_more(listener: Running) {
    let rest = listener.stop();
    assert!(rest.is_empty(), "unexpected output {rest:?}");
}
