//! The output buffer: indentation, line starts, and where comments go.
//!
//! Every node is printed by first calling [`Printer::line`] (a new line for
//! an entry, statement or declaration) or [`Printer::mid`] (inside a broken
//! expression), which emit the comments found before the node's start;
//! [`Printer::close`] emits those before a closing bracket. `last_end` is
//! the source offset just after the last thing printed: a comment with no
//! line break between it and `last_end` trails the current line.

use super::scan::{self, Comment};
use super::WIDTH;
use crate::syntax::ast::Span;

const INDENT: &str = "  ";

pub(super) struct Printer<'s> {
    pub(super) src: &'s str,
    comments: Vec<Comment>,
    /// Index of the first comment not printed yet.
    next: usize,
    out: String,
    indent: usize,
    last_end: usize,
    /// A bracket was just opened: no blank line before its first line.
    fresh: bool,
}

impl<'s> Printer<'s> {
    pub(super) fn new(src: &'s str) -> Self {
        Printer {
            src,
            comments: scan::comments(src),
            next: 0,
            out: String::with_capacity(src.len() + src.len() / 8),
            indent: 0,
            last_end: 0,
            fresh: true,
        }
    }

    /// The formatted text: remaining comments, then one final newline.
    pub(super) fn finish(mut self) -> String {
        let end = self.src.len();
        self.trailing(end);
        self.own_line_comments(end, false);
        self.newline();
        self.out
    }

    // ------------------------------------------------------------ text

    pub(super) fn write(&mut self, text: &str) {
        self.out.push_str(text);
    }

    /// The source has been printed up to `end`.
    pub(super) fn done(&mut self, end: usize) {
        self.last_end = self.last_end.max(end);
    }

    /// The current column, in characters.
    pub(super) fn col(&self) -> usize {
        let line_start = self.out.rfind('\n').map_or(0, |i| i + 1);
        self.out.get(line_start..).map_or(0, |l| l.chars().count())
    }

    /// Does `text` fit on the current line with `trail` more columns after
    /// it?
    pub(super) fn fits(&self, text: &str, trail: usize) -> bool {
        !text.contains('\n') && self.col() + text.chars().count() + trail <= WIDTH
    }

    fn newline(&mut self) {
        let trimmed = self.out.trim_end_matches(' ').len();
        self.out.truncate(trimmed);
        self.out.push('\n');
    }

    fn write_indent(&mut self) {
        for _ in 0..self.indent {
            self.out.push_str(INDENT);
        }
    }

    fn at_line_start(&self) -> bool {
        self.out.trim_end_matches(' ').ends_with('\n') || self.out.trim_end().is_empty()
    }

    // ------------------------------------------------------------ comments

    /// Is there a comment inside `span`?
    pub(super) fn has_comments(&self, span: Span) -> bool {
        let i = self.comments.partition_point(|c| c.start < span.start);
        self.comments.get(i).is_some_and(|c| c.start < span.end)
    }

    /// The next unprinted comment, if it starts before `pos`.
    fn pending(&self, pos: usize) -> Option<&Comment> {
        self.comments.get(self.next).filter(|c| c.start < pos)
    }

    /// Consumes the comments inside `span`, which the caller printed as part
    /// of verbatim source text.
    pub(super) fn skip_comments_in(&mut self, span: Span) {
        while self
            .pending(span.end)
            .is_some_and(|c| c.start >= span.start)
        {
            self.next += 1;
        }
    }

    /// Was there a blank line between `from` and `to` in the source?
    fn blank_between(&self, from: usize, to: usize) -> bool {
        self.src
            .get(from..to)
            .is_some_and(|s| s.matches('\n').count() >= 2)
    }

    /// Appends the comments before `pos` that trail the current line.
    fn trailing(&mut self, pos: usize) {
        while let Some(c) = self.pending(pos) {
            let same_line = self
                .src
                .get(self.last_end..c.start)
                .is_none_or(|between| !between.contains('\n'));
            if !same_line || self.at_line_start() {
                return;
            }
            let (text, end) = (c.text.clone(), c.end);
            let trimmed = self.out.trim_end_matches(' ').len();
            self.out.truncate(trimmed);
            self.write(" ");
            self.write(&text);
            self.last_end = end;
            self.next += 1;
        }
    }

