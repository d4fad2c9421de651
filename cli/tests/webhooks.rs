//! `webhooks list|get|create|update|delete`, run as the built binary against a local HTTP
//! stand-in for Periskope's REST API that records each request: the method, the path, the
//! `Authorization` header and the body's shape of each command.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{Value, json};

const API_KEY: &str = "periskope-api-key-for-tests-5f0c";
const ID: &str = "0ef25935-0b78-4660-beeb-f17311793305";

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    target: String,
    authorization: Option<String>,
    user_agent: Option<String>,
    body: Option<Value>,
}

/// Periskope's `/v1/webhooks` on 127.0.0.1: answers as the API does, refuses any other key with
/// 401, and keeps what it received.
struct StandIn {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl StandIn {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = Arc::clone(&log);
                std::thread::spawn(move || answer(stream, &log));
            }
        });
        StandIn { addr, received }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn row(id: &str, event: &str, url: &str) -> Value {
    let mut row: Value = serde_json::from_slice(
        &std::fs::read(fixtures_dir().join("webhook-subscription.create-response.json")).unwrap(),
    )
    .unwrap();
    row["id"] = json!(id);
    row["integration_name"] = json!(event);
    row["hook_url"] = json!(url);
    row
}

fn answer(stream: TcpStream, log: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
    let (mut length, mut authorization, mut user_agent) = (0, None, None);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "authorization" => authorization = Some(value.trim().to_owned()),
            "user-agent" => user_agent = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let body = (!body.is_empty()).then(|| serde_json::from_slice(&body).expect("a JSON body"));
    log.lock().unwrap().push(Received {
        method: method.clone(),
        target: target.clone(),
        authorization: authorization.clone(),
        user_agent,
        body: body.clone(),
    });

    let hook = "https://hooks.example.com/periskope";
    let one = format!("/v1/webhooks/{ID}");
    let (status, answer) = if authorization.as_deref() != Some(&format!("Bearer {API_KEY}")) {
        ("401 Unauthorized", Some(json!({ "message": "Invalid API key" })))
    } else {
        match (method.as_str(), target.as_str()) {
            ("GET", "/v1/webhooks") => (
                "200 OK",
                Some(json!([row(ID, "message.created", hook), row("b2", "reaction.created", hook)])),
            ),
            ("GET", target) if target.starts_with("/v1/webhooks?") => ("200 OK", Some(json!([]))),
            ("GET", target) if target == one => ("200 OK", Some(row(ID, "message.created", hook))),
            ("POST", "/v1/webhooks") => {
                let names = match &body.as_ref().unwrap()["integrationName"] {
                    Value::Array(names) => names.clone(),
                    name => vec![name.clone()],
                };
                let url = body.as_ref().unwrap()["hookUrl"].as_str().unwrap().to_owned();
                let rows: Vec<Value> =
                    names.iter().map(|name| row("new", name.as_str().unwrap(), &url)).collect();
                ("201 Created", Some(Value::Array(rows)))
            }
            ("PATCH", target) if target == one => ("200 OK", Some(row(ID, "message.created", hook))),
            ("DELETE", target) if target == one => ("204 No Content", None),
            // A proxy's page in front of the API: 2xx, but not JSON.
            ("GET", "/v1/webhooks/not-json") => ("200 OK", Some(Value::String("<html>".to_owned()))),
            _ => ("404 Not Found", Some(json!({ "message": "Webhook not found" }))),
        }
    };
    let body = match answer {
        Some(Value::String(text)) => text,
        Some(answer) => answer.to_string(),
        None => String::new(),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
}

fn webhooks(stand_in: &StandIn, args: &[&str]) -> Command {
    let mut command = cli();
    command
        .args(["webhooks", "--api-url", &format!("{}/v1", stand_in.origin())])
        .args(args)
        .env("PERISKOPE_API_KEY", API_KEY);
    command
}

fn only_request(stand_in: &StandIn) -> Received {
    let received = stand_in.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let request = received.into_iter().next().unwrap();
    assert_eq!(request.authorization.as_deref(), Some(format!("Bearer {API_KEY}").as_str()));
    assert_eq!(
        request.user_agent.as_deref(),
        Some(concat!("periskope-webhook/", env!("CARGO_PKG_VERSION"))),
        "every request names the program"
    );
    request
}

#[test]
fn list_prints_a_table_and_json_lines() {
    let stand_in = StandIn::start();
    let output = run(&mut webhooks(&stand_in, &["list"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let request = only_request(&stand_in);
    assert_eq!(
        (request.method.as_str(), request.target.as_str(), request.body),
        ("GET", "/v1/webhooks", None)
    );
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("EVENT") && lines[0].contains("URL"), "{text}");
    assert!(
        lines[1].starts_with(ID) && lines[1].contains("message.created") && lines[1].contains("true"),
        "{text}"
    );
    assert!(
        lines[2].contains("reaction.created") && lines[2].ends_with("https://hooks.example.com/periskope")
    );

    let output =
        run(webhooks(&stand_in, &["list", "--event", "message.created", "--url", "https://a.test/x?y=1"])
            .arg("--json"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stand_in.received()[1].target,
        "/v1/webhooks?integration_name=message.created&hook_url=https%3A%2F%2Fa.test%2Fx%3Fy%3D1"
    );
    assert_eq!(stdout(&output), "", "no rows, no lines under --json");

    let output = run(webhooks(&stand_in, &["list"]).arg("--json"));
    let rows = json_lines(&stdout(&output));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["type"], "webhook");
    assert_eq!(rows[0]["webhook"]["id"], ID);
    assert_eq!(rows[0]["webhook"]["integration_type"], "webhook");
}

#[test]
fn get_reads_one_subscription() {
    let stand_in = StandIn::start();
    let output = run(webhooks(&stand_in, &["get", ID]).arg("--json"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let request = only_request(&stand_in);
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("GET", format!("/v1/webhooks/{ID}").as_str())
    );
    assert_eq!(json_lines(&stdout(&output))[0]["webhook"]["hook_url"], "https://hooks.example.com/periskope");
}

#[test]
fn create_posts_hook_url_and_integration_name_as_one_name_or_a_list() {
    let stand_in = StandIn::start();
    let url = "https://example.ngrok.app/webhooks/periskope";
    let output = run(&mut webhooks(
        &stand_in,
        &["create", "--url", url, "--events", "message.created,reaction.created"],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let request = only_request(&stand_in);
    assert_eq!((request.method.as_str(), request.target.as_str()), ("POST", "/v1/webhooks"));
    assert_eq!(
        request.body,
        Some(json!({ "hookUrl": url, "integrationName": ["message.created", "reaction.created"] }))
    );
    let text = stdout(&output);
    assert_eq!(text.lines().filter(|line| line.starts_with("new ")).count(), 2, "{text}");

    let output = run(&mut webhooks(&stand_in, &["create", "--url", url, "--events", "ticket.created"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stand_in.received()[1].body,
        Some(json!({ "hookUrl": url, "integrationName": "ticket.created" }))
    );
}

#[test]
fn update_patches_only_the_given_fields_and_delete_deletes() {
    let stand_in = StandIn::start();
    let output =
        run(&mut webhooks(&stand_in, &["update", ID, "--subscribed", "false", "--event", "note.created"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let request = only_request(&stand_in);
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("PATCH", format!("/v1/webhooks/{ID}").as_str())
    );
    assert_eq!(request.body, Some(json!({ "integrationName": "note.created", "isSubscribed": false })));

    // Without a terminal to confirm on, delete needs --yes, and sends nothing without it.
    let output = run(webhooks(&stand_in, &["delete", ID]).arg("--json"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_one_error_line(&output);
    assert!(stderr(&output).contains("pass --yes"), "{}", stderr(&output));
    assert_eq!(stand_in.received().len(), 1, "no DELETE was sent");

    let output = run(webhooks(&stand_in, &["delete", ID, "--yes"]).arg("--json"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let request = stand_in.received().pop().unwrap();
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("DELETE", format!("/v1/webhooks/{ID}").as_str())
    );
    assert_eq!(request.body, None);
    assert_eq!(json_lines(&stdout(&output)), vec![json!({ "type": "deleted", "id": ID })]);
}

#[test]
fn a_refused_key_exits_2_naming_no_key_and_other_errors_exit_1() {
    let stand_in = StandIn::start();
    let output = run(webhooks(&stand_in, &["list"]).env("PERISKOPE_API_KEY", "the-wrong-api-key"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_one_error_line(&output);
    assert!(
        stderr(&output).contains("refused the API key (401 Unauthorized): Invalid API key"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("the-wrong-api-key"));

    let output = run(&mut webhooks(&stand_in, &["get", "no-such-id"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_one_error_line(&output);
    assert!(
        stderr(&output).starts_with("periskope-webhook: error: GET ")
            && stderr(&output).contains("404 Not Found: Webhook not found"),
        "{}",
        stderr(&output)
    );
    let output = run(webhooks(&stand_in, &["get", "no-such-id"]).arg("--json"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(json_lines(&stderr(&output))[0]["code"], "api_error");

    // A 2xx whose body is not JSON is an answer not the expected one: exit 1, as docs/CLI.md says.
    let output = run(&mut webhooks(&stand_in, &["get", "not-json"]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_one_error_line(&output);
    let error = stderr(&output);
    assert!(
        error.starts_with("periskope-webhook: error: GET http://")
            && error.contains("/v1/webhooks/not-json: the API answered 200 OK with a body that is not JSON"),
        "{error}"
    );
    assert!(!error.contains("<html>"), "the body is not printed: {error}");
    let output = run(webhooks(&stand_in, &["get", "not-json"]).arg("--json"));
    assert_eq!(json_lines(&stderr(&output))[0]["code"], "not_json");
}

#[test]
fn create_warns_about_unknown_names_and_loopback_urls_and_still_subscribes() {
    let stand_in = StandIn::start();
    for (url, host) in [
        ("http://127.0.0.1:3000/webhooks/periskope", "127.0.0.1"),
        ("http://localhost:3000/x", "localhost"),
        ("http://[::1]:3000/x", "::1"),
    ] {
        let output = run(&mut webhooks(
            &stand_in,
            &["create", "--url", url, "--events", "message.craeted,note.created"],
        ));
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let warnings = stderr(&output);
        let lines: Vec<&str> = warnings.lines().collect();
        assert_eq!(lines.len(), 2, "{warnings}");
        assert!(
            lines[0].starts_with("periskope-webhook: warning: `message.craeted` is not an event name")
                && lines[0].contains("did you mean `message.created`?"),
            "{warnings}"
        );
        assert!(
            lines[1].starts_with(&format!("periskope-webhook: warning: {host} is this machine")),
            "{warnings}"
        );
    }
    assert_eq!(stand_in.received().len(), 3);

    // A public URL and known names: no warning.
    let output = run(&mut webhooks(
        &stand_in,
        &["create", "--url", "https://hooks.example.com/p", "--events", "note.created"],
    ));
    assert_eq!((output.status.code(), stderr(&output).as_str()), (Some(0), ""));
}

#[test]
fn an_unreachable_api_is_named_with_each_cause_once() {
    // A port that was free a moment ago: the connection is refused.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = run(cli()
        .args(["webhooks", "--api-url", &format!("http://127.0.0.1:{port}"), "list"])
        .env("PERISKOPE_API_KEY", API_KEY));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_one_error_line(&output);
    let error = stderr(&output);
    assert!(
        error.starts_with(&format!(
            "periskope-webhook: error: cannot reach http://127.0.0.1:{port}/v1/webhooks: "
        )),
        "{error}"
    );
    assert_eq!(error.matches("Connection refused (os error 111)").count(), 1, "{error}");
}

#[test]
fn usage_errors_exit_2_before_any_request() {
    let stand_in = StandIn::start();
    let cases: [(&[&str], &str); 5] = [
        (&["get", "../../v1/other"], "subscription id"),
        (&["create", "--url", "hooks.example.com", "--events", "message.created"], "http:// or https://"),
        (&["create", "--url", "https://a.test/x"], "--events"),
        (&["create", "--url", "https://a.test/x", "--events", "Message Created"], "not an event name"),
        (&["update", ID], "nothing to change"),
    ];
    for (args, needle) in cases {
        let output = run(&mut webhooks(&stand_in, args));
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(needle), "{args:?}: {}", stderr(&output));
    }
    let output = run(webhooks(&stand_in, &["list"]).env_remove("PERISKOPE_API_KEY"));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no API key"), "{}", stderr(&output));
    assert!(stand_in.received().is_empty(), "{:?}", stand_in.received());

    // A blank key is refused, not used: every space of a message would be redacted as `***`.
    for blank in [" ", "\t\n"] {
        let output = run(webhooks(&stand_in, &["list"]).env("PERISKOPE_API_KEY", blank));
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert_one_error_line(&output);
        assert_eq!(stderr(&output), "periskope-webhook: error: the API key is blank\n");
    }
    assert!(stand_in.received().is_empty(), "{:?}", stand_in.received());

    // The key file's key is used (the whitespace around it ignored), over the environment's.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api-key");
    std::fs::write(&file, format!("  {API_KEY} \n")).unwrap();
    let output =
        run(webhooks(&stand_in, &["list", "--api-key-file"]).arg(&file).env("PERISKOPE_API_KEY", "other"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn delete_on_a_terminal_asks_first() {
    // util-linux `script` runs the command on a pseudo-terminal, fed from standard input.
    if !Command::new("script").arg("--version").output().is_ok_and(|output| output.status.success()) {
        eprintln!("skipped: util-linux `script` is not installed, so no terminal can be given");
        return;
    }
    let stand_in = StandIn::start();
    let command = format!(
        "{} webhooks --api-url {} delete {ID}",
        env!("CARGO_BIN_EXE_periskope-webhook"),
        stand_in.origin()
    );
    for (answer, code, deleted) in [("n\n", 2, false), ("yes\n", 0, true)] {
        let output = run_with_stdin(
            Command::new("script")
                .args(["--quiet", "--return", "--command", &command, "/dev/null"])
                .env("PERISKOPE_API_KEY", API_KEY),
            answer.as_bytes(),
        );
        let printed = stdout(&output);
        assert_eq!(output.status.code(), Some(code), "{answer:?}: {printed}");
        assert!(printed.contains(&format!("Delete the webhook subscription {ID}? [y/N]")), "{printed}");
        let sent = stand_in.received().iter().any(|request| request.method == "DELETE");
        assert_eq!(sent, deleted, "{answer:?}: {printed}");
    }
}
