//! Lowering: pest pairs (see `grammar/flow.pest`) into the
//! [`ast`](crate::syntax::ast).
//!
//! One function per grammar rule, named after it (`lower_flow` for
//! `flow_decl`, ...). Children are walked with [`inner`], which skips
//! keyword and punctuation pairs; a pair the grammar cannot produce at that
//! place goes to [`unexpected`], the one panic of this module, which the
//! grammar makes unreachable.
//!
//! Lowering reports what the grammar deliberately accepts but the language
//! forbids (keywords as names, bad escapes, numbers out of range, bad
//! durations, misplaced `integration`/`trigger`), keeps going with a
//! placeholder, and returns all diagnostics at the end. It also bounds the
//! nesting depth of the tree it builds, so later recursive phases cannot
//! overflow the stack on hostile input.
//!
//! This file has the helpers, names, doc comments and the file level; the
//! submodules follow the grammar's sections: `decl` (config, types, flows,
//! triggers, tests), `stmt`, `expr`, `literal` and `module` (stdlib
//! signature files).

mod decl;
mod expr;
mod literal;
mod module;
mod stmt;

use std::cell::{Cell, RefCell};
use std::iter::Peekable;

use pest::iterators::{Pair, Pairs};

use super::ast::*;
use super::parser::Rule;
use crate::diagnostics::{Code, Diagnostic};

/// Maximum nesting of the tree, counted in operators, blocks and type
/// constructors along one path. Real programs stay far below.
const MAX_DEPTH: usize = 256;

/// Words that cannot name a value (let, step, loop variable, flow, config
/// entry, lambda or dispatch parameter). `trigger` can still be *used* as
/// an expression, but nothing may be bound to that name.
pub const RESERVED: &[&str] = &[
    "let",
    "step",
    "if",
    "else",
    "match",
    "for",
    "in",
    "dispatch",
    "skip",
    "fail",
    "respond",
    "true",
    "false",
    "null",
    "and",
    "or",
    "not",
    "as",
    "flow",
    "type",
    "integration",
    "test",
    "trigger",
];

/// Is this pair a keyword or punctuation, skipped by [`inner`]?
pub(super) fn is_token(rule: Rule) -> bool {
    use Rule::*;
    matches!(
        rule,
        kw_integration
            | kw_config
            | kw_type
            | kw_flow
            | kw_test
            | kw_trigger
            | kw_let
            | kw_step
            | kw_if
            | kw_else
            | kw_match
            | kw_for
            | kw_in
            | kw_dispatch
            | kw_skip
            | kw_fail
            | kw_respond
            | kw_true
            | kw_false
            | kw_null
            | kw_and
            | kw_or
            | kw_not
            | kw_as
            | kw_parallel
            | kw_headers
            | kw_retry
            | kw_backoff
            | kw_timeout
            | kw_on
            | kw_failure
            | kw_env
            | kw_body
            | kw_rename
            | kw_webhook
            | kw_sync
            | kw_schedule
            | kw_every
            | kw_tz
            | kw_files
            | kw_email
            | kw_subscribe
            | kw_deploy
            | kw_remove
            | kw_mock
            | kw_http
            | kw_run
            | kw_with
            | kw_expect
            | kw_json
            | kw_status
            | kw_response
            | kw_module
            | kw_fn
            | kw_example
            | kw_connection
            | kw_instance
            | kw_from
            | lbrace
            | rbrace
            | lparen
            | rparen
            | lbracket
            | rbracket
            | rangle
            | comma
            | colon
            | equals
            | fat_arrow
            | thin_arrow
            | dotdot
            | pipe
            | at
            | quote
            | EOI
    )
}

type Meaningful<'i> = std::iter::Filter<Pairs<'i, Rule>, fn(&Pair<'i, Rule>) -> bool>;

/// The meaningful children of a pair, in order.
pub(super) struct Walk<'i> {
    parent: Rule,
    pairs: Peekable<Meaningful<'i>>,
}

fn not_token(pair: &Pair<'_, Rule>) -> bool {
    !is_token(pair.as_rule())
}

/// Walks the children of `pair`, skipping keywords and punctuation.
pub(super) fn inner<'i>(pair: Pair<'i, Rule>) -> Walk<'i> {
    let parent = pair.as_rule();
    let filter: fn(&Pair<'i, Rule>) -> bool = not_token;
    Walk {
        parent,
        pairs: pair.into_inner().filter(filter).peekable(),
    }
}

