//! "Did you mean ...?" suggestions for unknown names.

/// The closest candidate to `name`, if one is close enough to be a likely
/// typo: edit distance (a swap of two neighbours counts as one edit) at
/// most a third of the name's length (at least 1), a case-insensitive
/// match, or, failing those, a candidate the name starts with or that
/// is the name with a `_suffix` or the other way round (`bearer` for
/// `bearer_token`).
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let candidates: Vec<&str> = candidates.into_iter().filter(|c| *c != name).collect();
    let limit = (name.chars().count() / 3).max(1);
    let close = candidates
        .iter()
        .map(|c| {
            let d = if c.eq_ignore_ascii_case(name) {
                0
            } else {
                strsim::osa_distance(name, c)
            };
            (d, *c)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, c.len()));
    if let Some((_, c)) = close {
        return Some(c.to_string());
    }
    candidates
        .iter()
        .filter(|c| extends(name, c) || extends(c, name))
        .min_by_key(|c| c.len().abs_diff(name.len()))
        .map(|c| c.to_string())
}

/// Is `long` the word `short` with a `_suffix` (`bearer_token`, `bearer`)?
fn extends(long: &str, short: &str) -> bool {
    short.len() >= 3
        && long
            .strip_prefix(short)
            .is_some_and(|rest| rest.starts_with('_'))
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn finds_close_names_only() {
        let fields = ["item", "action", "quantity", "note"];
        assert_eq!(did_you_mean("quantiy", fields), Some("quantity".into()));
        assert_eq!(did_you_mean("itme", fields), Some("item".into()));
        assert_eq!(did_you_mean("zebra", fields), None);
        assert_eq!(did_you_mean("Note", fields), Some("note".into()));
    }

    #[test]
    fn swaps_and_prefixes_count() {
        let methods = ["GET", "POST", "PUT"];
        assert_eq!(did_you_mean("POTS", methods), Some("POST".into()));
        let params = ["url", "json", "bearer", "headers"];
        assert_eq!(did_you_mean("bearer_token", params), Some("bearer".into()));
        assert_eq!(did_you_mean("js", params), None);
    }
}
