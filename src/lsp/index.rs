//! A symbol index over a parsed file: every place a flow, type, config
//! entry, stdlib module or function, or local binding is named, with what
//! it refers to. Locals are resolved with their own small scope walk (the
//! same rules as the checker: a `let` or step is visible after it in its
//! block and the blocks inside; a loop variable in the loop's body; a
//! lambda parameter in the lambda's body), so the checker stays untouched.

use std::collections::{BTreeMap, BTreeSet};

use crate::check::Stdlib;
use crate::syntax::ast::{
    self, ArgValue, Block, ExprKind, Ident, Item, Span, StmtKind, StrPart, TestStmtKind,
    TypeDeclBody, TypeExpr, TypeExprKind,
};

/// What a name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sym {
    Flow(String),
    Type(String),
    Config(String),
    Module(String),
    StdFn(String, String),
    Local(Local),
}

/// A local binding: `let`, step, loop variable or lambda parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub name: String,
    /// The name at its binding site.
    pub def: Span,
    /// `let`, `step`, `loop variable` or `parameter`.
    pub kind: &'static str,
    /// The expression whose type is the binding's (the `let` value, the
    /// step's call, the loop's list).
    pub value: Option<Span>,
    /// The binding is an element of `value` (a loop variable).
    pub element: bool,
}

#[derive(Debug, Clone)]
pub struct Occurrence {
    pub span: Span,
    pub sym: Sym,
}

/// Declarations of the file and every occurrence of a name.
#[derive(Debug, Default)]
pub struct Index {
    pub occurrences: Vec<Occurrence>,
    /// Flow name → (name span, doc, body span).
    pub flows: BTreeMap<String, (Span, Option<String>, Span)>,
    /// Type name → (name span, doc).
    pub types: BTreeMap<String, (Span, Option<String>)>,
    /// Config entry name → (name span, doc).
    pub config: BTreeMap<String, (Span, Option<String>)>,
    /// Every local each flow binds, in source order.
    pub locals: BTreeMap<String, Vec<Local>>,
}

impl Index {
    pub fn build(file: &ast::File) -> Index {
        let mut index = Index::default();
        for item in &file.items {
            match item {
                Item::Flow(f) => {
                    index
                        .flows
                        .insert(f.name.name.clone(), (f.name.span, f.doc.clone(), f.span));
                }
                Item::Type(t) => {
                    index
                        .types
                        .insert(t.name.name.clone(), (t.name.span, t.doc.clone()));
                }
                Item::Config(c) => {
                    for e in &c.entries {
                        index
                            .config
                            .insert(e.name.name.clone(), (e.name.span, e.doc.clone()));
                    }
                }
                Item::Test(_) => {}
            }
        }
        let mut walker = Walker {
            index: &mut index,
            scopes: Vec::new(),
            flow_locals: Vec::new(),
            modules: Stdlib::get().modules.keys().cloned().collect(),
        };
        for item in &file.items {
            walker.item(item);
        }
        index
    }

    /// The innermost occurrence at a byte offset (a cursor just after a
    /// name counts as on it when nothing starts there).
    pub fn at(&self, offset: usize) -> Option<&Occurrence> {
        let inner = |inclusive: bool| {
            self.occurrences
                .iter()
                .filter(|o| {
                    o.span.start <= offset
                        && (offset < o.span.end || (inclusive && offset == o.span.end))
                })
                .min_by_key(|o| o.span.len())
        };
        inner(false).or_else(|| inner(true))
    }

    /// Where a symbol is declared in this file.
    pub fn definition(&self, sym: &Sym) -> Option<Span> {
        match sym {
            Sym::Flow(n) => self.flows.get(n).map(|f| f.0),
            Sym::Type(n) => self.types.get(n).map(|t| t.0),
            Sym::Config(n) => self.config.get(n).map(|c| c.0),
            Sym::Local(l) => Some(l.def),
            Sym::Module(_) | Sym::StdFn(..) => None,
        }
    }
}

struct Walker<'a> {
    index: &'a mut Index,
    scopes: Vec<Vec<Local>>,
    /// Locals of the flow being walked.
    flow_locals: Vec<Local>,
    modules: BTreeSet<String>,
}

