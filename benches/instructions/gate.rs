//! What the instruction gate holds counts to, apart from measuring them: the counts each body
//! must have, the ratios bounded and how far each may move, and the baseline file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The operations counted on every body.
pub const OPERATIONS: [&str; 6] = ["typed", "value", "layer", "inner", "hmac", "sha256"];

/// The layer's own cost beyond HMAC and decoding is bounded on bodies smaller than this. On the
/// large ones it is a few thousand instructions in tens of millions, where how the compiler
/// placed HMAC and the decode inside the layer moves the difference by more than that (the
/// 650 KB chat's request through the layer counts fewer than HMAC and decode measured alone).
pub const SMALL_BODY: usize = 4096;

/// How much the layer's own cost beyond HMAC and decoding may grow over its baseline, as a
/// fraction of that cost: a difference of counts a hundred times its size, it moves more than
/// the other ratios. Growth by a quarter must fail; what that cost moved by with no change to
/// the layer must pass: 14% on one body (1-5% on the others) between two VMs with the same
/// library source, 4.5% when only the bench binary changed, 2-3% when only the decoding code
/// did, at most 2 instructions from run to run.
pub const BEYOND_WORK_TOLERANCE: f64 = 0.18;

/// How much worse than its baseline every other ratio may get: twice what a ratio moved by
/// with no change that matters (1-1.5%).
pub const TOLERANCE: f64 = 0.03;

/// The file the ratios are held to, from the package's root.
pub const BASELINE_FILE: &str = "benches/instructions.baseline";

/// How the baseline is rewritten.
pub const WRITE_COMMAND: &str = "INSTRUCTIONS_BASELINE=write INSTRUCTIONS_BASELINE_REASON='why' \
                                 cargo bench --bench instructions --profile release";

/// Instructions per call from callgrind's totals for 11 calls and for 1: what one call does
/// after the first. Zero when 11 calls counted no more than 1, as when callgrind's toggle
/// matched nothing, so that the count fails as a zero.
pub fn per_call(eleven_calls: u64, one_call: u64) -> u64 {
    eleven_calls.saturating_sub(one_call) / 10
}

/// Instructions per call of each operation on one body.
pub struct Counts {
    pub bytes: usize,
    pub instructions: BTreeMap<&'static str, u64>,
}

impl Counts {
    /// The count of `operation`, which must be there and positive: a ratio of a zero would be
    /// NaN or infinite, and NaN compares as within any tolerance.
    pub fn of(&self, operation: &str) -> Result<u64, String> {
        match self.instructions.get(operation) {
            Some(0) => {
                Err(format!("`{operation}` counted no instructions (did the toggle match `measured`?)"))
            }
            Some(&count) => Ok(count),
            None => Err(format!("no count for `{operation}`")),
        }
    }

    /// The request through the layer less the same request through the inner service alone.
    pub fn layer_own(&self) -> Result<u64, String> {
        positive_difference(
            "the layer's own count (`layer` less `inner`)",
            self.of("layer")?,
            self.of("inner")?,
        )
    }

    /// HMAC + typed decode: the work the layer cannot avoid.
    pub fn work(&self) -> Result<u64, String> {
        Ok(self.of("hmac")? + self.of("typed")?)
    }

    /// What the layer spends beyond HMAC and the typed decode: collecting the body, the
    /// signature and timestamp headers, the extensions, the answer.
    pub fn layer_beyond_work(&self) -> Result<u64, String> {
        positive_difference(
            "the layer's own count beyond HMAC + typed decode",
            self.layer_own()?,
            self.work()?,
        )
    }
}

fn positive_difference(what: &str, minuend: u64, subtrahend: u64) -> Result<u64, String> {
    match minuend.checked_sub(subtrahend) {
        Some(difference) if difference > 0 => Ok(difference),
        _ => Err(format!("{what} is not positive: {minuend} - {subtrahend}")),
    }
}

/// Which way a ratio gets worse.
#[derive(Clone, Copy)]
pub enum Better {
    Higher,
    Lower,
}

/// A ratio of two counts of one body, held to its baseline.
pub struct Bound {
    pub name: &'static str,
    /// What the ratio divides, for the baseline's header.
    pub meaning: &'static str,
    pub better: Better,
    /// How much worse than its baseline the ratio may get, as a fraction of the baseline.
    pub tolerance: f64,
    /// Bodies of this many bytes and more are not held to this bound.
    pub bodies_under: usize,
    pub ratio: fn(&Counts) -> Result<f64, String>,
}

impl Bound {
    fn applies(&self, bytes: usize) -> bool {
        bytes < self.bodies_under
    }

