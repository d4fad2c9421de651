//! Arbitrary bytes → `Event::from_slice` and `WebhookEvent::decode`; an accepted event must
//! survive serialise-then-decode unchanged. The oracle is in `harness/decode.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/decode.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::check(data));
