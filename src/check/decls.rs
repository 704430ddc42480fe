//! Top-level declarations: type declarations, the config block, and flow
//! names (with duplicates reported against the first definition).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Item, Span, TypeDeclBody, TypeExprKind};
use crate::syntax::visit::{walk_type_expr, Visitor};

use super::types::{Record, RecordField, Type};
use super::{Checker, ConfigInfo};

fn duplicate(code: Code, what: &str, name: &ast::Ident, first: Span) -> Diagnostic {
    Diagnostic::new(
        code,
        name.span,
        format!("{what} `{name}` is defined more than once"),
    )
    .with_label("defined again here")
    .with_secondary(first, "first defined here")
    .with_help("rename one of them")
}

impl Checker<'_> {
    pub(super) fn collect_types(&mut self) {
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        let mut records = Vec::new();
        for item in &self.file.items {
            let Item::Type(decl) = item else { continue };
            let name = &decl.name.name;
            if let Some(first) = seen.get(name) {
                self.error(duplicate(Code::DuplicateType, "type", &decl.name, *first));
                continue;
            }
            if super::resolve::BUILTIN_SCALARS.contains(&name.as_str())
                || name == "Map"
                || name == "Response"
            {
                self.error(
                    Diagnostic::new(
                        Code::DuplicateType,
                        decl.name.span,
                        format!("`{name}` is a built-in type"),
                    )
                    .with_label("built-in type")
                    .with_help(format!("choose another name, such as `{name}Info`")),
                );
                continue;
            }
            seen.insert(name.clone(), decl.name.span);
            match &decl.body {
                TypeDeclBody::Record(fields) => {
                    self.names.records.insert(name.clone());
                    records.push((name.clone(), fields));
                }
                TypeDeclBody::Alias(te) => {
                    self.names.aliases.insert(name.clone(), te.clone());
                }
            }
        }
        for (name, fields) in records {
            self.current_type = Some(name.clone());
            let record = self.record_type(fields);
            self.current_type = None;
            self.program.types.insert(name, Arc::new(record));
        }
        let aliases: Vec<(String, ast::TypeExpr)> = self
            .names
            .aliases
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        for (name, te) in aliases {
            self.note_type_uses(&te, Some(&name));
            let ty = super::resolve::resolve_alias(&name, &te, &self.names, &mut self.diags);
            self.names.resolved.insert(name.clone(), ty.clone());
            self.program.aliases.insert(name, ty);
        }
    }

    /// Resolves the fields of a record declaration, reporting duplicates.
    pub(super) fn record_type(&mut self, fields: &[ast::Field]) -> Record {
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        let mut out = Vec::new();
        for f in fields {
            if let Some(first) = seen.get(f.name.name.as_str()) {
                self.error(duplicate(Code::DuplicateField, "field", &f.name, *first));
                continue;
            }
            seen.insert(&f.name.name, f.name.span);
            let ty = self.resolve_type(&f.ty);
            out.push(RecordField {
                name: f.name.name.clone(),
                ty,
            });
        }
        Record { fields: out }
    }

    /// Records the declared types `te` names, for the unused-type warning;
    /// a type naming itself (`within`) does not count.
    pub(super) fn note_type_uses(&mut self, te: &ast::TypeExpr, within: Option<&str>) {
        let mut named = TypeNames::default();
        named.visit_type_expr(te);
        for name in named.names {
            if within != Some(name) {
                self.used_types.insert(name.to_string());
            }
            // A misspelt name stands for the type it suggests: that
            // type is not "unused" because of one typo.
            let known = self.names.records.contains(name)
                || self.names.aliases.contains_key(name)
                || super::resolve::is_builtin(name);
            if !known {
                let names = self.names.records.iter().chain(self.names.aliases.keys());
                if let Some(meant) = super::suggest::did_you_mean(name, names.map(String::as_str)) {
                    self.used_types.insert(meant);
                }
            }
        }
    }

    /// W0005 for each declared type nothing refers to.
    pub(super) fn warn_unused_types(&mut self) {
        let mut seen = BTreeSet::new();
        for item in &self.file.items {
            let Item::Type(decl) = item else { continue };
            let name = &decl.name.name;
            if !seen.insert(name.as_str()) || self.used_types.contains(name) {
                continue;
            }
            self.diags.push(
                Diagnostic::new(
                    Code::UnusedType,
                    decl.name.span,
                    format!("type `{name}` is never used"),
                )
                .with_label("declared here")
                .with_help(format!(
                    "remove it, or use it, e.g. as a trigger's `body: {name}` or in `x as {name}`"
                )),
            );
        }
    }

    pub(super) fn collect_config(&mut self) {
        let mut first_block: Option<Span> = None;
        for item in &self.file.items {
            let Item::Config(block) = item else { continue };
            if let Some(first) = first_block {
                self.error(
                    Diagnostic::new(
                        Code::DuplicateConfigBlock,
                        Span::new(block.span.start, block.span.start + "config".len()),
                        "a file has at most one `config` block",
                    )
                    .with_label("second config block")
                    .with_secondary(first, "the first config block")
                    .with_help("move these entries into the first block"),
                );
            } else {
                first_block = Some(Span::new(block.span.start, block.span.start + 6));
            }
            for entry in &block.entries {
                self.config_entry(entry);
            }
        }
    }

    fn config_entry(&mut self, entry: &ast::ConfigEntry) {
        let name = &entry.name.name;
        if let Some((_, first, _)) = self.config.get(name) {
            let first = *first;
            self.error(duplicate(
                Code::DuplicateConfig,
                "config entry",
                &entry.name,
                first,
            ));
            return;
        }
        let ty = self.resolve_type(&entry.ty);
        if let Some(default) = &entry.default {
            self.config_default(default, &ty);
        }
        if let Some(env) = &entry.env {
            let valid = !env.value.is_empty()
                && !env.value.starts_with(|c: char| c.is_ascii_digit())
                && env
                    .value
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                self.error(
                    Diagnostic::new(
                        Code::BadEnvName,
                        env.span,
                        format!("`{}` is not a usable environment variable name", env.value),
                    )
                    .with_label("not UPPER_SNAKE_CASE")
                    .with_help(format!(
                        "use upper-case letters, digits and `_`: `{}`",
                        env_name(&env.value, name)
                    )),
                );
            }
        }
        self.config
            .insert(name.clone(), (ty.clone(), entry.name.span, false));
        self.program.config.push(ConfigInfo {
            name: name.clone(),
            ty,
            span: entry.name.span,
        });
    }

    /// A default must be a constant that fits the entry's type.
    fn config_default(&mut self, default: &ast::Expr, ty: &Type) {
        let before = self.diags.len();
        let actual = self.infer_const(default, ty);
        if self.diags.len() > before {
            return;
        }
        if let Some(part) = non_constant(default) {
            self.error(
                Diagnostic::new(Code::BadConfigDefault, part.span, "a config default must be a constant")
                    .with_label("not a constant")
                    .with_help("write a literal; compute values from other entries in the flow, e.g. with `let`"),
            );
            return;
        }
        if !self.assignable(&actual, ty) {
            let mut d = Diagnostic::new(
                Code::BadConfigDefault,
                default.span,
                format!("default value of type `{actual}` does not fit `{ty}`"),
            )
            .with_label(format!("expected `{ty}`"));
            if let ast::ExprKind::Str(parts) = &default.kind {
                let text: String = parts
                    .iter()
                    .filter_map(|p| match p {
                        ast::StrPart::Lit(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect();
                if ty.is_numeric() && text.parse::<f64>().is_ok()
                    || *ty == Type::Bool && (text == "true" || text == "false")
                {
                    d = d.with_help(format!("write it without quotes: `{text}`"));
                }
            }
            self.error(d);
            return;
        }
        if let ast::ExprKind::Str(parts) = &default.kind {
            if let [ast::StrPart::Lit(text)] = parts.as_slice() {
                if let Some(problem) = super::expr::url_problem(text, ty) {
                    self.error(
                        Diagnostic::new(
                            Code::BadConfigDefault,
                            default.span,
                            format!("`{text}` is not a valid URL"),
                        )
                        .with_label(problem)
                        .with_help(
                            "write an absolute URL such as `\"https://erp.example.com/api\"`",
                        ),
                    );
                }
            }
        }
    }

    /// Types a config default or trigger option: constants only (no names).
    pub(super) fn infer_const(&mut self, expr: &ast::Expr, expected: &Type) -> Type {
        self.scopes.push();
        let t = self.check_expr_no_scope(expr, Some(expected));
        self.scopes.pop();
        t
    }

    pub(super) fn collect_flows(&mut self) {
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        // Routes by (method, path shape): one lookup per route, not a scan.
        let mut routes: std::collections::HashMap<(String, String), super::Route> =
            std::collections::HashMap::new();
        for item in &self.file.items {
            let Item::Flow(flow) = item else { continue };
            if let Some(first) = seen.get(&flow.name.name) {
                self.error(duplicate(Code::DuplicateFlow, "flow", &flow.name, *first));
                continue;
            }
            seen.insert(flow.name.name.clone(), flow.name.span);
            let info = self.flow_trigger(flow);
            if let Some(route) = info.route.clone() {
                let key = (route.method.clone(), route.shape());
                if let Some(prev) = routes.get(&key) {
                    self.error(
                        Diagnostic::new(
                            Code::DuplicateRoute,
                            route.span,
                            format!(
                                "`{} {}` is already served by another flow",
                                route.method, route.path
                            ),
                        )
                        .with_label("second route here")
                        .with_secondary(prev.span, "first route here")
                        .with_help(if prev.path == route.path {
                            "give each webhook and sync trigger its own method and path".to_string()
                        } else {
                            distinct_path_help(&prev.path, &route.path)
                        }),
                    );
                } else {
                    routes.insert(key, route);
                }
            }
            self.program.flows.insert(flow.name.name.clone(), info);
        }
    }

    /// Marks a config entry used, returning its type.
    pub(super) fn use_config(&mut self, name: &str) -> Option<Type> {
        let entry = self.config.get_mut(name)?;
        entry.2 = true;
        Some(entry.0.clone())
    }
}

/// Help for two paths that differ only in parameter names.
fn distinct_path_help(first: &str, second: &str) -> String {
    let example = second
        .rsplit_once('/')
        .filter(|(_, last)| last.starts_with('{'))
        .map(|(head, last)| {
            let name = last.trim_matches(|c| c == '{' || c == '}');
            format!(", e.g. `{head}/by-{name}/{last}`")
        })
        .unwrap_or_default();
    format!(
        "`{first}` and `{second}` match the same requests (parameter names do not tell paths apart); give one a distinct literal segment{example}"
    )
}

/// The first part of a config default that is not a constant (a name, a
/// call, an interpolation, an operator), if any.
fn non_constant(e: &ast::Expr) -> Option<&ast::Expr> {
    use ast::ExprKind as K;
    match &e.kind {
        K::Null | K::Bool(_) | K::Int(_) | K::Float(_) | K::Duration(_) => None,
        K::Str(parts) => parts.iter().find_map(|p| match p {
            ast::StrPart::Lit(_) => None,
            ast::StrPart::Interp(inner) => Some(inner),
        }),
        K::List(items) => items.iter().find_map(non_constant),
        K::Record(entries) => entries.iter().find_map(|en| non_constant(&en.value)),
        K::Unary {
            op: ast::UnaryOp::Neg,
            expr,
        } if matches!(expr.kind, K::Int(_) | K::Float(_) | K::Duration(_)) => None,
        _ => Some(e),
    }
}

/// `erp-url` -> `ERP_URL`; the entry's own name when nothing is left.
fn env_name(written: &str, entry: &str) -> String {
    let fixed: String = written
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let fixed = fixed.trim_matches('_').to_string();
    if fixed.is_empty() || fixed.starts_with(|c: char| c.is_ascii_digit()) {
        entry.to_ascii_uppercase()
    } else {
        fixed
    }
}

/// Every type name a type expression uses, at any depth (type arguments,
/// list and optional elements, fields of record types).
#[derive(Default)]
struct TypeNames<'ast> {
    names: Vec<&'ast str>,
}

impl<'ast> Visitor<'ast> for TypeNames<'ast> {
    fn visit_type_expr(&mut self, ty: &'ast ast::TypeExpr) {
        if let TypeExprKind::Named { name, .. } = &ty.kind {
            self.names.push(&name.name);
        }
        walk_type_expr(self, ty);
    }
}
