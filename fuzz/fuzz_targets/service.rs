//! The whole `PeriskopeWebhookLayer::new(KEY)` service around a recording `service_fn`: any
//! method, headers, chunking, body errors; the oracle is in `harness/service.rs`.
//!
//! Input layout: one byte `n`, then `n` bytes decoded with `arbitrary` into a `Spec` (method,
//! signature, headers, chunking, errors; all zero is a well-formed signed POST), then the body
//! verbatim. A seed is `\0` followed by a fixture.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../harness/service.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else { return };
    let (control, body) = rest.split_at(usize::from(len).min(rest.len()));
    let Ok(spec) = harness::Spec::arbitrary(&mut Unstructured::new(control)) else { return };
    let input = harness::build(&spec, body);
    // `PERISKOPE_FUZZ_SHOW=1 cargo fuzz run service <file>` prints what a file decodes to.
    static SHOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *SHOW.get_or_init(|| std::env::var_os("PERISKOPE_FUZZ_SHOW").is_some()) {
        eprintln!("{spec:#?}\n{input:#?}");
    }
    harness::run(&input);
});
