//! `match` expressions: pattern types, unreachable arms and
//! exhaustiveness (shared with `match` statements).

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Expr};
use std::collections::BTreeSet;

use super::{not_in_union, quoted};
use crate::check::types::Type;
use crate::check::Checker;

impl Checker<'_> {
    pub(super) fn match_expr(
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
    pub(in crate::check) fn check_match_patterns(
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