    fn worse(&self, value: f64, baseline: f64) -> bool {
        match self.better {
            Better::Higher => value < baseline * (1.0 - self.tolerance),
            Better::Lower => value > baseline * (1.0 + self.tolerance),
        }
    }

    /// The ratio on `counts`, `None` when the bound does not apply to the body.
    pub fn on(&self, counts: &Counts) -> Option<Result<f64, String>> {
        self.applies(counts.bytes).then(|| (self.ratio)(counts))
    }
}

/// Every ratio held to the baseline.
///
/// HMAC is held to SHA-256 of the same body: the hash is the work HMAC cannot avoid, and both
/// run the same compression function from the same build, so the ratio holds from machine to
/// machine (under valgrind, the portable SHA-256 always) and from compiler to compiler as the
/// others do. It catches what the crate adds around the hash: keying each call anew, a second
/// pass over the body, decoding the signature. Against the typed decode it would fail whenever
/// decoding got faster.
///
/// The layer's own cost beyond HMAC and decoding is held to `inner`, the same request built
/// and answered without the layer: both are `http` requests, headers, extensions and
/// allocations, so they move together with the compiler and the `http` crate, where HMAC and
/// the decode (the other ratio's divisor) move on their own.
pub const BOUNDS: [Bound; 4] = [
    Bound {
        name: "typed_vs_value",
        meaning: "`Value`'s instructions / the typed decode's",
        better: Better::Higher,
        tolerance: TOLERANCE,
        bodies_under: usize::MAX,
        ratio: |counts| Ok(counts.of("value")? as f64 / counts.of("typed")? as f64),
    },
    Bound {
        name: "layer_vs_work",
        meaning: "the layer's own instructions (less `inner`) / (HMAC + typed decode)",
        better: Better::Lower,
        tolerance: TOLERANCE,
        bodies_under: usize::MAX,
        ratio: |counts| Ok(counts.layer_own()? as f64 / counts.work()? as f64),
    },
    Bound {
        name: "beyond_work_vs_inner",
        meaning: "the layer's own instructions beyond HMAC + typed decode / `inner`'s, bodies under 4 KB",
        better: Better::Lower,
        tolerance: BEYOND_WORK_TOLERANCE,
        bodies_under: SMALL_BODY,
        ratio: |counts| Ok(counts.layer_beyond_work()? as f64 / counts.of("inner")? as f64),
    },
    Bound {
        name: "hmac_vs_sha256",
        meaning: "HMAC verification's instructions / SHA-256 of the body's",
        better: Better::Lower,
        tolerance: TOLERANCE,
        bodies_under: usize::MAX,
        ratio: |counts| Ok(counts.of("hmac")? as f64 / counts.of("sha256")? as f64),
    },
];

/// The ratios of a run held to, and why they were last written.
pub struct Baseline {
    pub reason: String,
    ratios: BTreeMap<(String, String), f64>,
}

const REASON_PREFIX: &str = "reason:";

impl Baseline {
    /// Reads a baseline: a `reason:` line, `body ratio value` lines; `#` starts a comment.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut reason = None;
        let mut ratios = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
            if let Some(why) = line.strip_prefix(REASON_PREFIX) {
                reason = Some(why.trim().to_owned());
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let value = match fields[..] {
                [_, _, value] => value.parse::<f64>().ok().filter(|value| value.is_finite() && *value > 0.0),
                _ => None,
            };
            let Some(value) = value else {
                return Err(format!("{BASELINE_FILE}: `{line}` is not `body ratio positive-number`"));
            };
            ratios.insert((fields[0].to_owned(), fields[1].to_owned()), value);
        }
        match reason {
            Some(reason) if !reason.is_empty() => Ok(Self { reason, ratios }),
            _ => Err(format!(
                "{BASELINE_FILE} does not say why it was written (a `{REASON_PREFIX}` line): rewrite it with \
                 {WRITE_COMMAND}"
            )),
        }
    }

    /// The baseline of `bodies`, saying `reason`; refused without a reason, or when a ratio of
    /// a body cannot be computed.
    pub fn render<'a>(
        reason: &str,
        bodies: impl IntoIterator<Item = (&'a str, &'a Counts)>,
    ) -> Result<String, String> {
        let reason = reason.trim();
        if reason.is_empty() || reason.contains('\n') {
            return Err(format!(
                "a baseline says why it was written, in one line: INSTRUCTIONS_BASELINE_REASON ({WRITE_COMMAND})"
            ));
        }
        let mut text = format!("# Written by `{WRITE_COMMAND}`.\n# body, ratio, value:\n");
        for bound in &BOUNDS {
            let better = match bound.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
            };
            writeln!(text, "# {} = {} ({better} is better);", bound.name, bound.meaning).unwrap();
        }
        writeln!(text, "{REASON_PREFIX} {reason}").unwrap();
        for (body, counts) in bodies {
            for bound in &BOUNDS {
                if let Some(ratio) = bound.on(counts) {
                    let ratio = ratio.map_err(|error| format!("{body} {}: {error}", bound.name))?;
                    writeln!(text, "{body} {} {ratio:.4}", bound.name).unwrap();
                }
            }
        }
        Ok(text)
    }
}

