//! A symbol index over a parsed file: every place a flow, type, config
//! entry, stdlib module or function, or local binding is named, with what
//! it refers to. Locals are resolved with their own small scope walk, a
//! [`Visitor`] over the tree (the same rules as the checker: a `let` or
//! step is visible after it in its block and the blocks inside; a loop
//! variable in the loop's body; a lambda parameter in the lambda's body),
//! so the checker stays untouched.

use std::collections::{BTreeMap, BTreeSet};

use crate::check::Stdlib;
use crate::syntax::ast::{
    self, Block, ConfigEntry, ExprKind, FlowDecl, Ident, Item, Span, Stmt, StmtKind, TestStmt,
    TestStmtKind, TypeDecl, TypeExpr, TypeExprKind,
};
use crate::syntax::visit::{
    walk_block, walk_config_entry, walk_expr, walk_flow, walk_item, walk_option, walk_stmt,
    walk_test_stmt, walk_type_decl, walk_type_expr, Visitor,
};

/// What a name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sym {
    Flow(String),
    Type(String),
    Config(String),
    Connection(String),
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
    /// Connection name → (name span, doc).
    pub connections: BTreeMap<String, (Span, Option<String>)>,
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
                Item::Connection(c) => {
                    index
                        .connections
                        .insert(c.name.name.clone(), (c.name.span, c.doc.clone()));
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
        walker.visit_file(file);
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
            Sym::Connection(n) => self.connections.get(n).map(|c| c.0),
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

    fn name(&mut self, id: &Ident) {
        if let Some(local) = self.find_local(&id.name) {
            let local = local.clone();
            self.note(id.span, Sym::Local(local));
        } else if self.modules.contains(&id.name) {
            self.note(id.span, Sym::Module(id.name.clone()));
        } else if self.index.flows.contains_key(&id.name) {
            // `endpoint(flow)`.
            self.note(id.span, Sym::Flow(id.name.clone()));
        } else if self.index.connections.contains_key(&id.name) {
            // `via: crm`.
            self.note(id.span, Sym::Connection(id.name.clone()));
        }
    }
}

impl<'ast> Visitor<'ast> for Walker<'_> {
    fn visit_config_entry(&mut self, entry: &'ast ConfigEntry) {
        self.note(entry.name.span, Sym::Config(entry.name.name.clone()));
        walk_config_entry(self, entry);
    }

    fn visit_item(&mut self, item: &'ast Item) {
        if let Item::Connection(c) = item {
            self.note(c.name.span, Sym::Connection(c.name.name.clone()));
        }
        walk_item(self, item);
    }

    fn visit_type_decl(&mut self, decl: &'ast TypeDecl) {
        self.note(decl.name.span, Sym::Type(decl.name.name.clone()));
        walk_type_decl(self, decl);
    }

    fn visit_flow(&mut self, flow: &'ast FlowDecl) {
        self.note(flow.name.span, Sym::Flow(flow.name.name.clone()));
        walk_flow(self, flow);
        let locals = std::mem::take(&mut self.flow_locals);
        self.index.locals.insert(flow.name.name.clone(), locals);
    }

    fn visit_test_stmt(&mut self, stmt: &'ast TestStmt) {
        match &stmt.kind {
            // A test's `config { name: value }` names config entries; a
            // trigger's options are not config entries.
            TestStmtKind::Config(entries) => {
                for option in entries {
                    self.note(option.name.span, Sym::Config(option.name.name.clone()));
                    walk_option(self, option);
                }
            }
            TestStmtKind::Run { flow, .. } => {
                self.note(flow.span, Sym::Flow(flow.name.clone()));
                walk_test_stmt(self, stmt);
            }
            _ => walk_test_stmt(self, stmt),
        }
    }

    /// Every block is a scope: what it binds is not visible after it.
    fn visit_block(&mut self, block: &'ast Block) {
        self.scopes.push(Vec::new());
        walk_block(self, block);
        self.scopes.pop();
    }

    /// A `let` or step binds its name after its value; a loop variable is
    /// bound in a scope of its own around the loop's body.
    fn visit_stmt(&mut self, stmt: &'ast Stmt) {
        match &stmt.kind {
            StmtKind::Let { name, value } => {
                walk_stmt(self, stmt);
                self.bind(name, "let", Some(value.span), false);
            }
            StmtKind::Step(step) => {
                walk_stmt(self, stmt);
                self.bind(&step.name, "step", Some(step.call.span), false);
            }
            StmtKind::For {
                var,
                iter,
                parallel,
                body,
            } => {
                self.visit_expr(iter);
                if let Some(p) = parallel {
                    self.visit_expr(p);
                }
                self.scopes.push(Vec::new());
                self.bind(var, "loop variable", Some(iter.span), true);
                self.visit_block(body);
                self.scopes.pop();
            }
            StmtKind::Dispatch { flow, .. } => {
                self.note(flow.span, Sym::Flow(flow.name.clone()));
                walk_stmt(self, stmt);
            }
            _ => walk_stmt(self, stmt),
        }
    }

    fn visit_type_expr(&mut self, ty: &'ast TypeExpr) {
        if let TypeExprKind::Named { name, .. } = &ty.kind {
            if self.index.types.contains_key(&name.name) {
                self.note(name.span, Sym::Type(name.name.clone()));
            }
        }
        walk_type_expr(self, ty);
    }

    fn visit_expr(&mut self, e: &'ast ast::Expr) {
        match &e.kind {
            ExprKind::Name(id) => self.name(id),
            ExprKind::Field { target, name, .. } => {
                walk_expr(self, e);
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
            ExprKind::Lambda { params, body } => {
                self.scopes.push(Vec::new());
                for p in params {
                    self.bind(p, "parameter", None, false);
                }
                self.visit_expr(body);
                self.scopes.pop();
            }
            _ => walk_expr(self, e),
        }
    }
}
