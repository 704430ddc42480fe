//! Unary and binary operators, `??`, and `as` conversions.

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, BinaryOp, Expr, UnaryOp};

use super::{describe, literal_text, not_in_union};
use crate::check::types::{join, Type};
use crate::check::Checker;

impl Checker<'_> {
    pub(super) fn unary(&mut self, op: UnaryOp, expr: &Expr) -> Type {
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

    pub(super) fn binary(&mut self, e: &Expr, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> Type {
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

    pub(super) fn cast(&mut self, expr: &Expr, te: &ast::TypeExpr) -> Type {
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
}
