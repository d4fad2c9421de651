//! Running the built `periskope-webhook` binary, and the fixtures it is tested with.
// Each test file uses a different subset.
#![allow(dead_code)]

#[path = "../../../tests/common/process.rs"]
pub mod process;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The key of the published signature test vector.
pub const VECTOR_KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";

/// The command, with no signing key in its environment.
pub fn cli() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_periskope-webhook"));
    command.env_remove("PERISKOPE_SIGNING_KEY").env_remove("RUST_BACKTRACE").stdin(Stdio::null());
    command
}

/// Runs `command` with `stdin` as its standard input, and waits for it.
pub fn run_with_stdin(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the periskope-webhook binary starts");
    child.stdin.take().expect("stdin is piped").write_all(stdin).expect("writing stdin");
    child.wait_with_output().expect("the command ends")
}

/// Runs `command` and waits for it.
pub fn run(command: &mut Command) -> Output {
    command.output().expect("the periskope-webhook binary starts")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 output")
}

/// The workspace root, where the library and its examples are.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ is in the workspace").to_owned()
}

/// The library's fixtures, `tests/fixtures` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests").join("fixtures")
}

/// The delivery fixtures' directory, `tests/fixtures/deliveries`: what `send` sends.
pub fn deliveries_dir() -> PathBuf {
    fixtures_dir().join("deliveries")
}

/// The delivery fixtures (the envelopes and the field-observed variants).
pub fn delivery_fixtures() -> Vec<PathBuf> {
    process::delivery_fixtures(&workspace_root())
}

/// `periskope-webhook listen` on a free port with `key`, plus `args`.
pub fn listen(key: &str, args: &[&std::ffi::OsStr]) -> process::Running {
    process::Running::start(
        "periskope-webhook listen",
        cli().args(["listen", "--addr", "127.0.0.1:0"]).args(args).env("PERISKOPE_SIGNING_KEY", key),
    )
}

/// The webhook URL of a running `listen` or server example.
pub fn url(running: &process::Running) -> String {
    format!("http://{}/webhooks/periskope", running.addr)
}

/// The JSON objects of `--json` output, one per line.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))).collect()
}

/// The signature test vector: its key, its exact body and the signature of that body.
pub struct Vector {
    pub key: String,
    pub body: String,
    pub signature: String,
}

pub fn vector() -> Vector {
    let text =
        std::fs::read_to_string(fixtures_dir().join("signature-test-vector.json")).expect("the vector");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the vector is JSON");
    let field = |name: &str| json[name].as_str().expect("a string field").to_owned();
    Vector { key: field("signing_key"), body: field("body"), signature: field("expected_signature_hex") }
}

/// Asserts that a failed run printed exactly one line on standard error, and no panic.
pub fn assert_one_error_line(output: &Output) {
    let stderr = stderr(output);
    assert_eq!(stderr.trim_end().lines().count(), 1, "expected one line, got {stderr:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr:?}");
}

/// Whether a missing program fails the test rather than skipping it (`.ci/run` sets it).
fn required() -> bool {
    std::env::var_os("PERISKOPE_REQUIRE_SERVERS").is_some_and(|value| value == "1")
}

/// Whether `program --version` runs.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|output| output.status.success())
}

/// `node`, or `None` with the reason printed; under PERISKOPE_REQUIRE_SERVERS=1 a missing
/// `node` fails the test instead.
pub fn node() -> Option<Command> {
    if runs("node") {
        return Some(Command::new("node"));
    }
    assert!(!required(), "node is required (PERISKOPE_REQUIRE_SERVERS=1) but cannot be run");
    eprintln!("skipped: node is not installed, so the Node programs of cli/tests/node cannot run");
    None
}

/// `cli/tests/node`, where the Node programs the tests run are.
pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("node")
}

/// `node` with the packages of `cli/tests/node` installed: when `node_modules` is missing (a
/// fresh clone: git ignores it), `npm ci` installs them as package-lock.json pins them, once
/// per test binary. `None` with the reason printed when Node or npm is missing; under
/// PERISKOPE_REQUIRE_SERVERS=1 that fails the test instead, and so does a failed install.
pub fn node_with_packages() -> Option<Command> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let node = node()?;
    match INSTALLED.get_or_init(install_node_packages) {
        Ok(()) => Some(node),
        Err(reason) if required() => panic!("PERISKOPE_REQUIRE_SERVERS=1: {reason}"),
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// Runs `npm ci` in `cli/tests/node` unless its packages are there.
fn install_node_packages() -> Result<(), String> {
    const INSTALL_LIMIT: Duration = Duration::from_secs(600);
    let dir = node_dir();
    // npm writes this file last: an install that was cut short is done again.
    if dir.join("node_modules").join(".package-lock.json").is_file() {
        return Ok(());
    }
    if !runs("npm") {
        return Err("npm is not installed, so the packages of cli/tests/node cannot be installed".to_owned());
    }
    eprintln!("installing the packages of {} with `npm ci`", dir.display());
    let mut npm = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot run npm: {error}"))?;
    let deadline = Instant::now() + INSTALL_LIMIT;
    loop {
        match npm.try_wait().map_err(|error| format!("waiting for npm: {error}"))? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("`npm ci --prefix {}` failed ({status})", dir.display())),
            None if Instant::now() > deadline => {
                let _ = npm.kill();
                let _ = npm.wait();
                return Err(format!("`npm ci` took longer than {INSTALL_LIMIT:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
