//! Delivery files: which files under the given paths are deliveries, and the bytes Periskope
//! would send for each.

use std::path::{Path, PathBuf};

use periskope_webhook::testing::compact_json;
use serde_json::{Value, json};

use crate::output::{Failure, Output};

/// The suffix of the file `listen --save` writes next to each body, with its headers.
pub const HEADERS_SUFFIX: &str = ".headers.json";

/// One delivery to send: where it came from, its event name, and the compact body.
pub struct Delivery {
    pub source: String,
    pub name: String,
    pub body: Vec<u8>,
}

/// The suffix of a file of several deliveries, one compact body a line, as `forward` keeps
/// those it could not deliver.
pub const LINES_SUFFIX: &str = ".jsonl";

/// Every delivery under `paths`, in order: a file is sent as it is (it must be JSON), and so is
/// standard input for `-`, as `sign` and `verify` read it; a `.jsonl` file gives one delivery a
/// line; a directory gives its `.json` files that are deliveries (objects with `event` or
/// `event_type`), in name order, and each other entry is skipped with a note. The headers files
/// `listen --save` writes next to each body are passed over silently.
pub fn load(paths: &[PathBuf], output: &Output) -> Result<Vec<Delivery>, Failure> {
    let mut deliveries = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let bytes = crate::sign::read_input(path)?;
            let json = serde_json::from_slice(&bytes)
                .map_err(|error| Failure::Error(format!("standard input: not JSON ({error})")))?;
            deliveries.push(delivery("standard input".to_owned(), &bytes, json));
            continue;
        }
        let metadata = std::fs::metadata(path)
            .map_err(|error| Failure::io(format_args!("reading {}", path.display()), error))?;
        if !metadata.is_dir() && path.to_string_lossy().ends_with(LINES_SUFFIX) {
            deliveries.extend(read_lines(path)?);
            continue;
        }
        if !metadata.is_dir() {
            let json =
                read_json(path)?.map_err(|reason| Failure::Error(format!("{}: {reason}", path.display())))?;
            deliveries.push(delivery(path.display().to_string(), &json.0, json.1));
            continue;
        }
        for entry in directory(path)? {
            match read_delivery(&entry)? {
                Entry::Delivery(delivery) => deliveries.push(delivery),
                Entry::Headers => {}
                Entry::Skipped(reason) => output.note(
                    format_args!("skipped {}: {reason}", entry.display()),
                    json!({ "type": "skipped", "file": entry.display().to_string(), "reason": reason }),
                ),
            }
        }
    }
    Ok(deliveries)
}

enum Entry {
    Delivery(Delivery),
    Headers,
    Skipped(String),
}

/// The entries of `dir`, sorted by name.
fn directory(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let reading = |error| Failure::io(format_args!("reading the directory {}", dir.display()), error);
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(reading)? {
        entries.push(entry.map_err(reading)?.path());
    }
    entries.sort();
    Ok(entries)
}

fn read_delivery(path: &Path) -> Result<Entry, Failure> {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
    if path.is_dir() {
        return Ok(Entry::Skipped("a directory (directories are not searched)".to_owned()));
    }
    if let Some(stem) = name.strip_suffix(HEADERS_SUFFIX)
        && path.with_file_name(format!("{stem}.json")).is_file()
    {
        return Ok(Entry::Headers);
    }
    if !name.ends_with(".json") {
        return Ok(Entry::Skipped("not a .json file".to_owned()));
    }
    let (bytes, value) = match read_json(path)? {
        Ok(json) => json,
        Err(reason) => return Ok(Entry::Skipped(reason)),
    };
    let is_delivery = value
        .as_object()
        .is_some_and(|object| object.contains_key("event") || object.contains_key("event_type"));
    if !is_delivery {
        return Ok(Entry::Skipped("not a delivery (no `event` or `event_type`)".to_owned()));
    }
    Ok(Entry::Delivery(delivery(path.display().to_string(), &bytes, value)))
}

/// The deliveries of a `.jsonl` file, one a line (blank lines passed over); a line that is not
/// JSON is refused with its number.
fn read_lines(path: &Path) -> Result<Vec<Delivery>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|error| Failure::io(format_args!("reading {}", path.display()), error))?;
    let mut deliveries = Vec::new();
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let source = format!("{}:{}", path.display(), index + 1);
        let json = serde_json::from_slice(line)
            .map_err(|error| Failure::Error(format!("{source}: not JSON ({error})")))?;
        deliveries.push(delivery(source, line, json));
    }
    Ok(deliveries)
}

/// The file's bytes and their JSON, or why they are not JSON.
fn read_json(path: &Path) -> Result<Result<(Vec<u8>, Value), String>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|error| Failure::io(format_args!("reading {}", path.display()), error))?;
    Ok(match serde_json::from_slice(&bytes) {
        Ok(value) => Ok((bytes, value)),
        Err(error) => Err(format!("not JSON ({error})")),
    })
}

/// The delivery read from `source` (a file's path, or standard input).
fn delivery(source: String, bytes: &[u8], value: Value) -> Delivery {
    let name = ["event", "event_type"]
        .iter()
        .find_map(|field| value.get(field).and_then(Value::as_str))
        .unwrap_or("?")
        .to_owned();
    Delivery { source, name, body: compact_json(bytes) }
}
