//! `sign` and `verify`: the `x-periskope-signature` of a body, computed or checked.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::Args;
use periskope_webhook::signature::sign as signature_of;
use periskope_webhook::testing::compact_json;
use periskope_webhook::{SignatureError, SigningKeys};
use serde_json::json;

use crate::key::KeyArgs;
use crate::output::{Failure, Output};

/// Print the signature Periskope would send for a body: the HMAC-SHA256 of its exact bytes,
/// as 64 lowercase hex digits.
///
/// The bytes are signed as they are: a pretty-printed file or a trailing newline gives another
/// signature than the compact JSON Periskope sends (`send` compacts before signing).
#[derive(Args, Debug)]
pub struct SignArgs {
    #[command(flatten)]
    key: KeyArgs,

    /// The body: a file, or `-` for standard input.
    #[arg(value_name = "FILE|-", default_value = "-")]
    input: PathBuf,
}

/// Check an `x-periskope-signature` value against a body: exit status 0 when it matches, 1 with
/// the reason when it does not.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    key: KeyArgs,

    /// The signature to check: 64 hex digits, as in the `x-periskope-signature` header.
    #[arg(long, short, value_name = "HEX")]
    signature: String,

    /// The body exactly as received: a file, or `-` for standard input.
    #[arg(value_name = "FILE|-", default_value = "-")]
    input: PathBuf,
}

pub fn sign(args: SignArgs, output: &Output) -> Result<(), Failure> {
    let key = args.key.signing_key(output)?;
    let body = read_input(&args.input)?;
    let signature = signature_of(&key, &body);
    output.line(&signature, json!({ "signature": signature, "bytes": body.len() }));
    Ok(())
}

pub fn verify(args: VerifyArgs, output: &Output) -> Result<(), Failure> {
    let keys = SigningKeys::from(args.key.signing_key(output)?);
    let body = read_input(&args.input)?;
    match keys.verify(args.signature.as_bytes(), &body) {
        Ok(_) => {
            output.line(
                format_args!("valid: the signature matches these {} bytes", body.len()),
                json!({ "valid": true, "bytes": body.len() }),
            );
            Ok(())
        }
        Err(error) => {
            let hint = mismatch_hint(&keys, &args.signature, &body, error);
            output.line(
                format_args!("invalid: {error}{hint}"),
                json!({ "valid": false, "code": error.code(), "reason": format!("{error}{hint}") }),
            );
            Err(Failure::Unexpected)
        }
    }
}

/// The usual cause of a mismatch, when it is that the body was reformatted after signing.
fn mismatch_hint(keys: &SigningKeys, signature: &str, body: &[u8], error: SignatureError) -> &'static str {
    let compacts_to_match = error == SignatureError::Mismatch
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
        && keys.verify(signature.as_bytes(), &compact_json(body)).is_ok();
    if compacts_to_match {
        " (it matches the compact form of this JSON: verify the bytes exactly as received)"
    } else {
        ""
    }
}

/// The bytes of `path`, or of standard input for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, Failure> {
    if path == Path::new("-") {
        let mut stdin = std::io::stdin().lock();
        if stdin.is_terminal() {
            eprintln!("reading the body from standard input; end it with Ctrl-D");
        }
        let mut body = Vec::new();
        stdin.read_to_end(&mut body).map_err(|error| Failure::io("reading standard input", error))?;
        return Ok(body);
    }
    std::fs::read(path).map_err(|error| Failure::io(format_args!("reading {}", path.display()), error))
}
