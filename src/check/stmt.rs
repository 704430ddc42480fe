//! Statements (LANGUAGE.md §6): bindings, steps and the effect rule,
//! control flow, `respond` placement, and where a run ends.

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, ExprKind, Span, StmtKind};
use crate::syntax::visit::{walk_block, Visitor};

use super::scope::BindingKind;
use super::types::Type;
use super::Checker;

/// Whether control can continue after a statement or block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The next statement runs.
    Continues,
    /// The run ends here on every path (`respond`, `skip`, `fail`).
    Ends,
}

impl Checker<'_> {
    pub(super) fn check_block(&mut self, block: &ast::Block) -> Ending {
        let mut ending = Ending::Continues;
        let mut reported_dead = false;
        for stmt in &block.stmts {
            if ending == Ending::Ends && !reported_dead {
                reported_dead = true;
                self.error(
                    Diagnostic::new(Code::CodeAfterEnd, stmt.span, "this statement never runs")
                        .with_label("unreachable")
                        .with_help("the run has already ended (`respond`, `skip` or `fail` above); remove it or move it up"),
                );
            }
            let e = self.check_stmt(stmt);
            if e == Ending::Ends {
                ending = Ending::Ends;
            }
        }
        ending
    }

    fn scoped_block(&mut self, block: &ast::Block) -> Ending {
        self.scopes.push();
        let e = self.check_block(block);
        self.pop_scope_warn_unused();
        e
    }

    fn check_stmt(&mut self, stmt: &ast::Stmt) -> Ending {
        match &stmt.kind {
            StmtKind::Let { name, value } => {
                let before = self.diags.len();
                let t = self.check_expr(value, None);
                self.let_of_effect(name, value, before);
                let t = if t == Type::Null {
                    self.error(
                        Diagnostic::new(
                            Code::EmptyCollection,
                            value.span,
                            "the type of `null` alone cannot be inferred",
                        )
                        .with_label("`null` of what type?")
                        .with_help("bind a value, or use `x ?? default` where it is read"),
                    );
                    Type::Error
                } else if matches!(&value.kind, ExprKind::List(items) if items.is_empty()) {
                    self.error(
                        Diagnostic::new(
                            Code::EmptyCollection,
                            value.span,
                            "the element type of an empty list cannot be inferred",
                        )
                        .with_label("a list of what?")
                        .with_help(format!("say the type: `let {name} = [] as [String]`")),
                    );
                    Type::Error
                } else {
                    t
                };
                self.bind_checked(name, t, BindingKind::Let);
                Ending::Continues
            }
            StmtKind::Step(step) => {
                self.check_step(step);
                Ending::Continues
            }
            StmtKind::If {
                branches,
                otherwise,
            } => {
                let mut all_end = true;
                for (cond, block) in branches {
                    self.expect(cond, &Type::Bool, "condition");
                    all_end &= self.scoped_block(block) == Ending::Ends;
                }
                match otherwise {
                    Some(block) => all_end &= self.scoped_block(block) == Ending::Ends,
                    None => all_end = false,
                }
                if all_end {
                    Ending::Ends
                } else {
                    Ending::Continues
                }
            }
            StmtKind::Match { scrutinee, arms } => {
                let st = self.check_expr(scrutinee, None);
                let pats: Vec<(&[ast::Pattern], Span)> = arms
                    .iter()
                    .map(|a| (a.patterns.as_slice(), a.span))
                    .collect();
                let before = self.diags.len();
                self.check_match_patterns(
                    &st,
                    &pats,
                    Span::new(stmt.span.start, scrutinee.span.end),
                );
                let exhaustive = !self.diags[before..]
                    .iter()
                    .any(|d| d.code == Code::NonExhaustiveMatch);
                let mut all_end = exhaustive && !arms.is_empty();
                for arm in arms {
                    all_end &= self.scoped_block(&arm.body) == Ending::Ends;
                }
                if all_end {
                    Ending::Ends
                } else {
                    Ending::Continues
                }
            }
            StmtKind::For {
                var,
                iter,
                parallel,
                body,
            } => {
                let t = if is_pages_call(iter) {
                    self.page_step_name(var);
                    Type::list(self.pages_loop(iter, parallel.as_ref()))
                } else if let Some(function) = csv_stream_call(iter) {
                    Type::list(self.csv_stream_loop(iter, function, parallel.as_ref()))
                } else {
                    self.check_expr(iter, None)
                };
                let elem = match t {
                    Type::List(e) => *e,
                    Type::Error => Type::Error,
                    Type::Json => {
                        self.error(
                            Diagnostic::new(
                                Code::NotAList,
                                iter.span,
                                "cannot loop over `Json` without knowing its type",
                            )
                            .with_label("`Json`, not a list")
                            .with_help("convert it first: `for x in value as [Item] { ... }`"),
                        );
                        Type::Error
                    }
                    other => {
                        let mut d = Diagnostic::new(
                            Code::NotAList,
                            iter.span,
                            format!("cannot loop over `{other}`"),
                        )
                        .with_label("not a list");
                        if let Type::Optional(inner) = &other {
                            if matches!(**inner, Type::List(_)) {
                                let xs =
                                    super::expr::describe_path(iter).unwrap_or_else(|| "xs".into());
                                d = d.with_help(format!(
                                    "the list may be null: loop over `{xs} ?? []`"
                                ));
                            }
                        } else if let Some(record) = self.record_fields(&other) {
                            let lists: Vec<String> = record
                                .fields
                                .iter()
                                .filter(|f| matches!(f.ty.unwrap_optional(), Type::List(_)))
                                .map(|f| format!("`.{}`", f.name))
                                .collect();
                            if !lists.is_empty() {
                                d = d.with_help(format!(
                                    "loop over one of its lists: {}",
                                    lists.join(", ")
                                ));
                            }
                        }
                        self.error(d);
                        Type::Error
                    }
                };
                if let Some(p) = parallel.as_ref().filter(|_| !is_streamed_list(iter)) {
                    self.expect(p, &Type::Int, "`parallel`");
                    if let ExprKind::Int(n) = p.kind {
                        if n < 1 {
                            self.error(
                                Diagnostic::new(Code::BadStepOption, p.span, "`parallel` needs at least 1")
                                    .with_label("no iteration could run")
                                    .with_help("use `parallel 1` or more, or drop `parallel` to run the iterations one at a time"),
                            );
                        }
                    }
                }
                self.scopes.push();
                self.bind_checked(var, elem, BindingKind::LoopVar);
                if let Some(f) = self.flow.as_mut() {
                    f.loop_depth += 1;
                }
                self.check_block(body);
                if let Some(f) = self.flow.as_mut() {
                    f.loop_depth -= 1;
                }
                self.pop_scope_warn_unused();
                Ending::Continues
            }
            StmtKind::Dispatch { flow, arg } => {
                self.check_dispatch(flow, arg);
                Ending::Continues
            }
            StmtKind::Skip(reason) | StmtKind::Fail(reason) => {
                self.expect(reason, &Type::String, "reason");
                Ending::Ends
            }
            StmtKind::Respond {
                status,
                body,
                headers,
            } => {
                self.check_respond(stmt.span, status, body.as_ref(), headers.as_ref());
                Ending::Ends
            }
            StmtKind::Expr(e) => {
                let before = self.diags.len();
                self.check_expr(e, None);
                let effect_reported = self.diags[before..]
                    .iter()
                    .any(|d| d.code == Code::EffectOutsideStep);
                if !effect_reported && self.diags.len() == before {
                    self.error(
                        Diagnostic::new(
                            Code::UselessExpression,
                            e.span,
                            "this expression's value is not used",
                        )
                        .with_label("computed, then thrown away")
                        .with_help("bind it with `let name = ...`, or remove it"),
                    );
                }
                Ending::Continues
            }
        }
    }

    /// `let x = http.get(...)`: the fix is to say `step` instead of `let`.
    fn let_of_effect(&mut self, name: &ast::Ident, value: &ast::Expr, before: usize) {
        let effect = self.diags[before..]
            .iter_mut()
            .find(|d| d.code == Code::EffectOutsideStep && d.span == value.span);
        if let Some(d) = effect {
            d.help = Some(format!(
                "write `step {name} = ...` instead of `let {name} = ...`: a step's result is journaled and not repeated on retry"
            ));
        }
    }

    fn check_step(&mut self, step: &ast::StepStmt) {
        let t = if is_stdlib_call(&step.call) {
            self.call(&step.call, true)
        } else {
            self.check_expr(&step.call, None);
            self.error(
                Diagnostic::new(
                    Code::StepNotCall,
                    step.call.span,
                    "a step must call a stdlib function",
                )
                .with_label("not a stdlib call")
                .with_help(format!(
                    "write `let {} = ...` for a computation; steps are for stdlib calls with effects, such as `http.post(...)`",
                    step.name
                )),
            );
            Type::Error
        };
        if let Some(retry) = &step.retry {
            self.expect(retry, &Type::Int, "`retry`");
            if let ExprKind::Int(n) = retry.kind {
                if !(0..=100).contains(&n) {
                    self.error(
                        Diagnostic::new(
                            Code::BadStepOption,
                            retry.span,
                            "`retry` must be between 0 and 100",
                        )
                        .with_label("out of range")
                        .with_help("retries back off exponentially; a few are usually enough"),
                    );
                }
            }
        }
        if let Some((min, max)) = &step.backoff {
            if min.millis > max.millis || min.millis == 0 {
                self.error(
                    Diagnostic::new(
                        Code::BadStepOption,
                        min.span.to(max.span),
                        "`backoff MIN..MAX` needs 0 < MIN <= MAX",
                    )
                    .with_label(if min.millis == 0 {
                        "the first delay is zero"
                    } else {
                        "the first delay is longer than the last"
                    })
                    .with_help("MIN is the first delay and MAX the longest, e.g. `backoff 1s..2m`"),
                );
            }
        }
        if let Some(timeout) = &step.timeout {
            if timeout.millis == 0 {
                self.error(
                    Diagnostic::new(
                        Code::BadStepOption,
                        timeout.span,
                        "a step timeout must be longer than zero",
                    )
                    .with_label("the call could never finish")
                    .with_help(
                        "give the call time to answer, e.g. `timeout 30s`, or drop `timeout`",
                    ),
                );
            }
        }
        let prev = self
            .flow
            .as_ref()
            .and_then(|f| f.steps.get(&step.name.name).copied());
        if let Some(prev) = prev {
            self.error(
                Diagnostic::new(
                    Code::DuplicateBinding,
                    step.name.span,
                    format!("step `{}` is already defined in this flow", step.name),
                )
                .with_label("defined again here")
                .with_secondary(prev, "first defined here")
                .with_help("each step of a flow needs its own name: the journal records results by step name"),
            );
            self.scopes
                .bind(&step.name.name, t, step.name.span, BindingKind::Step);
            return;
        }
        if let Some(f) = self.flow.as_mut() {
            f.steps.insert(step.name.name.clone(), step.name.span);
        }
        self.bind_checked(&step.name, t, BindingKind::Step);
    }

    /// The loop variable of `for page in http.pages(...)` names the page
    /// steps (`page[0]`, `page[1]`, ...): like a step name, once a flow.
    fn page_step_name(&mut self, var: &ast::Ident) {
        let Some(f) = self.flow.as_mut() else { return };
        match f.steps.get(&var.name).copied() {
            Some(prev) => self.error(
                Diagnostic::new(
                    Code::DuplicateBinding,
                    var.span,
                    format!("step `{var}` is already defined in this flow"),
                )
                .with_label("pages are journaled under this name")
                .with_secondary(prev, "first defined here")
                .with_help("give the pages another name: the journal records results by step name"),
            ),
            None => {
                f.steps.insert(var.name.clone(), var.span);
            }
        }
    }

    fn check_dispatch(&mut self, flow: &ast::Ident, arg: &ast::Expr) {
        let Some(info) = self.program.flows.get(&flow.name).cloned() else {
            self.check_expr(arg, None);
            self.unknown_flow(flow);
            return;
        };
        let Some(input) = info.dispatch_input else {
            self.check_expr(arg, None);
            if !info.kind.is_empty() {
                self.error(
                    Diagnostic::new(
                        Code::NotDispatchTarget,
                        flow.span,
                        format!(
                            "flow `{flow}` has a {} trigger, so it cannot be dispatched to",
                            info.kind
                        ),
                    )
                    .with_label(format!("a {} flow", info.kind))
                    .with_help(
                        "give it `trigger dispatch (input: Type)` to make it a dispatch target",
                    ),
                );
            }
            return;
        };
        self.expect(arg, &input, &format!("input of `{flow}`"));
    }

    fn check_respond(
        &mut self,
        span: Span,
        status: &ast::Expr,
        body: Option<&ast::Expr>,
        headers: Option<&ast::Expr>,
    ) {
        let (is_sync, in_loop, in_failure) =
            self.flow.as_ref().map_or((false, false, false), |f| {
                (f.is_sync, f.loop_depth > 0, f.in_on_failure)
            });
        let keyword = Span::new(span.start, (span.start + "respond".len()).min(span.end));
        if in_failure {
            self.error(
                Diagnostic::new(Code::RespondOutsideSync, keyword, "`respond` is not allowed in `on failure`")
                    .with_label("the run has already failed")
                    .with_help("`on failure` runs after the run has finally failed; answer the caller from the flow's body instead, e.g. accept the status with `ok: [...]` and `respond` before failing"),
            );
        } else if !is_sync {
            let kind = self.flow.as_ref().map_or("", |f| f.trigger_kind);
            let help = if kind == "webhook" {
                "a webhook is answered `202` as soon as its event is stored; for a caller that waits for an answer, use `trigger sync METHOD \"/path\"`"
            } else {
                "only a flow with `trigger sync METHOD \"/path\"` has a caller waiting for an answer"
            };
            self.error(
                Diagnostic::new(
                    Code::RespondOutsideSync,
                    keyword,
                    "`respond` is only allowed in sync flows",
                )
                .with_label(if kind.is_empty() {
                    "not in a sync flow".to_string()
                } else {
                    format!("this flow has a {kind} trigger")
                })
                .with_help(help),
            );
        } else if in_loop {
            self.error(
                Diagnostic::new(
                    Code::CodeAfterEnd,
                    span,
                    "`respond` inside a loop would answer more than once",
                )
                .with_label("inside a `for` loop")
                .with_help("collect results in the loop, then `respond` after it"),
            );
        }
        self.expect(status, &Type::Int, "status");
        if let ExprKind::Int(n) = status.kind {
            if !(100..=599).contains(&n) {
                self.error(
                    Diagnostic::new(
                        Code::BadLiteral,
                        status.span,
                        format!("{n} is not an HTTP status"),
                    )
                    .with_label("not between 100 and 599")
                    .with_help("use a status between 100 and 599"),
                );
            }
        }
        if let Some(b) = body {
            self.expect(b, &Type::Json, "response body");
        }
        if let Some(h) = headers {
            self.expect(h, &Type::map(Type::String), "response headers");
        }
    }
}

