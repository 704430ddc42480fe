//! One walk over the [`ast`](super::ast), shared by every pass that only
//! looks at the tree (the graph, the language server's index, the
//! checker's collectors), in the style of `syn::visit` and rustc's
//! `Visitor`.
//!
//! A pass implements [`Visitor`] and overrides the `visit_*` methods for
//! the nodes it cares about; every method it leaves alone walks on into the
//! node's children through the matching free `walk_*` function. An
//! overriding method calls `walk_*` itself to go on into the children (or
//! does not, to stop there), which also lets it act before or after them.
//!
//! Children are visited in source order. Nodes without children of
//! interest (identifiers, string and duration literals, patterns) have no
//! visit method, except [`Visitor::visit_pattern`] for `match` arms.

use super::ast::*;

/// A read-only pass over the tree; see the module docs.
pub trait Visitor<'ast> {
    fn visit_file(&mut self, file: &'ast File) {
        walk_file(self, file);
    }

    fn visit_item(&mut self, item: &'ast Item) {
        walk_item(self, item);
    }

    fn visit_config_entry(&mut self, entry: &'ast ConfigEntry) {
        walk_config_entry(self, entry);
    }

    fn visit_type_decl(&mut self, decl: &'ast TypeDecl) {
        walk_type_decl(self, decl);
    }

    /// A record field's declaration, in a type declaration or a record type.
    fn visit_field(&mut self, field: &'ast Field) {
        walk_field(self, field);
    }

    fn visit_type_expr(&mut self, ty: &'ast TypeExpr) {
        walk_type_expr(self, ty);
    }

    fn visit_flow(&mut self, flow: &'ast FlowDecl) {
        walk_flow(self, flow);
    }

    fn visit_trigger(&mut self, trigger: &'ast Trigger) {
        walk_trigger(self, trigger);
    }

    /// An entry of a trigger's options or of a test's `config { ... }`.
    fn visit_option(&mut self, option: &'ast OptionEntry) {
        walk_option(self, option);
    }

    fn visit_test(&mut self, test: &'ast TestDecl) {
        walk_test(self, test);
    }

    fn visit_test_stmt(&mut self, stmt: &'ast TestStmt) {
        walk_test_stmt(self, stmt);
    }

    fn visit_block(&mut self, block: &'ast Block) {
        walk_block(self, block);
    }

    fn visit_stmt(&mut self, stmt: &'ast Stmt) {
        walk_stmt(self, stmt);
    }

    fn visit_pattern(&mut self, _pattern: &'ast Pattern) {}

    fn visit_expr(&mut self, expr: &'ast Expr) {
        walk_expr(self, expr);
    }

    fn visit_arg(&mut self, arg: &'ast Arg) {
        walk_arg(self, arg);
    }

    fn visit_arg_value(&mut self, value: &'ast ArgValue) {
        walk_arg_value(self, value);
    }
}

pub fn walk_file<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, file: &'ast File) {
    for item in &file.items {
        v.visit_item(item);
    }
}

pub fn walk_item<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, item: &'ast Item) {
    match item {
        Item::Config(config) => {
            for entry in &config.entries {
                v.visit_config_entry(entry);
            }
        }
        Item::Type(decl) => v.visit_type_decl(decl),
        Item::Connection(decl) => {
            for option in &decl.options {
                v.visit_option(option);
            }
        }
        Item::Flow(flow) => v.visit_flow(flow),
        Item::Test(test) => v.visit_test(test),
    }
}

pub fn walk_config_entry<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, entry: &'ast ConfigEntry) {
    v.visit_type_expr(&entry.ty);
    if let Some(default) = &entry.default {
        v.visit_expr(default);
    }
}

pub fn walk_type_decl<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, decl: &'ast TypeDecl) {
    match &decl.body {
        TypeDeclBody::Record(fields) => {
            for field in fields {
                v.visit_field(field);
            }
        }
        TypeDeclBody::Alias(ty) => v.visit_type_expr(ty),
    }
}

pub fn walk_field<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, field: &'ast Field) {
    v.visit_type_expr(&field.ty);
}

pub fn walk_type_expr<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, ty: &'ast TypeExpr) {
    match &ty.kind {
        TypeExprKind::Named { args, .. } => {
            for arg in args {
                v.visit_type_expr(arg);
            }
        }
        TypeExprKind::List(inner) | TypeExprKind::Optional(inner) => v.visit_type_expr(inner),
        TypeExprKind::LitUnion(_) => {}
        TypeExprKind::Record(fields) => {
            for field in fields {
                v.visit_field(field);
            }
        }
    }
}

