//! Behavioural suite of `PeriskopeWebhookLayer`, run over real HTTP against three stacks served on
//! 127.0.0.1: axum 0.8, hyper 1 (via hyper-util) and tonic 0.14 (next to a gRPC health service).
//!
//! Each case in [`over_http`] is written once, against a `Stack`, and instantiated for the
//! three stacks by `tests/common`'s `for_each_stack!`, so a failure names its stack
//! (`case::axum`, ...).
//! [`in_process`] holds what does not cross HTTP: response extensions and `poll_ready`.

#[path = "../common/mod.rs"]
mod common;
mod in_process;
mod over_http;
mod spans;
mod support;
