//! Type inference and checking of expressions (LANGUAGE.md §7).
//!
//! Checking is bidirectional: `check_expr(e, expected)` passes the expected
//! type down, so record literals check field by field against a named type,
//! string literals against a literal union and `headers: { ... }` may hold
//! secrets. `expect` adds the mismatch and secret-leak diagnostics.

use std::collections::BTreeSet;

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Arg, ArgValue, BinaryOp, Expr, ExprKind, StrPart, UnaryOp};

use super::scope::BindingKind;
use super::suggest::did_you_mean;
use super::types::{join, Type};
use super::Checker;

/// Names that are values in every flow, besides locals.
const AMBIENT: &[&str] = &["trigger", "config", "env", "error"];
/// Method names from other languages, and the method meant.
const METHOD_SYNONYMS: &[(&str, &str)] = &[
    ("length", "len"),
    ("size", "len"),
    ("count", "len"),
    ("includes", "contains"),
    ("has", "contains"),
    ("lowercase", "lower"),
    ("to_lower", "lower"),
    ("to_lowercase", "lower"),
    ("uppercase", "upper"),
    ("to_upper", "upper"),
    ("to_uppercase", "upper"),
    ("strip", "trim"),
    ("where", "filter"),
    ("select", "map"),
    ("total", "sum"),
    ("head", "first"),
];
/// Functions callable without a module.
const BUILTIN_FNS: &[&str] = &["endpoint", "reveal"];

