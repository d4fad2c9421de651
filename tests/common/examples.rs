//! The example binaries, as their users run them: built once per test binary into the target
//! directory and profile the test was built for.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `target/<profile>/examples/<name>`, next to this test's `target/<profile>/deps/`.
///
/// `cargo test` builds the examples before running this test, but `cargo test --test examples`
/// does not, so they are built here first (a no-op when they are up to date): otherwise a stale
/// binary, or none, would be tested.
pub fn example_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let test = std::env::current_exe().expect("the test executable's path");
    let profile_dir = test.parent().and_then(Path::parent).expect("the test runs from target/<profile>/deps");
    if let Err(error) = BUILT.get_or_init(|| build_examples(profile_dir)) {
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

/// The examples that serve webhooks, built together on first use.
const SERVER_EXAMPLES: [&str; 4] = ["axum", "hyper", "tonic", "inbox"];

/// Builds the server examples into the target directory and profile this test was built for.
fn build_examples(profile_dir: &Path) -> Result<(), String> {
    const BUILD_LIMIT: Duration = Duration::from_secs(600);
    let profile = profile_dir.file_name().and_then(|n| n.to_str()).expect("a profile directory");
    let profile = if profile == "debug" { "dev" } else { profile };
    let target_dir = profile_dir.parent().expect("the target directory");
    let mut cargo = Command::new(env!("CARGO"))
        .args(["build", "--quiet"])
        .args(SERVER_EXAMPLES.iter().flat_map(|name| ["--example", name]))
        .args(["--profile", profile, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
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
