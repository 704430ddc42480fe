//! "Did you mean ...?" suggestions for unknown names.

/// The closest candidate to `name`, if one is close enough to be a likely
/// typo: Levenshtein distance at most a third of the name's length (at least
/// 1), or a case-insensitive match.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| {
            let d = if c.eq_ignore_ascii_case(name) {
                0
            } else {
                strsim::levenshtein(name, c)
            };
            (d, c)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, c.len()))
        .map(|(_, c)| c.to_string())
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
}
