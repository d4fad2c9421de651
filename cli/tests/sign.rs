//! `sign` and `verify`, run as the built binary: the published test vector, every way of giving
//! the key, exit statuses, one-line errors, and a key that is never printed.

mod common;

use common::*;

#[test]
fn sign_reproduces_the_test_vector_from_a_file_and_from_stdin() {
    let vector = vector();
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, &vector.body).unwrap();

    let output = run(cli().args(["sign", "--key", &vector.key]).arg(&body));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("{}\n", vector.signature));

    let output = run_with_stdin(cli().args(["sign", "--key", &vector.key, "-"]), vector.body.as_bytes());
    assert_eq!(stdout(&output), format!("{}\n", vector.signature));
    // Standard input is the default.
    let output = run_with_stdin(cli().args(["sign", "--key", &vector.key]), vector.body.as_bytes());
    assert_eq!(stdout(&output), format!("{}\n", vector.signature));
}

#[test]
fn the_key_comes_from_a_file_or_the_environment() {
    let vector = vector();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    // An editor leaves a newline at the end of the file, a paste a space: neither is the key's.
    std::fs::write(&key_file, format!(" {} \r\n", vector.key)).unwrap();
    set_mode(&key_file, 0o600);

    let from_file =
        run_with_stdin(cli().arg("sign").arg("--key-file").arg(&key_file), vector.body.as_bytes());
    assert_eq!(stdout(&from_file), format!("{}\n", vector.signature), "{}", stderr(&from_file));
    assert_eq!(stderr(&from_file), "", "a file only its owner reads gets no warning");

    // A file other users may read is used, with one warning naming it and the fix.
    set_mode(&key_file, 0o644);
    let shared = run_with_stdin(cli().arg("sign").arg("--key-file").arg(&key_file), vector.body.as_bytes());
    assert_eq!(stdout(&shared), format!("{}\n", vector.signature), "{}", stderr(&shared));
    let warning = stderr(&shared);
    assert!(
        warning.starts_with("periskope-webhook: warning: the signing key file ")
            && warning.contains("(mode 644): `chmod 600 ")
            && warning.lines().count() == 1,
        "{warning}"
    );
    assert!(!warning.contains(&vector.key), "{warning}");

    let from_env =
        run_with_stdin(cli().arg("sign").env("PERISKOPE_SIGNING_KEY", &vector.key), vector.body.as_bytes());
    assert_eq!(stdout(&from_env), format!("{}\n", vector.signature));

    // The file wins over the environment.
    let both = run_with_stdin(
        cli().arg("sign").arg("--key-file").arg(&key_file).env("PERISKOPE_SIGNING_KEY", "peri_other"),
        vector.body.as_bytes(),
    );
    assert_eq!(stdout(&both), format!("{}\n", vector.signature));
}

#[test]
fn sign_json_gives_the_signature_and_length() {
    let vector = vector();
    let output = run_with_stdin(cli().args(["--json", "sign", "--key", &vector.key]), vector.body.as_bytes());
    let line: serde_json::Value = serde_json::from_str(stdout(&output).trim_end()).unwrap();
    assert_eq!(line, serde_json::json!({ "signature": vector.signature, "bytes": 947 }));
}

#[test]
fn verify_accepts_the_vector_and_refuses_anything_else() {
    let vector = vector();
    let verify = |signature: &str, body: &str| {
        run_with_stdin(
            cli().args(["verify", "--key", &vector.key, "--signature", signature]),
            body.as_bytes(),
        )
    };

    let valid = verify(&vector.signature, &vector.body);
    assert_eq!(valid.status.code(), Some(0), "{}", stderr(&valid));
    assert_eq!(stdout(&valid), "valid: the signature matches these 947 bytes\n");

    // Upper-case hex is the same signature.
    assert_eq!(verify(&vector.signature.to_uppercase(), &vector.body).status.code(), Some(0));

    let mut changed = vector.body.clone().into_bytes();
    changed[100] ^= 1;
    let mismatch = verify(&vector.signature, std::str::from_utf8(&changed).unwrap());
    assert_eq!(mismatch.status.code(), Some(1));
    assert_eq!(stdout(&mismatch), "invalid: x-periskope-signature does not match the request body\n");

    let malformed = verify(&vector.signature[..60], &vector.body);
    assert_eq!(malformed.status.code(), Some(1));
    assert_eq!(stdout(&malformed), "invalid: x-periskope-signature header is not 64 hex digits\n");
}

#[test]
fn verify_says_when_the_body_was_reformatted_after_signing() {
    let vector = vector();
    let pretty = std::fs::read(deliveries_dir().join("reaction.created.envelope.json")).unwrap();
    let output = run_with_stdin(
        cli().args(["verify", "--key", &vector.key, "--signature", &vector.signature]),
        &pretty,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("matches the compact form"), "{}", stdout(&output));
}

