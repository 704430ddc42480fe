//! Lowering of literals: numbers (E0003), durations (E0005) and strings
//! with their escapes (E0002) and interpolations.

use pest::iterators::Pair;

use super::{inner, span_of, unexpected, Lowerer};
use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::*;
use crate::syntax::parser::Rule;

/// Units of a duration literal, in milliseconds. `ms` before `m`.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

impl Lowerer<'_> {
    /// An integer as written (`42`, `-7`, `1_000`); out of range is E0003.
    pub(super) fn parse_int(&self, text: &str, span: Span) -> i64 {
        let digits: String = text.chars().filter(|c| *c != '_').collect();
        digits.parse().unwrap_or_else(|_| {
            self.error(
                Diagnostic::new(
                    Code::NumberOutOfRange,
                    span,
                    format!("the integer `{text}` does not fit in 64 bits"),
                )
                .with_label("out of range")
                .with_help(format!(
                    "integers range from {} to {}",
                    i64::MIN,
                    i64::MAX
                )),
            );
            0
        })
    }

    pub(super) fn parse_float(&self, text: &str, span: Span) -> f64 {
        let digits: String = text.chars().filter(|c| *c != '_').collect();
        match digits.parse::<f64>() {
            Ok(value) if value.is_finite() => value,
            _ => {
                self.error(
                    Diagnostic::new(
                        Code::NumberOutOfRange,
                        span,
                        format!("the number `{text}` is too large"),
                    )
                    .with_label("out of range"),
                );
                0.0
            }
        }
    }

    /// `500ms`, `30s`, `2m`, `1h`, `1d`.
    pub(in crate::syntax) fn lower_duration_lit(&self, pair: Pair<'_, Rule>) -> DurationLit {
        let span = span_of(&pair);
        let text = pair.as_str();
        let millis = self.parse_duration(text, span);
        DurationLit { millis, span }
    }

    fn parse_duration(&self, text: &str, span: Span) -> u64 {
        let Some((unit, per_unit)) = UNITS.iter().copied().find(|(unit, _)| text.ends_with(unit))
        else {
            unexpected(Rule::duration)
        };
        let amount: String = text
            .get(..text.len() - unit.len())
            .unwrap_or_default()
            .chars()
            .filter(|c| *c != '_')
            .collect();
        if amount.contains('.') {
            let mut diag = Diagnostic::new(
                Code::BadDuration,
                span,
                format!("`{text}` is not a whole number of units"),
            )
            .with_label("fractional duration");
            if let Some(millis) = fractional_millis(&amount, per_unit) {
                diag = diag.with_help(format!("write `{millis}ms`"));
            } else {
                diag = diag.with_help("use a smaller unit, such as `ms`");
            }
            self.error(diag);
            return 0;
        }
        match amount
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(per_unit))
        {
            Some(millis) => millis,
            None => {
                self.error(
                    Diagnostic::new(
                        Code::BadDuration,
                        span,
                        format!("the duration `{text}` is too long"),
                    )
                    .with_label("out of range"),
                );
                0
            }
        }
    }

    /// A string that must be constant (paths, cron expressions, env names,
    /// keys, patterns): interpolation is an error here.
    pub(in crate::syntax) fn lower_str_lit(&self, pair: Pair<'_, Rule>) -> StrLit {
        let span = span_of(&pair);
        let parts = self.lower_string(pair);
        let mut value = String::new();
        let mut interpolated = false;
        for part in parts {
            match part {
                StrPart::Lit(text) => value.push_str(&text),
                StrPart::Interp(_) => interpolated = true,
            }
        }
        if interpolated {
            self.error(
                Diagnostic::new(
                    Code::Syntax,
                    span,
                    "interpolation `${...}` is not allowed in this string",
                )
                .with_label("must be a constant string")
                .with_help("write `\\${` for a literal `${`"),
            );
        }
        StrLit { value, span }
    }

    /// A string set at start-up from the config (a files trigger's glob):
    /// constant text and `${config.NAME}`, kept as written in `value` for
    /// the runtime to fill in (`Config::fill`); any other interpolation is
    /// an error.
    pub(in crate::syntax) fn lower_config_template(&self, pair: Pair<'_, Rule>) -> StrLit {
        let span = span_of(&pair);
        let mut value = String::new();
        for part in self.lower_string(pair) {
            match part {
                StrPart::Lit(text) => value.push_str(&text),
                StrPart::Interp(Expr {
                    kind: ExprKind::Field { target, name, optional: false },
                    ..
                }) if matches!(&target.kind, ExprKind::Name(n) if n.name == "config") => {
                    value.push_str(&format!("${{config.{}}}", name.name));
                }
                StrPart::Interp(other) => self.error(
                    Diagnostic::new(
                        Code::Syntax,
                        other.span,
                        "only config entries (`${config.name}`) may be interpolated here",
                    )
                    .with_label("not a config entry")
                    .with_help("a trigger is set up once, at start-up: take the folder from the config, e.g. `\"${config.inbox}/*.csv\"`"),
                ),
            }
        }
        StrLit { value, span }
    }

    /// The parts of a `string`: text with escapes resolved, and
    /// interpolated expressions. Adjacent text is merged; `""` has no parts.
    pub(in crate::syntax) fn lower_string(&self, pair: Pair<'_, Rule>) -> Vec<StrPart> {
        let mut parts = Vec::new();
        let mut text = String::new();
        for part in inner(pair) {
            match part.as_rule() {
                Rule::string_text => text.push_str(part.as_str()),
                Rule::escape => {
                    if let Some(c) = self.lower_escape(&part) {
                        text.push(c);
                    }
                }
                Rule::interpolation => {
                    if !text.is_empty() {
                        parts.push(StrPart::Lit(std::mem::take(&mut text)));
                    }
                    parts.push(StrPart::Interp(self.lower_expr(inner(part).required())));
                }
                rule => unexpected(rule),
            }
        }
        if !text.is_empty() {
            parts.push(StrPart::Lit(text));
        }
        parts
    }

    /// `\" \\ \n \t \r \$ \u{HEX}`; anything else is E0002.
    fn lower_escape(&self, pair: &Pair<'_, Rule>) -> Option<char> {
        let text = pair.as_str();
        let span = span_of(pair);
        let body = text.get(1..).unwrap_or_default();
        let simple = match body {
            "\"" => Some('"'),
            "\\" => Some('\\'),
            "n" => Some('\n'),
            "t" => Some('\t'),
            "r" => Some('\r'),
            "$" => Some('$'),
            _ => None,
        };
        if simple.is_some() {
            return simple;
        }
        if let Some(hex) = body.strip_prefix("u{").and_then(|h| h.strip_suffix('}')) {
            let c = (!hex.is_empty() && hex.len() <= 6)
                .then(|| u32::from_str_radix(hex, 16).ok())
                .flatten()
                .and_then(char::from_u32);
            if c.is_none() {
                self.error(
                    Diagnostic::new(
                        Code::InvalidEscape,
                        span,
                        format!("`{text}` is not a valid unicode escape"),
                    )
                    .with_label("invalid unicode escape")
                    .with_help(
                        "write 1 to 6 hexadecimal digits of a unicode scalar value, \
                         such as `\\u{e9}`",
                    ),
                );
            }
            return c;
        }
        let message = if body == "u" {
            "`\\u` must be followed by `{HEX}`".to_string()
        } else {
            format!("unknown escape `{text}`")
        };
        self.error(
            Diagnostic::new(Code::InvalidEscape, span, message)
                .with_label("invalid escape")
                .with_help(
                    "the escapes are `\\\"`, `\\\\`, `\\n`, `\\t`, `\\r`, `\\$` and `\\u{HEX}`",
                ),
        );
        None
    }
}

/// `1.5` of a unit worth `per_unit` ms, as whole milliseconds if exact.
fn fractional_millis(amount: &str, per_unit: u64) -> Option<u64> {
    let (whole, frac) = amount.split_once('.')?;
    let whole: u64 = whole.parse().ok()?;
    let scale = 10u64.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let frac: u64 = frac.parse().ok()?;
    let numerator = whole.checked_mul(scale)?.checked_add(frac)?;
    let total = numerator.checked_mul(per_unit)?;
    (total % scale == 0).then_some(total / scale)
}
