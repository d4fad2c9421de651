//! Delivery files: the bytes Periskope would send for each.

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
