//! Source positions: the [`Span`] every syntax node and every diagnostic
//! carries.
//!
//! This is the bottom layer of the crate, named by both [`syntax`] (whose
//! nodes carry spans) and [`diagnostics`] (which point at them). It lives on
//! its own rather than in either of them so that the dependency between the
//! two runs one way: `syntax` builds diagnostics, and `diagnostics` knows
//! nothing of the tree. The alternative, moving `Span` into `diagnostics`,
//! would make every AST node name the diagnostics module for a plain byte
//! range; a base module of one type is the smaller and clearer result.
//!
//! [`syntax`]: crate::syntax
//! [`diagnostics`]: crate::diagnostics

/// A half-open byte range `start..end` into the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    pub fn len(self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        (span.start, span.len()).into()
    }
}
