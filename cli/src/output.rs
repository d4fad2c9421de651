//! What the command prints: text lines or one JSON object per line (`--json`), and how it ends.

use std::fmt::Display;
use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};

/// Why a command did not succeed, and so its exit status.
#[derive(Debug)]
pub enum Failure {
    /// A signature did not verify, or an answer was not the expected one (exit 1). What went
    /// wrong was already printed.
    Unexpected,
    /// A usage, file or network setup error (exit 2), as one line.
    Error(String),
    /// Stopped by Ctrl-C with work left undone, which was already reported (exit 130, as a
    /// shell reports an interrupted command).
    Interrupted,
    /// An answer that was not the expected one (exit 1), as one line, with a short
    /// machine-readable code for `--json`.
    Answer { code: &'static str, message: String },
}

impl Failure {
    /// A file or stream that could not be used, named so that the line says which.
    pub fn io(what: impl Display, error: std::io::Error) -> Self {
        Failure::Error(format!("{what}: {error}"))
    }
}

/// Where lines go: text for people, or JSON objects for scripts.
#[derive(Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    pub fn json(&self) -> bool {
        self.json
    }

    /// Prints `text`, or `object` under `--json`, as one line on standard output.
    ///
    /// A closed standard output (`| head`) is not an error worth stopping for: the line is lost.
    pub fn line(&self, text: impl Display, object: Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = if self.json { writeln!(stdout, "{object}") } else { writeln!(stdout, "{text}") };
    }

    /// Prints `text`, or under `--json` the line `json`, already JSON text (for a value whose
    /// member order must stay as it is).
    pub fn raw_line(&self, text: impl Display, json: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = if self.json { writeln!(stdout, "{json}") } else { writeln!(stdout, "{text}") };
    }

    /// A note on standard error, such as a file that was skipped: text, or `object` under `--json`.
    pub fn note(&self, text: impl Display, object: Value) {
        let mut stderr = std::io::stderr().lock();
        let _ = if self.json { writeln!(stderr, "{object}") } else { writeln!(stderr, "{text}") };
    }

    /// A warning on standard error, prefixed as errors are, with a short code for `--json`.
    pub fn warn(&self, code: &str, message: impl Display) {
        self.note(
            format_args!("periskope-webhook: warning: {message}"),
            json!({ "type": "warning", "code": code, "message": message.to_string() }),
        );
    }

    /// Reports `failure` (if not already reported) and returns the exit status it stands for.
    pub fn fail(&self, failure: Failure) -> ExitCode {
        match failure {
            Failure::Unexpected => ExitCode::from(1),
            Failure::Interrupted => ExitCode::from(130),
            Failure::Error(message) => {
                self.note(
                    format_args!("periskope-webhook: error: {message}"),
                    json!({ "type": "error", "message": message }),
                );
                ExitCode::from(2)
            }
            Failure::Answer { code, message } => {
                self.note(
                    format_args!("periskope-webhook: error: {message}"),
                    json!({ "type": "error", "code": code, "message": message }),
                );
                ExitCode::from(1)
            }
        }
    }
}