/// A name bound somewhere in a flow: `let`, step or loop variable.
#[derive(Debug, Clone)]
pub struct FlowBinding {
    pub name: String,
    pub span: Span,
    pub kind: BindingKind,
    /// Bound in the `on failure` block.
    pub in_on_failure: bool,
}

/// Every name `block` binds, at any depth: a block's own bindings first,
/// then those of the blocks inside it, in source order (an unknown-name
/// error points at the first binding of the name in this list).
pub(super) fn bindings_in(block: &ast::Block, in_on_failure: bool, out: &mut Vec<FlowBinding>) {
    BindingCollector { in_on_failure, out }.visit_block(block);
}

struct BindingCollector<'a> {
    in_on_failure: bool,
    out: &'a mut Vec<FlowBinding>,
}

impl<'ast> Visitor<'ast> for BindingCollector<'_> {
    fn visit_block(&mut self, block: &'ast ast::Block) {
        for stmt in &block.stmts {
            let (name, kind) = match &stmt.kind {
                StmtKind::Let { name, .. } => (name, BindingKind::Let),
                StmtKind::Step(step) => (&step.name, BindingKind::Step),
                StmtKind::For { var, .. } => (var, BindingKind::LoopVar),
                _ => continue,
            };
            self.out.push(FlowBinding {
                name: name.name.clone(),
                span: name.span,
                kind,
                in_on_failure: self.in_on_failure,
            });
        }
        walk_block(self, block);
    }

    /// Lambda parameters are not flow bindings; nothing else in an
    /// expression binds.
    fn visit_expr(&mut self, _expr: &'ast ast::Expr) {}
}