/// The triggers, then the body, then the `on failure` block.
pub fn walk_flow<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, flow: &'ast FlowDecl) {
    for trigger in &flow.triggers {
        v.visit_trigger(trigger);
    }
    v.visit_block(&flow.body);
    if let Some(on_failure) = &flow.on_failure {
        v.visit_block(on_failure);
    }
}

pub fn walk_trigger<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, trigger: &'ast Trigger) {
    if let TriggerKind::Dispatch { ty, .. } = &trigger.kind {
        v.visit_type_expr(ty);
    }
    for option in &trigger.options {
        v.visit_option(option);
    }
}

pub fn walk_option<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, option: &'ast OptionEntry) {
    v.visit_arg_value(&option.value);
}

pub fn walk_test<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, test: &'ast TestDecl) {
    for stmt in &test.stmts {
        v.visit_test_stmt(stmt);
    }
}

pub fn walk_test_stmt<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, stmt: &'ast TestStmt) {
    match &stmt.kind {
        TestStmtKind::Config(entries) => {
            for entry in entries {
                v.visit_option(entry);
            }
        }
        TestStmtKind::MockHttp {
            url, status, body, ..
        } => {
            v.visit_expr(url);
            v.visit_expr(status);
            if let Some(body) = body {
                v.visit_expr(body);
            }
        }
        TestStmtKind::Run { input, .. } => v.visit_expr(input),
        TestStmtKind::ExpectHttp {
            url, json, headers, ..
        } => {
            v.visit_expr(url);
            for e in [json, headers].into_iter().flatten() {
                v.visit_expr(e);
            }
        }
        TestStmtKind::ExpectStatus(_) | TestStmtKind::Instance { .. } => {}
        TestStmtKind::ExpectResponse { status, body } => {
            v.visit_expr(status);
            if let Some(body) = body {
                v.visit_expr(body);
            }
        }
    }
}

pub fn walk_block<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, block: &'ast Block) {
    for stmt in &block.stmts {
        v.visit_stmt(stmt);
    }
}

pub fn walk_stmt<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, stmt: &'ast Stmt) {
    match &stmt.kind {
        StmtKind::Let { value, .. } => v.visit_expr(value),
        StmtKind::Step(step) => {
            v.visit_expr(&step.call);
            if let Some(retry) = &step.retry {
                v.visit_expr(retry);
            }
        }
        StmtKind::If {
            branches,
            otherwise,
        } => {
            for (cond, body) in branches {
                v.visit_expr(cond);
                v.visit_block(body);
            }
            if let Some(otherwise) = otherwise {
                v.visit_block(otherwise);
            }
        }
        StmtKind::Match { scrutinee, arms } => {
            v.visit_expr(scrutinee);
            for arm in arms {
                for pattern in &arm.patterns {
                    v.visit_pattern(pattern);
                }
                v.visit_block(&arm.body);
            }
        }
        StmtKind::For {
            iter,
            parallel,
            body,
            ..
        } => {
            v.visit_expr(iter);
            if let Some(parallel) = parallel {
                v.visit_expr(parallel);
            }
            v.visit_block(body);
        }
        StmtKind::Dispatch { arg, .. } => v.visit_expr(arg),
        StmtKind::Skip(e) | StmtKind::Fail(e) | StmtKind::Expr(e) => v.visit_expr(e),
        StmtKind::Respond {
            status,
            body,
            headers,
        } => {
            v.visit_expr(status);
            for e in [body, headers].into_iter().flatten() {
                v.visit_expr(e);
            }
        }
    }
}

