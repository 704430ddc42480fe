//! Flat (one-line) renderings of expressions, types and simple statements.
//! `None` means the node has no one-line form (a `match`, or a string whose
//! interpolation has none).

use super::printer::Printer;
use crate::syntax::ast::*;

impl Printer<'_> {
    /// Did the author put this expression in parentheses? The parser keeps
    /// no node for them but gives the inner expression their span, so the
    /// span starts with `(` while the expression's first child (if it has
    /// one on the left) starts later.
    pub(super) fn parenthesized(&self, e: &Expr) -> bool {
        if self.byte(e.span.start) != Some(b'(') {
            return false;
        }
        match &e.kind {
            ExprKind::Lambda { .. } => false,
            ExprKind::Binary { lhs: first, .. }
            | ExprKind::Field { target: first, .. }
            | ExprKind::Index { target: first, .. }
            | ExprKind::Call { callee: first, .. }
            | ExprKind::As { expr: first, .. } => first.span.start != e.span.start,
            _ => true,
        }
    }

    /// The same for a type: `("a" | "b")?` is an optional of a
    /// parenthesized union, both spans starting at `(`.
    pub(super) fn type_parenthesized(&self, t: &TypeExpr) -> bool {
        if self.byte(t.span.start) != Some(b'(') {
            return false;
        }
        match &t.kind {
            TypeExprKind::Optional(inner) => inner.span.start != t.span.start,
            _ => true,
        }
    }

    pub(super) fn flat_expr(&self, e: &Expr) -> Option<String> {
        let bare = self.flat_bare(e)?;
        Some(if self.parenthesized(e) {
            format!("({bare})")
        } else {
            bare
        })
    }

    /// A literal number or duration as written.
    pub(super) fn number_text(&self, e: &Expr) -> String {
        self.number_at(self.bare_start(e.span.start)).to_string()
    }

    fn flat_bare(&self, e: &Expr) -> Option<String> {
        Some(match &e.kind {
            ExprKind::Null => "null".to_string(),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Duration(_) => self.number_text(e),
            ExprKind::Str(parts) => self.flat_string(e, parts)?,
            ExprKind::Name(name) => name.name.clone(),
            ExprKind::List(items) => {
                let items: Option<Vec<String>> = items.iter().map(|i| self.flat_expr(i)).collect();
                format!("[{}]", items?.join(", "))
            }
            ExprKind::Record(entries) => {
                if entries.is_empty() {
                    return Some("{}".to_string());
                }
                let entries: Option<Vec<String>> =
                    entries.iter().map(|e| self.flat_entry(e)).collect();
                format!("{{ {} }}", entries?.join(", "))
            }
            ExprKind::Field {
                target,
                name,
                optional,
            } => {
                let dot = if *optional { "?." } else { "." };
                format!("{}{dot}{}", self.flat_expr(target)?, name.name)
            }
            ExprKind::Index { target, index } => {
                format!("{}[{}]", self.flat_expr(target)?, self.flat_expr(index)?)
            }
            ExprKind::Call { callee, args } => {
                let args: Option<Vec<String>> = args.iter().map(|a| self.flat_arg(a)).collect();
                format!("{}({})", self.flat_expr(callee)?, args?.join(", "))
            }
            ExprKind::Lambda { params, body } => {
                format!("{} => {}", lambda_params(params), self.flat_expr(body)?)
            }
            ExprKind::Unary { op, expr } => {
                let op = match op {
                    UnaryOp::Neg => "-",
                    UnaryOp::Not => "not ",
                };
                format!("{op}{}", self.flat_expr(expr)?)
            }
            ExprKind::Binary { op, lhs, rhs } => format!(
                "{} {} {}",
                self.flat_expr(lhs)?,
                op.symbol(),
                self.flat_expr(rhs)?
            ),
            ExprKind::As { expr, ty } => {
                format!("{} as {}", self.flat_expr(expr)?, self.flat_type(ty)?)
            }
            ExprKind::If {
                branches,
                otherwise,
            } => {
                let mut out = String::new();
                for (i, (cond, value)) in branches.iter().enumerate() {
                    let keyword = if i == 0 { "if" } else { " else if" };
                    out.push_str(&format!(
                        "{keyword} {} {{ {} }}",
                        self.flat_expr(cond)?,
                        self.flat_expr(value)?
                    ));
                }
                if let Some(value) = otherwise {
                    out.push_str(&format!(" else {{ {} }}", self.flat_expr(value)?));
                }
                out
            }
            ExprKind::Match { .. } => return None,
        })
    }

    pub(super) fn flat_entry(&self, entry: &RecordEntry) -> Option<String> {
        Some(format!(
            "{}: {}",
            self.record_key(&entry.key),
            self.flat_expr(&entry.value)?
        ))
    }

    pub(super) fn record_key(&self, key: &RecordKey) -> String {
        match key {
            RecordKey::Ident(name) => name.name.clone(),
            RecordKey::Str(lit) => self.str_lit(lit).to_string(),
        }
    }

    pub(super) fn flat_arg(&self, arg: &Arg) -> Option<String> {
        let value = match &arg.value {
            ArgValue::Expr(e) => self.flat_expr(e)?,
            ArgValue::Type(t) => self.flat_type(t)?,
        };
        Some(match &arg.name {
            Some(name) => format!("{}: {value}", name.name),
            None => value,
        })
    }

    /// A constant string as written.
    pub(super) fn str_lit(&self, lit: &StrLit) -> &str {
        self.string_at(self.bare_start(lit.span.start))
    }

    /// A string literal with its interpolations formatted; text and escapes
    /// as written.
    pub(super) fn flat_string(&self, e: &Expr, parts: &[StrPart]) -> Option<String> {
        let start = self.bare_start(e.span.start);
        let text = self.string_at(start);
        let mut interpolations = parts.iter().filter_map(|p| match p {
            StrPart::Interp(e) => Some(e),
            StrPart::Lit(_) => None,
        });
        let mut out = String::with_capacity(text.len());
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    out.push(c);
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                }
                '$' if chars.peek().is_some_and(|(_, next)| *next == '{') => {
                    let interp = interpolations.next()?;
                    out.push_str("${");
                    out.push_str(&self.flat_expr(interp)?);
                    out.push('}');
                    // Resume after the interpolation's closing brace.
                    let close = self.match_close(start + i + 1)?;
                    while chars.peek().is_some_and(|(j, _)| start + j <= close) {
                        chars.next();
                    }
                }
                _ => out.push(c),
            }
        }
        Some(out)
    }

    pub(super) fn flat_type(&self, t: &TypeExpr) -> Option<String> {
        let bare = match &t.kind {
            TypeExprKind::Named { name, args } => {
                if args.is_empty() {
                    name.name.clone()
                } else {
                    let args: Option<Vec<String>> =
                        args.iter().map(|a| self.flat_type(a)).collect();
                    format!("{}<{}>", name.name, args?.join(", "))
                }
            }
            TypeExprKind::List(inner) => format!("[{}]", self.flat_type(inner)?),
            TypeExprKind::Optional(inner) => {
                let inner_text = self.flat_type(inner)?;
                // `T? ?`: two marks need a space (`??` is the operator).
                if inner_text.ends_with('?') {
                    format!("{inner_text} ?")
                } else {
                    format!("{inner_text}?")
                }
            }
            TypeExprKind::LitUnion(members) => members
                .iter()
                .map(|m| self.str_lit(m))
                .collect::<Vec<_>>()
                .join(" | "),
            TypeExprKind::Record(fields) => {
                if fields.is_empty() {
                    "{}".to_string()
                } else {
                    let fields: Option<Vec<String>> =
                        fields.iter().map(|f| self.flat_field(f)).collect();
                    format!("{{ {} }}", fields?.join(", "))
                }
            }
        };
        Some(if self.type_parenthesized(t) {
            format!("({bare})")
        } else {
            bare
        })
    }

    pub(super) fn flat_field(&self, field: &Field) -> Option<String> {
        let rename = field
            .rename
            .as_ref()
            .map(|r| format!("@rename({}) ", self.str_lit(r)))
            .unwrap_or_default();
        Some(format!(
            "{rename}{}: {}",
            field.name.name,
            self.flat_type(&field.ty)?
        ))
    }

    /// The one-line form of a statement that may sit in `{ ... }` on the
    /// line of its `if` or match arm.
    pub(super) fn flat_simple_stmt(&self, s: &Stmt) -> Option<String> {
        Some(match &s.kind {
            StmtKind::Let { name, value } => {
                format!("let {} = {}", name.name, self.flat_expr(value)?)
            }
            StmtKind::Step(step) => format!(
                "step {} = {}{}",
                step.name.name,
                self.flat_expr(&step.call)?,
                self.step_modifiers(step)?
            ),
            StmtKind::Dispatch { flow, arg } => {
                format!("dispatch {}({})", flow.name, self.flat_expr(arg)?)
            }
            StmtKind::Skip(e) => format!("skip {}", self.flat_expr(e)?),
            StmtKind::Fail(e) => format!("fail {}", self.flat_expr(e)?),
            StmtKind::Respond {
                status,
                body,
                headers,
            } => {
                let mut out = format!("respond {}", self.flat_expr(status)?);
                if let Some(body) = body {
                    out.push_str(&format!(", {}", self.flat_expr(body)?));
                }
                if let Some(headers) = headers {
                    out.push_str(&format!(" headers {}", self.flat_expr(headers)?));
                }
                out
            }
            StmtKind::Expr(e) => self.flat_expr(e)?,
            StmtKind::If { .. } | StmtKind::Match { .. } | StmtKind::For { .. } => return None,
        })
    }

    /// ` retry N backoff A..B timeout D`, as far as given.
    pub(super) fn step_modifiers(&self, step: &StepStmt) -> Option<String> {
        let mut out = String::new();
        if let Some(retry) = &step.retry {
            out.push_str(&format!(" retry {}", self.flat_expr(retry)?));
        }
        if let Some((min, max)) = &step.backoff {
            out.push_str(&format!(
                " backoff {}..{}",
                self.number_at(min.span.start),
                self.number_at(max.span.start)
            ));
        }
        if let Some(timeout) = &step.timeout {
            out.push_str(&format!(" timeout {}", self.number_at(timeout.span.start)));
        }
        Some(out)
    }
}

pub(super) fn lambda_params(params: &[Ident]) -> String {
    match params {
        [one] => one.name.clone(),
        _ => format!(
            "({})",
            params
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
