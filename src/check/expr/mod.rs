//! Type inference and checking of expressions (LANGUAGE.md §7).
//!
//! Checking is bidirectional: `check_expr(e, expected)` passes the expected
//! type down, so record literals check field by field against a named type,
//! string literals against a literal union and `headers: { ... }` may hold
//! secrets. `expect` adds the mismatch and secret-leak diagnostics.
//!
//! This file dispatches over the expression kinds and checks literals,
//! lists, records and `if`; the other kinds have a file each: [`names`],
//! [`fields`] (and indexing), [`calls`] (stdlib functions and built-ins,
//! arguments), [`sql`] (the SQL-literal rules), [`methods`] (on lists and
//! strings), [`operators`] (and `as`) and [`patterns`] (`match`,
//! exhaustiveness).

use std::collections::BTreeSet;

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Expr, ExprKind, StrPart};

use super::suggest::did_you_mean;
use super::types::{join, Type};
use super::Checker;

mod calls;
mod fields;
mod methods;
mod names;
mod operators;
mod patterns;
mod sql;

/// Names that are values in every flow, besides locals.
const AMBIENT: &[&str] = &["trigger", "config", "env", "error"];

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

/// Would converting `from` to `to` put a secret where it can be printed?
pub(super) fn leaks(from: &Type, to: &Type) -> bool {
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

/// "`a`, `b` and `c`".
fn quoted(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match q.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