pub fn walk_expr<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, expr: &'ast Expr) {
    match &expr.kind {
        ExprKind::Null
        | ExprKind::Bool(_)
        | ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Duration(_)
        | ExprKind::Name(_) => {}
        ExprKind::Str(parts) => {
            for part in parts {
                if let StrPart::Interp(inner) = part {
                    v.visit_expr(inner);
                }
            }
        }
        ExprKind::List(items) => {
            for item in items {
                v.visit_expr(item);
            }
        }
        ExprKind::Record(entries) => {
            for entry in entries {
                v.visit_expr(&entry.value);
            }
        }
        ExprKind::Field { target, .. } => v.visit_expr(target),
        ExprKind::Index { target, index } => {
            v.visit_expr(target);
            v.visit_expr(index);
        }
        ExprKind::Call { callee, args } => {
            v.visit_expr(callee);
            for arg in args {
                v.visit_arg(arg);
            }
        }
        ExprKind::Lambda { body, .. } => v.visit_expr(body),
        ExprKind::Unary { expr, .. } => v.visit_expr(expr),
        ExprKind::Binary { lhs, rhs, .. } => {
            v.visit_expr(lhs);
            v.visit_expr(rhs);
        }
        ExprKind::As { expr, ty } => {
            v.visit_expr(expr);
            v.visit_type_expr(ty);
        }
        ExprKind::If {
            branches,
            otherwise,
        } => {
            for (cond, value) in branches {
                v.visit_expr(cond);
                v.visit_expr(value);
            }
            if let Some(otherwise) = otherwise {
                v.visit_expr(otherwise);
            }
        }
        ExprKind::Match { scrutinee, arms } => {
            v.visit_expr(scrutinee);
            for arm in arms {
                for pattern in &arm.patterns {
                    v.visit_pattern(pattern);
                }
                v.visit_expr(&arm.body);
            }
        }
    }
}

pub fn walk_arg<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, arg: &'ast Arg) {
    v.visit_arg_value(&arg.value);
}

pub fn walk_arg_value<'ast, V: Visitor<'ast> + ?Sized>(v: &mut V, value: &'ast ArgValue) {
    match value {
        ArgValue::Expr(e) => v.visit_expr(e),
        ArgValue::Type(ty) => v.visit_type_expr(ty),
    }
}

/// Calls `f` on every expression of `block`, outer ones before those
/// inside them; `f` answers whether to look inside. For the passes that
/// only look at expressions (the names a flow reads, the calls it makes).
pub fn for_each_expr(block: &Block, f: &mut dyn FnMut(&Expr) -> bool) {
    Exprs(f).visit_block(block);
}

/// The [`Visitor`] behind [`for_each_expr`].
struct Exprs<'f>(&'f mut dyn FnMut(&Expr) -> bool);

impl<'ast> Visitor<'ast> for Exprs<'_> {
    fn visit_expr(&mut self, expr: &'ast Expr) {
        if (self.0)(expr) {
            walk_expr(self, expr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts what the default walk reaches, to show it reaches every
    /// expression and block however deeply nested.
    #[derive(Default)]
    struct Census {
        names: Vec<String>,
        blocks: usize,
        patterns: usize,
        type_names: Vec<String>,
    }

    impl<'ast> Visitor<'ast> for Census {
        fn visit_block(&mut self, block: &'ast Block) {
            self.blocks += 1;
            walk_block(self, block);
        }

        fn visit_pattern(&mut self, _pattern: &'ast Pattern) {
            self.patterns += 1;
        }

        fn visit_expr(&mut self, expr: &'ast Expr) {
            if let ExprKind::Name(name) = &expr.kind {
                self.names.push(name.name.clone());
            }
            walk_expr(self, expr);
        }

        fn visit_type_expr(&mut self, ty: &'ast TypeExpr) {
            if let TypeExprKind::Named { name, .. } = &ty.kind {
                self.type_names.push(name.name.clone());
            }
            walk_type_expr(self, ty);
        }
    }

    #[test]
    fn the_default_walk_reaches_every_nested_node_in_source_order() {
        let source = r#"integration demo

config { limit: Int = 3 }

type Order { id: Int, lines: [Line] }
type Line { sku: String }

flow route {
  trigger webhook POST "/orders" { body: Order }
  let a = trigger.body
  for line in a.lines parallel config.limit {
    if line.sku == "x" {
      skip "${b}"
    } else {
      match c { "y" | "z" => { fail d } _ => { respond 200, [e, f.map(g => g ?? h)] } }
    }
  }
  let i = (j as Json)[k]
  on failure {
    fail error.message
  }
}

test "t" {
  run route with { id: l, lines: [] }
}
"#;
        let file = crate::syntax::parse_file(source).unwrap();
        let mut census = Census::default();
        census.visit_file(&file);
        let expected = [
            "trigger", "a", "config", "line", "b", "c", "d", "e", "f", "g", "h", "j", "k", "error",
            "l",
        ];
        assert_eq!(census.names, expected);
        // Flow body, for body, if and else branches, two match arms, on failure.
        assert_eq!(census.blocks, 7);
        assert_eq!(census.patterns, 3);
        assert_eq!(
            census.type_names,
            ["Int", "Int", "Line", "String", "Order", "Json"]
        );
    }
}
