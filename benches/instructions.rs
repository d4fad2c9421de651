//! Instructions and allocations per operation, on every bench body: figures that hold from
//! machine to machine, where times move with the machine.
//!
//! `cargo bench --bench instructions --profile release` (plain release, the build most users
//! make) counts, per body:
//! - instructions, under `valgrind --tool=callgrind`, for six operations: the typed decode
//!   (`WebhookEvent::decode`), `serde_json::Value`, the layer's request path with a no-op inner
//!   service (the request built and answered), that inner service alone (`inner`),
//!   HMAC-SHA256 verification alone, and SHA-256 of the body;
//! - allocations per typed decode and per `Value`, with a counting allocator.
//!
//! It prints a table and holds four ratios per body to `benches/instructions.baseline`
//! ([`gate::BOUNDS`] says why each divisor):
//! - `typed_vs_value`: `Value`'s instructions over the typed decode's;
//! - `layer_vs_work`: the layer's own instructions (less `inner`'s) over HMAC + typed decode;
//! - `beyond_work_vs_inner`, on bodies under 4 KB: what the layer spends beyond HMAC and the
//!   decode (layer - inner - HMAC - typed) over `inner`'s instructions. Those 3.3-3.5 thousand
//!   instructions are 2-8% of the previous ratio, whose 3% tolerance would let them more than
//!   double unnoticed;
//! - `hmac_vs_sha256`: HMAC verification over SHA-256 of the same body.
//!
//! Instruction counts move with the compiler; ratios of two counts made by the same build barely
//! do. A ratio more than 3% worse than its baseline fails the run (18% for
//! `beyond_work_vs_inner`, a difference of counts, which moves more: [`gate`] has the figures),
//! and so does a count that is zero or missing, as when callgrind's toggle matched nothing. A
//! change worth its cost rewrites the baseline in the same commit, saying why:
//! `INSTRUCTIONS_BASELINE=write INSTRUCTIONS_BASELINE_REASON='why'` records the reason in the
//! file, and a baseline without one, or without a bounded ratio, fails the run.
//!
//! Under `cargo test --benches` (`--bench` absent) each operation runs once on each body,
//! without valgrind, to check that the benchmark works, and the gate's own tests
//! ([`gate::tests`]) run.
//!
//! Each count is one child process of this binary under callgrind, counting only inside
//! [`measured`]; an operation's count is the difference between 11 calls and 1, divided by
//! ten, so that what the first call alone does (lazy initialisation) is left out.
//! The counting allocator is on in the children too: a few instructions per allocation, under
//! 0.5% of `Value`'s count on these bodies (which allocates 15-100 times as often).

#[path = "support/drive.rs"]
mod drive;
#[path = "instructions/gate.rs"]
mod gate;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, SigningKeys, sign};
use periskope_webhook::{PeriskopeWebhookLayer, WebhookEvent};
use sha2::{Digest, Sha256};
use tower::{Layer, service_fn};

use drive::call;
use gate::{BASELINE_FILE, BOUNDS, Baseline, Counts, OPERATIONS};

const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
/// The environment variable that makes this binary a measured child: `OPERATION/BODY/CALLS`.
const CHILD: &str = "PERISKOPE_INSTRUCTIONS_CHILD";

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
        "sha256" => Box::new(move || {
            black_box(Sha256::digest(black_box(&payload)));
        }),
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
    gate::per_call(count(operation, body, 11, &out), count(operation, body, 1, &out))
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
    counts: Counts,
    typed_allocations: u64,
    value_allocations: u64,
}

fn baseline_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(BASELINE_FILE)
}

/// A table cell: the figure, or `-` where it cannot be had.
fn cell<T: std::fmt::Display>(figure: Result<T, String>) -> String {
    figure.map_or_else(|_| "-".to_owned(), |figure| figure.to_string())
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
        for (name, test) in gate::tests::ALL {
            test();
            println!("instructions: gate: {name}: ok");
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
                                counts: Counts { bytes: body.len(), instructions },
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

    let ratio_names: Vec<&str> = BOUNDS.iter().map(|bound| bound.name).collect();
    println!(
        "| body | bytes | typed decode | `Value` | allocations typed / `Value` | SHA-256 | HMAC | inner | layer (own) | beyond HMAC + decode | {} |",
        ratio_names.join(" | ")
    );
    println!("|---|{}", "---:|".repeat(9 + BOUNDS.len()));
    for (name, figures) in &figures {
        let counts = &figures.counts;
        let ratios: Vec<String> = BOUNDS
            .iter()
            .map(|bound| {
                bound
                    .on(counts)
                    .map_or_else(|| "-".to_owned(), |ratio| cell(ratio.map(|ratio| format!("{ratio:.3}"))))
            })
            .collect();
        println!(
            "| {name} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} |",
            counts.bytes,
            cell(counts.of("typed")),
            cell(counts.of("value")),
            figures.typed_allocations,
            figures.value_allocations,
            cell(counts.of("sha256")),
            cell(counts.of("hmac")),
            cell(counts.of("inner")),
            cell(counts.layer_own()),
            cell(counts.layer_beyond_work()),
            ratios.join(" | "),
        );
    }
    let bodies = figures.iter().map(|(name, figures)| (*name, &figures.counts));

    if std::env::var("INSTRUCTIONS_BASELINE").as_deref() == Ok("write") {
        let reason = std::env::var("INSTRUCTIONS_BASELINE_REASON").unwrap_or_default();
        match Baseline::render(&reason, bodies) {
            Ok(text) => std::fs::write(baseline_path(), text).expect("write the baseline"),
            Err(error) => fail(&[error]),
        }
        println!("baseline written to {}", baseline_path().display());
        return;
    }
    let text = std::fs::read_to_string(baseline_path())
        .unwrap_or_else(|error| fail(&[format!("cannot read {BASELINE_FILE}: {error}")]));
    let baseline = Baseline::parse(&text).unwrap_or_else(|error| fail(&[error]));
    let failures = gate::failures(bodies, &baseline);
    if !failures.is_empty() {
        fail(&failures);
    }
    println!("every count positive, every ratio within its tolerance of {BASELINE_FILE}");
}

fn fail(failures: &[String]) -> ! {
    eprintln!("the instruction gate fails:");
    for failure in failures {
        eprintln!("  {failure}");
    }
    std::process::exit(1);
}