impl<'i> Walk<'i> {
    /// The next child, which the grammar guarantees is there.
    #[track_caller]
    pub(super) fn required(&mut self) -> Pair<'i, Rule> {
        match self.pairs.next() {
            Some(pair) => pair,
            None => unexpected(self.parent),
        }
    }

    /// The next child if it is a `rule`.
    pub(super) fn next_if(&mut self, rule: Rule) -> Option<Pair<'i, Rule>> {
        self.pairs.next_if(|p| p.as_rule() == rule)
    }

    /// The next child, if any.
    pub(super) fn try_next(&mut self) -> Option<Pair<'i, Rule>> {
        self.pairs.next()
    }
}

impl<'i> Iterator for Walk<'i> {
    type Item = Pair<'i, Rule>;

    fn next(&mut self) -> Option<Self::Item> {
        self.pairs.next()
    }
}

/// The grammar produced a pair lowering does not expect: a bug of flowc.
#[track_caller]
pub(super) fn unexpected(rule: Rule) -> ! {
    panic!("flowc bug: the grammar and its lowering disagree at rule `{rule:?}`")
}

/// The span of a pair, ending where its last token ends. pest's implicit
/// whitespace skipping leaves trailing whitespace and comments inside a
/// rule whose last part is optional or repeated (`step_stmt`'s modifiers,
/// `type_expr`'s `?` marks, ...); diagnostics must not underline them.
/// The last token is the last leaf down the chain of last children: the
/// last pair of a pre-order walk, which `FlatPairs::next_back` reaches by
/// stepping back over end tokens (one iterator instead of one per level).
pub(super) fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let start = pair.as_span().start();
    let end = match pair.clone().into_inner().flatten().next_back() {
        Some(last_leaf) => last_leaf.as_span().end(),
        None => pair.as_span().end(),
    };
    Span::new(start, end)
}

/// Lowering state: the source (for doc comments), the diagnostics so far and
/// the nesting budget. Interior mutability lets the Pratt parser's closures
/// share it.
pub(super) struct Lowerer<'s> {
    source: &'s str,
    diags: RefCell<Vec<Diagnostic>>,
    depth: Cell<usize>,
    too_deep: Cell<bool>,
}

impl<'s> Lowerer<'s> {
    pub(super) fn new(source: &'s str) -> Self {
        Lowerer {
            source,
            diags: RefCell::new(Vec::new()),
            depth: Cell::new(0),
            too_deep: Cell::new(false),
        }
    }

    pub(super) fn error(&self, diagnostic: Diagnostic) {
        self.diags.borrow_mut().push(diagnostic);
    }

    /// Returns `value` if no diagnostic was reported, else all of them.
    pub(super) fn finish<T>(self, value: T) -> Result<T, Vec<Diagnostic>> {
        let diags = self.diags.into_inner();
        if diags.is_empty() {
            Ok(value)
        } else {
            Err(diags)
        }
    }

    /// Takes `cost` from the nesting budget for the duration of `f`; past
    /// [`MAX_DEPTH`] reports once and returns `fallback` instead.
    pub(super) fn nested<T>(
        &self,
        cost: usize,
        span: Span,
        fallback: impl FnOnce() -> T,
        f: impl FnOnce() -> T,
    ) -> T {
        let depth = self.depth.get().saturating_add(cost);
        if depth > MAX_DEPTH {
            if !self.too_deep.replace(true) {
                self.error(
                    Diagnostic::new(Code::Syntax, span, "this is nested too deeply")
                        .with_label("too many nested expressions, blocks or types")
                        .with_help("split it up with `let` bindings or named types"),
                );
            }
            return fallback();
        }
        self.depth.set(depth);
        let value = f();
        self.depth.set(depth - cost);
        value
    }

    /// The doc comment directly above the token starting at `start`: the
    /// contiguous `///` lines, each without `///` and one following space,
    /// joined with `\n`. Nothing but whitespace may precede the token on its
    /// line.
    pub(super) fn doc_above(&self, start: usize) -> Option<String> {
        let before = self.source.get(..start)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        if !before.get(line_start..)?.trim().is_empty() {
            return None;
        }
        if line_start == 0 {
            return None;
        }
        let mut lines: Vec<&str> = Vec::new();
        let mut rest = before.get(..line_start - 1)?;
        loop {
            let start = rest.rfind('\n').map_or(0, |i| i + 1);
            let line = rest.get(start..)?.trim();
            let Some(text) = line.strip_prefix("///") else {
                break;
            };
            if text.starts_with('/') {
                break; // `////` is an ordinary comment, as in Rust.
            }
            lines.push(text.strip_prefix(' ').unwrap_or(text));
            if start == 0 {
                break;
            }
            rest = rest.get(..start - 1)?;
        }
        if lines.is_empty() {
            return None;
        }
        lines.reverse();
        Some(lines.join("\n"))
    }

    // ------------------------------------------------------------ names

