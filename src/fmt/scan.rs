//! Lexical scans of the source that the tree does not keep: comments,
//! trivia (whitespace and comments), matching brackets and the extent of
//! string literals. Strings are skipped with their `${...}` interpolations
//! (which hold code, and so may hold comments and further strings).

/// A `// ...` comment (doc comments included): its byte range and its text
/// without trailing whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Every comment of `source`, in order.
pub fn comments(source: &str) -> Vec<Comment> {
    let mut found = Vec::new();
    crate::syntax::scan::scan(source, |token| {
        if let crate::syntax::scan::Token::Comment { start, end } = token {
            found.push(Comment {
                start,
                end,
                text: source.get(start..end).unwrap_or_default().to_string(),
            });
        }
        true
    });
    found
}

/// The first position at or after `pos` that is not whitespace or inside a
/// comment.
pub(super) fn skip_trivia(source: &str, mut pos: usize) -> usize {
    let bytes = source.as_bytes();
    loop {
        match bytes.get(pos) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => pos += 1,
            Some(b'/') if bytes.get(pos + 1) == Some(&b'/') => {
                pos = source
                    .get(pos..)
                    .and_then(|rest| rest.find('\n'))
                    .map_or(source.len(), |n| pos + n);
            }
            _ => return pos,
        }
    }
}

/// The end (exclusive) of the string literal whose opening quote is at
/// `start`.
pub(super) fn string_end(source: &str, start: usize) -> usize {
    let bytes = source.as_bytes();
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                i = match_close(source, i + 1).map_or(source.len(), |close| close + 1);
            }
            _ => i += 1,
        }
    }
    source.len()
}

/// The position of the bracket closing the one at `open` (`(`, `[` or
/// `{`), skipping strings and comments.
pub(super) fn match_close(source: &str, open: usize) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'"' => {
                i = string_end(source, i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = skip_trivia(source, i);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The first `{` at or after `from` outside parentheses, strings and
/// comments.
pub(super) fn first_brace(source: &str, from: usize) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut i = from;
    loop {
        i = skip_trivia(source, i);
        match bytes.get(i)? {
            b'{' => return Some(i),
            b'"' => i = string_end(source, i),
            b'(' => i = match_close(source, i)? + 1,
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_skip_strings_and_find_interpolated_code() {
        let src = "let a = \"http://x ${ b // in\n } // not\" // yes\n/// doc";
        let texts: Vec<_> = comments(src).into_iter().map(|c| c.text).collect();
        assert_eq!(texts, ["// in", "// yes", "/// doc"]);
    }

    #[test]
    fn brackets_and_strings() {
        let src = "f(\"a)\", { b: \"${c}\" }) // )";
        assert_eq!(match_close(src, 1), Some(21));
        assert_eq!(string_end(src, 2), 6);
        assert_eq!(skip_trivia("  // x\n  y", 0), 9);
    }
}
