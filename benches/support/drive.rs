//! Driving futures and services that answer at once, without a runtime: what the layer, its
//! no-op inner service and the memory store do.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::Request;
use tower::Service;

/// Drives a future that completes without waiting.
pub fn complete<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the driven future was expected to complete at once"),
    }
}

/// One request through `service`, which must be ready and answer at once.
pub fn call<S, B>(service: &mut S, request: Request<B>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: std::fmt::Debug,
{
    complete(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
    complete(service.call(request)).expect("no error")
}