impl Walker<'_> {
    fn note(&mut self, span: Span, sym: Sym) {
        self.index.occurrences.push(Occurrence { span, sym });
    }

    fn find_local(&self, name: &str) -> Option<&Local> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|s| s.iter().rev())
            .find(|l| l.name == name)
    }

    fn bind(&mut self, name: &Ident, kind: &'static str, value: Option<Span>, element: bool) {
        let local = Local {
            name: name.name.clone(),
            def: name.span,
            kind,
            value,
            element,
        };
        self.note(name.span, Sym::Local(local.clone()));
        self.flow_locals.push(local.clone());
        if self.scopes.is_empty() {
            self.scopes.push(Vec::new());
        }
        if let Some(scope) = self.scopes.last_mut() {
            scope.push(local);
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Config(c) => {
                for e in &c.entries {
                    self.note(e.name.span, Sym::Config(e.name.name.clone()));
                    self.ty(&e.ty);
                    if let Some(d) = &e.default {
                        self.expr(d);
                    }
                }
            }
            Item::Type(t) => {
                self.note(t.name.span, Sym::Type(t.name.name.clone()));
                match &t.body {
                    TypeDeclBody::Record(fields) => {
                        for f in fields {
                            self.ty(&f.ty);
                        }
                    }
                    TypeDeclBody::Alias(te) => self.ty(te),
                }
            }
            Item::Flow(f) => {
                self.note(f.name.span, Sym::Flow(f.name.name.clone()));
                for t in &f.triggers {
                    if let ast::TriggerKind::Dispatch { ty, .. } = &t.kind {
                        self.ty(ty);
                    }
                    for o in &t.options {
                        self.arg_value(&o.value);
                    }
                }
                self.scoped_block(&f.body);
                if let Some(b) = &f.on_failure {
                    self.scoped_block(b);
                }
                let locals = std::mem::take(&mut self.flow_locals);
                self.index.locals.insert(f.name.name.clone(), locals);
            }
            Item::Test(t) => {
                for s in &t.stmts {
                    self.test_stmt(&s.kind);
                }
            }
        }
    }

    fn test_stmt(&mut self, kind: &TestStmtKind) {
        match kind {
            TestStmtKind::Config(entries) => {
                for o in entries {
                    self.note(o.name.span, Sym::Config(o.name.name.clone()));
                    self.arg_value(&o.value);
                }
            }
            TestStmtKind::MockHttp {
                url, status, body, ..
            } => {
                self.expr(url);
                self.expr(status);
                if let Some(b) = body {
                    self.expr(b);
                }
            }
            TestStmtKind::Run { flow, input } => {
                self.note(flow.span, Sym::Flow(flow.name.clone()));
                self.expr(input);
            }
            TestStmtKind::ExpectHttp { url, json, .. } => {
                self.expr(url);
                if let Some(j) = json {
                    self.expr(j);
                }
            }
            TestStmtKind::ExpectStatus(_) => {}
            TestStmtKind::ExpectResponse { status, body } => {
                self.expr(status);
                if let Some(b) = body {
                    self.expr(b);
                }
            }
        }
    }

    fn scoped_block(&mut self, block: &Block) {
        self.scopes.push(Vec::new());
        for stmt in &block.stmts {
            self.stmt(&stmt.kind);
        }
        self.scopes.pop();
    }

    fn stmt(&mut self, kind: &StmtKind) {
        match kind {
            StmtKind::Let { name, value } => {
                self.expr(value);
                self.bind(name, "let", Some(value.span), false);
            }
            StmtKind::Step(s) => {
                self.expr(&s.call);
                if let Some(r) = &s.retry {
                    self.expr(r);
                }
                self.bind(&s.name, "step", Some(s.call.span), false);
            }
            StmtKind::If {
                branches,
                otherwise,
            } => {
                for (cond, block) in branches {
                    self.expr(cond);
                    self.scoped_block(block);
                }
                if let Some(b) = otherwise {
                    self.scoped_block(b);
                }
            }
            StmtKind::Match { scrutinee, arms } => {
                self.expr(scrutinee);
                for arm in arms {
                    self.scoped_block(&arm.body);
                }
            }
            StmtKind::For {
                var,
                iter,
                parallel,
                body,
            } => {
                self.expr(iter);
                if let Some(p) = parallel {
                    self.expr(p);
                }
                self.scopes.push(Vec::new());
                self.bind(var, "loop variable", Some(iter.span), true);
                self.scoped_block(body);
                self.scopes.pop();
            }
            StmtKind::Dispatch { flow, arg } => {
                self.note(flow.span, Sym::Flow(flow.name.clone()));
                self.expr(arg);
            }
            StmtKind::Skip(e) | StmtKind::Fail(e) | StmtKind::Expr(e) => self.expr(e),
            StmtKind::Respond {
                status,
                body,
                headers,
            } => {
                self.expr(status);
                for e in [body, headers].into_iter().flatten() {
                    self.expr(e);
                }
            }
        }
    }

    fn arg_value(&mut self, v: &ArgValue) {
        match v {
            ArgValue::Expr(e) => self.expr(e),
            ArgValue::Type(t) => self.ty(t),
        }
    }

    fn ty(&mut self, te: &TypeExpr) {
        match &te.kind {
            TypeExprKind::Named { name, args } => {
                if self.index.types.contains_key(&name.name) {
                    self.note(name.span, Sym::Type(name.name.clone()));
                }
                for a in args {
                    self.ty(a);
                }
            }
            TypeExprKind::List(t) | TypeExprKind::Optional(t) => self.ty(t),
            TypeExprKind::LitUnion(_) => {}
            TypeExprKind::Record(fields) => {
                for f in fields {
                    self.ty(&f.ty);
                }
            }
        }
    }

    fn expr(&mut self, e: &ast::Expr) {
        match &e.kind {
            ExprKind::Null
            | ExprKind::Bool(_)
            | ExprKind::Int(_)
            | ExprKind::Float(_)
            | ExprKind::Duration(_) => {}
            ExprKind::Str(parts) => {
                for p in parts {
                    if let StrPart::Interp(x) = p {
                        self.expr(x);
                    }
                }
            }
            ExprKind::List(items) => {
                for x in items {
                    self.expr(x);
                }
            }
            ExprKind::Record(entries) => {
                for entry in entries {
                    self.expr(&entry.value);
                }
            }
            ExprKind::Name(id) => self.name(id),
            ExprKind::Field { target, name, .. } => {
                self.expr(target);
                if let ExprKind::Name(t) = &target.kind {
                    if self.find_local(&t.name).is_none() {
                        if t.name == "config" {
                            self.note(name.span, Sym::Config(name.name.clone()));
                        } else if self.modules.contains(&t.name) {
                            self.note(name.span, Sym::StdFn(t.name.clone(), name.name.clone()));
                        }
                    }
                }
            }
            ExprKind::Index { target, index } => {
                self.expr(target);
                self.expr(index);
            }
            ExprKind::Call { callee, args } => {
                self.expr(callee);
                for a in args {
                    self.arg_value(&a.value);
                }
            }
            ExprKind::Lambda { params, body } => {
                self.scopes.push(Vec::new());
                for p in params {
                    self.bind(p, "parameter", None, false);
                }
                self.expr(body);
                self.scopes.pop();
            }
            ExprKind::Unary { expr, .. } => self.expr(expr),
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            ExprKind::As { expr, ty } => {
                self.expr(expr);
                self.ty(ty);
            }
            ExprKind::If {
                branches,
                otherwise,
            } => {
                for (c, v) in branches {
                    self.expr(c);
                    self.expr(v);
                }
                if let Some(o) = otherwise {
                    self.expr(o);
                }
            }
            ExprKind::Match { scrutinee, arms } => {
                self.expr(scrutinee);
                for arm in arms {
                    self.expr(&arm.body);
                }
            }
        }
    }

    fn name(&mut self, id: &Ident) {
        if let Some(local) = self.find_local(&id.name) {
            let local = local.clone();
            self.note(id.span, Sym::Local(local));
        } else if self.modules.contains(&id.name) {
            self.note(id.span, Sym::Module(id.name.clone()));
        } else if self.index.flows.contains_key(&id.name) {
            // `endpoint(flow)`.
            self.note(id.span, Sym::Flow(id.name.clone()));
        }
    }
}
