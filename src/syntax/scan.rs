//! One lexical scan of `.flow` source for what the tree does not keep or
//! what must be known before pest runs: comments, and brackets outside
//! string text. Strings are skipped with their `${...}` interpolations,
//! which hold code (so brackets, comments and further strings in them
//! count).

/// What the scan reports, in source order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A `// ...` comment (doc comments included) from `start` to the end
    /// of its line, trailing whitespace excluded.
    Comment { start: usize, end: usize },
    /// `(`, `[` or `{` outside string text, with the nesting depth it opens.
    Open { at: usize, depth: usize },
    /// `)`, `]` or `}` outside string text.
    Close { at: usize },
}

/// Scans `source`, calling `on` for each token; stops early when `on`
/// returns `false`.
pub fn scan(source: &str, mut on: impl FnMut(Token) -> bool) {
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    // Bracket depth at which each open interpolation started.
    let mut interpolations: Vec<usize> = Vec::new();
    let mut in_string = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                b'$' if bytes.get(i + 1) == Some(&b'{') => {
                    interpolations.push(depth);
                    in_string = false;
                    depth += 1;
                    i += 1;
                    if !on(Token::Open { at: i, depth }) {
                        return;
                    }
                }
                _ => {}
            }
        } else {
            match b {
                b'/' if bytes.get(i + 1) == Some(&b'/') => {
                    let end = source
                        .get(i..)
                        .and_then(|rest| rest.find('\n'))
                        .map_or(source.len(), |n| i + n);
                    let text = source.get(i..end).unwrap_or_default().trim_end();
                    if !on(Token::Comment {
                        start: i,
                        end: i + text.len(),
                    }) {
                        return;
                    }
                    i = end;
                    continue;
                }
                b'"' => in_string = true,
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    if !on(Token::Open { at: i, depth }) {
                        return;
                    }
                }
                b')' | b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    if !on(Token::Close { at: i }) {
                        return;
                    }
                    if b == b'}' && interpolations.last() == Some(&depth) {
                        interpolations.pop();
                        in_string = true;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{scan, Token};

    fn tokens(src: &str) -> Vec<Token> {
        let mut out = Vec::new();
        scan(src, |t| {
            out.push(t);
            true
        });
        out
    }

    #[test]
    fn comments_and_brackets_outside_string_text() {
        let src = "f(\"a(b // no\", \"${x[1]}\") // yes\n";
        let t = tokens(src);
        assert_eq!(
            t,
            vec![
                Token::Open { at: 1, depth: 1 },
                Token::Open { at: 17, depth: 2 },
                Token::Open { at: 19, depth: 3 },
                Token::Close { at: 21 },
                Token::Close { at: 22 },
                Token::Close { at: 24 },
                Token::Comment { start: 26, end: 32 },
            ]
        );
    }
}
