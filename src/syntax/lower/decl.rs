//! Lowering of declarations: config blocks, types, flows with their
//! triggers, and test blocks.

use pest::iterators::Pair;

use super::{inner, span_of, unexpected, Lowerer};
use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::*;
use crate::syntax::parser::Rule;

impl Lowerer<'_> {
    // ------------------------------------------------------------ config

    pub(super) fn lower_config(&self, pair: Pair<'_, Rule>) -> ConfigBlock {
        let span = span_of(&pair);
        let entries = inner(pair).map(|e| self.lower_config_entry(e)).collect();
        ConfigBlock { entries, span }
    }

    pub(super) fn lower_config_entry(&self, pair: Pair<'_, Rule>) -> ConfigEntry {
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

    // ------------------------------------------------------------ connections

    pub(super) fn lower_connection(&self, pair: Pair<'_, Rule>) -> ConnectionDecl {
        let span = span_of(&pair);
        let doc = self.doc_above(span.start);
        let mut walk = inner(pair);
        let name = self.lower_binding(walk.required());
        let options = self.lower_options(walk.required());
        ConnectionDecl {
            doc,
            name,
            options,
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
    pub(super) fn lower_type_fields(&self, pair: Pair<'_, Rule>) -> Vec<Field> {
        inner(pair).map(|f| self.lower_field_decl(f)).collect()
    }

    pub(super) fn lower_field_decl(&self, pair: Pair<'_, Rule>) -> Field {
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

    pub(super) fn lower_rename(&self, pair: Pair<'_, Rule>) -> StrLit {
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

    pub(super) fn lower_type_atom(&self, pair: Pair<'_, Rule>) -> TypeExpr {
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

    pub(super) fn lower_named_type(&self, pair: Pair<'_, Rule>) -> TypeExprKind {
        let mut walk = inner(pair);
        let name = self.lower_type_name(walk.required());
        let args = walk
            .next_if(Rule::type_args)
            .map(|a| self.lower_type_args(a))
            .unwrap_or_default();
        TypeExprKind::Named { name, args }
    }

    pub(super) fn lower_type_args(&self, pair: Pair<'_, Rule>) -> Vec<TypeExpr> {
        inner(pair).map(|t| self.lower_type_expr(t)).collect()
    }

    pub(super) fn lower_lit_union(&self, pair: Pair<'_, Rule>) -> TypeExprKind {
        TypeExprKind::LitUnion(inner(pair).map(|s| self.lower_str_lit(s)).collect())
    }

    // ------------------------------------------------------------ flows

    pub(super) fn lower_flow(&self, pair: Pair<'_, Rule>) -> FlowDecl {
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

    pub(super) fn lower_on_failure(&self, pair: Pair<'_, Rule>) -> Block {
        self.lower_block(inner(pair).required())
    }

    pub(super) fn lower_trigger(&self, pair: Pair<'_, Rule>) -> Trigger {
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

    pub(super) fn lower_trigger_kind(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let kind = inner(pair).required();
        match kind.as_rule() {
            Rule::webhook_trigger => self.lower_webhook_trigger(kind),
            Rule::sync_trigger => self.lower_sync_trigger(kind),
            Rule::schedule_trigger => self.lower_schedule_trigger(kind),
            Rule::files_trigger => self.lower_files_trigger(kind),
            Rule::email_trigger => self.lower_email_trigger(kind),
            Rule::subscribe_trigger => self.lower_subscribe_trigger(kind),
            Rule::deploy_trigger => TriggerKind::Deploy,
            Rule::remove_trigger => TriggerKind::Remove,
            Rule::dispatch_trigger => self.lower_dispatch_trigger(kind),
            rule => unexpected(rule),
        }
    }

    pub(super) fn lower_webhook_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let method = self.lower_http_method(walk.required());
        let path = self.lower_str_lit(walk.required());
        TriggerKind::Webhook { method, path }
    }

    pub(super) fn lower_sync_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
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

    pub(super) fn lower_schedule_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
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

    pub(super) fn lower_files_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let glob = self.lower_config_template(walk.required());
        let every = self.lower_duration_lit(walk.required());
        TriggerKind::Files { glob, every }
    }

    pub(super) fn lower_email_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let mailbox = self.lower_str_lit(walk.required());
        let every = self.lower_duration_lit(walk.required());
        TriggerKind::Email { mailbox, every }
    }

    pub(super) fn lower_subscribe_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let broker = self.lower_ident(walk.required());
        let topic = self.lower_str_lit(walk.required());
        TriggerKind::Subscribe { broker, topic }
    }

    pub(super) fn lower_dispatch_trigger(&self, pair: Pair<'_, Rule>) -> TriggerKind {
        let mut walk = inner(pair);
        let param = self.lower_binding(walk.required());
        let ty = self.lower_type_expr(walk.required());
        TriggerKind::Dispatch { param, ty }
    }

    /// `options` (trigger options, test config): `{ name: expr ... }`.
    pub(super) fn lower_options(&self, pair: Pair<'_, Rule>) -> Vec<OptionEntry> {
        inner(pair).map(|e| self.lower_option_entry(e)).collect()
    }

    /// `option_entry` and `config_value`: `name: expr`, or `body: Type`.
    pub(super) fn lower_option_entry(&self, pair: Pair<'_, Rule>) -> OptionEntry {
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

    // ------------------------------------------------------------ tests

    pub(super) fn lower_test(&self, pair: Pair<'_, Rule>) -> TestDecl {
        let span = span_of(&pair);
        let mut walk = inner(pair);
        let name = self.lower_str_lit(walk.required());
        let stmts = walk.map(|s| self.lower_test_stmt(s)).collect();
        TestDecl { name, stmts, span }
    }

    pub(super) fn lower_test_stmt(&self, pair: Pair<'_, Rule>) -> TestStmt {
        let stmt = inner(pair).required();
        let span = span_of(&stmt);
        let rule = stmt.as_rule();
        let mut walk = inner(stmt);
        let kind = match rule {
            Rule::test_config => {
                TestStmtKind::Config(walk.map(|e| self.lower_option_entry(e)).collect())
            }
            Rule::test_instance => TestStmtKind::Instance {
                name: self.lower_str_lit(walk.required()),
                file: walk.try_next().map(|f| self.lower_str_lit(f)),
            },
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
                json: walk
                    .next_if(Rule::expect_json)
                    .map(|e| self.lower_expr(inner(e).required())),
                headers: walk
                    .next_if(Rule::expect_headers)
                    .map(|e| self.lower_expr(inner(e).required())),
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
}
