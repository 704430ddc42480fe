//! Statements and blocks. A block holding one simple statement (not `if`,
//! `match` or `for`) stays on the line of its `if` or match arm when it
//! fits: `if done { skip "nothing to do" }`; an `if` chain is either wholly
//! on one line or wholly broken.

use super::printer::Printer;
use crate::syntax::ast::*;

impl Printer<'_> {
    /// A statement; its line has been started.
    pub(super) fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Let { name, value } => {
                self.write(&format!("let {} = ", name.name));
                self.expr(value, 0);
            }
            StmtKind::Step(step) => {
                self.write(&format!("step {} = ", step.name.name));
                let modifiers = self.step_modifiers(step);
                let width = modifiers.as_ref().map_or(0, |m| m.chars().count());
                self.expr(&step.call, width);
                self.step_modifiers_broken(step, modifiers);
            }
            StmtKind::If {
                branches,
                otherwise,
            } => self.if_stmt(s, branches, otherwise.as_ref()),
            StmtKind::Match { scrutinee, arms } => {
                self.write("match ");
                self.expr(scrutinee, 2);
                self.write(" ");
                let open = self.skip_trivia(scrutinee.span.end);
                self.open("{", open);
                for arm in arms {
                    self.line(arm.span.start, false);
                    self.patterns(&arm.patterns);
                    self.write(" => ");
                    if self.byte(arm.body.span.start) == Some(b'{') {
                        self.block(&arm.body, true, 0);
                    } else {
                        for stmt in &arm.body.stmts {
                            self.stmt(stmt);
                        }
                    }
                    self.done(arm.span.end);
                }
                self.close(s.span.end.saturating_sub(1), "}");
            }
            StmtKind::For {
                var,
                iter,
                parallel,
                body,
            } => {
                self.write(&format!("for {} in ", var.name));
                self.expr(iter, 2);
                if let Some(parallel) = parallel {
                    self.write(" parallel ");
                    self.expr(parallel, 2);
                }
                self.write(" ");
                self.block(body, false, 0);
            }
            StmtKind::Dispatch { flow, arg } => {
                self.write(&format!("dispatch {}(", flow.name));
                self.expr(arg, 1);
                self.write(")");
            }
            StmtKind::Skip(reason) => {
                self.write("skip ");
                self.expr(reason, 0);
            }
            StmtKind::Fail(reason) => {
                self.write("fail ");
                self.expr(reason, 0);
            }
            StmtKind::Respond {
                status,
                body,
                headers,
            } => {
                self.write("respond ");
                let headers_width = headers
                    .as_ref()
                    .and_then(|h| self.flat_expr(h))
                    .map_or(0, |h| h.chars().count() + " headers ".len());
                if let Some(body) = body {
                    self.expr(status, 1);
                    self.write(", ");
                    self.expr(body, headers_width);
                } else {
                    self.expr(status, headers_width);
                }
                if let Some(headers) = headers {
                    self.write(" headers ");
                    self.expr(headers, 0);
                }
            }
            StmtKind::Expr(e) => self.expr(e, 0),
        }
        self.done(s.span.end);
    }

    fn step_modifiers_broken(&mut self, step: &StepStmt, flat: Option<String>) {
        if let Some(flat) = flat.filter(|_| {
            step.retry
                .as_ref()
                .is_none_or(|r| !self.has_comments(r.span))
        }) {
            self.write(&flat);
            return;
        }
        // A `retry` count with no flat form: print it piece by piece.
        if let Some(retry) = &step.retry {
            self.write(" retry ");
            self.expr(retry, 0);
        }
        let rest = StepStmt {
            retry: None,
            ..step.clone()
        };
        if let Some(rest) = self.step_modifiers(&rest) {
            self.write(&rest);
        }
    }

    fn if_stmt(&mut self, s: &Stmt, branches: &[(Expr, Block)], otherwise: Option<&Block>) {
        if !self.has_comments(s.span) {
            if let Some(flat) = self.flat_if(branches, otherwise) {
                if self.fits(&flat, 0) {
                    self.write(&flat);
                    return;
                }
            }
        }
        for (i, (cond, body)) in branches.iter().enumerate() {
            self.write(if i == 0 { "if " } else { " else if " });
            self.expr(cond, 2);
            self.write(" ");
            // Comments before the next `else` go inside this block.
            let next = match branches.get(i + 1) {
                Some((next_cond, _)) => next_cond.span.start,
                None => otherwise.map_or(0, |b| b.span.start),
            };
            self.block_flushing(body, next);
        }
        if let Some(body) = otherwise {
            self.write(" else ");
            self.block(body, false, 0);
        }
    }

    fn flat_if(&self, branches: &[(Expr, Block)], otherwise: Option<&Block>) -> Option<String> {
        let mut out = String::new();
        for (i, (cond, body)) in branches.iter().enumerate() {
            let keyword = if i == 0 { "if" } else { " else if" };
            out.push_str(&format!(
                "{keyword} {} {}",
                self.flat_expr(cond)?,
                self.inline_block(body)?
            ));
        }
        if let Some(body) = otherwise {
            out.push_str(&format!(" else {}", self.inline_block(body)?));
        }
        Some(out)
    }

    /// `{}` or `{ stmt }` for a block of at most one simple statement.
    fn inline_block(&self, b: &Block) -> Option<String> {
        match b.stmts.as_slice() {
            [] => Some("{}".to_string()),
            [stmt] => Some(format!("{{ {} }}", self.flat_simple_stmt(stmt)?)),
            _ => None,
        }
    }

    /// `{ statements }`; with `inline`, on one line if it can be.
    pub(super) fn block(&mut self, b: &Block, inline: bool, trail: usize) {
        if !self.has_comments(b.span) {
            let one_line = match b.stmts.as_slice() {
                [] => Some("{}".to_string()),
                _ if inline => self.inline_block(b),
                _ => None,
            };
            if let Some(text) = one_line.filter(|t| self.fits(t, trail)) {
                self.write(&text);
                self.done(b.span.end);
                return;
            }
        }
        self.block_flushing(b, 0);
    }

    /// A block on lines of its own; before its `}` also the comments up to
    /// `flush_to`.
    fn block_flushing(&mut self, b: &Block, flush_to: usize) {
        self.open("{", b.span.start);
        for stmt in &b.stmts {
            self.line(stmt.span.start, false);
            self.stmt(stmt);
        }
        self.close_after_comments(flush_to, b.span.end.saturating_sub(1), "}");
    }
}