/// Everything wrong with `bodies` against `baseline`: a count zero or missing, a ratio not in
/// the baseline, a ratio worse than its bound's tolerance allows.
pub fn failures<'a>(
    bodies: impl IntoIterator<Item = (&'a str, &'a Counts)>,
    baseline: &Baseline,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (body, counts) in bodies {
        for bound in &BOUNDS {
            let Some(ratio) = bound.on(counts) else { continue };
            let name = bound.name;
            let key = (body.to_owned(), name.to_owned());
            match (ratio, baseline.ratios.get(&key)) {
                (Err(error), _) => failures.push(format!("{body} {name}: {error}")),
                (Ok(_), None) => failures.push(format!(
                    "{body} {name}: not in {BASELINE_FILE}, which predates this bound: rewrite it with {WRITE_COMMAND}"
                )),
                (Ok(value), Some(&base)) if bound.worse(value, base) => failures.push(format!(
                    "{body} {name}: {value:.4}, baseline {base:.4} (tolerance {:.0}%)",
                    bound.tolerance * 100.0
                )),
                (Ok(_), Some(_)) => {}
            }
        }
    }
    failures
}

/// The gate's own tests. A bench with its own `main` runs no `#[test]`, so `main` runs these
/// under `cargo test --benches`.
pub mod tests {
    use super::*;

    pub const ALL: [(&str, fn()); 12] = [
        ("measured counts pass against their own baseline", measured_counts_pass),
        ("a zero count fails", a_zero_count_fails),
        ("a missing count fails", a_missing_count_fails),
        ("a toggle that matched nothing counts zero", a_toggle_that_matched_nothing_counts_zero),
        (
            "the layer beyond work growing by a quarter fails",
            the_layer_beyond_work_growing_by_a_quarter_fails,
        ),
        ("drift of the layer beyond work passes", drift_of_the_layer_beyond_work_passes),
        (
            "no layer cost beyond work fails on small bodies only",
            no_layer_cost_beyond_work_fails_on_small_bodies_only,
        ),
        ("HMAC growing fails", hmac_growing_fails),
        ("a baseline without a bounded ratio fails", a_baseline_without_a_bounded_ratio_fails),
        ("a baseline without a reason is refused", a_baseline_without_a_reason_is_refused),
        (
            "a baseline value that is not a positive number is refused",
            a_baseline_value_that_is_not_a_positive_number_is_refused,
        ),
        ("writing needs a reason and every ratio", writing_needs_a_reason_and_every_ratio),
    ];

    /// Counts of the message.created body (1,851 bytes), as measured.
    fn message_created() -> Counts {
        counts(
            1851,
            [
                ("typed", 34_053),
                ("value", 94_327),
                ("layer", 144_204),
                ("inner", 2_200),
                ("hmac", 104_609),
                ("sha256", 99_000),
            ],
        )
    }

