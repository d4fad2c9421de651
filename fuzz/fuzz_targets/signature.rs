//! Arbitrary header values and body → `SigningKeys::verify` and `verify_headers` answer as a
//! reference HMAC does; the correct signature verifies and a one-bit change never does. The
//! oracle is in `harness/signature.rs`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[path = "../harness/signature.rs"]
mod harness;

/// A header value to try.
#[derive(Arbitrary, Debug)]
enum Value {
    /// The correct signature, in either case, with whitespace around it.
    Correct { uppercase: bool, left: u8, right: u8 },
    /// The second key's correct signature.
    CorrectForSecondKey,
    /// The correct signature with one digit replaced.
    DigitReplaced { at: u8, digit: u8 },
    /// Any 32 bytes as hex.
    Tag([u8; 32]),
    /// Any bytes.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Case<'a> {
    values: Vec<Value>,
    second_key: Vec<u8>,
    flip: u32,
    /// The rest of the input, verbatim.
    body: &'a [u8],
}

fuzz_target!(|case: Case<'_>| {
    let body = case.body;
    let correct = harness::signature_hex(harness::KEY, body);
    let values = case
        .values
        .iter()
        .map(|value| match value {
            Value::Correct { uppercase, left, right } => {
                let hex = if *uppercase { correct.to_uppercase() } else { correct.clone() };
                let pad =
                    |n: u8| [" ", "\t", "\n", "\r", "\x0c"][usize::from(n) % 5].repeat(usize::from(n % 3));
                format!("{}{hex}{}", pad(*left), pad(*right)).into_bytes()
            }
            Value::CorrectForSecondKey => harness::signature_hex(&case.second_key, body).into_bytes(),
            Value::DigitReplaced { at, digit } => {
                let mut hex = correct.clone().into_bytes();
                hex[usize::from(*at) % 64] = *digit;
                hex
            }
            Value::Tag(tag) => tag.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes(),
            Value::Raw(raw) => raw.clone(),
        })
        .collect();
    harness::check(&harness::Input {
        values,
        second_key: case.second_key.clone(),
        flip: case.flip as usize,
        body,
    });
});