impl Checker<'_> {
    /// Infers `e`'s type with an optional expected type as a hint; reports
    /// mistakes inside `e` but not a mismatch with `expected` (see `expect`).
    pub(super) fn check_expr(&mut self, e: &Expr, expected: Option<&Type>) -> Type {
        let t = self.infer(e, expected);
        self.program.expr_types.insert(e.span, t.clone());
        t
    }

    pub(super) fn check_expr_no_scope(&mut self, e: &Expr, expected: Option<&Type>) -> Type {
        self.check_expr(e, expected)
    }

    /// Checks that `e` fits `expected`, reporting a mismatch or a leaked
    /// secret. Returns the expression's own type.
    pub(super) fn expect(&mut self, e: &Expr, expected: &Type, context: &str) -> Type {
        let before = self.diags.len();
        let actual = self.check_expr(e, Some(expected));
        if self.diags.len() > before {
            // Already reported inside `e`; one mistake, one diagnostic.
            return actual;
        }
        if !self.assignable(&actual, expected) {
            self.mismatch(e, &actual, expected, context);
        } else if leaks(&actual, expected) {
            self.secret_leak(e.span, "a secret would be stored where it can be printed");
        } else if let Some(problem) = literal_text(e).and_then(|t| url_problem(&t, expected)) {
            self.error(
                Diagnostic::new(
                    Code::BadLiteral,
                    e.span,
                    format!("{context}: not a valid URL"),
                )
                .with_label(problem)
                .with_help("write an absolute URL such as `\"https://api.example.com/v1\"`"),
            );
        }
        actual
    }

    /// The diagnostic for a value that does not fit: a literal outside a
    /// union is E0210, a secret where text is expected E0500, else E0200.
    fn mismatch(&mut self, e: &Expr, actual: &Type, expected: &Type, context: &str) {
        if let (Some(text), Type::Lits(set)) = (literal_text(e), expected.unwrap_optional()) {
            self.error(not_in_union(e.span, &text, set, &format!("{context}: ")));
            return;
        }
        let wants_text = matches!(expected.unwrap_optional(), Type::String | Type::Url);
        if *actual.unwrap_optional() == Type::Secret && wants_text {
            self.error(
                Diagnostic::new(
                    Code::SecretLeak,
                    e.span,
                    format!("{context}: a `Secret` cannot be used as `{expected}`, where it could be printed"),
                )
                .with_label("this value is a `Secret`")
                .with_help("pass secrets only to `Secret` parameters (`bearer:`, `headers:`, `secret:`); `reveal(x)` makes one a `String` explicitly"),
            );
            return;
        }
        let mut d = Diagnostic::new(
            Code::TypeMismatch,
            e.span,
            format!("{context}: expected `{expected}`, found `{actual}`"),
        )
        .with_label(format!("this is `{actual}`"));
        let number_in_quotes = literal_text(e)
            .filter(|t| t.parse::<f64>().is_ok() && expected.unwrap_optional().is_numeric());
        if let Some(text) = number_in_quotes {
            d = d.with_help(format!("write the number without quotes: `{text}`"));
        } else if let Some(help) = conversion_help(actual, expected) {
            d = d.with_help(help);
        }
        self.error(d);
    }

    pub(super) fn secret_leak(&mut self, span: ast::Span, message: &str) {
        self.error(
            Diagnostic::new(Code::SecretLeak, span, message.to_string())
                .with_label("this value is a `Secret`")
                .with_help("pass secrets only to `Secret` parameters (`bearer:`, `headers:`, `secret:`); `reveal(x)` is the explicit escape hatch"),
        );
    }

    fn infer(&mut self, e: &Expr, expected: Option<&Type>) -> Type {
        match &e.kind {
            ExprKind::Null => Type::Null,
            ExprKind::Bool(_) => Type::Bool,
            ExprKind::Int(_) => Type::Int,
            ExprKind::Float(_) => Type::Float,
            ExprKind::Duration(_) => Type::Duration,
            ExprKind::Str(parts) => self.string(parts, expected),
            ExprKind::List(items) => self.list(items, expected),
            ExprKind::Record(entries) => self.record(e, entries, expected),
            ExprKind::Name(name) => self.name(name),
            ExprKind::Field {
                target,
                name,
                optional,
            } => self.field(target, name, *optional, expected),
            ExprKind::Index { target, index } => self.index(target, index),
            ExprKind::Call { .. } => self.call(e, false),
            ExprKind::Lambda { .. } => {
                self.error(
                    Diagnostic::new(
                        Code::MisplacedLambda,
                        e.span,
                        "a lambda can only be a method argument",
                    )
                    .with_help("use it in a list method, e.g. `items.map(i => i.sku)`"),
                );
                Type::Error
            }
            ExprKind::Unary { op, expr } => self.unary(*op, expr),
            ExprKind::Binary { op, lhs, rhs } => self.binary(e, *op, lhs, rhs),
            ExprKind::As { expr, ty } => self.cast(expr, ty),
            ExprKind::If {
                branches,
                otherwise,
            } => self.if_expr(e, branches, otherwise.as_deref(), expected),
            ExprKind::Match { scrutinee, arms } => self.match_expr(e, scrutinee, arms, expected),
        }
    }

    fn string(&mut self, parts: &[StrPart], expected: Option<&Type>) -> Type {
        let mut literal = true;
        for part in parts {
            if let StrPart::Interp(inner) = part {
                literal = false;
                let t = self.check_expr(inner, None);
                if t.contains_secret() {
                    self.secret_leak(inner.span, "a secret cannot be interpolated into a string");
                }
            }
        }
        if literal {
            let text: String = parts
                .iter()
                .map(|p| match p {
                    StrPart::Lit(s) => s.as_str(),
                    StrPart::Interp(_) => "",
                })
                .collect();
            if let Some(Type::Lits(_)) = expected.map(Type::unwrap_optional) {
                return Type::lit(&text);
            }
        }
        Type::String
    }

    fn list(&mut self, items: &[Expr], expected: Option<&Type>) -> Type {
        let elem_expected = match expected.map(Type::unwrap_optional) {
            Some(Type::List(t)) => Some((**t).clone()),
            _ => None,
        };
        if let Some(elem) = &elem_expected {
            for item in items {
                self.expect(item, elem, "list element");
            }
            return Type::list(elem.clone());
        }
        let mut elem: Option<Type> = None;
        for item in items {
            let mut t = self.check_expr(item, None);
            if t.contains_secret() {
                self.secret_leak(item.span, "a secret cannot be stored in a list");
                t = Type::Error; // reported once, not at every later use
            }
            elem = Some(match elem {
                None => t,
                Some(prev) => match join(&prev, &t, &self.program.types) {
                    Some(j) => j,
                    None => {
                        self.error(
                            Diagnostic::new(
                                Code::TypeMismatch,
                                item.span,
                                format!("list elements have different types: `{prev}` and `{t}`"),
                            )
                            .with_label(format!("this is `{t}`, the elements before are `{prev}`"))
                            .with_help("every element of a list has the same type; use `Json` for mixed data"),
                        );
                        Type::Error
                    }
                },
            });
        }
        Type::list(elem.unwrap_or(Type::Error))
    }

    fn record(&mut self, e: &Expr, entries: &[ast::RecordEntry], expected: Option<&Type>) -> Type {
        let mut first_keys: std::collections::BTreeMap<&str, ast::Span> = Default::default();
        for entry in entries {
            if let Some(first) = first_keys.get(entry.key.name()) {
                self.error(
                    Diagnostic::new(
                        Code::DuplicateField,
                        entry.key.span(),
                        format!("field `{}` is given twice", entry.key.name()),
                    )
                    .with_label("given again here")
                    .with_secondary(*first, "first given here")
                    .with_help("remove one of them"),
                );
            } else {
                first_keys.insert(entry.key.name(), entry.key.span());
            }
        }
        let seen: BTreeSet<&str> = first_keys.keys().copied().collect();
        let expected = expected.map(Type::unwrap_optional);
        if let Some(Type::Map(value_type)) = expected {
            for entry in entries {
                self.expect(
                    &entry.value,
                    value_type,
                    &format!("value of `{}`", entry.key.name()),
                );
            }
            return Type::map((**value_type).clone());
        }
        if let Some(target) = expected.and_then(|t| self.record_fields(t).map(|r| (t.clone(), r))) {
            let (target_type, decl) = target;
            for entry in entries {
                let name = entry.key.name();
                match decl.field(name) {
                    Some(ft) => {
                        let ft = ft.clone();
                        self.expect(&entry.value, &ft, &format!("field `{name}`"));
                    }
                    None => {
                        self.check_expr(&entry.value, None);
                        let names = decl.fields.iter().map(|f| f.name.as_str());
                        let list = names
                            .clone()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        let d = Diagnostic::new(
                            Code::UnknownField,
                            entry.key.span(),
                            format!("`{target_type}` has no field `{name}`"),
                        )
                        .with_label(format!("not a field of `{target_type}`"));
                        self.error(match did_you_mean(name, names) {
                            Some(s) => d.with_help(format!("did you mean `{s}`?")),
                            None => d.with_help(format!("fields of `{target_type}`: {list}")),
                        });
                    }
                }
            }
            let missing: Vec<&str> = decl
                .fields
                .iter()
                .filter(|f| {
                    !f.ty.is_optional() && f.ty != Type::Json && !seen.contains(f.name.as_str())
                })
                .map(|f| f.name.as_str())
                .collect();
            if !missing.is_empty() {
                let list = quoted(&missing.iter().map(|m| m.to_string()).collect::<Vec<_>>());
                let plural = if missing.len() == 1 {
                    "field"
                } else {
                    "fields"
                };
                let example = missing
                    .iter()
                    .map(|m| format!("{m}: ..."))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(
                    Diagnostic::new(
                        Code::MissingField,
                        e.span,
                        format!("record is missing {plural} {list} of `{target_type}`"),
                    )
                    .with_label(format!("no {list}"))
                    .with_help(format!(
                        "add `{example}`, or declare the {plural} optional in `{target_type}` (`T?`)"
                    )),
                );
            }
            return target_type;
        }
        let mut fields = Vec::new();
        for entry in entries {
            let mut t = self.check_expr(&entry.value, None);
            if t.contains_secret() {
                self.secret_leak(entry.value.span, "a secret cannot be stored in a record");
                t = Type::Error; // reported once, not at every later use
            }
            fields.push((entry.key.name().to_string(), t));
        }
        Type::record(fields)
    }

    fn name(&mut self, name: &ast::Ident) -> Type {
        if let Some(t) = self.scopes.use_name(&name.name) {
            return t;
        }
        match name.name.as_str() {
            "trigger" => match &self.flow {
                Some(f) => f.trigger_type.clone(),
                None => {
                    self.error(Diagnostic::new(
                        Code::UnknownName,
                        name.span,
                        "`trigger` is only available inside a flow",
                    ));
                    Type::Error
                }
            },
            "env" => Type::record(vec![("version".into(), Type::String)]),
            "error" => {
                if self.flow.as_ref().is_some_and(|f| f.in_on_failure) {
                    Type::record(vec![
                        ("message".into(), Type::String),
                        ("step".into(), Type::optional(Type::String)),
                        ("execution_id".into(), Type::String),
                    ])
                } else {
                    self.error(
                        Diagnostic::new(
                            Code::ErrorOutsideFailure,
                            name.span,
                            "`error` is only available inside `on failure { ... }`",
                        )
                        .with_label("no run has failed here")
                        .with_help(
                            "add `on failure { ... }` at the end of the flow to handle failed runs",
                        ),
                    );
                    Type::Error
                }
            }
            "config" => {
                self.error(
                    Diagnostic::new(
                        Code::ConfigNotValue,
                        name.span,
                        "`config` is not a value by itself",
                    )
                    .with_label("needs an entry name, `config.NAME`")
                    .with_help("name an entry, e.g. `config.erp_url`"),
                );
                Type::Error
            }
            n if self.std.modules.contains_key(n) => {
                self.error(
                    Diagnostic::new(
                        Code::NotCallable,
                        name.span,
                        format!("`{n}` is a stdlib module, not a value"),
                    )
                    .with_label("a module")
                    .with_help(format!(
                        "call one of its functions, e.g. `{n}.{}(...)`",
                        self.first_fn(n)
                    )),
                );
                Type::Error
            }
            n if self.program.flows.contains_key(n) => {
                self.error(
                    Diagnostic::new(
                        Code::UnknownName,
                        name.span,
                        format!("flow `{n}` is not a value"),
                    )
                    .with_help(format!(
                        "use `endpoint({n})` for its URL, or `dispatch {n}(...)` to start it"
                    )),
                );
                Type::Error
            }
            n => {
                let mut candidates = self.scopes.visible();
                candidates.extend(AMBIENT.iter().map(|s| s.to_string()));
                let mut d =
                    Diagnostic::new(Code::UnknownName, name.span, format!("unknown name `{n}`"))
                        .with_label("not defined here");
                if let Some((span, label, help)) = self.binding_elsewhere(name) {
                    d = d.with_secondary(span, label).with_help(help);
                } else if let Some(s) = did_you_mean(n, candidates.iter().map(String::as_str)) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.error(d);
                Type::Error
            }
        }
    }

    /// For a name the flow binds, but not where it is used: where it is
    /// bound, a label for that place, and why it is not visible.
    fn binding_elsewhere(&self, name: &ast::Ident) -> Option<(ast::Span, &'static str, String)> {
        let flow = self.flow.as_ref()?;
        let b = flow.bindings.iter().find(|b| b.name == name.name)?;
        let n = &name.name;
        Some(if flow.in_on_failure && !b.in_on_failure {
            (
                b.span,
                "defined in the flow's body",
                "`on failure` cannot see the body's `let`s and steps; `error.step` and `error.message` say what failed".to_string(),
            )
        } else if b.span.start > name.span.start {
            (
                b.span,
                "defined here, after its use",
                format!("move this use below the definition of `{n}`"),
            )
        } else if b.kind == BindingKind::LoopVar {
            (
                b.span,
                "the loop variable of this `for`",
                format!("`{n}` exists only inside its loop"),
            )
        } else {
            (
                b.span,
                "defined here, inside a block",
                format!("`{n}` exists only inside the block that defines it"),
            )
        })
    }

    fn first_fn(&self, module: &str) -> String {
        self.std
            .modules
            .get(module)
            .and_then(|m| m.functions.keys().next().cloned())
            .unwrap_or_default()
    }

    /// Is `e` the bare name of something other than a local (`config`,
    /// a stdlib module)?
    fn is_global(&self, e: &Expr, global: &str) -> bool {
        matches!(&e.kind, ExprKind::Name(n) if n.name == global && self.scopes.find(global).is_none())
    }

    fn field(
        &mut self,
        target: &Expr,
        name: &ast::Ident,
        optional: bool,
        expected: Option<&Type>,
    ) -> Type {
        if self.is_global(target, "config") {
            return self.config_field(name, expected);
        }
        if let ExprKind::Name(m) = &target.kind {
            if self.scopes.find(&m.name).is_none() && self.std.modules.contains_key(&m.name) {
                self.error(
                    Diagnostic::new(
                        Code::NotCallable,
                        name.span,
                        format!("`{m}.{name}` is a function"),
                    )
                    .with_label("not called")
                    .with_help(format!("call it: `{m}.{name}(...)`")),
                );
                return Type::Error;
            }
        }
        let target_type = self.check_expr(target, None);
        let base = if optional {
            match &target_type {
                Type::Optional(inner) => (**inner).clone(),
                Type::Json | Type::Error => target_type.clone(),
                Type::Null => return Type::Null,
                other => {
                    self.error(
                        Diagnostic::new(
                            Code::NotOptional,
                            name.span,
                            format!("`?.` on `{other}`, which is never null"),
                        )
                        .with_label(format!("{} is never null", describe(target)))
                        .with_help(format!("write `.{name}`")),
                    );
                    other.clone()
                }
            }
        } else {
            if let Type::Optional(inner) = &target_type {
                self.error(
                    Diagnostic::new(
                        Code::OptionalAccess,
                        name.span,
                        format!("`{target_type}` may be null, so `.{name}` may fail"),
                    )
                    .with_label(format!("{} may be null", describe(target)))
                    .with_help(format!(
                        "use `?.{name}` (the result is optional) or give a default with `??`"
                    )),
                );
                return self
                    .field_of(&inner.clone(), name, Owner::Value)
                    .map_or(Type::Error, Type::optional);
            }
            target_type.clone()
        };
        let owner = self.owner(target);
        let t = self.field_of(&base, name, owner).unwrap_or(Type::Error);
        if optional {
            Type::optional(t)
        } else {
            t
        }
    }

    /// What the target of a field access is, for messages: `trigger` and
    /// `trigger.params` read better as "the webhook trigger" and "the route".
    fn owner(&self, target: &Expr) -> Owner {
        let kind = self.flow.as_ref().map_or("", |f| f.trigger_kind);
        if kind.is_empty() {
            return Owner::Value;
        }
        match &target.kind {
            ExprKind::Name(_) if self.is_global(target, "trigger") => Owner::Trigger(kind),
            ExprKind::Field {
                target: t,
                name,
                optional: false,
            } if name.name == "params" && self.is_global(t, "trigger") => Owner::Route,
            _ => Owner::Value,
        }
    }

    /// The type of `.name` on a value of type `ty`, reporting unknown fields.
    fn field_of(&mut self, ty: &Type, name: &ast::Ident, owner: Owner) -> Option<Type> {
        let n = name.name.as_str();
        let builtin: Option<Vec<(&str, Type)>> = match ty {
            Type::Json | Type::Error => return Some(ty.clone()),
            Type::Map(v) => return Some(Type::optional((**v).clone())),
            Type::Response(body) => Some(vec![
                ("status", Type::Int),
                ("body", (**body).clone()),
                ("text", Type::String),
                ("headers", Type::map(Type::String)),
            ]),
            Type::File => Some(vec![
                ("path", Type::String),
                ("name", Type::String),
                ("size", Type::Int),
                ("modified", Type::Time),
                ("text", Type::String),
                ("bytes", Type::Bytes),
            ]),
            _ => None,
        };
        let fields: Vec<(String, Type)> = match builtin {
            Some(b) => b.into_iter().map(|(k, t)| (k.to_string(), t)).collect(),
            None => match self.record_fields(ty) {
                Some(r) => r
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), f.ty.clone()))
                    .collect(),
                None => {
                    self.no_fields(ty, name);
                    return None;
                }
            },
        };
        if let Some((_, t)) = fields.iter().find(|(k, _)| k == n) {
            return Some(t.clone());
        }
        let names = fields
            .iter()
            .map(|(k, _)| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let (message, label, list) = match owner {
            Owner::Value => (
                format!("`{ty}` has no field `{n}`"),
                "unknown field",
                format!("fields of `{ty}`: {names}"),
            ),
            Owner::Trigger(kind) => (
                format!("a {kind} trigger has no field `{n}`"),
                "unknown field",
                format!("`trigger` of a {kind} flow has: {names}"),
            ),
            Owner::Route if fields.is_empty() => (
                format!("the route has no path parameter `{n}`"),
                "no such parameter",
                "the route has no parameters; write them in the path, e.g. `\"/customers/{id}\"`"
                    .to_string(),
            ),
            Owner::Route => (
                format!("the route has no path parameter `{n}`"),
                "no such parameter",
                format!("path parameters: {names}"),
            ),
        };
        let mut d = Diagnostic::new(Code::UnknownField, name.span, message).with_label(label);
        d = match did_you_mean(n, fields.iter().map(|(k, _)| k.as_str())) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d.with_help(list),
        };
        self.error(d);
        None
    }

    /// E0208 for `.name` on a value without fields, with the likely fix.
    fn no_fields(&mut self, ty: &Type, name: &ast::Ident) {
        let n = &name.name;
        let help = match ty {
            Type::List(_) => format!("a list has no fields; take each element's with `.map(x => x.{n})`, or one element with `.first()`"),
            Type::String | Type::Lits(_) | Type::Url => "strings have methods (`.len()`, `.lower()`, `.split(\",\")`, ...), not fields".to_string(),
            _ => "only records, `Json`, responses and files have fields".to_string(),
        };
        self.error(
            Diagnostic::new(Code::NoFields, name.span, format!("`{ty}` has no fields"))
                .with_label(format!("`.{n}` on a `{ty}`"))
                .with_help(help),
        );
    }

    fn config_field(&mut self, name: &ast::Ident, expected: Option<&Type>) -> Type {
        if let Some(t) = self.use_config(&name.name) {
            return t;
        }
        let mut d = Diagnostic::new(
            Code::UnknownConfig,
            name.span,
            format!("unknown config entry `{name}`"),
        )
        .with_label("not in the config block");
        let names: Vec<String> = self.config.keys().cloned().collect();
        d = match did_you_mean(&name.name, names.iter().map(String::as_str)) {
            Some(s) => {
                // The entry meant is not "unused": one mistake, one report.
                self.use_config(&s);
                d.with_help(format!("did you mean `{s}`?"))
            }
            None => {
                let ty = match expected.map(Type::unwrap_optional) {
                    Some(t) if !matches!(t, Type::Json | Type::Error | Type::Param(_)) => {
                        t.to_string()
                    }
                    _ => "String".to_string(),
                };
                d.with_help(format!(
                    "declare it in the config block: `config {{ {name}: {ty} }}`"
                ))
            }
        };
        self.error(d);
        Type::Error
    }

    fn index(&mut self, target: &Expr, index: &Expr) -> Type {
        let t = self.check_expr(target, None);
        match t {
            Type::List(elem) => {
                self.expect(index, &Type::Int, "list index");
                Type::optional(*elem)
            }
            Type::Map(v) => {
                self.expect(index, &Type::String, "map key");
                Type::optional(*v)
            }
            Type::Json | Type::Error => {
                self.check_expr(index, None);
                t
            }
            other => {
                self.check_expr(index, None);
                self.error(
                    Diagnostic::new(
                        Code::NotAList,
                        target.span,
                        format!("`{other}` cannot be indexed"),
                    )
                    .with_label(format!("a `{other}`"))
                    .with_help(
                        "only lists (`xs[0]`), maps (`m[\"key\"]`) and `Json` can be indexed",
                    ),
                );
                Type::Error
            }
        }
    }

    /// A call: stdlib function, builtin or method. `as_step`: this is the
    /// call of a `step` statement, where effectful functions are allowed.
    pub(super) fn call(&mut self, e: &Expr, as_step: bool) -> Type {
        let ExprKind::Call { callee, args } = &e.kind else {
            return self.check_expr(e, None);
        };
        let t = match &callee.kind {
            ExprKind::Field {
                target,
                name,
                optional: false,
            } => {
                if let ExprKind::Name(m) = &target.kind {
                    let is_module =
                        self.scopes.find(&m.name).is_none() && !AMBIENT.contains(&m.name.as_str());
                    if is_module {
                        let t = self.stdlib_call(e, m, name, args, as_step);
                        return self.record_call(e, t);
                    }
                }
                self.method_call(target, name, args)
            }
            ExprKind::Name(n) => self.builtin_call(n, args),
            _ => {
                self.check_args_loosely(args);
                self.error(
                    Diagnostic::new(Code::NotCallable, callee.span, "this is not a function")
                        .with_help("call stdlib functions as `module.function(...)`"),
                );
                Type::Error
            }
        };
        self.record_call(e, t)
    }

    fn record_call(&mut self, e: &Expr, t: Type) -> Type {
        self.program.expr_types.insert(e.span, t.clone());
        t
    }

    fn check_args_loosely(&mut self, args: &[Arg]) {
        for arg in args {
            if let ArgValue::Expr(v) = &arg.value {
                if !matches!(v.kind, ExprKind::Lambda { .. }) {
                    self.check_expr(v, None);
                }
            }
        }
    }

    fn stdlib_call(
        &mut self,
        e: &Expr,
        module: &ast::Ident,
        name: &ast::Ident,
        args: &[Arg],
        as_step: bool,
    ) -> Type {
        let Some(m) = self.std.modules.get(&module.name) else {
            self.check_args_loosely(args);
            let modules = self.std.modules.keys().map(String::as_str);
            let mut d = Diagnostic::new(
                Code::UnknownName,
                module.span,
                format!("unknown name `{module}`"),
            )
            .with_label("not a value or stdlib module");
            if let Some(s) = did_you_mean(&module.name, modules) {
                d = d.with_help(format!("did you mean the module `{s}`?"));
            }
            self.error(d);
            return Type::Error;
        };
        let Some(sig) = m.functions.get(&name.name) else {
            self.check_args_loosely(args);
            let mut d = Diagnostic::new(
                Code::UnknownFunction,
                name.span,
                format!("module `{module}` has no function `{name}`"),
            )
            .with_label(format!("not in `{module}`"));
            d = match did_you_mean(&name.name, m.functions.keys().map(String::as_str)) {
                Some(s) => d.with_help(format!("did you mean `{module}.{s}`?")),
                None => d.with_help(format!(
                    "functions of `{module}`: {}",
                    m.functions.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            };
            self.error(d);
            return Type::Error;
        };
        if sig.effectful && !as_step {
            self.error(
                Diagnostic::new(
                    Code::EffectOutsideStep,
                    e.span,
                    format!("`{}` has effects, so it can only be called as a step", sig.qualified()),
                )
                .with_label("effectful call")
                .with_help(format!("write `step {} = {}(...)`: a step's result is journaled and not repeated on retry", sig.name, sig.qualified())),
            );
        }
        let qualified = sig.qualified();
        let sig = sig.clone();
        self.check_needed_config(&qualified, module.span.to(name.span));
        self.check_call_args(&qualified, &sig.params, args, name.span);
        // Substitute the type argument (`as:`) into the result type.
        let type_arg = args.iter().find_map(|a| match (&a.name, &a.value) {
            (Some(n), ArgValue::Type(te)) if sig.param(&n.name).is_some_and(|p| p.takes_type) => {
                Some(self.resolve_type(te))
            }
            _ => None,
        });
        let type_arg = type_arg
            .or_else(|| sig.params.iter().find_map(|p| p.default_type.clone()))
            .unwrap_or(Type::Json);
        if module.name == "sql" {
            self.check_sql_call(&qualified, args, &type_arg);
        }
        substitute(&sig.ret, &type_arg)
    }

    /// `sql.query` / `sql.execute`: the statement is a string literal
    /// without interpolation (E0410), so values can only arrive through
    /// `args:`; with a list literal for `args:`, the placeholders of the
    /// statement must match it (E0411). `sql.query`'s `as:` is a list.
    fn check_sql_call(&mut self, qualified: &str, args: &[Arg], type_arg: &Type) {
        let sql_arg = args
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|n| n.name == "sql"))
            .or_else(|| args.iter().filter(|a| a.name.is_none()).nth(1));
        let text = match sql_arg.map(|a| &a.value) {
            Some(ArgValue::Expr(Expr {
                kind: ExprKind::Str(parts),
                span,
            })) => {
                let interpolated = parts.iter().find_map(|p| match p {
                    ast::StrPart::Interp(e) => Some(e.span),
                    ast::StrPart::Lit(_) => None,
                });
                match interpolated {
                    Some(at) => {
                        self.error(
                            Diagnostic::new(
                                Code::SqlNotLiteral,
                                at,
                                format!("the SQL text of `{qualified}` cannot interpolate values"),
                            )
                            .with_label("a value spliced into the statement")
                            .with_secondary(*span, "SQL text")
                            .with_help(SQL_HELP),
                        );
                        None
                    }
                    None => Some(
                        parts
                            .iter()
                            .filter_map(|p| match p {
                                ast::StrPart::Lit(s) => Some(s.as_str()),
                                ast::StrPart::Interp(_) => None,
                            })
                            .collect::<String>(),
                    ),
                }
            }
            Some(ArgValue::Expr(other)) => {
                self.error(
                    Diagnostic::new(
                        Code::SqlNotLiteral,
                        other.span,
                        format!("the SQL text of `{qualified}` must be a string literal"),
                    )
                    .with_label("computed SQL text")
                    .with_help(SQL_HELP),
                );
                None
            }
            _ => None,
        };
        if qualified == "sql.query" && !matches!(type_arg, Type::List(_) | Type::Json | Type::Error)
        {
            let at = args
                .iter()
                .find(|a| a.name.as_ref().is_some_and(|n| n.name == "as"))
                .map_or(sql_arg.map(|a| a.span).unwrap_or_default(), |a| a.span);
            self.error(
                Diagnostic::new(
                    Code::TypeMismatch,
                    at,
                    format!("`sql.query` returns rows, so `as:` is a list, not `{type_arg}`"),
                )
                .with_label("not a list type")
                .with_help(format!(
                    "write `as: [{type_arg}]` (one `{type_arg}` per row)"
                )),
            );
        }
        let Some(text) = text else {
            return;
        };
        let values = args
            .iter()
            .find(|a| a.name.as_ref().is_some_and(|n| n.name == "args"))
            .or_else(|| args.iter().filter(|a| a.name.is_none()).nth(2));
        // Without `args:`, no values; with a list literal, its items.
        let (given, span) = match values.map(|a| &a.value) {
            None => (0, sql_arg.map(|a| a.span).unwrap_or_default()),
            Some(ArgValue::Expr(Expr {
                kind: ExprKind::List(items),
                span,
            })) => (items.len(), *span),
            Some(_) => return,
        };
        let wanted = sql_placeholders(&text);
        let problem = match wanted {
            Placeholders::Numbered(max) if max != given => Some(format!(
                "the SQL text uses ${max} as its highest placeholder, but `args:` has {given} value{}",
                if given == 1 { "" } else { "s" }
            )),
            Placeholders::Question(n) if n != given => Some(format!(
                "the SQL text has {n} `?` placeholder{}, but `args:` has {given} value{}",
                if n == 1 { "" } else { "s" },
                if given == 1 { "" } else { "s" }
            )),
            _ => None,
        };
        if let Some(message) = problem {
            self.error(
                Diagnostic::new(Code::SqlPlaceholders, span, message)
                    .with_label("values bound to the placeholders")
                    .with_help(
                        "give one value per placeholder: $1, $2, ... (PostgreSQL) or one per ? (MySQL, SQLite)",
                    ),
            );
        }
    }

    /// Stdlib functions that the runtime configures from a config entry
    /// (E0504): the entry must be declared, with a text type.
    fn check_needed_config(&mut self, qualified: &str, span: ast::Span) {
        /// (function, entry, example value)
        const NEEDS: &[(&str, &str, &str)] = &[(
            "email.send",
            "smtp_url",
            "smtp://user:password@mail.example.com:587",
        )];
        let Some((_, entry, example)) = NEEDS.iter().find(|(f, _, _)| *f == qualified) else {
            return;
        };
        let fits = |t: &Type| matches!(t, Type::Url | Type::Secret | Type::String | Type::Error);
        let declared = self.config.get(*entry).map(|(t, s, _)| (t.clone(), *s));
        match declared {
            None => self.error(
                Diagnostic::new(
                    Code::MissingNeededConfig,
                    span,
                    format!("`{qualified}` needs the config entry `{entry}`, which is not declared"),
                )
                .with_label(format!("reads config `{entry}`"))
                .with_help(format!(
                    "declare it: `config {{ {entry}: Secret }}` and set it at start-up (e.g. {example})"
                )),
            ),
            Some((t, decl)) => {
                let ok = match &t {
                    Type::Optional(inner) => fits(inner),
                    t => fits(t),
                };
                if !ok {
                    self.error(
                        Diagnostic::new(
                            Code::MissingNeededConfig,
                            decl,
                            format!(
                                "config entry `{entry}` is read by `{qualified}` as a URL, but its type is `{t}`"
                            ),
                        )
                        .with_label("declared here")
                        .with_help(format!("declare it as `{entry}: Secret` (or `Url`)")),
                    );
                }
            }
        }
    }

    /// Arguments against parameters: positional in order, named by name.
    fn check_call_args(
        &mut self,
        what: &str,
        params: &[super::stdlib::ParamSig],
        args: &[Arg],
        call_span: ast::Span,
    ) {
        let mut filled: Vec<Option<ast::Span>> = vec![None; params.len()];
        let mut positional = 0usize;
        for arg in args {
            let index = match &arg.name {
                None => {
                    // Positional arguments fill value parameters in order.
                    let i = positional;
                    positional += 1;
                    if i >= params.len() {
                        let n = params.len();
                        self.error(
                            Diagnostic::new(
                                Code::TooManyArguments,
                                arg.span,
                                format!(
                                    "`{what}` takes at most {n} argument{}",
                                    if n == 1 { "" } else { "s" }
                                ),
                            )
                            .with_label("extra argument")
                            .with_help(format!(
                                "parameters: {}",
                                params
                                    .iter()
                                    .map(|p| p.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        );
                        if let ArgValue::Expr(v) = &arg.value {
                            self.check_expr(v, None);
                        }
                        continue;
                    }
                    i
                }
                Some(n) => match params.iter().position(|p| p.name == n.name) {
                    Some(i) => i,
                    None => {
                        let mut d = Diagnostic::new(
                            Code::UnknownArgument,
                            n.span,
                            format!("`{what}` has no parameter `{n}`"),
                        )
                        .with_label("unknown argument");
                        d = match did_you_mean(&n.name, params.iter().map(|p| p.name.as_str())) {
                            Some(s) => d.with_help(format!("did you mean `{s}:`?")),
                            None => d.with_help(format!(
                                "parameters: {}",
                                params
                                    .iter()
                                    .map(|p| p.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        };
                        self.error(d);
                        if let ArgValue::Expr(v) = &arg.value {
                            self.check_expr(v, None);
                        }
                        continue;
                    }
                },
            };
            let Some(param) = params.get(index) else {
                continue;
            };
            if let Some(first) = filled[index] {
                self.error(
                    Diagnostic::new(
                        Code::DuplicateArgument,
                        arg.span,
                        format!("argument `{}` is given twice", param.name),
                    )
                    .with_label("given again here")
                    .with_secondary(first, "first given here")
                    .with_help("remove one of them"),
                );
                if let ArgValue::Expr(v) = &arg.value {
                    self.check_expr(v, None);
                }
                continue;
            }
            filled[index] = Some(arg.span);
            match (&arg.value, param.takes_type) {
                (ArgValue::Type(te), true) => {
                    self.resolve_type(te);
                }
                (ArgValue::Expr(v), true) => {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            v.span,
                            format!("`{}:` takes a type", param.name),
                        )
                        .with_help(format!("write a type, e.g. `{}: [Order]`", param.name)),
                    );
                }
                (ArgValue::Type(te), false) => {
                    self.error(Diagnostic::new(
                        Code::TypeMismatch,
                        te.span,
                        format!("`{}:` takes a value, not a type", param.name),
                    ));
                }
                (
                    ArgValue::Expr(
                        v @ Expr {
                            kind: ExprKind::Lambda { .. },
                            ..
                        },
                    ),
                    false,
                ) => {
                    self.error(
                        Diagnostic::new(
                            Code::MisplacedLambda,
                            v.span,
                            format!("argument `{}` of `{what}` cannot be a lambda", param.name),
                        )
                        .with_label(format!("expected `{}`", param.ty))
                        .with_help("lambdas are arguments of list methods: compute the value first, e.g. `json: lines.map(l => l.sku)`"),
                    );
                }
                (ArgValue::Expr(v), false) => {
                    self.expect(
                        v,
                        &param.ty,
                        &format!("argument `{}` of `{what}`", param.name),
                    );
                }
            }
        }
        let missing: Vec<&str> = params
            .iter()
            .zip(&filled)
            .filter(|(p, f)| f.is_none() && !p.has_default)
            .map(|(p, _)| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            self.error(
                Diagnostic::new(
                    Code::MissingArgument,
                    call_span,
                    format!(
                        "`{what}` is missing {}",
                        missing
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .with_label(format!(
                    "missing {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}:`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .with_help(format!(
                    "pass {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}: ...`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
    }

    fn builtin_call(&mut self, name: &ast::Ident, args: &[Arg]) -> Type {
        match name.name.as_str() {
            "endpoint" => {
                let target = match args {
                    [Arg {
                        name: None,
                        value:
                            ArgValue::Expr(Expr {
                                kind: ExprKind::Name(flow),
                                ..
                            }),
                        ..
                    }] => flow,
                    _ => {
                        self.error(
                            Diagnostic::new(
                                Code::NotEndpoint,
                                name.span,
                                "`endpoint` takes one flow name",
                            )
                            .with_label("not a flow name")
                            .with_help("write the flow's name without quotes, e.g. `endpoint(order_created)`"),
                        );
                        self.check_args_loosely(args);
                        return Type::Url;
                    }
                };
                match self.program.flows.get(&target.name) {
                    Some(info) if info.kind == "webhook" || info.kind == "sync" => {}
                    Some(info) => {
                        let kind = info.kind;
                        self.error(
                            Diagnostic::new(
                                Code::NotEndpoint,
                                target.span,
                                format!(
                                    "flow `{target}` has a {kind} trigger, so it has no endpoint"
                                ),
                            )
                            .with_label(format!("a {kind} flow has no URL"))
                            .with_help("`endpoint` names a flow with a webhook or sync trigger"),
                        );
                    }
                    None => self.unknown_flow(target),
                }
                Type::Url
            }
            "reveal" => {
                match args {
                    [Arg {
                        name: None,
                        value: ArgValue::Expr(v),
                        ..
                    }] => {
                        self.expect(v, &Type::Secret, "argument of `reveal`");
                    }
                    _ => {
                        self.check_args_loosely(args);
                        self.error(
                            Diagnostic::new(
                                Code::TooManyArguments,
                                name.span,
                                "`reveal` takes one secret",
                            )
                            .with_label(format!("given {} arguments", args.len()))
                            .with_help("write `reveal(config.api_key)`"),
                        );
                    }
                }
                Type::String
            }
            "header" | "hmac_sha256" => {
                self.check_args_loosely(args);
                self.error(
                    Diagnostic::new(Code::UnknownFunction, name.span, format!("`{name}` is only available in webhook trigger options"))
                        .with_label("not a function of flow bodies")
                        .with_help("use it as `dedupe: header(\"X-Id\")` or `verify: hmac_sha256(...)`; in a flow body use `trigger.headers` or `crypto.hmac_sha256`"),
                );
                Type::Error
            }
            n => {
                self.check_args_loosely(args);
                let modules: Vec<String> = self
                    .std
                    .modules
                    .values()
                    .flat_map(|m| m.functions.keys().map(move |f| format!("{}.{f}", m.name)))
                    .collect();
                let mut candidates: Vec<&str> = BUILTIN_FNS.to_vec();
                candidates.extend(modules.iter().map(String::as_str));
                let mut d = Diagnostic::new(
                    Code::UnknownFunction,
                    name.span,
                    format!("unknown function `{n}`"),
                )
                .with_label("not a built-in function");
                let by_name = modules.iter().find(|q| q.rsplit('.').next() == Some(n));
                if let Some(q) = by_name {
                    d = d.with_help(format!("did you mean `{q}`?"));
                } else if let Some(s) = did_you_mean(n, candidates) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.error(d);
                Type::Error
            }
        }
    }

    pub(super) fn unknown_flow(&mut self, name: &ast::Ident) {
        let mut d = Diagnostic::new(
            Code::UnknownFlow,
            name.span,
            format!("unknown flow `{name}`"),
        )
        .with_label("no flow has this name");
        let flows: Vec<String> = self.program.flows.keys().cloned().collect();
        d = match did_you_mean(&name.name, flows.iter().map(String::as_str)) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None if flows.is_empty() => d.with_help("declare it with `flow NAME { trigger ... }`"),
            None => d.with_help(format!(
                "flows: {}",
                flows
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        self.error(d);
    }

    fn method_call(&mut self, target: &Expr, name: &ast::Ident, args: &[Arg]) -> Type {
        let recv = self.check_expr(target, None);
        let m = name.name.as_str();
        let (params, ret): (Vec<Type>, Type) = match (&recv, m) {
            (Type::Error, _) => {
                self.check_args_loosely(args);
                return Type::Error;
            }
            (Type::List(_), "len") | (Type::String | Type::Lits(_) | Type::Url, "len") => {
                (vec![], Type::Int)
            }
            (Type::List(t), "first") => (vec![], Type::optional((**t).clone())),
            (Type::List(t), "contains") => (vec![(**t).clone()], Type::Bool),
            (Type::List(t), "join") => {
                if !matches!(
                    **t,
                    Type::String
                        | Type::Lits(_)
                        | Type::Int
                        | Type::Float
                        | Type::Url
                        | Type::Error
                ) {
                    self.error(
                        Diagnostic::new(
                            Code::UnknownMethod,
                            name.span,
                            format!("`join` needs a list of strings or numbers, not `{recv}`"),
                        )
                        .with_label(format!("on a `{recv}`"))
                        .with_help("map to strings first: `xs.map(x => x.name).join(\",\")`"),
                    );
                }
                (vec![Type::String], Type::String)
            }
            (Type::List(t), "sum") => {
                if !matches!(**t, Type::Int | Type::Float | Type::Error) {
                    self.error(
                        Diagnostic::new(
                            Code::UnknownMethod,
                            name.span,
                            format!("`sum` needs a list of numbers, not `{recv}`"),
                        )
                        .with_label(format!("on a `{recv}`"))
                        .with_help("map to numbers first: `xs.map(x => x.quantity).sum()`"),
                    );
                    return Type::Error;
                }
                (vec![], (**t).clone())
            }
            (Type::List(t), "map") => {
                let body = self.lambda_arg(args, name, &[(**t).clone()]);
                return Type::list(body);
            }
            (Type::List(t), "filter") => {
                let body = self.lambda_arg(args, name, &[(**t).clone()]);
                if !self.assignable(&body, &Type::Bool) {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            name.span,
                            format!("`filter` needs a lambda returning `Bool`, this one returns `{body}`"),
                        )
                        .with_label(format!("the lambda returns `{body}`"))
                        .with_help("compare to get a `Bool`, e.g. `.filter(x => x.quantity > 0)`"),
                    );
                }
                return recv.clone();
            }
            (Type::String | Type::Lits(_) | Type::Url, "lower" | "upper" | "trim") => {
                (vec![], Type::String)
            }
            (Type::String | Type::Lits(_) | Type::Url, "split") => {
                (vec![Type::String], Type::list(Type::String))
            }
            (Type::String | Type::Lits(_) | Type::Url, "contains") => {
                (vec![Type::String], Type::Bool)
            }
            _ => {
                self.check_args_loosely(args);
                let methods: &[&str] = match recv {
                    Type::List(_) => &["len", "first", "contains", "join", "sum", "map", "filter"],
                    Type::String | Type::Lits(_) | Type::Url => {
                        &["len", "lower", "upper", "trim", "split", "contains"]
                    }
                    _ => &[],
                };
                let mut d = Diagnostic::new(
                    Code::UnknownMethod,
                    name.span,
                    format!("`{recv}` has no method `{m}`"),
                )
                .with_label("unknown method");
                let hidden_module = match &target.kind {
                    ExprKind::Name(n) if self.std.modules.contains_key(&n.name) => {
                        Some(n.name.clone())
                    }
                    _ => None,
                };
                d = if let Some(module) = hidden_module {
                    d.with_help(format!("`{module}` here is a local value, which hides the stdlib module `{module}`; rename the local"))
                } else if recv == Type::Json {
                    d.with_help("convert the value first, e.g. `(x as [Item]).len()`")
                } else if let Some((_, s)) = METHOD_SYNONYMS
                    .iter()
                    .find(|(other, s)| *other == m && methods.contains(s))
                {
                    d.with_help(format!("did you mean `{s}`?"))
                } else if let Some(s) = did_you_mean(m, methods.iter().copied()) {
                    d.with_help(format!("did you mean `{s}`?"))
                } else if methods.is_empty() {
                    d.with_help("methods exist on lists and strings only")
                } else {
                    d.with_help(format!("methods of `{recv}`: {}", methods.join(", ")))
                };
                self.error(d);
                return Type::Error;
            }
        };
        if let Some(d) = method_arity(name, &params, args) {
            self.check_args_loosely(args);
            self.error(d);
            return ret;
        }
        for (arg, p) in args.iter().zip(&params) {
            match &arg.value {
                ArgValue::Expr(
                    v @ Expr {
                        kind: ExprKind::Lambda { .. },
                        ..
                    },
                ) => {
                    self.error(
                        Diagnostic::new(Code::MisplacedLambda, v.span, format!("`.{m}()` takes a value, not a lambda"))
                            .with_label(format!("expected `{p}`"))
                            .with_help("only `.map()` and `.filter()` take a lambda; to test the elements, write `xs.filter(x => ...).len() > 0`"),
                    );
                }
                ArgValue::Expr(v) => {
                    self.expect(v, p, &format!("argument of `.{m}()`"));
                }
                ArgValue::Type(te) => self.error(Diagnostic::new(
                    Code::TypeMismatch,
                    te.span,
                    "expected a value, found a type",
                )),
            }
        }
        ret
    }

    /// Checks the single lambda argument of `map`/`filter` and returns the
    /// type of its body.
    fn lambda_arg(&mut self, args: &[Arg], method: &ast::Ident, param_types: &[Type]) -> Type {
        let lambda = match args {
            [Arg {
                name: None,
                value:
                    ArgValue::Expr(Expr {
                        kind: ExprKind::Lambda { params, body },
                        ..
                    }),
                ..
            }] => Some((params, body)),
            _ => None,
        };
        let Some((params, body)) = lambda else {
            self.check_args_loosely(args);
            self.error(
                Diagnostic::new(
                    Code::TypeMismatch,
                    method.span,
                    format!("`.{method}()` takes one lambda"),
                )
                .with_label("needs a lambda argument")
                .with_help(format!("write `.{method}(x => ...)`")),
            );
            return Type::Error;
        };
        if params.len() != param_types.len() {
            self.error(
                Diagnostic::new(
                    Code::TypeMismatch,
                    method.span,
                    format!(
                        "the lambda of `.{method}()` takes 1 parameter, not {}",
                        params.len()
                    ),
                )
                .with_label("each element is passed alone")
                .with_help(format!("write `.{method}(x => ...)`")),
            );
        }
        self.scopes.push();
        for (p, t) in params.iter().zip(param_types) {
            self.bind_checked(p, t.clone(), BindingKind::LambdaParam);
        }
        let t = self.check_expr(body, None);
        self.scopes.pop();
        t
    }

    /// Binds a name, reporting a clash with a visible binding.
    pub(super) fn bind_checked(&mut self, name: &ast::Ident, ty: Type, kind: BindingKind) {
        if let Some(prev) = self.scopes.find(&name.name) {
            let prev_span = prev.span;
            self.error(
                Diagnostic::new(
                    Code::DuplicateBinding,
                    name.span,
                    format!("`{name}` is already defined"),
                )
                .with_label("defined again here")
                .with_secondary(prev_span, "first defined here")
                .with_help("choose another name: a name is bound once in a flow"),
            );
        } else if AMBIENT.contains(&name.name.as_str()) {
            // Not bound: later uses keep meaning the built-in.
            self.error(
                Diagnostic::new(
                    Code::DuplicateBinding,
                    name.span,
                    format!("`{name}` would hide the built-in `{name}`"),
                )
                .with_label(format!("`{name}` is built in"))
                .with_help(format!("choose another name, such as `{name}_value`")),
            );
            return;
        }
        self.scopes.bind(&name.name, ty, name.span, kind);
    }

    fn unary(&mut self, op: UnaryOp, expr: &Expr) -> Type {
        let t = self.check_expr(expr, None);
        match (op, &t) {
            (_, Type::Error) => Type::Error,
            (UnaryOp::Neg, Type::Int | Type::Float | Type::Duration) => t,
            (UnaryOp::Not, Type::Bool) => Type::Bool,
            (UnaryOp::Neg, other) => {
                self.error(
                    Diagnostic::new(
                        Code::BadOperands,
                        expr.span,
                        format!("cannot negate `{other}`"),
                    )
                    .with_label(format!("a `{other}`"))
                    .with_help("`-` negates numbers and durations"),
                );
                Type::Error
            }
            (UnaryOp::Not, other) => {
                self.error(
                    Diagnostic::new(
                        Code::BadOperands,
                        expr.span,
                        format!("`not` needs a `Bool`, found `{other}`"),
                    )
                    .with_label(format!("this is `{other}`"))
                    .with_help(if other.is_optional() {
                        "compare with null: `x == null`"
                    } else {
                        "compare to get a `Bool`"
                    }),
                );
                Type::Error
            }
        }
    }

    fn binary(&mut self, e: &Expr, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> Type {
        use BinaryOp::*;
        if op == Coalesce {
            let l = self.check_expr(lhs, None);
            let inner = match &l {
                Type::Optional(t) => (**t).clone(),
                Type::Json | Type::Error | Type::Null => l.clone(),
                other => {
                    self.error(
                        Diagnostic::new(
                            Code::NotOptional,
                            lhs.span,
                            format!("`??` on `{other}`, which is never null"),
                        )
                        .with_label(format!("{} is never null", describe(lhs)))
                        .with_help("remove `?? ...`"),
                    );
                    other.clone()
                }
            };
            let r = self.check_expr(rhs, Some(&inner));
            return match join(&inner, &r, &self.program.types) {
                Some(t) if r.is_optional() => t,
                Some(t) => t.unwrap_optional().clone(),
                None => {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            rhs.span,
                            format!("default of type `{r}` does not fit `{inner}`"),
                        )
                        .with_label(format!("this is `{r}`"))
                        .with_help(format!(
                            "the default of `??` must be of type `{inner}`, like the value it replaces"
                        )),
                    );
                    Type::Error
                }
            };
        }
        let l = self.check_expr(lhs, None);
        let r = self.check_expr(rhs, Some(&l));
        if l.is_error() || r.is_error() {
            return match op {
                Eq | Ne | Lt | Le | Gt | Ge | And | Or => Type::Bool,
                _ => Type::Error,
            };
        }
        let bad = |this: &mut Self, help: Option<&str>| {
            let mut d = Diagnostic::new(
                Code::BadOperands,
                e.span,
                format!("`{}` cannot be applied to `{l}` and `{r}`", op.symbol()),
            )
            .with_label(format!("`{l}` {} `{r}`", op.symbol()));
            if let Some(h) = help {
                d = d.with_help(h.to_string());
            }
            this.error(d);
            Type::Error
        };
        match op {
            Add | Sub | Mul | Div | Rem => match (&l, &r) {
                (Type::Int, Type::Int) => Type::Int,
                (Type::Int | Type::Float, Type::Int | Type::Float) => Type::Float,
                (Type::Time, Type::Duration) if matches!(op, Add | Sub) => Type::Time,
                (Type::Time, Type::Time) if op == Sub => Type::Duration,
                (Type::Duration, Type::Duration) if matches!(op, Add | Sub) => Type::Duration,
                (Type::Duration, Type::Int) if matches!(op, Mul | Div) => Type::Duration,
                (a, b) if op == Add && a.is_stringy() && b.is_stringy() => {
                    bad(self, Some("build strings with interpolation: \"${a}${b}\""))
                }
                (Type::Time, Type::Int | Type::Float) if matches!(op, Add | Sub) => bad(
                    self,
                    Some("a `Time` moves by a `Duration`: write `30d`, `2h` or `15m`"),
                ),
                (a, b) if a.is_optional() || b.is_optional() => bad(
                    self,
                    Some("a value may be null: give it a default first, e.g. `(x ?? 0)`"),
                ),
                _ => bad(self, None),
            },
            Eq | Ne => {
                self.literal_comparison(lhs, &l, rhs, &r);
                let comparable = join(&l, &r, &self.program.types).is_some()
                    || (l.is_stringy() && r.is_stringy());
                if comparable {
                    Type::Bool
                } else {
                    bad(self, Some("both sides of `==` must have the same type"));
                    Type::Bool
                }
            }
            Lt | Le | Gt | Ge => {
                let ok = (l.is_numeric() && r.is_numeric())
                    || (l == r && matches!(l, Type::Time | Type::Duration | Type::String))
                    || (l.is_stringy() && r.is_stringy());
                if !ok {
                    bad(
                        self,
                        Some("order comparisons work on numbers, strings, times and durations"),
                    );
                }
                Type::Bool
            }
            And | Or => {
                if l != Type::Bool || r != Type::Bool {
                    bad(self, Some("`and` and `or` need `Bool` on both sides"));
                }
                Type::Bool
            }
            Coalesce => Type::Error,
        }
    }

    /// `update.action == "ad"` can never be true when `action` is
    /// `"add" | "remove"`: say so.
    fn literal_comparison(&mut self, lhs: &Expr, l: &Type, rhs: &Expr, r: &Type) {
        for (side, other_type) in [(rhs, l), (lhs, r)] {
            let Type::Lits(set) = other_type.unwrap_optional() else {
                continue;
            };
            let Some(text) = literal_text(side) else {
                continue;
            };
            if !set.contains(&text) {
                self.error(not_in_union(
                    side.span,
                    &text,
                    set,
                    "this comparison is never true: ",
                ));
            }
        }
    }

    fn cast(&mut self, expr: &Expr, te: &ast::TypeExpr) -> Type {
        let from = self.check_expr(expr, None);
        let to = self.resolve_type(te);
        if from.contains_secret() && !to.contains_secret() {
            // One mistake, one report: the leak, not also the conversion.
            self.secret_leak(
                expr.span,
                "`as` cannot turn a secret into a printable value",
            );
            return to;
        }
        let ok = matches!(from.unwrap_optional(), Type::Json | Type::Error)
            || matches!(to, Type::Json | Type::Error)
            || self.assignable(&from, &to)
            || (from.is_stringy()
                && matches!(
                    to,
                    Type::Int | Type::Float | Type::Bool | Type::Time | Type::Url | Type::Lits(_)
                ))
            || (from.is_numeric() && matches!(to, Type::Int | Type::Float | Type::String))
            || (from == Type::Bool && to == Type::String);
        if !ok {
            let help = match (from.unwrap_optional(), &to) {
                (Type::List(_), Type::Int) => "count the elements with `.len()`".to_string(),
                (Type::Time, Type::String) => "format it with `time.format(t, \"%Y-%m-%d\")`, or interpolate it: `\"${t}\"`".to_string(),
                (Type::Record(_) | Type::Named(_) | Type::List(_) | Type::Map(_), Type::String) => {
                    "turn it into JSON text with `json.encode(...)`".to_string()
                }
                _ => "`as` converts `Json` to a type, strings to numbers, booleans and times, and numbers to each other".to_string(),
            };
            self.error(
                Diagnostic::new(
                    Code::BadCast,
                    te.span,
                    format!("cannot convert `{from}` to `{to}`"),
                )
                .with_label(format!("`{from}` cannot become `{to}`"))
                .with_help(help),
            );
        }
        to
    }

    fn if_expr(
        &mut self,
        e: &Expr,
        branches: &[(Expr, Expr)],
        otherwise: Option<&Expr>,
        expected: Option<&Type>,
    ) -> Type {
        let mut result: Option<Type> = None;
        let mut bodies: Vec<&Expr> = Vec::new();
        for (cond, body) in branches {
            self.expect(cond, &Type::Bool, "condition");
            bodies.push(body);
        }
        bodies.extend(otherwise);
        for body in bodies {
            let t = self.check_expr(body, expected);
            result = Some(self.join_branch(result, t, body));
        }
        let t = result.unwrap_or(Type::Error);
        if otherwise.is_none() {
            let _ = e;
            Type::optional(t)
        } else {
            t
        }
    }

    fn join_branch(&mut self, acc: Option<Type>, t: Type, body: &Expr) -> Type {
        match acc {
            None => t,
            Some(prev) => match join(&prev, &t, &self.program.types) {
                Some(j) => j,
                None => {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            body.span,
                            format!("branches have different types: `{prev}` and `{t}`"),
                        )
                        .with_label(format!("this is `{t}`, the branches before are `{prev}`"))
                        .with_help("every branch must produce the same type"),
                    );
                    Type::Error
                }
            },
        }
    }

    fn match_expr(
        &mut self,
        e: &Expr,
        scrutinee: &Expr,
        arms: &[ast::ExprArm],
        expected: Option<&Type>,
    ) -> Type {
        let st = self.check_expr(scrutinee, None);
        let pats: Vec<(&[ast::Pattern], ast::Span)> = arms
            .iter()
            .map(|a| (a.patterns.as_slice(), a.span))
            .collect();
        self.check_match_patterns(&st, &pats, ast::Span::new(e.span.start, scrutinee.span.end));
        let mut result = None;
        for arm in arms {
            let t = self.check_expr(&arm.body, expected);
            result = Some(self.join_branch(result, t, &arm.body));
        }
        result.unwrap_or(Type::Error)
    }

    /// Pattern types, unreachable arms and exhaustiveness, shared by match
    /// statements and expressions.
    pub(super) fn check_match_patterns(
        &mut self,
        st: &Type,
        arms: &[(&[ast::Pattern], ast::Span)],
        match_span: ast::Span,
    ) {
        use ast::PatternKind as P;
        let mut covered: BTreeSet<String> = BTreeSet::new();
        let mut wildcard = false;
        for (patterns, _) in arms {
            for p in *patterns {
                if wildcard {
                    self.error(
                        Diagnostic::new(
                            Code::UnreachableArm,
                            p.span,
                            "unreachable pattern: `_` above already matches everything",
                        )
                        .with_label("never reached")
                        .with_help("move the `_ =>` arm last"),
                    );
                    continue;
                }
                let key = match &p.kind {
                    P::Wildcard => {
                        wildcard = true;
                        continue;
                    }
                    P::Str(s) => format!("{s:?}"),
                    P::Int(i) => i.to_string(),
                    P::Float(f) => f.to_string(),
                    P::Bool(b) => b.to_string(),
                    P::Null => "null".to_string(),
                };
                self.check_pattern_type(st, p);
                if !covered.insert(key.clone()) {
                    self.error(
                        Diagnostic::new(
                            Code::UnreachableArm,
                            p.span,
                            format!("unreachable pattern: `{key}` is already matched above"),
                        )
                        .with_label("never reached")
                        .with_help("remove this pattern"),
                    );
                }
            }
        }
        if wildcard || st.is_error() {
            return;
        }
        let Some(domain) = finite_domain(st) else {
            self.error(
                Diagnostic::new(
                    Code::NonExhaustiveMatch,
                    match_span,
                    format!("match on `{st}` does not cover every value"),
                )
                .with_label(format!("a `{st}` can have values no arm matches"))
                .with_help("add a `_ =>` arm for the other values"),
            );
            return;
        };
        let missing: Vec<String> = domain
            .into_iter()
            .filter(|d| !covered.contains(d))
            .collect();
        if !missing.is_empty() {
            self.error(
                Diagnostic::new(
                    Code::NonExhaustiveMatch,
                    match_span,
                    format!("match does not cover {}", quoted(&missing)),
                )
                .with_label(format!("missing {}", quoted(&missing)))
                .with_help(format!(
                    "add {}, or a `_ =>` arm",
                    missing
                        .iter()
                        .map(|m| format!("a `{m} =>` arm"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
    }

    fn check_pattern_type(&mut self, st: &Type, p: &ast::Pattern) {
        use ast::PatternKind as P;
        let inner = st.unwrap_optional();
        let fits = match (&p.kind, inner) {
            (_, Type::Json | Type::Error) => true,
            (P::Null, _) => st.is_optional(),
            (P::Str(s), Type::Lits(set)) => {
                if !set.contains(s) {
                    self.error(not_in_union(p.span, s, set, "this arm never matches: "));
                }
                return;
            }
            (P::Str(_), t) => t.is_stringy(),
            (P::Int(_), t) => t.is_numeric(),
            (P::Float(_), Type::Float) => true,
            (P::Bool(_), Type::Bool) => true,
            _ => false,
        };
        if !fits {
            self.error(
                Diagnostic::new(
                    Code::TypeMismatch,
                    p.span,
                    format!("this pattern cannot match a value of type `{st}`"),
                )
                .with_label(format!("the value matched is `{st}`"))
                .with_help("patterns are literals of the matched type, or `_`"),
            );
        }
    }
}

/// The values of a type with finitely many, as pattern keys.
fn finite_domain(t: &Type) -> Option<Vec<String>> {
    match t {
        Type::Lits(set) => Some(set.iter().map(|s| format!("{s:?}")).collect()),
        Type::Bool => Some(vec!["true".into(), "false".into()]),
        Type::Null => Some(vec!["null".into()]),
        Type::Optional(inner) => {
            let mut d = finite_domain(inner)?;
            d.push("null".into());
            Some(d)
        }
        _ => None,
    }
}

/// The text of a plain string literal expression.
fn literal_text(e: &Expr) -> Option<String> {
    let ExprKind::Str(parts) = &e.kind else {
        return None;
    };
    let mut out = String::new();
    for p in parts {
        match p {
            StrPart::Lit(s) => out.push_str(s),
            StrPart::Interp(_) => return None,
        }
    }
    Some(out)
}

/// A short description of an expression for labels.
fn describe(e: &Expr) -> String {
    describe_path(e).map_or_else(|| "this value".to_string(), |p| format!("`{p}`"))
}

/// `trigger.body.lines.first()` for a chain of names, fields and
/// argument-less calls; `None` for anything else.
pub(super) fn describe_path(e: &Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Name(n) => Some(n.name.clone()),
        ExprKind::Field {
            target,
            name,
            optional,
        } => Some(format!(
            "{}{}{name}",
            describe_path(target)?,
            if *optional { "?." } else { "." }
        )),
        ExprKind::Call { callee, args } if args.is_empty() => {
            Some(format!("{}()", describe_path(callee)?))
        }
        _ => None,
    }
}

/// Replaces the type parameter in a stdlib result type.
fn substitute(t: &Type, arg: &Type) -> Type {
    match t {
        Type::Param(_) => arg.clone(),
        Type::List(i) => Type::list(substitute(i, arg)),
        Type::Optional(i) => Type::optional(substitute(i, arg)),
        Type::Map(i) => Type::map(substitute(i, arg)),
        Type::Response(i) => Type::Response(Box::new(substitute(i, arg))),
        other => other.clone(),
    }
}

/// Would converting `from` to `to` put a secret where it can be printed?
fn leaks(from: &Type, to: &Type) -> bool {
    match (from, to) {
        (_, Type::Secret) | (Type::Error, _) => false,
        (a, Type::Optional(b)) if !a.is_optional() => leaks(a, b),
        (Type::Secret, _) => true,
        (Type::Optional(a), Type::Optional(b))
        | (Type::List(a), Type::List(b))
        | (Type::Map(a), Type::Map(b)) => leaks(a, b),
        (Type::Optional(a), b) => leaks(a, b),
        (f, Type::Json) => f.contains_secret(),
        _ => false,
    }
}

fn conversion_help(actual: &Type, expected: &Type) -> Option<String> {
    match (actual.unwrap_optional(), expected) {
        (Type::Json, _) => Some(format!("convert it: `... as {expected}`")),
        (Type::Secret, Type::String | Type::Url) => {
            Some("a `Secret` is not a `String`; `reveal(x)` makes it one explicitly".into())
        }
        (_, e) if actual.is_optional() && !e.is_optional() => {
            Some("the value may be null: give a default with `?? ...`".into())
        }
        (Type::Float, Type::Int) => Some("convert it: `... as Int`".into()),
        (Type::Int | Type::Float | Type::Bool, Type::String) => {
            Some("make a string with interpolation: \"${x}\"".into())
        }
        (Type::Int | Type::Float, Type::Bool) => {
            Some("compare it to get a `Bool`, e.g. `... > 0`".into())
        }
        (Type::String | Type::Lits(_), Type::Bool) => {
            Some("compare it to get a `Bool`, e.g. `... != \"\"`".into())
        }
        (Type::List(_), Type::Bool) => Some("test its length: `... .len() > 0`".into()),
        (a, Type::List(e)) if a == &**e => Some("wrap it in a list: `[...]`".into()),
        _ => None,
    }
}

/// What a field is read from, for the wording of unknown-field errors.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Value,
    /// `trigger` of a flow with this trigger kind.
    Trigger(&'static str),
    /// `trigger.params` of a webhook or sync flow.
    Route,
}

/// E0210: a string literal that is not one of a union's members.
fn not_in_union(span: ast::Span, text: &str, set: &BTreeSet<String>, prefix: &str) -> Diagnostic {
    let members = set
        .iter()
        .map(|m| format!("{m:?}"))
        .collect::<Vec<_>>()
        .join(" | ");
    let d = Diagnostic::new(
        Code::BadLiteral,
        span,
        format!("{prefix}`{text:?}` is not one of `{members}`"),
    )
    .with_label("not a member of the union");
    // `"added"` for `"add"`: a member the text starts with is likely meant.
    let prefixed = || {
        set.iter()
            .find(|m| m.len() >= 3 && text.starts_with(m.as_str()))
            .cloned()
    };
    match did_you_mean(text, set.iter().map(String::as_str)).or_else(prefixed) {
        Some(s) => d.with_help(format!("did you mean `{s:?}`?")),
        None => {
            let each: Vec<String> = set.iter().map(|m| format!("{m:?}")).collect();
            d.with_help(format!("use {}", quoted(&each).replace(" and ", " or ")))
        }
    }
}

/// Why a literal given as a `Url` is not one: `None` when it is fine or
/// when no `Url` is expected.
pub(super) fn url_problem(text: &str, expected: &Type) -> Option<String> {
    if *expected.unwrap_optional() != Type::Url {
        return None;
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Some("no scheme: a URL starts with `https://` or another `scheme://`".into());
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Some(format!("`{scheme}` is not a URL scheme"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() && scheme != "file" {
        return Some("the URL has no host".into());
    }
    if text.chars().any(char::is_whitespace) {
        return Some("a URL cannot contain spaces".into());
    }
    None
}

/// E0112/E0114/E0115 for a method called with the wrong arguments:
/// methods take positional arguments only, exactly `params` of them.
fn method_arity(name: &ast::Ident, params: &[Type], args: &[Arg]) -> Option<Diagnostic> {
    let m = &name.name;
    let wanted = match params {
        [] => format!("`.{m}()` takes no arguments"),
        [p] => format!("`.{m}()` takes 1 argument (a `{p}`)"),
        _ => format!("`.{m}()` takes {} arguments", params.len()),
    };
    if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
        return Some(
            Diagnostic::new(
                Code::UnknownArgument,
                named.span,
                format!("`.{m}()` has no parameter `{named}`"),
            )
            .with_label("methods take positional arguments only")
            .with_help(format!("{wanted}: remove `{named}:`")),
        );
    }
    if let Some(extra) = args.get(params.len()) {
        let span = extra.span.to(args.last().map_or(extra.span, |a| a.span));
        let n = args.len();
        return Some(
            Diagnostic::new(Code::TooManyArguments, span, format!("{wanted}, {n} given"))
                .with_label("extra argument")
                .with_help("remove it"),
        );
    }
    (args.len() < params.len()).then(|| {
        Diagnostic::new(
            Code::MissingArgument,
            name.span,
            format!("{wanted}, {} given", args.len()),
        )
        .with_label("missing argument")
        .with_help(match m.as_str() {
            "join" => "give the separator, e.g. `.join(\",\")`".to_string(),
            "split" => "give the separator, e.g. `.split(\",\")`".to_string(),
            _ => format!(
                "pass the `{}` to look for",
                params.first().map_or(String::new(), Type::to_string)
            ),
        })
    })
}

/// "`a`, `b` and `c`".
fn quoted(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match q.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

const SQL_HELP: &str =
    "pass values in `args: [...]` and refer to them as $1, $2 (PostgreSQL) or ? (MySQL, SQLite)";

/// The placeholders of an SQL text, outside quotes and comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    /// `$1` … `$N`: the highest N (0 when there are none).
    Numbered(usize),
    /// How many `?` (in a text without `$N`: with `$N`, a `?` is
    /// PostgreSQL's JSON operator).
    Question(usize),
}

fn sql_placeholders(text: &str) -> Placeholders {
    let chars: Vec<char> = text.chars().collect();
    let (mut highest, mut questions) = (0usize, 0usize);
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            q @ ('\'' | '"' | '`') => {
                i += 1;
                while i < chars.len() && chars[i] != q {
                    i += 1;
                }
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 1;
            }
            '?' => questions += 1,
            '$' => {
                let digits: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                if let Ok(n) = digits.parse::<usize>() {
                    highest = highest.max(n);
                }
                i += digits.len();
            }
            _ => {}
        }
        i += 1;
    }
    if highest == 0 && questions > 0 {
        Placeholders::Question(questions)
    } else {
        Placeholders::Numbered(highest)
    }
}
