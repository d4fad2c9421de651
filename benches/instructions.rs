//! Instructions and allocations per operation, on every bench body: figures that hold from
//! machine to machine, where times move with the machine.
//!
//! `cargo bench --bench instructions --profile release` (plain release, the build most users
//! make) counts, per body:
//! - instructions, under `valgrind --tool=callgrind`, for four operations: the typed decode
//!   (`WebhookEvent::decode`), `serde_json::Value`, the layer's request path with a no-op inner
//!   service (the request built and answered, as the inner service alone also measures), and
//!   HMAC-SHA256 verification alone;
//! - allocations per typed decode and per `Value`, with a counting allocator.
//!
//! It prints a table and checks two ratios per body against `benches/instructions.baseline`:
//! `Value`'s instructions over the typed decode's, and the layer's instructions (less the inner
//! service's) over HMAC + typed decode. Instruction counts move with the compiler; these ratios
//! of two counts made by the same build barely do. A ratio more than 3% worse than its baseline
//! fails the run. A change worth its cost rewrites the baseline in the same commit
//! (`INSTRUCTIONS_BASELINE=write`), and says why.
//!
//! Under `cargo test --benches` (`--bench` absent) each operation runs once on each body,
//! without valgrind, to check that the benchmark works.
//!
//! Each count is one child process of this binary under callgrind, counting only inside
//! [`measured`]; an operation's count is the difference between 11 calls and 1, divided by
//! ten, so that what the first call alone does (lazy initialisation) is left out.
//! The counting allocator is on in the children too: a few instructions per allocation, under
//! 0.5% of `Value`'s count on these bodies (which allocates 15-100 times as often).

#[path = "support/drive.rs"]
mod drive;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, SigningKeys, sign};
use periskope_webhook::{PeriskopeWebhookLayer, WebhookEvent};
use tower::{Layer, service_fn};

use drive::call;

const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
/// The environment variable that makes this binary a measured child: `OPERATION/BODY/CALLS`.
const CHILD: &str = "PERISKOPE_INSTRUCTIONS_CHILD";
/// How much worse than its baseline a ratio may get.
const TOLERANCE: f64 = 0.03;
const OPERATIONS: [&str; 5] = ["typed", "value", "layer", "inner", "hmac"];

/// Counts allocations, so that a decode's can be read off.
struct CountingAllocator;

