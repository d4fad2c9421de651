//! The `inbox` example as a real process: every fixture processed once, a second process refused
//! on the same file, and SIGKILL at random moments (while deliveries are being written and while
//! jobs are being handled), then a restart on the same file. In the end, every delivery answered
//! 200 has been handled at least once, and any handled twice was interrupted by a kill.
//!
//! The short version runs 3 kill cycles; `PERISKOPE_CRASH_CYCLES=20 cargo test --test inbox
//! crash -- --nocapture` runs the long one and prints the counts.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::common::{self, KEY, client, signed, try_send};
use crate::support::TempDir;

const WAIT: Duration = Duration::from_secs(20);

/// What the example printed, each line with the run (cycle) that printed it.
pub type Lines = Arc<Mutex<Vec<(usize, String)>>>;

/// One run of the `inbox` example; SIGKILLed when dropped.
pub struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Process {
    /// Starts the example on the inbox at `location` (a file or a `postgres://` URL); what it
    /// prints is added to `lines`, marked with `run`.
    pub fn start(location: impl AsRef<OsStr>, delay_ms: u64, run: usize, lines: &Lines) -> Process {
        Process::start_with(location, delay_ms, run, lines, &[])
    }

    pub fn start_with(
        location: impl AsRef<OsStr>,
        delay_ms: u64,
        run: usize,
        lines: &Lines,
        env: &[(&str, &str)],
    ) -> Process {
        let mut child = Command::new(example_binary())
            .envs(env.iter().copied())
            .env("PERISKOPE_INBOX", location)
            .env("ADDR", "127.0.0.1:0")
            .env("PERISKOPE_SIGNING_KEY", KEY)
            .env("HANDLER_DELAY_MS", delay_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the inbox example");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (listening, addr) = mpsc::channel();
        let lines = Arc::clone(lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix("listening on http://") {
                    Some(addr) => drop(listening.send(addr.parse::<SocketAddr>().expect("an address"))),
                    None => lines.lock().unwrap().push((run, line)),
                }
            }
        });
        let addr = addr.recv_timeout(WAIT).expect("the example prints its address");
        Process { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, common::PATH)
    }

    pub fn kill(&mut self) {
        // `Child::kill` is SIGKILL on Unix.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ctrl-C, as a user stops it; waits for a clean exit.
    pub fn interrupt(self) {
        self.stop_with("INT", WAIT);
    }

    /// Sends `signal` (`INT`, `TERM`) and waits up to `limit` for a clean exit; how long it took.
    pub fn stop_with(mut self, signal: &str, limit: Duration) -> Duration {
        let pid = self.child.id().to_string();
        let sent = Instant::now();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("run kill");
        assert!(status.success());
        while sent.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the example exited with {status} on SIG{signal}");
                return sent.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the example did not stop within {limit:?} of SIG{signal}");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `inbox` example binary, built on first use.
fn example_binary() -> PathBuf {
    crate::process::example_binary(Path::new(env!("CARGO_MANIFEST_DIR")), "inbox")
}

/// The example's digest of a body.
pub fn short_digest(body: &[u8]) -> String {
    Sha256::digest(body).iter().take(8).fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

fn random_below(bound: u64) -> u64 {
    RandomState::new().build_hasher().finish() % bound.max(1)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_logs_a_dead_letter_at_error_without_its_content() {
    let dir = TempDir::new("example-dead");
    let fail = dir.path().join("fail");
    std::fs::write(&fail, "message.created\n").unwrap();
    let mut child = Command::new(example_binary())
        .env("PERISKOPE_INBOX", dir.db())
        .env("ADDR", "127.0.0.1:0")
        .env("PERISKOPE_SIGNING_KEY", KEY)
        .env("HANDLER_FAIL_FILE", &fail)
        .env("INBOX_MAX_ATTEMPTS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the inbox example");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let listening = stdout.next().expect("a first line").expect("readable");
    let addr = listening.strip_prefix("listening on http://").expect("the address line");
    let (logged, log) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = logged.send(line);
        }
    });

    let body = common::fixture("message.created.envelope.json");
    let url = format!("http://{addr}{}", common::PATH);
    common::send(&client(), signed(&url, KEY, body.clone())).await.assert(StatusCode::OK, "accepted");
    let line = loop {
        let line = log.recv_timeout(WAIT).expect("the example logs the dead letter");
        if line.contains("became a dead letter") {
            break line;
        }
    };
    assert!(line.contains("ERROR") && line.contains("message.created"), "{line}");
    let message = periskope_webhook::WebhookEvent::decode(body).unwrap();
    let text = message.event().message().and_then(|message| message.body.as_deref()).unwrap();
    assert!(!line.contains(text), "{line}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_processes_each_fixture_once_and_refuses_a_second_process() {
    let dir = TempDir::new("example");
    let lines = Lines::default();
    let example = Process::start(dir.db(), 0, 0, &lines);

    let second = Command::new(example_binary())
        .env("PERISKOPE_INBOX", dir.db())
        .env("ADDR", "127.0.0.1:0")
        .env("PERISKOPE_SIGNING_KEY", KEY)
        .output()
        .expect("run a second example");
    assert!(!second.status.success());
    let error = String::from_utf8_lossy(&second.stderr);
    assert!(error.contains("in use by another process"), "{error}");

    let client = client();
    let mut expected = Vec::new();
    for name in common::envelope_fixture_names() {
        let body = common::fixture(&name);
        let reply = common::send(&client, signed(&example.url(), KEY, body.clone())).await;
        reply.assert(StatusCode::OK, "accepted");
        let event = periskope_webhook::WebhookEvent::decode(body.clone()).unwrap();
        expected.push(format!("processed {} {}", event.name(), short_digest(&body)));
        // Sent again: a duplicate, stored and handled once.
        common::send(&client, signed(&example.url(), KEY, body)).await.assert(StatusCode::OK, "duplicate");
    }
    common::within("every fixture is processed", async {
        while lines.lock().unwrap().len() < expected.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    example.interrupt();
    let mut printed: Vec<String> = lines.lock().unwrap().iter().map(|(_, line)| line.clone()).collect();
    printed.sort();
    expected.sort();
    assert_eq!(printed, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_loses_no_acknowledged_delivery() {
    let cycles: usize =
        std::env::var("PERISKOPE_CRASH_CYCLES").ok().and_then(|n| n.parse().ok()).unwrap_or(3);
    const CLIENTS: usize = 8;
    const CONCURRENCY: usize = 8;
    let dir = TempDir::new("crash");
    let lines = Lines::default();
    let mut acknowledged: HashSet<String> = HashSet::new();

    for cycle in 0..cycles {
        let mut process = Process::start(dir.db(), 15, cycle, &lines);
        let url = process.url();
        let running = Arc::new(AtomicBool::new(true));
        let senders: Vec<_> = (0..CLIENTS)
            .map(|sender| {
                let (url, running) = (url.clone(), Arc::clone(&running));
                tokio::spawn(async move {
                    let client = client();
                    let mut acked = Vec::new();
                    for n in 0.. {
                        if !running.load(Ordering::Relaxed) {
                            break;
                        }
                        let body = crate::support::chat_message(
                            &format!("chat-{sender}-{}", n % 3),
                            &format!("crash-{cycle}-{sender}-{n}"),
                        );
                        match try_send(&client, signed(&url, KEY, body.clone())).await {
                            Ok(reply) if reply.status == StatusCode::OK => acked.push(short_digest(&body)),
                            Ok(reply) => panic!("unexpected answer {}", reply.status),
                            // The kill: the connection broke, so this delivery was not acknowledged.
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        // Kill at a random moment: while deliveries are written and jobs handled.
        tokio::time::sleep(Duration::from_millis(150 + random_below(500))).await;
        process.kill();
        running.store(false, Ordering::Relaxed);
        for sender in senders {
            acknowledged.extend(common::within("a sender stops", sender).await.unwrap());
        }
    }

    // A last run, undisturbed, handles what is left.
    let last = Process::start(dir.db(), 0, cycles, &lines);
    let handled_all = || {
        let handled: HashSet<String> = lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, line)| line.rsplit(' ').next().map(str::to_owned))
            .collect();
        acknowledged.iter().all(|digest| handled.contains(digest))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handled_all() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last.interrupt();

    let lines = lines.lock().unwrap().clone();
    let mut runs_by_digest: HashMap<String, Vec<usize>> = HashMap::new();
    for (run, line) in &lines {
        assert!(line.starts_with("processed message.created "), "unexpected line {line:?}");
        let digest = line.rsplit(' ').next().unwrap().to_owned();
        runs_by_digest.entry(digest).or_default().push(*run);
    }
    let lost: Vec<&String> =
        acknowledged.iter().filter(|digest| !runs_by_digest.contains_key(*digest)).collect();
    let duplicates: usize = runs_by_digest.values().map(|runs| runs.len() - 1).sum();
    println!(
        "crash test: {cycles} SIGKILLs, {} deliveries acknowledged, {} handled, {duplicates} handled twice \
         (each interrupted by a kill), {} lost",
        acknowledged.len(),
        runs_by_digest.len(),
        lost.len()
    );
    assert!(acknowledged.len() > cycles * CLIENTS, "too little traffic to test anything");
    assert!(lost.is_empty(), "{} acknowledged deliveries never handled", lost.len());
    for (digest, runs) in &runs_by_digest {
        // Handled more than once only when a kill cut a run short after the handler printed
        // its line and before the job was recorded as done: every run but the last was killed.
        let (last_run, earlier) = runs.split_last().unwrap();
        assert!(
            earlier.iter().all(|run| *run < cycles && run < last_run),
            "{digest} handled twice without a kill in between: runs {runs:?}"
        );
    }
    // Per kill, at most the jobs in flight can be interrupted.
    assert!(duplicates <= cycles * CONCURRENCY, "{duplicates} duplicates for {cycles} kills");
}
