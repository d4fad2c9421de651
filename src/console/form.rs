//! `application/x-www-form-urlencoded`, as query strings and POSTed forms spell it.

/// The pairs of `text`, decoded; a malformed escape is kept as written.
pub(super) fn parse(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let escaped = bytes
                    .get(index + 1..index + 3)
                    .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
                if let Some(byte) = escaped {
                    decoded.push(byte);
                    index += 2;
                } else {
                    decoded.push(b'%');
                }
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// `pairs` as a query string, the empty values left out.
pub(super) fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{}={}", escape(name), escape(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_through_encode_and_parse() {
        let text = encode([("q", "a b&c=d/é%"), ("state", "dead"), ("empty", "")]);
        assert_eq!(text, "q=a%20b%26c%3Dd%2F%C3%A9%25&state=dead");
        assert_eq!(
            parse(&text),
            [("q".to_owned(), "a b&c=d/é%".to_owned()), ("state".to_owned(), "dead".to_owned())]
        );
    }

    #[test]
    fn malformed_escapes_and_bare_names_do_not_fail() {
        assert_eq!(
            parse("a=%zz&b&c=%4&d=1+2"),
            [
                ("a".to_owned(), "%zz".to_owned()),
                ("b".to_owned(), String::new()),
                ("c".to_owned(), "%4".to_owned()),
                ("d".to_owned(), "1 2".to_owned())
            ]
        );
    }
}
