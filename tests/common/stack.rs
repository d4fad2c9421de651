//! The three servers the suites run on, all on 127.0.0.1 with an ephemeral port: axum 0.8,
//! hyper 1 (hyper-util, no framework) and tonic 0.14 (next to a gRPC health service); and
//! `for_each_stack!`, which writes a case once and runs it on each.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tower::Service;

use super::{BoxError, PATH};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// axum 0.8: `axum::serve` of a router whose every path goes to the service.
    Axum,
    /// hyper 1 via hyper-util's auto builder, the service called with hyper's own bodies.
    Hyper,
    /// tonic 0.14's server: gRPC health and the service on one port.
    Tonic,
}

/// A running server; shut down with [`Server::stop`] (or aborted when dropped).
pub struct Server {
    pub addr: SocketAddr,
    /// `http://{addr}{PATH}`.
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Signals shutdown and waits (bounded) for the server task to end.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Graceful shutdown waits for open connections; some cases leave one hanging on purpose.
        if tokio::time::timeout(Duration::from_secs(1), &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `service` on `stack` at every path (the cases use [`PATH`]).
pub async fn serve<S, B>(stack: Stack, service: S) -> Server
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Service<Request<axum::body::Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <S as Service<Request<Incoming>>>::Future: Send + 'static,
    <S as Service<Request<axum::body::Body>>>::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (shutdown, signal) = oneshot::channel::<()>();
    let signal = async move {
        let _ = signal.await;
    };
    let task = match stack {
        Stack::Axum => {
            let app = Router::new().fallback_service(service);
            tokio::spawn(async move {
                axum::serve(listener, app).with_graceful_shutdown(signal).await.expect("axum serves");
            })
        }
        Stack::Hyper => tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let mut connections = JoinSet::new();
            tokio::pin!(signal);
            loop {
                tokio::select! {
                    () = &mut signal => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let service = TowerToHyperService::new(service.clone());
                        let builder = builder.clone();
                        connections.spawn(async move {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        });
                    }
                }
            }
            // Dropping the set aborts the connections still open.
        }),
        Stack::Tonic => {
            let (_reporter, health) = tonic_health::server::health_reporter();
            let routes =
                tonic::service::Routes::from(Router::new().fallback_service(service)).add_service(health);
            tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .accept_http1(true)
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener),
                        signal,
                    )
                    .await
                    .expect("tonic serves");
            })
        }
    };
    Server { addr, url: format!("http://{addr}{PATH}"), shutdown: Some(shutdown), task }
}

/// Instantiates each named `async fn(Stack)` case as a module holding one test per stack, so a
/// failure names its stack (`case::axum`, ...).
macro_rules! for_each_stack {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use crate::common::Stack;

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
