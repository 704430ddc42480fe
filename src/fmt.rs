//! `flowc fmt`: the one canonical layout of a `.flow` file.
//!
//! The formatter prints the [`ast`](crate::syntax::ast) back as text, and
//! reads from the source only what the tree does not keep: comments, the
//! spelling of literals (`1_000`, `\u{e9}`), parentheses the author wrote
//! and single blank lines between statements or entries.
//!
//! Terms and conventions:
//! - A *comment* is any `// ...` text outside string literals, doc comments
//!   (`/// ...`) included. Comments are not in the tree: [`comments`] finds
//!   them with their byte offsets, and the printer emits each one before the
//!   first node that starts after it (an *own-line* comment), or at the end
//!   of the current line when nothing but spaces and commas separated it
//!   from the code before it in the source (a *trailing* comment). So every
//!   comment is printed exactly once and in source order.
//! - *Flat* is the one-line rendering of a node; a node is printed flat when
//!   it has no comment inside and fits in [`WIDTH`] columns, else *broken*:
//!   one entry, argument or element per line with trailing commas.
//! - Layout never depends on the source's line breaks (except kept blank
//!   lines), so formatting twice changes nothing.
//!
//! The printer lives in `fmt/printer.rs`, flat renderings in `fmt/flat.rs`,
//! broken expressions and types in `fmt/expr.rs`, statements in
//! `fmt/stmt.rs` and declarations in `fmt/decl.rs`; `fmt/cli.rs` is the
//! command (`--check`, in-place rewriting).

mod cli;
mod decl;
mod expr;
mod flat;
mod printer;
mod scan;
mod stmt;

use crate::diagnostics::Diagnostic;
use crate::syntax::parse_file;

pub use cli::{diff_summary, run};
pub use scan::{comments, Comment};

/// The column limit of the canonical layout.
pub const WIDTH: usize = 80;

/// Formats a `.flow` program. A file that does not parse is returned as its
/// syntax diagnostics, untouched.
pub fn format_source(source: &str) -> Result<String, Vec<Diagnostic>> {
    let file = parse_file(source)?;
    let mut printer = printer::Printer::new(source);
    printer.file(&file);
    Ok(printer.finish())
}
