//! Secrets read from files (`--key-file`, `--api-key-file`): one reader for both.

use std::path::Path;

use crate::output::{Failure, Output};

/// The secret in the file at `path`, named `what` in messages (`the signing key`), with the
/// whitespace around it trimmed: an editor's final newline, or a space pasted with the key,
/// would otherwise sign with another key. A blank file is refused. On Unix, a file that the
/// group or others may read is used, with a warning: the key is readable by other users.
pub fn read_file(path: &Path, what: &str, output: &Output) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| Failure::io(format_args!("reading {what} file {}", path.display()), error))?;
    warn_if_shared(path, what, output);
    let secret = text.trim();
    if secret.is_empty() {
        return Err(Failure::Error(format!("{what} file {} is blank", path.display())));
    }
    Ok(secret.to_owned())
}

/// `secret` unless it is blank: a key of spaces would be used as one, and then found in every
/// message that redacts it.
pub fn not_blank(secret: String, what: &str) -> Result<String, Failure> {
    if secret.trim().is_empty() {
        return Err(Failure::Error(format!("{what} is blank")));
    }
    Ok(secret)
}

#[cfg(unix)]
fn warn_if_shared(path: &Path, what: &str, output: &Output) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::metadata(path) else { return };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let file = path.display();
        output.warn(
            "secret_file_shared",
            format_args!(
                "{what} file {file} can be read by other users (mode {mode:03o}): `chmod 600 {file}`"
            ),
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_: &Path, _: &str, _: &Output) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_trimmed_and_blank_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let output = Output::new(false);
        let file = dir.path().join("key");
        for (text, read) in [("key \n", Some("key")), ("\tkey\r\n", Some("key")), (" \n", None), ("", None)] {
            std::fs::write(&file, text).unwrap();
            assert_eq!(read_file(&file, "the key", &output).ok().as_deref(), read, "{text:?}");
        }
        assert!(not_blank(" ".to_owned(), "the API key").is_err());
        assert_eq!(not_blank("k".to_owned(), "the API key").unwrap(), "k");
    }
}
