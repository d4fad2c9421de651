//! The event names this program knows, `EventKind::ALL`'s, and the nearest one to a misspelling.

use periskope_webhook::EventKind;

/// `name` if it is an event kind's name; otherwise why not, with the nearest known name.
pub fn check(name: &str) -> Result<&str, String> {
    if EventKind::ALL.iter().any(|kind| kind.as_str() == name) {
        return Ok(name);
    }
    let nearest = EventKind::ALL
        .iter()
        .map(|kind| kind.as_str())
        .min_by_key(|known| edit_distance(name, known))
        .unwrap_or_default();
    Err(format!("`{name}` is not an event name this program knows; did you mean `{nearest}`?"))
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspellings_name_the_nearest_kind() {
        assert_eq!(check("message.created"), Ok("message.created"));
        let refused = check("message.craeted").unwrap_err();
        assert!(refused.contains("`message.created`"), "{refused}");
        assert!(check("tickets.update").unwrap_err().contains("`ticket.updated`"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
