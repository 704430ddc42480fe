//! Lowering: pest pairs (see `grammar/flow.pest`) into the [`ast`].
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

mod expr;
mod literal;

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
const RESERVED: &[&str] = &[
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
            | kw_subscribe
            | kw_deploy
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
/// The last token is the last leaf down the chain of last children.
pub(super) fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let start = pair.as_span().start();
    let mut last = pair.clone();
    while let Some(child) = last.clone().into_inner().last() {
        last = child;
    }
    Span::new(start, last.as_span().end())
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

    // ------------------------------------------------------------ config

    fn lower_config(&self, pair: Pair<'_, Rule>) -> ConfigBlock {
        let span = span_of(&pair);
        let entries = inner(pair).map(|e| self.lower_config_entry(e)).collect();
        ConfigBlock { entries, span }
    }

    fn lower_config_entry(&self, pair: Pair<'_, Rule>) -> ConfigEntry {
        let span = span_of(&pair);
        let doc = self.doc_above(span.start);
        let mut walk = inner(pair);
        let name = self.lower_binding(walk.required());
        let ty = self.lower_type_expr(walk.required());
        let default = walk.next_if(Rule::expr).map(|e| self.lower_expr(e));
        let env = walk.next_if(Rule::string).map(|s| self.lower_str_lit(s));
        ConfigEntry {
            doc,
            name,
            ty,
            default,
            env,
            span,
        }
    }

    // ------------------------------------------------------------ types

    pub(super) fn lower_type_decl(&self, pair: Pair<'_, Rule>) -> TypeDecl {
        let span = span_of(&pair);
        let doc = self.doc_above(span.start);
        let mut walk = inner(pair);
        let name = self.lower_type_name(walk.required());
        let body = walk.required();
        let body = match body.as_rule() {
            Rule::type_fields => TypeDeclBody::Record(self.lower_type_fields(body)),
            Rule::type_expr => TypeDeclBody::Alias(self.lower_type_expr(body)),
            rule => unexpected(rule),
        };
        TypeDecl {
            doc,
            name,
            body,
            span,
        }
    }

    /// `type_fields` and `record_type`: `{ field ... }`.
    fn lower_type_fields(&self, pair: Pair<'_, Rule>) -> Vec<Field> {
        inner(pair).map(|f| self.lower_field_decl(f)).collect()
    }

    fn lower_field_decl(&self, pair: Pair<'_, Rule>) -> Field {
        let span = span_of(&pair);
        let doc = self.doc_above(span.start);
        let mut walk = inner(pair);
        let rename = walk.next_if(Rule::rename).map(|r| self.lower_rename(r));
        let name = self.lower_ident(walk.required());
        let ty = self.lower_type_expr(walk.required());
        Field {
            doc,
            rename,
            name,
            ty,
            span,
        }
    }

    fn lower_rename(&self, pair: Pair<'_, Rule>) -> StrLit {
        self.lower_str_lit(inner(pair).required())
    }

    pub(super) fn lower_type_expr(&self, pair: Pair<'_, Rule>) -> TypeExpr {
        let span = span_of(&pair);
        let mut walk = inner(pair);
        let atom = walk.required();
        let marks: Vec<Span> = walk.map(|m| span_of(&m)).collect();
        let fallback = || TypeExpr {
            kind: TypeExprKind::Named {
                name: Ident {
                    name: "Json".into(),
                    span,
                },
                args: Vec::new(),
            },
            span,
        };
        self.nested(marks.len() + 1, span, fallback, || {
            let mut ty = self.lower_type_atom(atom);
            for mark in marks {
                let span = ty.span.to(mark);
                ty = TypeExpr {
                    kind: TypeExprKind::Optional(Box::new(ty)),
                    span,
                };
            }
            ty
        })
    }

    fn lower_type_atom(&self, pair: Pair<'_, Rule>) -> TypeExpr {
        let span = span_of(&pair);
        let kind = match pair.as_rule() {
            Rule::named_type => self.lower_named_type(pair),
            Rule::list_type => {
                TypeExprKind::List(Box::new(self.lower_type_expr(inner(pair).required())))
            }
            Rule::record_type => TypeExprKind::Record(self.lower_type_fields(pair)),
            Rule::lit_union => self.lower_lit_union(pair),
            Rule::paren_type => {
                // No node for parentheses: the inner type, spanning them.
                let mut ty = self.lower_type_expr(inner(pair).required());
                ty.span = span;
                return ty;
            }
            rule => unexpected(rule),
        };
        TypeExpr { kind, span }
    }

    fn lower_named_type(&self, pair: Pair<'_, Rule>) -> TypeExprKind {
        let mut walk = inner(pair);
        let name = self.lower_type_name(walk.required());
        let args = walk
            .next_if(Rule::type_args)
            .map(|a| self.lower_type_args(a))
            .unwrap_or_default();
        TypeExprKind::Named { name, args }
    }

    fn lower_type_args(&self, pair: Pair<'_, Rule>) -> Vec<TypeExpr> {
        inner(pair).map(|t| self.lower_type_expr(t)).collect()
    }

    fn lower_lit_union(&self, pair: Pair<'_, Rule>) -> TypeExprKind {
        TypeExprKind::LitUnion(inner(pair).map(|s| self.lower_str_lit(s)).collect())
    }

    // ------------------------------------------------------------ flows

    fn lower_flow(&self, pair: Pair<'_, Rule>) -> FlowDecl {
        let span = span_of(&pair);
        let doc = self.doc_above(span.start);
        let mut body_start = span.start;
        let mut body_end = span.end;
        let mut name = None;
        let mut triggers = Vec::new();
        let mut stmts: Vec<Stmt> = Vec::new();
        let mut on_failure = None;
        for child in pair.into_inner() {
            match child.as_rule() {
                Rule::kw_flow => {}
                Rule::ident => name = Some(self.lower_binding(child)),
                Rule::lbrace => body_start = child.as_span().start(),
                Rule::rbrace => body_end = child.as_span().end(),
                Rule::trigger => {
                    let trigger = self.lower_trigger(child);
                    if let Some(first) = stmts.first() {
                        self.error(
                            Diagnostic::new(
                                Code::Syntax,
                                trigger.span,
                                "a trigger must come before the flow's statements",
                            )
                            .with_label("trigger after a statement")
                            .with_secondary(first.span, "first statement")
                            .with_help("move the `trigger` line to the top of the flow"),
                        );
                    }
                    triggers.push(trigger);
                }
                Rule::stmt => stmts.push(self.lower_stmt(child)),
                Rule::on_failure => on_failure = Some(self.lower_on_failure(child)),
                rule => unexpected(rule),
            }
        }
        let Some(name) = name else {
            unexpected(Rule::flow_decl)
        };
        FlowDecl {
            doc,
            name,
            triggers,
            body: Block {
                stmts,
                span: Span::new(body_start, body_end),
            },
            on_failure,
            span,
        }
    }

    fn lower_on_failure(&self, pair: Pair<'_, Rule>) -> Block {
        self.lower_block(inner(pair).required())
    }

    fn lower_trigger(&self, pair: Pair<'_, Rule>) -> Trigger {
        let span = span_of(&pair);
        let mut walk = inner(pair);
        let kind = self.lower_trigger_kind(walk.required());
        let options = walk
            .next_if(Rule::options)
            .map(|o| self.lower_options(o))
            .unwrap_or_default();
        Trigger {
            kind,
            options,
            span,
        }
    }

    fn lower_trigger_kind(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let kind = inner(pair).required();
        match kind.as_rule() {
            Rule::webhook_trigger => self.lower_webhook_trigger(kind),
            Rule::sync_trigger => self.lower_sync_trigger(kind),
            Rule::schedule_trigger => self.lower_schedule_trigger(kind),
            Rule::files_trigger => self.lower_files_trigger(kind),
            Rule::subscribe_trigger => self.lower_subscribe_trigger(kind),
            Rule::deploy_trigger => TriggerKind::Deploy,
            Rule::dispatch_trigger => self.lower_dispatch_trigger(kind),
            rule => unexpected(rule),
        }
    }

    fn lower_webhook_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let method = self.lower_http_method(walk.required());
        let path = self.lower_str_lit(walk.required());
        TriggerKind::Webhook { method, path }
    }

    fn lower_sync_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let method = self.lower_http_method(walk.required());
        let path = self.lower_str_lit(walk.required());
        let timeout = walk.try_next().map(|d| self.lower_duration_lit(d));
        TriggerKind::Sync {
            method,
            path,
            timeout,
        }
    }

    fn lower_schedule_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let schedule = inner(pair).required();
        match schedule.as_rule() {
            Rule::every_schedule => TriggerKind::Every {
                period: self.lower_duration_lit(inner(schedule).required()),
            },
            Rule::cron_schedule => {
                let mut walk = inner(schedule);
                let expr = self.lower_str_lit(walk.required());
                let tz = walk.try_next().map(|s| self.lower_str_lit(s));
                TriggerKind::Cron { expr, tz }
            }
            rule => unexpected(rule),
        }
    }

    fn lower_files_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let glob = self.lower_str_lit(walk.required());
        let every = self.lower_duration_lit(walk.required());
        TriggerKind::Files { glob, every }
    }

    fn lower_subscribe_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let broker = self.lower_ident(walk.required());
        let topic = self.lower_str_lit(walk.required());
        TriggerKind::Subscribe { broker, topic }
    }

    fn lower_dispatch_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let param = self.lower_binding(walk.required());
        let ty = self.lower_type_expr(walk.required());
        TriggerKind::Dispatch { param, ty }
    }

    /// `options` (trigger options, test config): `{ name: expr ... }`.
    fn lower_options(&self, pair: Pair<'_, Rule>) -> Vec<OptionEntry> {
        inner(pair).map(|e| self.lower_option_entry(e)).collect()
    }

    /// `option_entry` and `config_value`: `name: expr`, or `body: Type`.
    fn lower_option_entry(&self, pair: Pair<'_, Rule>) -> OptionEntry {
        let span = span_of(&pair);
        let entry = match pair.as_rule() {
            Rule::option_entry => inner(pair).required(),
            _ => pair,
        };
        let value = match entry.as_rule() {
            Rule::type_option => {
                let mut name = None;
                let mut ty = None;
                for child in entry.into_inner() {
                    match child.as_rule() {
                        Rule::kw_body => {
                            name = Some(Ident {
                                name: "body".to_string(),
                                span: span_of(&child),
                            })
                        }
                        Rule::colon => {}
                        Rule::type_expr => ty = Some(self.lower_type_expr(child)),
                        rule => unexpected(rule),
                    }
                }
                let (Some(name), Some(ty)) = (name, ty) else {
                    unexpected(Rule::type_option)
                };
                return OptionEntry {
                    name,
                    value: ArgValue::Type(ty),
                    span,
                };
            }
            Rule::value_option => entry,
            rule => unexpected(rule),
        };
        let mut walk = inner(value);
        let name = self.lower_ident(walk.required());
        let value = ArgValue::Expr(self.lower_expr(walk.required()));
        OptionEntry { name, value, span }
    }

    // ------------------------------------------------------------ statements

    pub(super) fn lower_block(&self, pair: Pair<'_, Rule>) -> Block {
        let span = span_of(&pair);
        let fallback = || Block {
            stmts: Vec::new(),
            span,
        };
        self.nested(1, span, fallback, || Block {
            stmts: inner(pair).map(|s| self.lower_stmt(s)).collect(),
            span,
        })
    }

    pub(super) fn lower_stmt(&self, pair: Pair<'_, Rule>) -> Stmt {
        let stmt = inner(pair).required();
        let span = span_of(&stmt);
        let kind = match stmt.as_rule() {
            Rule::let_stmt => self.lower_let(stmt),
            Rule::step_stmt => self.lower_step(stmt),
            Rule::if_stmt => self.lower_if_stmt(stmt),
            Rule::match_stmt => self.lower_match_stmt(stmt),
            Rule::for_stmt => self.lower_for(stmt),
            Rule::dispatch_stmt => self.lower_dispatch(stmt),
            Rule::skip_stmt => StmtKind::Skip(self.lower_expr(inner(stmt).required())),
            Rule::fail_stmt => StmtKind::Fail(self.lower_expr(inner(stmt).required())),
            Rule::respond_stmt => self.lower_respond(stmt),
            Rule::call_stmt => StmtKind::Expr(self.lower_call_stmt(stmt)),
            rule => unexpected(rule),
        };
        Stmt { kind, span }
    }

    fn lower_let(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut walk = inner(pair);
        let name = self.lower_binding(walk.required());
        let value = self.lower_expr(walk.required());
        StmtKind::Let { name, value }
    }

    fn lower_step(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut walk = inner(pair);
        let name = self.lower_binding(walk.required());
        let call = self.lower_expr(walk.required());
        let mut step = StepStmt {
            name,
            call,
            retry: None,
            backoff: None,
            timeout: None,
        };
        let mut seen: [Option<Span>; 3] = [None; 3];
        for modifier in walk {
            let span = span_of(&modifier);
            let (slot, word) = match modifier.as_rule() {
                Rule::retry_modifier => {
                    step.retry = Some(self.lower_expr(inner(modifier).required()));
                    (0, "retry")
                }
                Rule::backoff_modifier => {
                    let mut walk = inner(modifier);
                    let min = self.lower_duration_lit(walk.required());
                    let max = self.lower_duration_lit(walk.required());
                    step.backoff = Some((min, max));
                    (1, "backoff")
                }
                Rule::timeout_modifier => {
                    step.timeout = Some(self.lower_duration_lit(inner(modifier).required()));
                    (2, "timeout")
                }
                rule => unexpected(rule),
            };
            if let Some(Some(first)) = seen.get(slot) {
                self.error(
                    Diagnostic::new(Code::Syntax, span, format!("`{word}` is given twice"))
                        .with_label("second one")
                        .with_secondary(*first, "first one"),
                );
            } else if let Some(entry) = seen.get_mut(slot) {
                *entry = Some(span);
            }
        }
        StmtKind::Step(step)
    }

    fn lower_if_stmt(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut branches = Vec::new();
        let mut otherwise = None;
        let mut walk = inner(pair);
        while let Some(first) = walk.try_next() {
            match first.as_rule() {
                Rule::expr => {
                    let cond = self.lower_expr(first);
                    let body = self.lower_block(walk.required());
                    branches.push((cond, body));
                }
                Rule::block => otherwise = Some(self.lower_block(first)),
                rule => unexpected(rule),
            }
        }
        StmtKind::If {
            branches,
            otherwise,
        }
    }

    fn lower_match_stmt(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut walk = inner(pair);
        let scrutinee = self.lower_expr(walk.required());
        let arms = walk.map(|a| self.lower_stmt_arm(a)).collect();
        StmtKind::Match { scrutinee, arms }
    }

    fn lower_stmt_arm(&self, pair: Pair<'_, Rule>) -> StmtArm {
        let span = span_of(&pair);
        let mut patterns = Vec::new();
        let mut body = None;
        for child in inner(pair) {
            match child.as_rule() {
                Rule::pattern => patterns.push(self.lower_pattern(child)),
                Rule::block => body = Some(self.lower_block(child)),
                Rule::stmt => {
                    let stmt = self.lower_stmt(child);
                    body = Some(Block {
                        span: stmt.span,
                        stmts: vec![stmt],
                    });
                }
                rule => unexpected(rule),
            }
        }
        let Some(body) = body else {
            unexpected(Rule::stmt_arm)
        };
        StmtArm {
            patterns,
            body,
            span,
        }
    }

    fn lower_for(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut walk = inner(pair);
        let var = self.lower_binding(walk.required());
        let iter = self.lower_expr(walk.required());
        let parallel = walk
            .next_if(Rule::parallel)
            .map(|p| self.lower_expr(inner(p).required()));
        let body = self.lower_block(walk.required());
        StmtKind::For {
            var,
            iter,
            parallel,
            body,
        }
    }

    fn lower_dispatch(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut walk = inner(pair);
        let flow = self.lower_ident(walk.required());
        let arg = self.lower_expr(walk.required());
        StmtKind::Dispatch { flow, arg }
    }

    fn lower_respond(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut walk = inner(pair);
        let status = self.lower_expr(walk.required());
        let body = walk.next_if(Rule::expr).map(|e| self.lower_expr(e));
        let headers = walk
            .next_if(Rule::respond_headers)
            .map(|h| self.lower_record(inner(h).required()));
        StmtKind::Respond {
            status,
            body,
            headers,
        }
    }

    /// `call_stmt`: a name followed by accessors ending in a call.
    fn lower_call_stmt(&self, pair: Pair<'_, Rule>) -> Expr {
        let mut walk = inner(pair);
        let name = walk.required();
        let chain = walk.required();
        let span = span_of(&name);
        let fallback = || Expr {
            kind: ExprKind::Null,
            span,
        };
        let name = self.lower_name(name);
        let ops: Vec<_> = inner(chain).collect();
        self.nested(ops.len(), span, fallback, || {
            ops.into_iter()
                .fold(name, |lhs, op| self.lower_postfix(lhs, op))
        })
    }

    pub(super) fn lower_pattern(&self, pair: Pair<'_, Rule>) -> Pattern {
        let lit = match pair.into_inner().next() {
            Some(lit) => lit,
            None => unexpected(Rule::pattern),
        };
        let span = span_of(&lit);
        let kind = match lit.as_rule() {
            Rule::wildcard => PatternKind::Wildcard,
            Rule::pat_int => PatternKind::Int(self.parse_int(lit.as_str(), span)),
            Rule::pat_float => PatternKind::Float(self.parse_float(lit.as_str(), span)),
            Rule::string => PatternKind::Str(self.lower_str_lit(lit).value),
            Rule::kw_true => PatternKind::Bool(true),
            Rule::kw_false => PatternKind::Bool(false),
            Rule::kw_null => PatternKind::Null,
            rule => unexpected(rule),
        };
        Pattern { kind, span }
    }

    // ------------------------------------------------------------ tests

    fn lower_test(&self, pair: Pair<'_, Rule>) -> TestDecl {
        let span = span_of(&pair);
        let mut walk = inner(pair);
        let name = self.lower_str_lit(walk.required());
        let stmts = walk.map(|s| self.lower_test_stmt(s)).collect();
        TestDecl { name, stmts, span }
    }

    fn lower_test_stmt(&self, pair: Pair<'_, Rule>) -> TestStmt {
        let stmt = inner(pair).required();
        let span = span_of(&stmt);
        let rule = stmt.as_rule();
        let mut walk = inner(stmt);
        let kind = match rule {
            Rule::test_config => {
                TestStmtKind::Config(walk.map(|e| self.lower_option_entry(e)).collect())
            }
            Rule::mock_http => TestStmtKind::MockHttp {
                method: self.lower_http_method(walk.required()),
                url: self.lower_expr(walk.required()),
                status: self.lower_expr(walk.required()),
                body: walk.try_next().map(|e| self.lower_expr(e)),
            },
            Rule::run_flow => TestStmtKind::Run {
                flow: self.lower_ident(walk.required()),
                input: self.lower_expr(walk.required()),
            },
            Rule::expect_http => TestStmtKind::ExpectHttp {
                method: self.lower_http_method(walk.required()),
                url: self.lower_expr(walk.required()),
                json: walk.try_next().map(|e| self.lower_expr(e)),
            },
            Rule::expect_status => TestStmtKind::ExpectStatus(self.lower_ident(walk.required())),
            Rule::expect_response => TestStmtKind::ExpectResponse {
                status: self.lower_expr(walk.required()),
                body: walk.try_next().map(|e| self.lower_expr(e)),
            },
            rule => unexpected(rule),
        };
        TestStmt { kind, span }
    }

    // ------------------------------------------------------------ stdlib modules

    pub(super) fn lower_module_program(&self, pair: Pair<'_, Rule>) -> ModuleDecl {
        self.lower_module_file(inner(pair).required())
    }

    fn lower_module_file(&self, pair: Pair<'_, Rule>) -> ModuleDecl {
        let span = Span::new(0, self.source.len());
        let mut walk = inner(pair);
        let header = walk.required();
        let doc = self.doc_above(header.as_span().start());
        let name = self.lower_ident(inner(header).required());
        let mut types = Vec::new();
        let mut functions = Vec::new();
        for decl in walk {
            match decl.as_rule() {
                Rule::type_decl => types.push(self.lower_type_decl(decl)),
                Rule::fn_decl => functions.push(self.lower_fn_decl(decl)),
                rule => unexpected(rule),
            }
        }
        ModuleDecl {
            doc,
            name,
            types,
            functions,
            span,
        }
    }

    fn lower_fn_decl(&self, pair: Pair<'_, Rule>) -> FnDecl {
        let span = span_of(&pair);
        let doc = self.doc_above(span.start);
        let mut walk = inner(pair);
        let effectful = walk.next_if(Rule::step_marker).is_some();
        let name = self.lower_ident(walk.required());
        let type_params: Vec<Ident> = walk
            .next_if(Rule::type_params)
            .map(|t| inner(t).map(|n| self.lower_type_name(n)).collect())
            .unwrap_or_default();
        let params = inner(walk.required())
            .map(|p| self.lower_param(p, &type_params))
            .collect();
        let ret = self.lower_type_expr(walk.required());
        let examples = walk.map(|e| self.lower_example(e)).collect();
        FnDecl {
            doc,
            effectful,
            name,
            type_params,
            params,
            ret,
            examples,
            span,
        }
    }

    fn lower_param(&self, pair: Pair<'_, Rule>, type_params: &[Ident]) -> Param {
        let span = span_of(&pair);
        let mut walk = inner(pair);
        let name = self.lower_ident(walk.required());
        let ty = self.lower_type_expr(walk.required());
        let takes_type = match &ty.kind {
            TypeExprKind::Named { name, args } => {
                args.is_empty() && type_params.iter().any(|t| t.name == name.name)
            }
            _ => false,
        };
        let default = walk.try_next().map(|d| match (d.as_rule(), takes_type) {
            (Rule::expr, false) => ParamDefault::Expr(self.lower_expr(d)),
            (Rule::type_expr, true) => ParamDefault::Type(self.lower_type_expr(d)),
            (Rule::expr, true) => {
                self.error(
                    Diagnostic::new(Code::Syntax, span_of(&d), "expected a type")
                        .with_label("the default of a type parameter is a type")
                        .with_help("write a type such as `Json`"),
                );
                ParamDefault::Expr(self.lower_expr(d))
            }
            (Rule::type_expr, false) => {
                self.error(
                    Diagnostic::new(Code::Syntax, span_of(&d), "expected an expression")
                        .with_label("a type, but this parameter takes a value"),
                );
                ParamDefault::Type(self.lower_type_expr(d))
            }
            (rule, _) => unexpected(rule),
        });
        Param {
            name,
            ty,
            default,
            span,
        }
    }

    fn lower_example(&self, pair: Pair<'_, Rule>) -> FnExample {
        let span = span_of(&pair);
        let mut walk = inner(pair);
        let call = self.lower_expr(walk.required());
        let expected = self.lower_expr(walk.required());
        FnExample {
            call,
            expected,
            span,
        }
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