/// `http.pages(...)`: the list of a `for` loop fetched page by page.
pub fn is_pages_call(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { callee, .. }
        if matches!(&callee.kind, ExprKind::Field { target, name, optional: false }
            if name.name == "pages" && matches!(&target.kind, ExprKind::Name(m) if m.name == "http")))
}

/// `csv.rows(...)` or `csv.chunks(...)`: the list of a `for` loop read
/// from a CSV file as the loop goes; the function's name.
pub fn csv_stream_call(e: &ast::Expr) -> Option<&'static str> {
    let ExprKind::Call { callee, .. } = &e.kind else {
        return None;
    };
    let ExprKind::Field {
        target,
        name,
        optional: false,
    } = &callee.kind
    else {
        return None;
    };
    if !matches!(&target.kind, ExprKind::Name(m) if m.name == "csv") {
        return None;
    }
    CSV_STREAMS.iter().copied().find(|f| *f == name.name)
}

/// The functions of the `csv` module that exist only as a `for` loop's list.
pub const CSV_STREAMS: [&str; 2] = ["rows", "chunks"];

/// A list that exists only as a `for` loop's: `http.pages`, `csv.rows`,
/// `csv.chunks`.
pub fn is_streamed_list(e: &ast::Expr) -> bool {
    is_pages_call(e) || csv_stream_call(e).is_some()
}

/// `module.function(...)`: the shape a step's call must have.
fn is_stdlib_call(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { callee, .. }
        if matches!(&callee.kind, ExprKind::Field { target, optional: false, .. }
            if matches!(target.kind, ExprKind::Name(_))))
}
