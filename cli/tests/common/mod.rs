//! Running the built `periskope-webhook` binary, and the fixtures it is tested with.
// Each test file uses a different subset.
#![allow(dead_code)]

#[path = "../../../tests/common/process.rs"]
pub mod process;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
