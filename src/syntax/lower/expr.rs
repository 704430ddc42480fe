//! Lowering of expressions: the Pratt fold of the flat `expr` sequence,
//! primaries, postfix operators and call arguments.

use std::sync::LazyLock;

use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};

use super::{inner, span_of, unexpected, Lowerer};
use crate::syntax::ast::*;
use crate::syntax::parser::Rule;

/// Operator precedence, lowest first (see the `expr` section of the
/// grammar).
static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::op_or, Assoc::Left))
        .op(Op::infix(Rule::op_and, Assoc::Left))
        .op(Op::infix(Rule::op_eq, Assoc::Left)
            | Op::infix(Rule::op_ne, Assoc::Left)
            | Op::infix(Rule::op_lt, Assoc::Left)
            | Op::infix(Rule::op_le, Assoc::Left)
            | Op::infix(Rule::op_gt, Assoc::Left)
            | Op::infix(Rule::op_ge, Assoc::Left))
        .op(Op::infix(Rule::op_coalesce, Assoc::Right))
        .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
        .op(Op::infix(Rule::op_mul, Assoc::Left)
            | Op::infix(Rule::op_div, Assoc::Left)
            | Op::infix(Rule::op_rem, Assoc::Left))
        .op(Op::prefix(Rule::op_neg) | Op::prefix(Rule::op_not))
        .op(Op::postfix(Rule::as_cast))
        .op(Op::postfix(Rule::field_access)
            | Op::postfix(Rule::opt_field_access)
            | Op::postfix(Rule::index)
            | Op::postfix(Rule::call_args))
});

fn binary_op(rule: Rule) -> BinaryOp {
    match rule {
        Rule::op_or => BinaryOp::Or,
        Rule::op_and => BinaryOp::And,
        Rule::op_eq => BinaryOp::Eq,
        Rule::op_ne => BinaryOp::Ne,
        Rule::op_lt => BinaryOp::Lt,
        Rule::op_le => BinaryOp::Le,
        Rule::op_gt => BinaryOp::Gt,
        Rule::op_ge => BinaryOp::Ge,
        Rule::op_coalesce => BinaryOp::Coalesce,
        Rule::op_add => BinaryOp::Add,
        Rule::op_sub => BinaryOp::Sub,
        Rule::op_mul => BinaryOp::Mul,
        Rule::op_div => BinaryOp::Div,
        Rule::op_rem => BinaryOp::Rem,
        rule => unexpected(rule),
    }
}

