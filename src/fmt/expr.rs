//! Expressions and types: flat when they fit, else broken at their
//! brackets (one argument, entry or element per line, trailing commas).

use super::flat::lambda_params;
use super::printer::Printer;
use crate::syntax::ast::*;

impl Printer<'_> {
    /// Prints `e`, leaving `trail` columns for what follows on its line.
    pub(super) fn expr(&mut self, e: &Expr, trail: usize) {
        self.mid(e.span.start);
        if !self.has_comments(e.span) {
            if let Some(flat) = self.flat_expr(e) {
                if self.fits(&flat, trail) {
                    self.write(&flat);
                    self.done(e.span.end);
                    return;
                }
            }
        }
        let paren = self.parenthesized(e);
        if paren {
            self.write("(");
        }
        self.broken_expr(e, trail + usize::from(paren));
        if paren {
            self.write(")");
        }
        self.done(e.span.end);
    }

    fn broken_expr(&mut self, e: &Expr, trail: usize) {
        match &e.kind {
            ExprKind::Null => self.write("null"),
            ExprKind::Bool(b) => self.write(if *b { "true" } else { "false" }),
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Duration(_) => {
                let text = self.number_text(e);
                self.write(&text);
            }
            ExprKind::Name(name) => self.write(&name.name),
            ExprKind::Str(parts) => match self.flat_string(e, parts) {
                Some(text) if !self.has_comments(e.span) => self.write(&text),
                _ => self.verbatim_string(e),
            },
            ExprKind::List(items) => {
                let open = self.bare_start(e.span.start);
                let close = self.match_close(open).unwrap_or(e.span.end);
                self.open("[", open);
                for item in items {
                    self.line(item.span.start, false);
                    self.expr(item, 1);
                    self.write(",");
                }
                self.close(close, "]");
            }
            ExprKind::Record(entries) => {
                let open = self.bare_start(e.span.start);
                let close = self.match_close(open).unwrap_or(e.span.end);
                self.record_entries(entries, open, close);
            }
            ExprKind::Field {
                target,
                name,
                optional,
            } => {
                self.expr(target, name.name.len() + 2 + trail);
                self.write(if *optional { "?." } else { "." });
                self.write(&name.name);
            }
            ExprKind::Index { target, index } => {
                self.expr(target, 1);
                self.write("[");
                self.expr(index, 1 + trail);
                self.write("]");
            }
            ExprKind::Call { callee, args } => {
                self.expr(callee, 1);
                let open = self.skip_trivia(callee.span.end);
                let close = self.match_close(open).unwrap_or(e.span.end);
                match self.overflow(args, open, close) {
                    Some((head, last)) => {
                        // `f(a, b, {` ... `})`: the last argument opens on
                        // the call's line.
                        self.write("(");
                        self.write(&head);
                        self.done(last.span.start);
                        self.expr(last, 1 + trail);
                        self.write(")");
                        self.done(close + 1);
                    }
                    None => self.call_args(args, open, close),
                }
            }
            ExprKind::Lambda { params, body } => {
                self.write(&lambda_params(params));
                self.write(" => ");
                self.expr(body, trail);
            }
            ExprKind::Unary { op, expr } => {
                self.write(match op {
                    UnaryOp::Neg => "-",
                    UnaryOp::Not => "not ",
                });
                self.expr(expr, trail);
            }
            ExprKind::Binary { op, lhs, rhs } => {
                self.expr(lhs, op.symbol().len() + 1);
                self.write(" ");
                self.write(op.symbol());
                self.write(" ");
                self.expr(rhs, trail);
            }
            ExprKind::As { expr, ty } => {
                self.expr(expr, 3);
                self.write(" as ");
                self.type_expr(ty, trail);
            }
            ExprKind::If {
                branches,
                otherwise,
            } => {
                // The `{` of each value: after its condition, or for the
                // last `else`, after the `else` that follows the `}` before.
                let mut opens: Vec<usize> = branches
                    .iter()
                    .map(|(cond, _)| self.skip_trivia(cond.span.end))
                    .collect();
                if otherwise.is_some() {
                    let last_open = opens.last().copied().unwrap_or(e.span.start);
                    let last_close = self.match_close(last_open).unwrap_or(last_open);
                    let else_kw = self.skip_trivia(last_close + 1);
                    opens.push(self.skip_trivia(else_kw + "else".len()));
                }
                for (i, (cond, value)) in branches.iter().enumerate() {
                    self.write(if i == 0 { "if " } else { " else if " });
                    self.expr(cond, 2);
                    self.write(" ");
                    let open = opens.get(i).copied().unwrap_or(value.span.start);
                    let next = match branches.get(i + 1) {
                        Some((next_cond, _)) => next_cond.span.start,
                        None => opens.get(i + 1).copied().unwrap_or(0),
                    };
                    self.braced_value(value, open, next);
                }
                if let Some(value) = otherwise {
                    self.write(" else ");
                    let open = opens.last().copied().unwrap_or(value.span.start);
                    self.braced_value(value, open, 0);
                }
            }
            ExprKind::Match { scrutinee, arms } => {
                self.write("match ");
                self.expr(scrutinee, 2);
                self.write(" ");
                let open = self.skip_trivia(scrutinee.span.end);
                let close = self.match_close(open).unwrap_or(e.span.end);
                self.open("{", open);
                for arm in arms {
                    self.line(arm.span.start, false);
                    self.patterns(&arm.patterns);
                    self.write(" => ");
                    self.expr(&arm.body, 0);
                    self.done(arm.span.end);
                }
                self.close(close, "}");
            }
        }
    }

    /// `{ value }` of an `if` expression, on lines of its own; `open` is the
    /// source offset of its `{`; comments up to `flush_to` go before `}`.
    fn braced_value(&mut self, value: &Expr, open: usize, flush_to: usize) {
        let close = self.match_close(open).unwrap_or(value.span.end);
        self.open("{", open);
        self.line(value.span.start, false);
        self.expr(value, 0);
        self.close_after_comments(flush_to, close, "}");
    }

    /// `{ key: value, ... }` broken; `open` and `close` are the source
    /// offsets of the braces.
    pub(super) fn record_entries(&mut self, entries: &[RecordEntry], open: usize, close: usize) {
        self.open("{", open);
        for entry in entries {
            self.line(entry.span.start, false);
            let key = self.record_key(&entry.key);
            self.write(&key);
            self.write(": ");
            self.expr(&entry.value, 1);
            self.write(",");
            self.done(entry.span.end);
        }
        self.close(close, "}");
    }

    /// Can this call's last argument open on the call's line, the others
    /// flat before it? Only for a record, a list or such a call, and with no
    /// comment outside that argument. Returns the text before the last
    /// argument (`a, b, json: `) and the argument.
    fn overflow<'a>(
        &self,
        args: &'a [Arg],
        open: usize,
        close: usize,
    ) -> Option<(String, &'a Expr)> {
        let (last, init) = args.split_last()?;
        let ArgValue::Expr(value) = &last.value else {
            return None;
        };
        if self.has_comments(Span::new(open, value.span.start))
            || self.has_comments(Span::new(value.span.end, close))
        {
            return None;
        }
        let mut head = String::new();
        for arg in init {
            head.push_str(&self.flat_arg(arg)?);
            head.push_str(", ");
        }
        if let Some(name) = &last.name {
            head.push_str(&name.name);
            head.push_str(": ");
        }
        let first_line = self.overflow_first_line(value)?;
        // `(` + head + the value's first line must fit.
        self.fits(&head, 1 + first_line).then_some((head, value))
    }

    /// The width of the first line of `e` printed as an overflowing last
    /// argument, if it can be one.
    fn overflow_first_line(&self, e: &Expr) -> Option<usize> {
        if self.parenthesized(e) {
            return None;
        }
        match &e.kind {
            ExprKind::Record(entries) if !entries.is_empty() => Some(1),
            ExprKind::List(items) if !items.is_empty() => Some(1),
            ExprKind::Call { callee, args } => {
                let open = self.skip_trivia(callee.span.end);
                let close = self.match_close(open)?;
                let (head, last) = self.overflow(args, open, close)?;
                let callee = self.flat_expr(callee)?;
                Some(
                    callee.chars().count()
                        + 1
                        + head.chars().count()
                        + self.overflow_first_line(last)?,
                )
            }
            _ => None,
        }
    }

    fn call_args(&mut self, args: &[Arg], open: usize, close: usize) {
        // `()` never breaks, whatever is around it.
        if args.is_empty() && !self.has_comments(Span::new(open, close + 1)) {
            self.write("()");
            self.done(close + 1);
            return;
        }
        self.open("(", open);
        for arg in args {
            self.line(arg.span.start, false);
            if let Some(name) = &arg.name {
                self.write(&name.name);
                self.write(": ");
            }
            match &arg.value {
                ArgValue::Expr(e) => self.expr(e, 1),
                ArgValue::Type(t) => self.type_expr(t, 1),
            }
            self.write(",");
            self.done(arg.span.end);
        }
        self.close(close, ")");
    }

    /// A string that cannot be flat (an interpolation holds a comment or a
    /// `match`): its source text as is.
    fn verbatim_string(&mut self, e: &Expr) {
        let start = self.bare_start(e.span.start);
        let text = self.string_at(start);
        let span = Span::new(start, start + text.len());
        self.skip_comments_in(span);
        self.write(text);
        self.done(span.end);
    }

    pub(super) fn patterns(&mut self, patterns: &[Pattern]) {
        for (i, pattern) in patterns.iter().enumerate() {
            if i > 0 {
                self.write(" | ");
            }
            let text = match &pattern.kind {
                PatternKind::Wildcard => "_".to_string(),
                PatternKind::Str(_) => self.string_at(pattern.span.start).to_string(),
                PatternKind::Int(_) | PatternKind::Float(_) => {
                    self.number_at(pattern.span.start).to_string()
                }
                PatternKind::Bool(b) => b.to_string(),
                PatternKind::Null => "null".to_string(),
            };
            self.write(&text);
            self.done(pattern.span.end);
        }
    }

    // ------------------------------------------------------------ types

    pub(super) fn type_expr(&mut self, t: &TypeExpr, trail: usize) {
        self.mid(t.span.start);
        if !self.has_comments(t.span) {
            if let Some(flat) = self.flat_type(t) {
                if self.fits(&flat, trail) {
                    self.write(&flat);
                    self.done(t.span.end);
                    return;
                }
            }
        }
        let paren = self.type_parenthesized(t);
        if paren {
            self.write("(");
        }
        match &t.kind {
            TypeExprKind::Record(fields) => {
                let open = self.bare_start(t.span.start);
                let close = self.match_close(open).unwrap_or(t.span.end);
                self.fields(fields, open, close);
            }
            TypeExprKind::List(inner) => {
                let open = self.bare_start(t.span.start);
                let close = self.match_close(open).unwrap_or(t.span.end);
                self.open("[", open);
                self.line(inner.span.start, false);
                self.type_expr(inner, 0);
                self.close(close, "]");
            }
            TypeExprKind::Optional(inner) => {
                self.type_expr(inner, 1 + trail);
                self.write("?");
            }
            TypeExprKind::Named { name, args } if !args.is_empty() => {
                self.write(&name.name);
                self.write("<");
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        self.write(", ");
                    }
                    self.type_expr(arg, 1);
                }
                self.write(">");
            }
            TypeExprKind::Named { .. } | TypeExprKind::LitUnion(_) => {
                // No line break inside these; comments move after them.
                let flat = self.flat_type(t).unwrap_or_default();
                let flat = if paren {
                    flat.get(1..flat.len().saturating_sub(1))
                        .unwrap_or_default()
                        .to_string()
                } else {
                    flat
                };
                self.write(&flat);
            }
        }
        if paren {
            self.write(")");
        }
        self.done(t.span.end);
    }

    /// Record fields, one per line (type declarations and record types);
    /// `open` and `close` are the source offsets of `{` and `}`.
    pub(super) fn fields(&mut self, fields: &[Field], open: usize, close: usize) {
        if fields.is_empty() && !self.has_comments(Span::new(open, close)) {
            self.write("{}");
            self.done(close + 1);
            return;
        }
        self.open("{", open);
        for field in fields {
            self.line(field.span.start, false);
            if let Some(rename) = &field.rename {
                let text = format!("@rename({})", self.str_lit(rename));
                self.write(&text);
                self.done(rename.span.end);
                self.line(field.name.span.start, false);
            }
            self.write(&field.name.name);
            self.write(": ");
            self.type_expr(&field.ty, 0);
            self.done(field.span.end);
        }
        self.close(close, "}");
    }
}
