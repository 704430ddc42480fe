//! The SQL-literal rules of `sql.query` / `sql.execute`: the statement is
//! a string literal without interpolation (E0410) and its placeholders
//! match the `args:` list (E0411).

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Arg, ArgValue, Expr, ExprKind};

use crate::check::types::Type;
use crate::check::Checker;

impl Checker<'_> {
    /// `sql.query` / `sql.execute`: the statement is a string literal
    /// without interpolation (E0410), so values can only arrive through
    /// `args:`; with a list literal for `args:`, the placeholders of the
    /// statement must match it (E0411). `sql.query`'s `as:` is a list.
    pub(super) fn check_sql_call(&mut self, qualified: &str, args: &[Arg], type_arg: &Type) {
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