#[test]
fn verify_json_gives_the_code() {
    let vector = vector();
    let output = run_with_stdin(
        cli().args(["--json", "verify", "--key", "peri_other", "--signature", &vector.signature]),
        vector.body.as_bytes(),
    );
    assert_eq!(output.status.code(), Some(1));
    let line: serde_json::Value = serde_json::from_str(stdout(&output).trim_end()).unwrap();
    assert_eq!(line["valid"], false);
    assert_eq!(line["code"], "signature_mismatch");
}

#[test]
fn usage_and_io_errors_exit_2_with_one_line() {
    let vector = vector();
    let dir = tempfile::tempdir().unwrap();
    let empty_key = dir.path().join("empty");
    std::fs::write(&empty_key, "\n").unwrap();
    let missing = dir.path().join("missing.json");

    let cases = [
        (cli().args(["sign", "--key", "peri_k"]).arg(&missing).output().unwrap(), "missing.json"),
        (cli().args(["sign"]).output().unwrap(), "no signing key"),
        (cli().arg("sign").arg("--key-file").arg(&empty_key).output().unwrap(), "is blank"),
        (cli().args(["sign", "--key", " "]).output().unwrap(), "the signing key is blank"),
        (cli().arg("sign").arg("--key-file").arg(&missing).output().unwrap(), "key file"),
        (cli().args(["verify", "--key", "peri_k"]).output().unwrap(), "--signature"),
    ];
    for (output, needle) in cases {
        assert_eq!(output.status.code(), Some(2), "{needle}: {}", stderr(&output));
        assert!(stderr(&output).contains(needle), "{needle}: {}", stderr(&output));
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
    for output in [
        cli().args(["sign", "--key", "peri_k"]).arg(&missing).output().unwrap(),
        cli().args(["--json", "sign", "--key", "peri_k"]).arg(&missing).output().unwrap(),
    ] {
        assert_one_error_line(&output);
    }

    let both = cli().args(["sign", "--key", &vector.key]).arg("--key-file").arg(&empty_key).output().unwrap();
    assert_eq!(both.status.code(), Some(2));
    assert!(stderr(&both).contains("cannot be used together"), "{}", stderr(&both));
}

#[test]
fn key_conflicts_show_the_usage_of_their_subcommand() {
    let cases = [
        (&["sign", "--key", "peri_k", "--key-file", "k"][..], "Usage: periskope-webhook sign "),
        (
            &["verify", "--signature", "00", "--key", "peri_k", "--key-file", "k"],
            "Usage: periskope-webhook verify ",
        ),
        (
            &["send", "--key", "peri_k", "--key-file", "k", "http://127.0.0.1:9/x", "-"],
            "Usage: periskope-webhook send ",
        ),
        (&["listen", "--insecure", "--key", "peri_k"], "Usage: periskope-webhook listen "),
    ];
    for (args, usage) in cases {
        let output = run(cli().args(args));
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let error = stderr(&output);
        assert!(error.contains(usage), "{args:?}: {error}");
        assert!(!error.contains("<COMMAND>"), "{args:?} shows the top-level usage: {error}");
    }
}

#[test]
fn the_key_is_never_printed() {
    let key = "peri_never-printed-0000-4000-8000";
    let dir = tempfile::tempdir().unwrap();
    let outputs = [
        cli().arg("--help").env("PERISKOPE_SIGNING_KEY", key).output().unwrap(),
        cli().args(["sign", "--help"]).env("PERISKOPE_SIGNING_KEY", key).output().unwrap(),
        cli().args(["verify", "--help"]).env("PERISKOPE_SIGNING_KEY", key).output().unwrap(),
        cli().args(["sign", "--key", key]).arg(dir.path().join("missing")).output().unwrap(),
        cli().args(["sign", "--bogus"]).env("PERISKOPE_SIGNING_KEY", key).output().unwrap(),
        cli().args(["sign", "--key", key, "--key-file", "x"]).output().unwrap(),
    ];
    for output in outputs {
        let printed = format!("{}{}", stdout(&output), stderr(&output));
        assert!(!printed.contains(key) && !printed.contains("never-printed"), "{printed}");
    }
}

#[test]
fn help_explains_the_key_and_the_exit_statuses() {
    let help = stdout(&cli().arg("--help").output().unwrap());
    for needle in ["PERISKOPE_SIGNING_KEY", "Exit status", "sign", "verify"] {
        assert!(help.contains(needle), "{needle} missing from --help:\n{help}");
    }
    let sign_help = stdout(&cli().args(["sign", "--help"]).output().unwrap());
    assert!(sign_help.contains("`ps`"), "{sign_help}");
}

/// Sets the file's permission bits.
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
