//! Every Rust snippet of the README (and of `docs/`) builds as a crate of its own, with only the
//! dependencies of the TOML block just before it: what a user gets who pastes both into a new
//! crate. The doctests compile the same snippets against this crate's dev-dependencies, which
//! would hide a dependency or a feature the TOML block forgets.
//!
//! The snippets become the members of one throw-away workspace under `target/`, with this
//! workspace's `Cargo.lock` (so no newer versions than the ones tested here), and each member is
//! checked on its own, so that features asked for by one snippet do not leak into another.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The documents whose snippets a user pastes.
const DOCUMENTS: [&str; 2] = ["README.md", "docs/HARDENING.md"];

/// One Rust snippet and the TOML block that goes with it.
#[derive(Debug)]
struct Snippet {
    /// `README.md:123`, where the Rust block starts.
    place: String,
    toml: String,
    code: String,
}

/// The fenced blocks of `text`, as (info string, first line number, content).
fn fenced_blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, String, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        match open.as_mut() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((info.trim().to_owned(), index + 1, String::new(), indent));
                }
            }
            Some((_, _, content, block_indent)) => {
                if trimmed == "```" {
                    let (info, line, content, _) = open.take().expect("a block is open");
                    blocks.push((info, line, content));
                } else {
                    content.push_str(line.get(*block_indent..).unwrap_or(line.trim_start()));
                    content.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    blocks
}

/// Pairs each Rust block with the TOML block right before it (no Rust block between them).
fn snippets(document: &str, text: &str) -> Result<Vec<Snippet>, String> {
    let mut found = Vec::new();
    let mut toml: Option<String> = None;
    for (info, line, content) in fenced_blocks(text) {
        let language = info.split(',').next().unwrap_or("");
        match language {
            "toml" => toml = Some(content),
            "rust" => {
                let place = format!("{document}:{line}");
                let toml =
                    toml.take().ok_or_else(|| format!("{place}: a Rust snippet without a TOML block"))?;
                if content.lines().any(|line| line.trim_start().starts_with("# ")) {
                    return Err(format!("{place}: a hidden-line marker shows on a code host's page"));
                }
                found.push(Snippet { place, toml, code: content });
            }
            _ => {}
        }
    }
    Ok(found)
}

/// The snippet's dependencies, with this crate by path instead of by version.
fn manifest(name: &str, toml: &str, root: &Path) -> String {
    let mut dependencies = String::new();
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            // `[dependencies]` or `[dev-dependencies]`: the snippet is `src/main.rs` either way.
            continue;
        }
        if let Some(rest) = line.strip_prefix("periskope-webhook") {
            let features = rest
                .find("features")
                .and_then(|at| {
                    rest[at..]
                        .find('[')
                        .zip(rest[at..].find(']'))
                        .map(|(open, close)| &rest[at..][open..=close])
                })
                .unwrap_or("[]");
            dependencies.push_str(&format!(
                "periskope-webhook = {{ path = {:?}, features = {features} }}\n",
                root.display().to_string()
            ));
        } else if !line.is_empty() {
            dependencies.push_str(line);
            dependencies.push('\n');
        }
    }
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\n{dependencies}"
    )
}

#[test]
fn every_snippet_builds_as_a_crate_of_its_own() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(root.join(document)).expect("read the document");
        all.extend(snippets(document, &text).unwrap_or_else(|error| panic!("{error}")));
    }
    assert!(all.len() >= 12, "only {} snippets found: is the extraction broken?", all.len());
    for snippet in &all {
        assert!(
            snippet.toml.contains("periskope-webhook"),
            "{}: its TOML block does not list periskope-webhook",
            snippet.place
        );
    }

    let workspace = root.join("target").join("readme-snippets");
    let _ = std::fs::remove_dir_all(workspace.join("members"));
    std::fs::create_dir_all(workspace.join("members")).expect("create the snippet workspace");
    let names: Vec<String> = (1..=all.len()).map(|n| format!("snippet-{n:02}")).collect();
    for (name, snippet) in names.iter().zip(&all) {
        let member = workspace.join("members").join(name);
        std::fs::create_dir_all(member.join("src")).expect("create a member");
        std::fs::write(member.join("Cargo.toml"), manifest(name, &snippet.toml, &root))
            .expect("write a manifest");
        std::fs::write(member.join("src/main.rs"), &snippet.code).expect("write the snippet");
    }
    std::fs::write(
        workspace.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"members/*\"]\n",
    )
    .expect("write the workspace manifest");
    std::fs::copy(root.join("Cargo.lock"), workspace.join("Cargo.lock")).expect("copy Cargo.lock");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut failures = Vec::new();
    for (name, snippet) in names.iter().zip(&all) {
        let output = Command::new(&cargo)
            .args(["check", "--quiet", "--package", name])
            .current_dir(&workspace)
            .env("CARGO_TARGET_DIR", workspace.join("target"))
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo check");
        if !output.status.success() {
            failures.push(format!(
                "{} ({name}):\n{}",
                snippet.place,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "snippets that do not build on their own:\n\n{}", failures.join("\n"));
}

#[test]
fn a_snippet_without_its_toml_block_is_refused() {
    let text = "```toml\n[dependencies]\nperiskope-webhook = \"0.1\"\n```\n\n```rust\nfn main() {}\n```\n\n```rust\nfn main() {}\n```\n";
    let error = snippets("doc.md", text).unwrap_err();
    assert!(error.starts_with("doc.md:10:"), "{error}");
    let hidden = "```toml\n[dependencies]\n```\n```rust\n# fn main() {}\n```\n";
    assert!(snippets("doc.md", hidden).unwrap_err().contains("hidden-line marker"));
}

#[test]
fn features_survive_and_the_crate_comes_by_path() {
    let toml = "[dependencies]\nperiskope-webhook = { version = \"0.1\", features = [\"inbox\", \"testing\"] }\naxum = \"0.8\"\n";
    let manifest = manifest("snippet-01", toml, Path::new("/repo"));
    assert!(
        manifest.contains("periskope-webhook = { path = \"/repo\", features = [\"inbox\", \"testing\"] }"),
        "{manifest}"
    );
    assert!(manifest.contains("axum = \"0.8\""));
    assert!(!manifest.contains("version = \"0.1\""));
}