impl Lowerer<'_> {
    pub(in crate::syntax) fn lower_expr(&self, pair: Pair<'_, Rule>) -> Expr {
        let span = span_of(&pair);
        let items: Vec<Pair<'_, Rule>> = pair.into_inner().collect();
        // The tree is at most as deep as the operators in the sequence.
        let operators = items.len().saturating_sub(1);
        let fallback = || Expr {
            kind: ExprKind::Null,
            span,
        };
        self.nested(operators + 1, span, fallback, || {
            PRATT
                .map_primary(|primary| self.lower_primary(primary))
                .map_prefix(|op, operand| {
                    let op_kind = match op.as_rule() {
                        Rule::op_neg => UnaryOp::Neg,
                        Rule::op_not => UnaryOp::Not,
                        rule => unexpected(rule),
                    };
                    Expr {
                        span: span_of(&op).to(operand.span),
                        kind: ExprKind::Unary {
                            op: op_kind,
                            expr: Box::new(operand),
                        },
                    }
                })
                .map_postfix(|lhs, op| self.lower_postfix(lhs, op))
                .map_infix(|lhs, op, rhs| Expr {
                    span: lhs.span.to(rhs.span),
                    kind: ExprKind::Binary {
                        op: binary_op(op.as_rule()),
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                })
                .parse(items.into_iter())
        })
    }

    /// Applies one postfix operator (`as T`, `.name`, `?.name`, `[i]`,
    /// `(args)`) to `lhs`.
    pub(super) fn lower_postfix(&self, lhs: Expr, op: Pair<'_, Rule>) -> Expr {
        let span = lhs.span.to(span_of(&op));
        let rule = op.as_rule();
        let kind = match rule {
            Rule::as_cast => ExprKind::As {
                expr: Box::new(lhs),
                ty: self.lower_type_expr(inner(op).required()),
            },
            Rule::field_access | Rule::opt_field_access => ExprKind::Field {
                target: Box::new(lhs),
                name: self.lower_ident(inner(op).required()),
                optional: rule == Rule::opt_field_access,
            },
            Rule::index => ExprKind::Index {
                target: Box::new(lhs),
                index: Box::new(self.lower_expr(inner(op).required())),
            },
            Rule::call_args => ExprKind::Call {
                callee: Box::new(lhs),
                args: self.lower_call_args(op),
            },
            rule => unexpected(rule),
        };
        Expr { kind, span }
    }

    fn lower_call_args(&self, pair: Pair<'_, Rule>) -> Vec<Arg> {
        inner(pair).map(|a| self.lower_arg(a)).collect()
    }

    fn lower_arg(&self, pair: Pair<'_, Rule>) -> Arg {
        let span = span_of(&pair);
        let arg = inner(pair).required();
        match arg.as_rule() {
            Rule::type_arg => self.lower_type_arg(arg),
            Rule::named_arg => {
                let mut walk = inner(arg);
                let name = self.lower_ident(walk.required());
                let value = walk.required();
                let value = match value.as_rule() {
                    Rule::lambda => self.lower_lambda(value),
                    Rule::expr => self.lower_expr(value),
                    rule => unexpected(rule),
                };
                Arg {
                    name: Some(name),
                    value: ArgValue::Expr(value),
                    span,
                }
            }
            Rule::lambda => Arg {
                name: None,
                value: ArgValue::Expr(self.lower_lambda(arg)),
                span,
            },
            Rule::expr => Arg {
                name: None,
                value: ArgValue::Expr(self.lower_expr(arg)),
                span,
            },
            rule => unexpected(rule),
        }
    }

    /// `as: Type`. The keyword pair is the argument's name.
    fn lower_type_arg(&self, pair: Pair<'_, Rule>) -> Arg {
        let span = span_of(&pair);
        let mut name = None;
        let mut ty = None;
        for child in pair.into_inner() {
            match child.as_rule() {
                Rule::kw_as => {
                    name = Some(Ident {
                        name: "as".to_string(),
                        span: span_of(&child),
                    })
                }
                Rule::colon => {}
                Rule::type_expr => ty = Some(self.lower_type_expr(child)),
                rule => unexpected(rule),
            }
        }
        let Some(ty) = ty else {
            unexpected(Rule::type_arg)
        };
        Arg {
            name,
            value: ArgValue::Type(ty),
            span,
        }
    }

    fn lower_lambda(&self, pair: Pair<'_, Rule>) -> Expr {
        let span = span_of(&pair);
        let mut params = Vec::new();
        let mut body = None;
        for child in inner(pair) {
            match child.as_rule() {
                Rule::ident => params.push(self.lower_binding(child)),
                Rule::expr => body = Some(self.lower_expr(child)),
                rule => unexpected(rule),
            }
        }
        let Some(body) = body else {
            unexpected(Rule::lambda)
        };
        Expr {
            kind: ExprKind::Lambda {
                params,
                body: Box::new(body),
            },
            span,
        }
    }

    fn lower_primary(&self, pair: Pair<'_, Rule>) -> Expr {
        let primary = match pair.into_inner().next() {
            Some(primary) => primary,
            None => unexpected(Rule::primary),
        };
        let span = span_of(&primary);
        let kind = match primary.as_rule() {
            Rule::float => ExprKind::Float(self.parse_float(primary.as_str(), span)),
            Rule::duration => ExprKind::Duration(self.lower_duration_lit(primary).millis),
            Rule::int => ExprKind::Int(self.parse_int(primary.as_str(), span)),
            Rule::string => ExprKind::Str(self.lower_string(primary)),
            Rule::kw_true => ExprKind::Bool(true),
            Rule::kw_false => ExprKind::Bool(false),
            Rule::kw_null => ExprKind::Null,
            Rule::if_expr => self.lower_if_expr(primary),
            Rule::match_expr => self.lower_match_expr(primary),
            Rule::list => ExprKind::List(inner(primary).map(|e| self.lower_expr(e)).collect()),
            Rule::record => return self.lower_record(primary),
            Rule::paren => {
                // No node for parentheses: the inner expression, spanning them.
                let mut expr = self.lower_expr(inner(primary).required());
                expr.span = span;
                return expr;
            }
            Rule::name => return self.lower_name(primary),
            rule => unexpected(rule),
        };
        Expr { kind, span }
    }

    pub(super) fn lower_name(&self, pair: Pair<'_, Rule>) -> Expr {
        let span = span_of(&pair);
        Expr {
            kind: ExprKind::Name(self.lower_ident(pair)),
            span,
        }
    }

    /// A `record` literal (also the value of `respond ... headers { }`).
    pub(super) fn lower_record(&self, pair: Pair<'_, Rule>) -> Expr {
        let span = span_of(&pair);
        let entries = inner(pair).map(|e| self.lower_record_entry(e)).collect();
        Expr {
            kind: ExprKind::Record(entries),
            span,
        }
    }

    fn lower_record_entry(&self, pair: Pair<'_, Rule>) -> RecordEntry {
        let span = span_of(&pair);
        let mut walk = inner(pair);
        let key = walk.required();
        let key = match key.as_rule() {
            Rule::ident => RecordKey::Ident(self.lower_ident(key)),
            Rule::string => RecordKey::Str(self.lower_str_lit(key)),
            rule => unexpected(rule),
        };
        let value = self.lower_expr(walk.required());
        RecordEntry { key, value, span }
    }

    fn lower_if_expr(&self, pair: Pair<'_, Rule>) -> ExprKind {
        let mut values: Vec<Expr> = inner(pair).map(|e| self.lower_expr(e)).collect();
        // (condition, value) pairs and, with an odd count, a last `else`.
        let otherwise = (values.len() % 2 == 1)
            .then(|| values.pop())
            .flatten()
            .map(Box::new);
        let mut branches = Vec::with_capacity(values.len() / 2);
        let mut values = values.into_iter();
        while let (Some(cond), Some(value)) = (values.next(), values.next()) {
            branches.push((cond, value));
        }
        ExprKind::If {
            branches,
            otherwise,
        }
    }

    fn lower_match_expr(&self, pair: Pair<'_, Rule>) -> ExprKind {
        let mut walk = inner(pair);
        let scrutinee = Box::new(self.lower_expr(walk.required()));
        let arms = walk.map(|a| self.lower_expr_arm(a)).collect();
        ExprKind::Match { scrutinee, arms }
    }

    fn lower_expr_arm(&self, pair: Pair<'_, Rule>) -> ExprArm {
        let span = span_of(&pair);
        let mut patterns = Vec::new();
        let mut body = None;
        for child in inner(pair) {
            match child.as_rule() {
                Rule::pattern => patterns.push(self.lower_pattern(child)),
                Rule::expr => body = Some(self.lower_expr(child)),
                rule => unexpected(rule),
            }
        }
        let Some(body) = body else {
            unexpected(Rule::expr_arm)
        };
        ExprArm {
            patterns,
            body,
            span,
        }
    }
}
