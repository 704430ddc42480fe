//! flowc: the compiler for the `.flow` integration language.
//!
//! Pipeline: [`syntax`] (pest grammar → AST) → [`check`] (names, types,
//! trigger rules → diagnostics and a checked program) → [`codegen`] (Rust
//! source) → [`build`] (cargo). See `docs/` and ARCHITECTURE.md.

pub mod build;
pub mod check;
pub mod codegen;
pub mod diagnostics;
pub mod fmt;
pub mod graph;
pub mod lsp;
pub mod new;
pub mod span;
pub mod syntax;
