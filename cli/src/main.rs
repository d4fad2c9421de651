//! `periskope-webhook`: sign, verify, send and receive Periskope webhooks from the command line.

mod console;
mod delivery;
mod event_names;
mod forward;
mod inbox;
mod key;
mod listen;
mod output;
mod secret;
mod send;
mod sign;
mod socketio;
mod trigger;
mod webhooks;
mod websocket;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::output::{Failure, Output};

const ABOUT: &str = "Sign, verify, send and receive Periskope webhooks on your machine.";

const LONG_ABOUT: &str = "\
Sign, verify, send and receive Periskope webhooks on your machine.

Periskope POSTs each event as compact JSON and signs the exact bytes with HMAC-SHA256 under your \
signing key (the `peri_...` key of Periskope's console); the hex digest travels in the \
`x-periskope-signature` header. This tool does the same, so you can test a webhook endpoint \
without Periskope, and receive real deliveries to see what Periskope sends.

The signing key comes from --key, --key-file or the PERISKOPE_SIGNING_KEY environment variable. \
It is never printed.";

const AFTER_HELP: &str = "\
Exit status: 0 on success; 1 when a signature does not verify or an answer is not the expected \
one; 2 for a usage, file or network setup error (a connection refused included); 130 when \
`forward` is stopped (Ctrl-C, SIGTERM) with events kept undelivered.

Examples:
  export PERISKOPE_SIGNING_KEY=peri_...
  PERISKOPE_API_KEY=... periskope-webhook forward --phone 919876543210 --to http://127.0.0.1:3000/webhooks/periskope
  periskope-webhook trigger message.created --set data.body=hello
  periskope-webhook sign body.json
  periskope-webhook verify --signature 02a4cc84... body.json
  periskope-webhook listen --save captured/
  periskope-webhook send http://127.0.0.1:3000/webhooks/periskope tests/fixtures/deliveries --tamper
  periskope-webhook inbox --store periskope-inbox.db list --state dead";

#[derive(Parser)]
#[command(name = "periskope-webhook", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Print one JSON object per line instead of text, for scripts (errors too, on stderr).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Sign(sign::SignArgs),
    Verify(sign::VerifyArgs),
    Send(send::SendArgs),
    Listen(listen::ListenArgs),
    Forward(forward::ForwardArgs),
    Inbox(inbox::InboxArgs),
    Trigger(trigger::TriggerArgs),
    Webhooks(webhooks::WebhooksArgs),
}

fn main() -> ExitCode {
    let mut command = Cli::command();
    let matches = command.get_matches_mut();
    key::check_conflict(&mut command, &matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let output = Output::new(cli.json);
    let result = match cli.command {
        Command::Sign(args) => sign::sign(args, &output),
        Command::Verify(args) => sign::verify(args, &output),
        Command::Send(args) => send::send(args, &output),
        Command::Listen(args) => listen::listen(args, &output),
        Command::Forward(args) => forward::forward(args, &output),
        Command::Inbox(args) => inbox::inbox(args, &output),
        Command::Trigger(args) => trigger::trigger(args, &output),
        Command::Webhooks(args) => webhooks::webhooks(args, &output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => output.fail(failure),
    }
}

/// Runs `future` to completion on a multi-threaded runtime.
fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::io("starting the async runtime", error))?;
    Ok(runtime.block_on(future))
}
