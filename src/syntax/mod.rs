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
mod parser;
#[cfg(test)]
mod tests;

use pest::Parser as _;

use crate::diagnostics::Diagnostic;
use error::Entry;
use lower::Lowerer;
use parser::{FlowParser, Rule};

/// Parses a `.flow` program.
pub fn parse_file(source: &str) -> Result<ast::File, Vec<Diagnostic>> {
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
    let mut pairs = FlowParser::parse(Rule::module_program, source)
        .map_err(|e| vec![error::to_diagnostic(&e, source, Entry::Module)])?;
    let Some(program) = pairs.next() else {
        lower::unexpected(Rule::module_program)
    };
    let lowerer = Lowerer::new(source);
    let module = lowerer.lower_module_program(program);
    lowerer.finish(module)
}
