//! Lowering of statements and match patterns.

use pest::iterators::Pair;

use super::{inner, span_of, unexpected, Lowerer};
use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::*;
use crate::syntax::parser::Rule;

impl Lowerer<'_> {
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

    pub(super) fn lower_let(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut walk = inner(pair);
        let name = self.lower_binding(walk.required());
        let value = self.lower_expr(walk.required());
        StmtKind::Let { name, value }
    }

    pub(super) fn lower_step(&self, pair: Pair<'_, Rule>) -> StmtKind {
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

    pub(super) fn lower_if_stmt(&self, pair: Pair<'_, Rule>) -> StmtKind {
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

    pub(super) fn lower_match_stmt(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut walk = inner(pair);
        let scrutinee = self.lower_expr(walk.required());
        let arms = walk.map(|a| self.lower_stmt_arm(a)).collect();
        StmtKind::Match { scrutinee, arms }
    }

    pub(super) fn lower_stmt_arm(&self, pair: Pair<'_, Rule>) -> StmtArm {
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

    pub(super) fn lower_for(&self, pair: Pair<'_, Rule>) -> StmtKind {
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

    pub(super) fn lower_dispatch(&self, pair: Pair<'_, Rule>) -> StmtKind {
        let mut walk = inner(pair);
        let flow = self.lower_ident(walk.required());
        let arg = self.lower_expr(walk.required());
        StmtKind::Dispatch { flow, arg }
    }

    pub(super) fn lower_respond(&self, pair: Pair<'_, Rule>) -> StmtKind {
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
    pub(super) fn lower_call_stmt(&self, pair: Pair<'_, Rule>) -> Expr {
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
}
