//! Behavioural suite of `PeriskopeWebhookLayer`, run over real HTTP against three stacks served on
//! 127.0.0.1: axum 0.8, hyper 1 (via hyper-util) and tonic 0.14 (next to a gRPC health service).
//!
//! Each case in [`over_http`] is written once, against a [`Stack`], and instantiated for the
//! three stacks by `for_each_stack!`, so a failure names its stack (`case::axum`, ...).
//! [`in_process`] holds what does not cross HTTP: response extensions and `poll_ready`.

#[path = "../common/mod.rs"]
mod common;
mod in_process;
mod over_http;
mod support;

/// Instantiates each named `async fn(Stack)` case as a module holding one test per stack.
macro_rules! for_each_stack {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use crate::support::Stack;

                async fn run(stack: Stack) {
                    // Whole-case bound on top of the per-step timeouts.
                    tokio::time::timeout(std::time::Duration::from_secs(20), super::$case(stack))
                        .await
                        .unwrap_or_else(|_| panic!("{stack:?}: case timed out"));
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn axum() {
                    run(Stack::Axum).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn hyper() {
                    run(Stack::Hyper).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tonic() {
                    run(Stack::Tonic).await
                }
            }
        )*
    };
}
pub(crate) use for_each_stack;
