//! Delivery files: which files under the given paths are deliveries, and the bytes Periskope
//! would send for each.

use std::path::{Path, PathBuf};

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

/// Every delivery under `paths`, in order: a file is sent as it is (it must be JSON); a
/// directory gives its `.json` files that are deliveries (objects with `event` or
/// `event_type`), in name order, and each other entry is skipped with a note. The headers
/// files `listen --save` writes next to each body are passed over silently.
pub fn load(paths: &[PathBuf], output: &Output) -> Result<Vec<Delivery>, Failure> {
    let mut deliveries = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path)
            .map_err(|error| Failure::io(format_args!("reading {}", path.display()), error))?;
        if !metadata.is_dir() {
            let json =
                read_json(path)?.map_err(|reason| Failure::Error(format!("{}: {reason}", path.display())))?;
            deliveries.push(delivery(path, &json.0, json.1));
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
    if let Some(stem) = name.strip_suffix(HEADERS_SUFFIX) {
        if path.with_file_name(format!("{stem}.json")).is_file() {
            return Ok(Entry::Headers);
        }
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
    Ok(Entry::Delivery(delivery(path, &bytes, value)))
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

fn delivery(path: &Path, bytes: &[u8], value: Value) -> Delivery {
    let name = ["event", "event_type"]
        .iter()
        .find_map(|field| value.get(field).and_then(Value::as_str))
        .unwrap_or("?")
        .to_owned();
    Delivery { source: path.display().to_string(), name, body: compact(bytes) }
}

/// `json` as `JSON.stringify` writes it: the whitespace between tokens removed, and everything
/// else (key order, strings with their non-ASCII characters and escapes, numbers) byte for byte.
///
/// A pretty-printed delivery (`JSON.stringify(payload, null, 2)`, or a file formatted by an
/// editor) becomes the bytes Periskope sends; already compact JSON is left as it is.
pub fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            in_string = escaped || byte != b'"';
            escaped = !escaped && byte == b'\\';
        } else if byte.is_ascii_whitespace() {
            continue;
        } else {
            in_string = byte == b'"';
        }
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_escapes_and_order() {
        let json = "{ \"b\" : \"x \\\" y\\\\\", \"a\" : [ 1 , \"  é \" ],\n  \"c\": \"\\\\\" }";
        assert_eq!(
            String::from_utf8(compact(json.as_bytes())).unwrap(),
            "{\"b\":\"x \\\" y\\\\\",\"a\":[1,\"  é \"],\"c\":\"\\\\\"}"
        );
    }

    #[test]
    fn compact_of_compact_is_the_same() {
        let body = br#"{"event":"x","data":{"s":"a b","n":[1,2.50,-3e4]}}"#;
        assert_eq!(compact(body), body);
    }
}
