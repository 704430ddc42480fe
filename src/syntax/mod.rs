//! Syntax: the pest grammar (`grammar/flow.pest`), lowering from pest pairs
//! into the [`ast`], and conversion of pest errors into diagnostics.
//!
//! Two entry points: [`parse_file`] for `.flow` programs and
//! [`parse_module`] for stdlib signature files. Both return every
//! diagnostic found (syntax codes E0001–E0006) or the tree; they never
//! panic, whatever the input.

pub mod ast;
mod error;
mod lower;
pub use lower::RESERVED;
mod parser;
pub mod scan;
#[cfg(test)]
mod tests;
pub mod visit;

use pest::Parser as _;

use crate::diagnostics::Diagnostic;
use error::Entry;
use lower::Lowerer;
use parser::{FlowParser, Rule};

/// Deepest bracket nesting the parser accepts. pest parses brackets by
/// recursion, so this bounds its stack use on hostile input; lowering
/// bounds the depth of the tree it builds the same way.
const MAX_NESTING: usize = 256;

/// Rejects input nested deeper than [`MAX_NESTING`] brackets before pest
/// sees it (one linear scan, see [`scan`]).
fn nesting_guard(source: &str) -> Result<(), Vec<Diagnostic>> {
    let mut too_deep = None;
    scan::scan(source, |token| match token {
        scan::Token::Open { at, depth } if depth > MAX_NESTING => {
            too_deep = Some(at);
            false
        }
        _ => true,
    });
    match too_deep {
        None => Ok(()),
        Some(at) => Err(vec![Diagnostic::new(
            crate::diagnostics::Code::Syntax,
            ast::Span::new(at, at + 1),
            format!("brackets nested more than {MAX_NESTING} levels deep"),
        )
        .with_help("split the expression with `let` bindings")]),
    }
}

/// Parses a `.flow` program.
pub fn parse_file(source: &str) -> Result<ast::File, Vec<Diagnostic>> {
    nesting_guard(source)?;
    let mut pairs = FlowParser::parse(Rule::program, source)
        .map_err(|e| vec![error::to_diagnostic(&e, source, Entry::Program)])?;
    let Some(program) = pairs.next() else {
        lower::unexpected(Rule::program)
    };
    let lowerer = Lowerer::new(source);
    let file = lowerer.lower_program(program);
    lowerer.finish(file)
}

/// Parses a stdlib signature file (`module NAME`, types, `fn` declarations
/// with their examples).
pub fn parse_module(source: &str) -> Result<ast::ModuleDecl, Vec<Diagnostic>> {
    nesting_guard(source)?;
    let mut pairs = FlowParser::parse(Rule::module_program, source)
        .map_err(|e| vec![error::to_diagnostic(&e, source, Entry::Module)])?;
    let Some(program) = pairs.next() else {
        lower::unexpected(Rule::module_program)
    };
    let lowerer = Lowerer::new(source);
    let module = lowerer.lower_module_program(program);
    lowerer.finish(module)
}
