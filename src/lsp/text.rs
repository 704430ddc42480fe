//! Conversions between byte offsets (what the AST's spans hold) and LSP
//! positions (zero-based line, and character counted in UTF-16 code units,
//! the protocol's default encoding).

use serde_json::{json, Value};

use crate::syntax::ast::Span;

/// The start offset of every line of a text, for position conversions.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The LSP position of a byte offset. An offset past the end is clamped
    /// to the end; one inside a character counts from its start.
    pub fn position(&self, text: &str, offset: usize) -> (u32, u32) {
        let offset = offset.min(text.len());
        let line = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.starts.get(line).copied().unwrap_or(0);
        let character: usize = text
            .get(start..)
            .unwrap_or("")
            .char_indices()
            .take_while(|(i, _)| start + i < offset)
            .map(|(_, c)| c.len_utf16())
            .sum();
        (to_u32(line), to_u32(character))
    }

    /// The byte offset of an LSP position. A line past the end gives the
    /// end of the text; a character past the end of its line gives the end
    /// of that line (the protocol asks for that leniency).
    pub fn offset(&self, text: &str, line: u32, character: u32) -> usize {
        let Some(&start) = self.starts.get(line as usize) else {
            return text.len();
        };
        let rest = text.get(start..).unwrap_or("");
        let mut units = 0usize;
        for (i, c) in rest.char_indices() {
            if c == '\n' || units >= character as usize {
                return start + i;
            }
            units += c.len_utf16();
        }
        text.len()
    }

    /// An LSP `Range` object for a span.
    pub fn range(&self, text: &str, span: Span) -> Value {
        let (sl, sc) = self.position(text, span.start);
        let (el, ec) = self.position(text, span.end);
        json!({
            "start": { "line": sl, "character": sc },
            "end": { "line": el, "character": ec },
        })
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_round_trip() {
        let text = "ab\néx😀y\n\nz";
        let idx = LineIndex::new(text);
        assert_eq!(idx.position(text, 0), (0, 0));
        assert_eq!(idx.position(text, 3), (1, 0));
        // é is 2 bytes, 1 UTF-16 unit; 😀 is 4 bytes, 2 units.
        let y = text.find('y').unwrap_or(0);
        assert_eq!(idx.position(text, y), (1, 4));
        assert_eq!(idx.offset(text, 1, 4), y);
        assert_eq!(idx.offset(text, 1, 99), text.find("\n\n").unwrap_or(0));
        assert_eq!(idx.offset(text, 9, 0), text.len());
        let z = text.len() - 1;
        assert_eq!(idx.position(text, z), (3, 0));
        assert_eq!(idx.position(text, 1000), (3, 1));
    }
}
