//! The signing key: from `--key`, `--key-file` or `PERISKOPE_SIGNING_KEY`, never printed.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use periskope_webhook::SigningKey;

use crate::output::{Failure, Output};

/// Where the signing key comes from.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// The signing key exactly as Periskope's console shows it (`peri_...`). Other users of this
    /// machine can see it in `ps`: prefer --key-file or the PERISKOPE_SIGNING_KEY variable.
    #[arg(long, value_name = "KEY", env = "PERISKOPE_SIGNING_KEY", hide_env_values = true)]
    key: Option<String>,

    /// A file holding the signing key (whitespace around it is ignored; a warning if other users
    /// can read it). Takes precedence over PERISKOPE_SIGNING_KEY.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// Refuses `--key` with `--key-file`, and either with `--insecure`, with the usage of the
/// subcommand they were given to. (clap's own conflict check would also count
/// PERISKOPE_SIGNING_KEY as `--key`: a key file or `--insecure` overrides it.)
pub fn check_conflict(command: &mut clap::Command, matches: &ArgMatches) {
    let Some((name, matches)) = matches.subcommand() else { return };
    let given = |id: &str| matches.ids().any(|present| present == id);
    let key_argument = given("key") && matches.value_source("key") == Some(ValueSource::CommandLine);
    let conflict = if given("key_file") && key_argument {
        "--key and --key-file cannot be used together"
    } else if given("insecure") && matches.get_flag("insecure") && (key_argument || given("key_file")) {
        "--insecure does not check signatures: give it no key"
    } else {
        return;
    };
    let error = match command.find_subcommand_mut(name) {
        Some(subcommand) => subcommand.error(clap::error::ErrorKind::ArgumentConflict, conflict),
        None => command.error(clap::error::ErrorKind::ArgumentConflict, conflict),
    };
    error.exit();
}

impl KeyArgs {
    /// The key, from the file if one was named, else from `--key` or the environment.
    pub fn signing_key(&self, output: &Output) -> Result<SigningKey, Failure> {
        let key = match &self.key_file {
            Some(path) => crate::secret::read_file(path, "the signing key", output)?,
            None => self.key.clone().ok_or_else(|| {
                Failure::Error(
                    "no signing key: pass --key-file FILE, set PERISKOPE_SIGNING_KEY, or pass --key KEY"
                        .to_owned(),
                )
            })?,
        };
        let key = crate::secret::not_blank(key, "the signing key")?;
        SigningKey::new(key.into_bytes()).map_err(|_| Failure::Error("the signing key is empty".to_owned()))
    }
}

/// A label of the key that verified a delivery, with what a default label means: `key-0` is
/// [`SigningKeys`](periskope_webhook::SigningKeys)' name for the first key the server was
/// given, `key-1` for the second, and so on; a label the application chose is printed as it is.
pub fn explain_label(label: &str) -> String {
    let Some(index) = label.strip_prefix("key-").and_then(|index| index.parse::<usize>().ok()) else {
        return label.to_owned();
    };
    let ordinal = match index {
        0 => "first".to_owned(),
        1 => "second".to_owned(),
        2 => "third".to_owned(),
        n => format!("{}th", n + 1),
    };
    format!("{label} (the {ordinal} signing key the server was given)")
}
