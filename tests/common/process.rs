//! Programs under test run as their users run them: the server examples and the
//! `periskope-webhook` command line. Shared by `tests/examples.rs` and the tests in `cli/`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long to wait for a line, or for the program to start listening.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running program that serves HTTP; killed and reaped when dropped, also when a test fails.
pub struct Running {
    child: Child,
    stdout: Receiver<String>,
    pub name: String,
    pub addr: SocketAddr,
}

impl Running {
    /// Starts `command` with its standard output piped, and reads up to the line that says
    /// where it listens.
    pub fn start(name: &str, command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running =
            Running { child, stdout: receiver, name: name.to_owned(), addr: ([0, 0, 0, 0], 0).into() };
        running.addr = running.address();
        running
    }

    /// The next line the program prints, waiting at most [`WAIT`].
    pub fn next_line(&self) -> String {
        match self.stdout.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("{}: printed nothing for {WAIT:?}", self.name),
            Err(RecvTimeoutError::Disconnected) => panic!("{}: stdout closed (did it exit?)", self.name),
        }
    }

    /// Reads up to the line that says where the program listens (`listening on http://ADDR`,
    /// or a JSON object with `"type":"listening"` and the URL) and returns the address.
    fn address(&self) -> SocketAddr {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let line = self.next_line();
            let url = line.find("http://").filter(|_| line.contains("listening")).map(|at| &line[at + 7..]);
            if let Some(rest) = url {
                let addr = rest.split(['/', ' ', '"']).next().unwrap_or_default();
                return addr
                    .parse()
                    .unwrap_or_else(|error| panic!("{}: bad address in {line:?}: {error}", self.name));
            }
        }
        panic!("{}: no `listening on` line within {WAIT:?}", self.name);
    }

    /// Kills the program and returns whatever it printed that was not read yet.
    pub fn stop(mut self) -> Vec<String> {
        self.kill();
        // The reader thread ends at EOF, which the kill guarantees; bound the wait all the same.
        let deadline = Instant::now() + WAIT;
        let mut rest = Vec::new();
        loop {
            match self.stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => panic!("{}: stdout still open after kill", self.name),
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The example `name` of the library at `workspace_root`, in `target/<profile>/examples/`
/// next to the running test's `target/<profile>/deps/`.
///
/// `cargo test` builds the examples before running the library's tests, but `cargo test --test
/// NAME` and the command line's tests do not, so they are built here first (a no-op when they
/// are up to date): otherwise a stale binary, or none, would be tested.
pub fn example_binary(workspace_root: &Path, name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let test = std::env::current_exe().expect("the test executable's path");
    let profile_dir = test.parent().and_then(Path::parent).expect("the test runs from target/<profile>/deps");
    if let Err(error) = BUILT.get_or_init(|| build_examples(workspace_root, profile_dir)) {
        panic!("{error}");
    }
    let binary = profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "example binary {} not found: build it with `cargo build --example {name}`",
        binary.display()
    );
    binary
}

/// Builds the library's examples into the target directory and profile this test was built for,
/// with the workspace's features as `cargo test --workspace --all-features` unifies them, so that
/// after that command this is a no-op rather than a rebuild of the examples' dependencies.
fn build_examples(workspace_root: &Path, profile_dir: &Path) -> Result<(), String> {
    const BUILD_LIMIT: Duration = Duration::from_secs(600);
    let profile = profile_dir.file_name().and_then(|n| n.to_str()).expect("a profile directory");
    let profile = if profile == "debug" { "dev" } else { profile };
    let target_dir = profile_dir.parent().expect("the target directory");
    let mut cargo = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--workspace", "--examples", "--all-features"])
        .args(["--profile", profile, "--manifest-path"])
        .arg(workspace_root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot run cargo: {error}"))?;
    let deadline = Instant::now() + BUILD_LIMIT;
    loop {
        match cargo.try_wait().map_err(|error| format!("waiting for cargo: {error}"))? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => {
                return Err(format!("building the examples failed ({status}); see the errors above"));
            }
            None if Instant::now() > deadline => {
                let _ = cargo.kill();
                let _ = cargo.wait();
                return Err(format!("building the examples took longer than {BUILD_LIMIT:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The delivery fixtures under `workspace_root`'s `tests/fixtures/deliveries` (the envelopes
/// and the field-observed variants), sorted: what the programs under test are sent.
pub fn delivery_fixtures(workspace_root: &Path) -> Vec<PathBuf> {
    let dir = workspace_root.join("tests/fixtures/deliveries");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/deliveries")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".envelope.json")
                || (name.starts_with("field-observed.") && name.ends_with(".json"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 20, "expected the delivery fixtures, found {files:?}");
    files
}
