//! The bridge between a job and the trace of the delivery it came from (feature
//! `opentelemetry`): the acceptor stores the accepting span's context as a W3C `traceparent`,
//! and each attempt's span links to it, the first attempt as its child too.
//!
//! `tracing` alone can neither read a span's OpenTelemetry context nor set a remote parent or a
//! link; `tracing-opentelemetry`'s span extension does both, and does nothing when the app
//! installed no `tracing-opentelemetry` layer.

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's OpenTelemetry context as a W3C `traceparent` (version `00`), or `None`
/// when it has none: no span, or no `tracing-opentelemetry` layer.
pub(super) fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Places an attempt's span in the trace of its job's delivery: every attempt links to the
/// delivery's span; the first attempt is also its child, and a later attempt (or one whose job
/// has no valid stored context) is the root of a trace of its own. A malformed `traceparent` is
/// ignored, as the W3C specification asks.
pub(super) fn link_attempt(span: &tracing::Span, traceparent: Option<&str>, attempt: u32) {
    let delivery = traceparent.and_then(parse_traceparent);
    let parent = match &delivery {
        Some(delivery) if attempt == 1 => Context::new().with_remote_span_context(delivery.clone()),
        // Not whatever context happens to be current on the worker's thread.
        _ => Context::new(),
    };
    // Fails only without a `tracing-opentelemetry` layer (or with the span filtered out): then
    // there is no trace to place the span in.
    let _ = span.set_parent(parent);
    if let Some(delivery) = delivery {
        span.add_link(delivery);
    }
}

/// The span context a W3C `traceparent` names, or `None` when it is malformed: a version other
/// than `ff` (a later version may append fields after a `-`), a trace id of 32 and a parent id
/// of 16 lowercase hex digits, neither all zeros, and 2 hex digits of flags.
fn parse_traceparent(value: &str) -> Option<SpanContext> {
    const LENGTH: usize = 55;
    let bytes = value.as_bytes();
    let version = value.get(..2)?;
    let well_framed = match version {
        "00" => bytes.len() == LENGTH,
        "ff" => false,
        _ => bytes.len() == LENGTH || bytes.get(LENGTH) == Some(&b'-'),
    };
    if !well_framed || !is_lower_hex(version) || [2, 35, 52].iter().any(|&at| bytes.get(at) != Some(&b'-')) {
        return None;
    }
    let trace_id = value.get(3..35).filter(|hex| is_lower_hex(hex))?;
    let span_id = value.get(36..52).filter(|hex| is_lower_hex(hex))?;
    let flags = value.get(53..55).filter(|hex| is_lower_hex(hex))?;
    let trace_id = TraceId::from(u128::from_str_radix(trace_id, 16).ok()?);
    let span_id = SpanId::from(u64::from_str_radix(span_id, 16).ok()?);
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    let span_context = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    span_context.is_valid().then_some(span_context)
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_names_its_remote_span() {
        let span_context = parse_traceparent(VALID).expect("valid");
        assert_eq!(format!("{:032x}", span_context.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(format!("{:016x}", span_context.span_id()), "00f067aa0ba902b7");
        assert!(span_context.is_sampled() && span_context.is_remote());
        let unsampled = parse_traceparent(&VALID.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn a_later_version_may_append_fields() {
        assert!(parse_traceparent(&VALID.replacen("00", "01", 1)).is_some());
        assert!(parse_traceparent(&format!("{}-extra", VALID.replacen("00", "01", 1))).is_some());
        assert!(parse_traceparent(&format!("{}x", VALID.replacen("00", "01", 1))).is_none());
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        let malformed = [
            "",
            "garbage",
            &VALID[..54],
            &format!("{VALID}-extra"),
            &VALID.replacen("00", "ff", 1),
            &VALID.replace("4bf92f3577b34da6a3ce929d0e0e4736", "00000000000000000000000000000000"),
            &VALID.replace("00f067aa0ba902b7", "0000000000000000"),
            &VALID.to_uppercase(),
            &VALID.replace('-', "_"),
            &VALID.replace("4bf9", "4bg9"),
            &VALID.replace("-01", "-0x"),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for value in malformed {
            assert!(parse_traceparent(value).is_none(), "{value:?}");
        }
    }

    #[test]
    fn without_a_tracing_opentelemetry_layer_nothing_is_stored_and_nothing_fails() {
        assert_eq!(current_traceparent(), None);
        let span = tracing::info_span!("periskope.attempt");
        link_attempt(&span, Some(VALID), 1);
        link_attempt(&span, Some("garbage"), 2);
    }
}