    fn counts(bytes: usize, instructions: [(&'static str, u64); 6]) -> Counts {
        Counts { bytes, instructions: instructions.into_iter().collect() }
    }

    fn baseline_of(counts: &Counts) -> Baseline {
        Baseline::parse(&Baseline::render("measured", [("body", counts)]).unwrap()).unwrap()
    }

    fn failures_of(counts: &Counts, baseline: &Baseline) -> Vec<String> {
        failures([("body", counts)], baseline)
    }

    fn add(counts: &mut Counts, operation: &str, instructions: u64) {
        *counts.instructions.get_mut(operation).unwrap() += instructions;
    }

    fn measured_counts_pass() {
        let counts = message_created();
        let baseline = baseline_of(&counts);
        assert_eq!(baseline.reason, "measured");
        assert_eq!(baseline.ratios.len(), BOUNDS.len());
        assert_eq!(failures_of(&counts, &baseline), Vec::<String>::new());
    }

    fn a_zero_count_fails() {
        let baseline = baseline_of(&message_created());
        for operation in OPERATIONS {
            let mut counts = message_created();
            counts.instructions.insert(operation, 0);
            let failures = failures_of(&counts, &baseline);
            assert!(
                failures
                    .iter()
                    .any(|failure| failure.contains(&format!("`{operation}` counted no instructions"))),
                "{operation}: {failures:?}"
            );
        }
    }

    fn a_missing_count_fails() {
        let baseline = baseline_of(&message_created());
        for operation in OPERATIONS {
            let mut counts = message_created();
            counts.instructions.remove(operation);
            let failures = failures_of(&counts, &baseline);
            assert!(
                failures.iter().any(|failure| failure.contains(&format!("no count for `{operation}`"))),
                "{operation}: {failures:?}"
            );
        }
    }

    fn a_toggle_that_matched_nothing_counts_zero() {
        assert_eq!(per_call(0, 0), 0);
        assert_eq!(per_call(5_000, 5_000), 0);
        // Fewer for 11 calls than for 1 is zero, not a wrapped subtraction.
        assert_eq!(per_call(4_000, 5_000), 0);
        assert_eq!(per_call(15_000, 5_000), 1_000);
    }

    fn the_layer_beyond_work_growing_by_a_quarter_fails() {
        let mut counts = message_created();
        let baseline = baseline_of(&counts);
        let beyond = counts.layer_beyond_work().unwrap();
        add(&mut counts, "layer", beyond / 4);
        let failures = failures_of(&counts, &baseline);
        // The ratio over HMAC + decode, 3% tolerant, lets it through: only its own bound fails.
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("body beyond_work_vs_inner: "), "{failures:?}");
    }

    fn drift_of_the_layer_beyond_work_passes() {
        let mut counts = message_created();
        let baseline = baseline_of(&counts);
        // The largest move measured with no change to the layer: ticket.created's, from one VM
        // to another.
        let beyond = counts.layer_beyond_work().unwrap();
        add(&mut counts, "layer", beyond * 14 / 100);
        assert_eq!(failures_of(&counts, &baseline), Vec::<String>::new());
    }

    fn no_layer_cost_beyond_work_fails_on_small_bodies_only() {
        let mut small = message_created();
        let baseline = baseline_of(&small);
        let beyond = small.layer_beyond_work().unwrap();
        small.instructions.insert("layer", small.instructions["layer"] - beyond);
        let failures = failures_of(&small, &baseline);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("beyond HMAC + typed decode is not positive"), "{failures:?}");

        // The 650 KB chat's layer counts fewer than HMAC and decode measured alone.
        let large = counts(
            654_785,
            [
                ("typed", 8_254_580),
                ("value", 25_381_293),
                ("layer", 42_336_275),
                ("inner", 3_345),
                ("hmac", 34_097_616),
                ("sha256", 34_093_259),
            ],
        );
        assert!(large.layer_beyond_work().is_err());
        assert_eq!(failures_of(&large, &baseline_of(&large)), Vec::<String>::new());
    }

    fn hmac_growing_fails() {
        let mut counts = message_created();
        let baseline = baseline_of(&counts);
        // Keying each call anew: two more compressions, in HMAC and in the layer alike.
        add(&mut counts, "hmac", 6_700);
        add(&mut counts, "layer", 6_700);
        let failures = failures_of(&counts, &baseline);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("body hmac_vs_sha256: "), "{failures:?}");
    }

    fn a_baseline_without_a_bounded_ratio_fails() {
        let counts = message_created();
        let written = Baseline::render("measured", [("body", &counts)]).unwrap();
        let older: String = written
            .lines()
            .filter(|line| !line.contains(" beyond_work_vs_inner "))
            .map(|line| format!("{line}\n"))
            .collect();
        let failures = failures_of(&counts, &Baseline::parse(&older).unwrap());
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("predates this bound"), "{failures:?}");
        assert!(failures[0].contains("INSTRUCTIONS_BASELINE_REASON"), "{failures:?}");
    }

    fn a_baseline_without_a_reason_is_refused() {
        for text in ["body typed_vs_value 2.7\n", "reason: \nbody typed_vs_value 2.7\n"] {
            let error = Baseline::parse(text).err().unwrap();
            assert!(error.contains("does not say why"), "{error}");
        }
    }

    fn a_baseline_value_that_is_not_a_positive_number_is_refused() {
        for line in [
            "body typed_vs_value NaN",
            "body typed_vs_value inf",
            "body typed_vs_value 0",
            "body typed_vs_value",
        ] {
            let error = Baseline::parse(&format!("reason: measured\n{line}\n")).err().unwrap();
            assert!(error.contains("is not `body ratio positive-number`"), "{line}: {error}");
        }
    }

    fn writing_needs_a_reason_and_every_ratio() {
        let counts = message_created();
        for reason in ["", "  ", "two\nlines"] {
            assert!(Baseline::render(reason, [("body", &counts)]).is_err(), "{reason:?}");
        }
        let mut zero = message_created();
        zero.instructions.insert("sha256", 0);
        let error = Baseline::render("measured", [("body", &zero)]).err().unwrap();
        assert!(error.contains("`sha256` counted no instructions"), "{error}");
    }
}