    /// Prints the comments before `pos` on lines of their own, keeping one
    /// blank line where the source had any (always one before the first
    /// with `force_blank`). Returns whether it printed any.
    fn own_line_comments(&mut self, pos: usize, mut force_blank: bool) -> bool {
        let mut printed = false;
        while let Some(c) = self.pending(pos) {
            let (text, start, end) = (c.text.clone(), c.start, c.end);
            let blank = force_blank || (!self.fresh && self.blank_between(self.last_end, start));
            if !self.out.is_empty() {
                self.newline();
                if blank {
                    self.newline();
                }
            }
            self.write_indent();
            self.write(&text);
            self.last_end = end;
            self.next += 1;
            self.fresh = false;
            force_blank = false;
            printed = true;
        }
        printed
    }

    // ------------------------------------------------------------ lines

    /// Starts the line of a node that begins at source offset `pos`:
    /// trailing comments, newline, own-line comments, a kept (or, with
    /// `force_blank`, a forced) blank line, indentation.
    pub(super) fn line(&mut self, pos: usize, force_blank: bool) {
        self.trailing(pos);
        let printed = self.own_line_comments(pos, force_blank);
        if !self.out.is_empty() {
            let blank = (force_blank && !printed)
                || (!self.fresh && self.blank_between(self.last_end, pos));
            self.newline();
            if blank {
                self.newline();
            }
        }
        self.write_indent();
        self.fresh = false;
    }

    /// Inside a broken expression, before a node at `pos`: if comments come
    /// first, prints them and continues on a new, further indented line.
    pub(super) fn mid(&mut self, pos: usize) {
        if self.pending(pos).is_none() {
            return;
        }
        self.trailing(pos);
        self.own_line_comments(pos, false);
        self.newline();
        self.write_indent();
        self.write(INDENT);
    }

    /// Writes an opening bracket, found at source offset `pos`, and
    /// indents.
    pub(super) fn open(&mut self, bracket: &str, pos: usize) {
        self.done(pos + 1);
        self.write(bracket);
        self.indent += 1;
        self.fresh = true;
    }

    /// Prints the comments before the closing bracket at source offset
    /// `pos`, dedents and writes the bracket on its own line.
    pub(super) fn close(&mut self, pos: usize, bracket: &str) {
        self.close_after_comments(pos, pos, bracket);
    }

    /// [`close`](Self::close), also printing before the bracket the
    /// comments up to `flush_to` (those between a block's `}` and the `else`
    /// that follows it, which cannot stay there).
    pub(super) fn close_after_comments(&mut self, flush_to: usize, pos: usize, bracket: &str) {
        let flush_to = flush_to.max(pos);
        self.trailing(flush_to);
        self.own_line_comments(flush_to, false);
        self.indent = self.indent.saturating_sub(1);
        self.newline();
        self.write_indent();
        self.write(bracket);
        self.fresh = false;
        self.done(pos + 1);
    }

    // ------------------------------------------------------------ source

    pub(super) fn skip_trivia(&self, pos: usize) -> usize {
        scan::skip_trivia(self.src, pos)
    }

    /// The first `{` at or after `from` outside parentheses, strings and
    /// comments.
    pub(super) fn first_brace(&self, from: usize) -> Option<usize> {
        scan::first_brace(self.src, from)
    }

    pub(super) fn match_close(&self, open: usize) -> Option<usize> {
        scan::match_close(self.src, open)
    }

    pub(super) fn byte(&self, pos: usize) -> Option<u8> {
        self.src.as_bytes().get(pos).copied()
    }

    /// The source text of the string literal starting at `start`.
    pub(super) fn string_at(&self, start: usize) -> &'s str {
        let end = scan::string_end(self.src, start);
        self.src.get(start..end).unwrap_or_default()
    }

    /// Where the node that starts at `start` really begins, past any
    /// parentheses around it. Only for nodes that cannot themselves begin
    /// with `(` (literals, names, lists, records, ...).
    pub(super) fn bare_start(&self, start: usize) -> usize {
        let mut pos = self.skip_trivia(start);
        while self.byte(pos) == Some(b'(') {
            pos = self.skip_trivia(pos + 1);
        }
        pos
    }

    /// The number, duration or number pattern that starts at `start`
    /// (`-7`, `1_000`, `3.14`, `500ms`).
    pub(super) fn number_at(&self, start: usize) -> &'s str {
        let bytes = self.src.as_bytes();
        let mut end = start;
        if bytes.get(end) == Some(&b'-') {
            end += 1;
        }
        let digits = |mut i: usize| {
            while bytes
                .get(i)
                .is_some_and(|b| b.is_ascii_digit() || *b == b'_')
            {
                i += 1;
            }
            i
        };
        end = digits(end);
        if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end = digits(end + 1);
        }
        while bytes.get(end).is_some_and(u8::is_ascii_lowercase) {
            end += 1;
        }
        self.src.get(start..end).unwrap_or_default()
    }
}
