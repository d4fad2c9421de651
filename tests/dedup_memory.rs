//! `MemoryStore` memory stays bounded by its capacity through the middleware, whatever the mix
//! of failures: counted by a global allocator, so this file is its own test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};

use periskope_webhook::dedup::{Dedup, MemoryStore};
use periskope_webhook::{PeriskopeWebhookLayer, testing};
use tower::{Layer, ServiceExt, service_fn};

/// Bytes allocated and not yet freed, by anything in this process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call forwards to the system allocator with the same arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEY: &str = "peri_memory-test-key";

#[test]
fn fifty_thousand_failed_deliveries_of_seven_keys_add_under_a_megabyte() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = MemoryStore::new(100_000, Duration::from_secs(24 * 60 * 60));
    let handler = service_fn(|_request: Request<http_body_util::Full<bytes::Bytes>>| async {
        let mut response = Response::new(http_body_util::Full::<bytes::Bytes>::default());
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        Ok::<_, Infallible>(response)
    });
    let service = PeriskopeWebhookLayer::new(KEY).deduplicate(Dedup::new(store.clone())).layer(handler);
    let requests: Vec<_> = (0..7)
        .map(|index| {
            let body = format!(r#"{{"event":"message.created","data":{{"message_id":"m{index}"}}}}"#);
            testing::signed_request_for_body::<bytes::Bytes>(KEY, "/webhooks/periskope", body)
        })
        .collect();
    let deliver = |rounds: usize| {
        runtime.block_on(async {
            for round in 0..rounds {
                let template = &requests[round % requests.len()];
                let mut request = Request::new(http_body_util::Full::new(template.body().clone()));
                *request.method_mut() = template.method().clone();
                *request.headers_mut() = template.headers().clone();
                let response = service.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            }
        })
    };

    deliver(1_000);
    let before = LIVE.load(Ordering::SeqCst);
    deliver(50_000);
    let added = LIVE.load(Ordering::SeqCst) - before;
    assert!(added < 1_000_000, "50,000 failed deliveries added {added} bytes");
    assert!(store.is_empty(), "every failed claim was released");
}