thread_local! {
    /// Per thread: the two measuring threads allocate at the same time.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    // `try_with`: a thread's last frees may come after its counter is gone.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// One operation on one body, ready to run again and again.
fn operation(name: &str, body: &Bytes) -> Box<dyn FnMut()> {
    let signature = sign(&SigningKey::new(KEY).expect("non-empty"), body);
    let payload = body.clone();
    let body = body.clone();
    let request = move || {
        Request::post("/webhooks/periskope")
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature.as_str())
            .body(Full::new(body.clone()))
            .expect("valid request")
    };
    let noop = service_fn(|request: Request<Full<Bytes>>| async move {
        black_box(&request);
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    match name {
        "typed" => Box::new(move || {
            drop(black_box(WebhookEvent::decode(black_box(payload.clone())).expect("decodes")))
        }),
        "value" => Box::new(move || {
            drop(black_box(serde_json::from_slice::<serde_json::Value>(black_box(&payload)).expect("parses")))
        }),
        "layer" => {
            let mut layered = PeriskopeWebhookLayer::new(KEY).layer(noop);
            assert_eq!(call(&mut layered, request()).status(), 200);
            Box::new(move || drop(black_box(call(&mut layered, request()))))
        }
        "inner" => {
            let mut inner = noop;
            Box::new(move || drop(black_box(call(&mut inner, request()))))
        }
        "hmac" => {
            let keys = SigningKeys::new(KEY).expect("non-empty");
            let signature = request().headers()[SIGNATURE_HEADER].as_bytes().to_vec();
            Box::new(move || {
                drop(black_box(keys.verify(black_box(&signature), black_box(&payload)).expect("verifies")))
            })
        }
        other => panic!("no operation {other}"),
    }
}

/// The only code callgrind counts in a child (`--toggle-collect`).
#[inline(never)]
fn measured(run: &mut dyn FnMut(), calls: u32) {
    for _ in 0..calls {
        run();
    }
}

fn body(name: &str) -> Bytes {
    Bytes::from(support::body(name))
}

/// In a child: sets up, then runs the operation `calls` times inside [`measured`].
fn run_child(spec: &str) {
    let mut parts = spec.splitn(3, '/');
    let (operation_name, calls) = (parts.next().unwrap(), parts.next().unwrap());
    let body_name = parts.next().unwrap();
    let calls: u32 = calls.parse().expect("a count");
    let mut run = operation(operation_name, &body(body_name));
    measured(&mut *run, calls);
}

/// Instructions callgrind counted inside [`measured`] for `calls` calls.
fn count(operation: &str, body: &str, calls: u32, out: &Path) -> u64 {
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--collect-atstart=no", "--toggle-collect=*instructions::measured*"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::env::current_exe().expect("this binary"))
        .env(CHILD, format!("{operation}/{calls}/{body}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("valgrind runs (Debian's valgrind package)");
    assert!(status.success(), "callgrind failed on {operation} of {body}");
    let profile = std::fs::read_to_string(out).expect("callgrind's profile");
    let _ = std::fs::remove_file(out);
    profile
        .lines()
        .find_map(|line| line.strip_prefix("totals: ").or_else(|| line.strip_prefix("summary: ")))
        .and_then(|total| total.trim().parse().ok())
        .expect("a total in callgrind's profile")
}

/// Instructions per call: 11 calls less 1, over ten.
fn instructions(operation: &str, body: &str, dir: &Path) -> u64 {
    let out = dir.join(format!("{operation}-{}.out", body.replace('/', "_")));
    (count(operation, body, 11, &out) - count(operation, body, 1, &out)) / 10
}

/// Allocations made by one call, after a first.
fn allocations(run: &mut dyn FnMut()) -> u64 {
    run();
    let before = ALLOCATIONS.get();
    run();
    ALLOCATIONS.get() - before
}

/// The figures of one body.
struct Figures {
    bytes: usize,
    instructions: BTreeMap<&'static str, u64>,
    typed_allocations: u64,
    value_allocations: u64,
}

impl Figures {
    /// `Value`'s instructions over the typed decode's: higher is better.
    fn typed_vs_value(&self) -> f64 {
        self.instructions["value"] as f64 / self.instructions["typed"] as f64
    }

    /// The request through the layer less the same request through the inner service alone.
    fn layer_own(&self) -> u64 {
        self.instructions["layer"].saturating_sub(self.instructions["inner"])
    }

    /// HMAC + typed decode: the work the layer cannot avoid.
    fn work(&self) -> u64 {
        self.instructions["hmac"] + self.instructions["typed"]
    }

    /// The layer's own instructions over HMAC + typed decode: lower is better.
    fn layer_vs_work(&self) -> f64 {
        self.layer_own() as f64 / self.work() as f64
    }
}

fn baseline_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/instructions.baseline")
}

/// `body ratio value` lines; `#` starts a comment.
fn read_baseline() -> BTreeMap<(String, String), f64> {
    let text = std::fs::read_to_string(baseline_path()).unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(((fields.next()?.to_owned(), fields.next()?.to_owned()), fields.next()?.parse().ok()?))
        })
        .collect()
}

fn write_baseline(figures: &[(&str, Figures)]) {
    let mut text = String::from(
        "# Written by `INSTRUCTIONS_BASELINE=write cargo bench --bench instructions --profile release`.\n\
         # body, ratio, value: typed_vs_value = Value's instructions / the typed decode's (higher is better);\n\
         # layer_vs_work = the layer's own instructions / (HMAC + typed decode) (lower is better).\n",
    );
    for (name, figures) in figures {
        writeln!(text, "{name} typed_vs_value {:.4}", figures.typed_vs_value()).unwrap();
        writeln!(text, "{name} layer_vs_work {:.4}", figures.layer_vs_work()).unwrap();
    }
    std::fs::write(baseline_path(), text).expect("write the baseline");
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        return run_child(&spec);
    }
    let bodies = support::bodies();
    if !std::env::args().any(|arg| arg == "--bench") {
        for (name, body) in &bodies {
            for operation_name in OPERATIONS {
                measured(&mut *operation(operation_name, &Bytes::from(body.clone())), 1);
            }
            println!("instructions: {name}: every operation runs");
        }
        return;
    }

    let dir = std::env::temp_dir().join(format!("periskope-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    // Two bodies at a time: the machine's two cores.
    let figures: Vec<(&str, Figures)> = std::thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .chunks(bodies.len().div_ceil(2))
            .map(|chunk| {
                let dir = &dir;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(name, body)| {
                            let shared = Bytes::from(body.clone());
                            let instructions = OPERATIONS
                                .iter()
                                .map(|operation| (*operation, instructions(operation, name, dir)))
                                .collect();
                            let figures = Figures {
                                bytes: body.len(),
                                instructions,
                                typed_allocations: allocations(&mut *operation("typed", &shared)),
                                value_allocations: allocations(&mut *operation("value", &shared)),
                            };
                            (*name, figures)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|handle| handle.join().expect("a measuring thread")).collect()
    });
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "| body | bytes | typed decode | `Value` | typed vs `Value` | allocations typed / `Value` | HMAC | layer (own) | layer own vs HMAC + decode |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, figures) in &figures {
        println!(
            "| {name} | {} | {} | {} | {:.2}x | {} / {} | {} | {} (+{}) | {:.3} |",
            figures.bytes,
            figures.instructions["typed"],
            figures.instructions["value"],
            figures.typed_vs_value(),
            figures.typed_allocations,
            figures.value_allocations,
            figures.instructions["hmac"],
            figures.layer_own(),
            figures.layer_own().saturating_sub(figures.work()),
            figures.layer_vs_work(),
        );
    }

    if std::env::var("INSTRUCTIONS_BASELINE").as_deref() == Ok("write") {
        write_baseline(&figures);
        println!("baseline written to {}", baseline_path().display());
        return;
    }
    let baseline = read_baseline();
    let mut worse = Vec::new();
    for (name, figures) in &figures {
        let checks = [
            ("typed_vs_value", figures.typed_vs_value(), true),
            ("layer_vs_work", figures.layer_vs_work(), false),
        ];
        for (ratio, value, higher_is_better) in checks {
            let Some(&base) = baseline.get(&(name.to_string(), ratio.to_owned())) else {
                worse.push(format!("{name} {ratio}: no baseline (INSTRUCTIONS_BASELINE=write)"));
                continue;
            };
            let regressed = if higher_is_better {
                value < base * (1.0 - TOLERANCE)
            } else {
                value > base * (1.0 + TOLERANCE)
            };
            if regressed {
                worse.push(format!("{name} {ratio}: {value:.4}, baseline {base:.4}"));
            }
        }
    }
    if !worse.is_empty() {
        eprintln!("instruction ratios more than 3% worse than benches/instructions.baseline:");
        for line in &worse {
            eprintln!("  {line}");
        }
        std::process::exit(1);
    }
    println!("every ratio within 3% of benches/instructions.baseline");
}
