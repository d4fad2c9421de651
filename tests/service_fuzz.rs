//! The `service` fuzz target as a property test, for CI on stable: the same harness and oracle
//! (`fuzz/harness/service.rs`), with proptest generating the request instead of libFuzzer.
//!
//! Any method, headers (`content-length` and `x-periskope-signature` among them, often the
//! correct signature), a body in any chunks with pending polls, trailers and an optional error
//! midway, through `PeriskopeWebhookLayer::new(KEY)` around a recording `service_fn`: the inner
//! service is called exactly when the method is POST, the body is within the limit and read
//! without error, the signature is correct, the body decodes and the event filter (when one is
//! set) accepts its kind; it then sees exactly the bytes sent and the `WebhookEvent`; a refused
//! kind is answered `200 event_ignored`; anything else is the right rejection. The long-running version
//! is `cargo fuzz run service` (see `fuzz/`).

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config;

#[path = "../fuzz/harness/service.rs"]
mod harness;

use harness::{FrameSpec, HintSpec, LengthSpec, MethodSpec, NameSpec, SignatureSpec, Spec};

fn config() -> Config {
    // 1024 cases (about a second in debug) unless PROPTEST_CASES says otherwise; no regression
    // files, so that this suite never writes into the source tree.
    let default = Config::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { default.cases } else { 1024 };
    Config { cases, failure_persistence: None, ..default }
}

fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => "[0-9a-fA-F \t]{0,70}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..max),
    ]
    .boxed()
}

fn method() -> impl Strategy<Value = MethodSpec> {
    prop_oneof![
        24 => Just(MethodSpec::Post),
        1 => Just(MethodSpec::Get),
        1 => Just(MethodSpec::Put),
        1 => prop::sample::select(vec!["post", "PATCH", "OPTIONS", "POST ", "DELETE", "X-POST"])
            .prop_map(|token| MethodSpec::Token(token.as_bytes().to_vec())),
    ]
}

fn signature() -> impl Strategy<Value = SignatureSpec> {
    prop_oneof![
        16 => Just(SignatureSpec::Correct),
        1 => (any::<bool>(), any::<u8>())
            .prop_map(|(uppercase, padding)| SignatureSpec::CorrectPadded { uppercase, padding }),
        1 => Just(SignatureSpec::Absent),
        1 => any::<[u8; 32]>().prop_map(SignatureSpec::Tag),
        1 => bytes(70).prop_map(SignatureSpec::Raw),
        1 => Just(SignatureSpec::CorrectTwice),
        1 => bytes(70).prop_map(SignatureSpec::CorrectThen),
        1 => bytes(70).prop_map(SignatureSpec::ThenCorrect),
        1 => any::<u8>().prop_map(SignatureSpec::OneDigitOff),
        1 => bytes(16).prop_map(SignatureSpec::OtherBody),
    ]
}

fn content_length() -> impl Strategy<Value = LengthSpec> {
    prop_oneof![
        12 => Just(LengthSpec::Actual),
        2 => Just(LengthSpec::Absent),
        1 => (0u64..10_000).prop_map(LengthSpec::Number),
        1 => any::<u64>().prop_map(LengthSpec::Number),
        1 => any::<u8>().prop_map(LengthSpec::Nines),
        1 => "[ +0-9a-z]{0,24}".prop_map(|text| LengthSpec::Raw(text.into_bytes())),
    ]
}

fn header_name() -> impl Strategy<Value = NameSpec> {
    prop_oneof![
        Just(NameSpec::Signature),
        Just(NameSpec::ContentLength),
        Just(NameSpec::ContentType),
        "[a-zA-Z-]{1,12}".prop_map(|name| NameSpec::Raw(name.into_bytes())),
    ]
}

fn frame() -> impl Strategy<Value = FrameSpec> {
    prop_oneof![
        3 => Just(FrameSpec::Pending),
        2 => Just(FrameSpec::Trailers),
        2 => Just(FrameSpec::Empty),
        1 => Just(FrameSpec::Error),
    ]
}

fn hint() -> impl Strategy<Value = HintSpec> {
    prop_oneof![
        6 => Just(HintSpec::Unknown),
        4 => Just(HintSpec::Exact),
        1 => (0u64..5_000, proptest::option::of(0u64..100))
            .prop_map(|(lower, upper)| HintSpec::Fixed { lower, upper }),
        1 => (any::<u64>(), proptest::option::of(any::<u64>()))
            .prop_map(|(lower, upper)| HintSpec::Fixed { lower, upper }),
    ]
}

prop_compose! {
    fn spec()(
        method in method(),
        signature in signature(),
        content_length in content_length(),
        extra_headers in prop::collection::vec((header_name(), bytes(70)), 0..3),
        extra_headers_first in any::<bool>(),
        cuts in prop::collection::vec(any::<u16>(), 0..6),
        frames in prop::collection::vec((any::<u16>(), frame()), 0..3),
        hint in hint(),
        limit in proptest::option::weighted(0.15, prop_oneof![0u16..5_000, any::<u16>()]),
        status in any::<u8>(),
        handler_yields in any::<u8>(),
        version in any::<u8>(),
        filter in proptest::option::weighted(0.3, any::<u32>()),
    ) -> Spec {
        Spec {
            method, signature, content_length, extra_headers, extra_headers_first, cuts, frames, hint,
            limit, status, handler_yields, version, filter,
        }
    }
}

fn fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deliveries");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/deliveries")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".envelope.json"))
        .collect();
    paths.sort();
    paths.into_iter().map(|path| std::fs::read(path).expect("a fixture")).collect()
}

/// A delivery (a fixture, maybe with a byte changed or cut short), a small event, or noise.
fn body() -> BoxedStrategy<Vec<u8>> {
    let fixtures = fixtures();
    assert!(!fixtures.is_empty());
    let count = fixtures.len();
    let fixture =
        (0..count, proptest::option::of((any::<prop::sample::Index>(), any::<u8>(), any::<bool>())))
            .prop_map(move |(which, edit)| {
                let mut body = fixtures[which].clone();
                if let Some((at, byte, cut)) = edit {
                    let at = at.index(body.len());
                    if cut { body.truncate(at) } else { body[at] = byte }
                }
                body
            });
    let small = prop::sample::select(vec![
        r#"{"event":"note.created","data":{}}"#,
        r#"{"data":{"body":"hi"},"event_type":"message.created"}"#,
        r#"{"event":"chat.label.updated","data":[1,2]}"#,
        r#"{"event":"message.created","data":[]}"#,
        r#"{"event":null}"#,
        r#"[]"#,
        "",
    ])
    .prop_map(|text| text.as_bytes().to_vec());
    prop_oneof![6 => fixture, 2 => small, 1 => prop::collection::vec(any::<u8>(), 0..64)].boxed()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_layer_calls_the_handler_exactly_for_valid_deliveries(spec in spec(), body in body()) {
        harness::run(&harness::build(&spec, &body));
    }
}