    /// An identifier where any word is fine (field, option, argument,
    /// broker, module, function names).
    pub(super) fn lower_ident(&self, pair: Pair<'_, Rule>) -> Ident {
        let ident = Ident {
            name: pair.as_str().to_string(),
            span: span_of(&pair),
        };
        if ident.name.chars().any(|c| c.is_ascii_uppercase()) {
            self.error(
                Diagnostic::new(
                    Code::Syntax,
                    ident.span,
                    format!("`{}` is not a valid name", ident.name),
                )
                .with_label("names are lower_snake_case")
                .with_help(format!(
                    "write `{}`; a record field with another name on the wire takes \
                     `@rename(\"{}\")`",
                    snake_case(&ident.name),
                    ident.name
                )),
            );
        }
        ident
    }

    /// An identifier that binds a value: keywords are refused (E0004).
    pub(super) fn lower_binding(&self, pair: Pair<'_, Rule>) -> Ident {
        let ident = self.lower_ident(pair);
        if RESERVED.contains(&ident.name.as_str()) {
            self.error(
                Diagnostic::new(
                    Code::KeywordAsName,
                    ident.span,
                    format!("`{}` is a keyword and cannot be used as a name", ident.name),
                )
                .with_label("keyword")
                .with_help(format!("choose another name, such as `{}_`", ident.name)),
            );
        }
        ident
    }

    pub(super) fn lower_type_name(&self, pair: Pair<'_, Rule>) -> Ident {
        let ident = Ident {
            name: pair.as_str().to_string(),
            span: span_of(&pair),
        };
        if ident.name.contains('_') {
            self.error(
                Diagnostic::new(
                    Code::Syntax,
                    ident.span,
                    format!("`{}` is not a valid type name", ident.name),
                )
                .with_label("type names are UpperCamelCase")
                .with_help(format!("write `{}`", ident.name.replace('_', ""))),
            );
        }
        ident
    }

    /// An HTTP method as written; the checker validates it.
    fn lower_http_method(&self, pair: Pair<'_, Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: span_of(&pair),
        }
    }

    // ------------------------------------------------------------ file

    pub(super) fn lower_program(&self, pair: Pair<'_, Rule>) -> File {
        let span = Span::new(0, self.source.len());
        let file = inner(pair).required();
        self.lower_file(file, span)
    }

    fn lower_file(&self, pair: Pair<'_, Rule>, span: Span) -> File {
        let mut integration: Option<(Ident, Option<String>)> = None;
        let mut items = Vec::new();
        for item in inner(pair) {
            let decl = inner(item).required();
            match decl.as_rule() {
                Rule::integration_decl => {
                    let decl_span = span_of(&decl);
                    let doc = self.doc_above(decl_span.start);
                    let name = self.lower_integration(decl);
                    if let Some((first, _)) = &integration {
                        self.error(
                            Diagnostic::new(
                                Code::MissingIntegration,
                                decl_span,
                                "a file has exactly one `integration` line",
                            )
                            .with_label("second `integration` line")
                            .with_secondary(first.span, "first declared here"),
                        );
                    } else {
                        if let Some(first) = items.first().map(Item::span) {
                            self.error(
                                Diagnostic::new(
                                    Code::MissingIntegration,
                                    decl_span,
                                    "`integration` must come first",
                                )
                                .with_label("declared after other declarations")
                                .with_secondary(first, "first declaration")
                                .with_help("move `integration NAME` to the top of the file"),
                            );
                        }
                        integration = Some((name, doc));
                    }
                }
                Rule::config_block => items.push(Item::Config(self.lower_config(decl))),
                Rule::type_decl => items.push(Item::Type(self.lower_type_decl(decl))),
                Rule::connection_decl => items.push(Item::Connection(self.lower_connection(decl))),
                Rule::flow_decl => items.push(Item::Flow(self.lower_flow(decl))),
                Rule::test_decl => items.push(Item::Test(self.lower_test(decl))),
                rule => unexpected(rule),
            }
        }
        let (integration, doc) = integration.unwrap_or_else(|| {
            let at = items.first().map_or(Span::new(0, 0), |i| {
                let s = i.span();
                Span::new(s.start, s.start)
            });
            self.error(
                Diagnostic::new(Code::MissingIntegration, at, "missing `integration` line")
                    .with_label("expected `integration NAME` here")
                    .with_help("a .flow file starts with `integration NAME`"),
            );
            (
                Ident {
                    name: String::new(),
                    span: at,
                },
                None,
            )
        });
        File {
            doc,
            integration,
            items,
            span,
        }
    }

    fn lower_integration(&self, pair: Pair<'_, Rule>) -> Ident {
        self.lower_ident(inner(pair).required())
    }
}

/// `orderId` -> `order_id`, for help messages.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
