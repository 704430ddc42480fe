//! Who may call an endpoint (LANGUAGE.md §11): the `verify:` and `auth:`
//! options of webhook and sync triggers, and warning W0010 for an endpoint
//! with neither.
//!
//! Each scheme is described once, in [`VERIFY_SCHEMES`] and
//! [`AUTH_SCHEMES`]: its arguments and what each takes. The checker reads
//! those tables; `facts` reads the validated calls.

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, ArgValue, ExprKind, StrPart};

use super::types::Type;
use super::Checker;

/// What one argument of a scheme takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A header name, as a string literal.
    Header,
    /// A `Secret` (usually `config.x`), or a list of them: any one is
    /// accepted (rotation).
    Secrets,
    /// A `String` (a config entry or a literal).
    Text,
    /// A duration literal (`5m`).
    Duration,
}

/// One argument of a scheme.
pub struct SchemeArg {
    pub name: &'static str,
    pub kind: ArgKind,
    pub required: bool,
}

/// A `verify:` or `auth:` scheme: `name(arg: ..., ...)`.
pub struct Scheme {
    pub name: &'static str,
    pub args: &'static [SchemeArg],
    /// The argument a lone positional value stands for (`bearer(config.t)`).
    pub positional: Option<&'static str>,
    /// A complete example, for help texts.
    pub example: &'static str,
}

const fn arg(name: &'static str, kind: ArgKind, required: bool) -> SchemeArg {
    SchemeArg {
        name,
        kind,
        required,
    }
}

pub const VERIFY_SCHEMES: &[Scheme] = &[
    Scheme {
        name: "hmac_sha256",
        args: &[
            arg("header", ArgKind::Header, true),
            arg("secret", ArgKind::Secrets, true),
        ],
        positional: None,
        example: "verify: hmac_sha256(header: \"X-Signature\", secret: config.webhook_secret)",
    },
    Scheme {
        name: "stripe",
        args: &[
            arg("secret", ArgKind::Secrets, true),
            arg("tolerance", ArgKind::Duration, false),
        ],
        positional: None,
        example: "verify: stripe(secret: config.stripe_secret)",
    },
    Scheme {
        name: "standard_webhooks",
        args: &[
            arg("secret", ArgKind::Secrets, true),
            arg("tolerance", ArgKind::Duration, false),
        ],
        positional: None,
        example: "verify: standard_webhooks(secret: config.webhook_secret)",
    },
];

pub const AUTH_SCHEMES: &[Scheme] = &[
    Scheme {
        name: "bearer",
        args: &[arg("token", ArgKind::Secrets, true)],
        positional: Some("token"),
        example: "auth: bearer(config.api_token)",
    },
    Scheme {
        name: "basic",
        args: &[
            arg("user", ArgKind::Text, true),
            arg("password", ArgKind::Secrets, true),
        ],
        positional: None,
        example: "auth: basic(user: config.api_user, password: config.api_password)",
    },
    Scheme {
        name: "api_key",
        args: &[
            arg("header", ArgKind::Header, true),
            arg("key", ArgKind::Secrets, true),
        ],
        positional: None,
        example: "auth: api_key(header: \"X-Api-Key\", key: config.api_key)",
    },
];

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The argument `name` of a scheme call: named, or the lone positional
/// value the scheme allows.
pub fn scheme_arg<'e>(scheme: &Scheme, args: &'e [ast::Arg], name: &str) -> Option<&'e ast::Expr> {
    args.iter().find_map(|a| {
        let named = match &a.name {
            Some(n) => n.name == name,
            None => scheme.positional == Some(name),
        };
        match &a.value {
            ArgValue::Expr(v) if named => Some(v),
            _ => None,
        }
    })
}

/// The scheme a `verify:`/`auth:` value calls, if it calls a known one.
pub fn scheme_of<'e>(
    schemes: &'static [Scheme],
    e: &'e ast::Expr,
) -> Option<(&'static Scheme, &'e [ast::Arg])> {
    let ExprKind::Call { callee, args } = &e.kind else {
        return None;
    };
    let ExprKind::Name(n) = &callee.kind else {
        return None;
    };
    let scheme = schemes.iter().find(|s| s.name == n.name)?;
    Some((scheme, args))
}

/// Whether an `auth:` value is `none`.
pub fn is_auth_none(e: &ast::Expr) -> bool {
    matches!(&e.kind, ExprKind::Name(n) if n.name == "none")
}

impl Checker<'_> {
    /// `verify:` and `auth:` of a webhook or sync trigger, and W0010 when
    /// it has neither.
    pub(super) fn caller_options(&mut self, trigger: &ast::Trigger) {
        let mut guarded = false;
        for opt in &trigger.options {
            let option = opt.name.name.as_str();
            if option != "verify" && option != "auth" {
                continue;
            }
            guarded = true;
            let Some(e) = self.option_expr(opt) else {
                continue;
            };
            if option == "auth" && is_auth_none(e) {
                continue;
            }
            let schemes = if option == "verify" {
                VERIFY_SCHEMES
            } else {
                AUTH_SCHEMES
            };
            self.scheme_call(option, schemes, e);
        }
        if !guarded {
            self.public_endpoints.push(trigger.span);
        }
    }

    fn scheme_call(&mut self, option: &str, schemes: &'static [Scheme], e: &ast::Expr) {
        let names: Vec<&str> = schemes.iter().map(|s| s.name).collect();
        let mut choices = names
            .iter()
            .map(|n| format!("`{n}(...)`"))
            .collect::<Vec<_>>();
        if option == "auth" {
            choices.push("`none`".into());
        }
        let help = format!("write e.g. `{}`", schemes[0].example);
        let ExprKind::Call { callee, args } = &e.kind else {
            self.mark_config_refs(e);
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    e.span,
                    format!("`{option}:` takes one of {}", choices.join(", ")),
                )
                .with_help(help),
            );
            return;
        };
        let Some((scheme, _)) = scheme_of(schemes, e) else {
            let given = match &callee.kind {
                ExprKind::Name(n) => n.name.clone(),
                _ => String::new(),
            };
            let mut d = Diagnostic::new(
                Code::BadTriggerOption,
                callee.span,
                format!("unknown `{option}:` scheme `{given}`"),
            )
            .with_label(format!("{option}: {}", choices.join(", ")));
            d = match super::suggest::did_you_mean(&given, names.iter().copied()) {
                Some(s) => d.with_help(format!(
                    "did you mean `{s}`? e.g. `{}`",
                    schemes
                        .iter()
                        .find(|x| x.name == s)
                        .map_or("", |x| x.example)
                )),
                None => d.with_help(help),
            };
            self.error(d);
            self.option_args_loosely(args);
            return;
        };
        self.scheme_args(scheme, callee.span, args);
    }

    fn scheme_args(&mut self, scheme: &Scheme, callee: ast::Span, args: &[ast::Arg]) {
        let help = format!("write e.g. `{}`", scheme.example);
        let mut seen: Vec<&str> = Vec::new();
        let mut unknown = false;
        for a in args {
            let name = match &a.name {
                Some(n) => Some(n.name.as_str()),
                None => scheme.positional,
            };
            let known = name.and_then(|n| scheme.args.iter().find(|s| s.name == n));
            let (Some(spec), ArgValue::Expr(value)) = (known, &a.value) else {
                let span = a.name.as_ref().map_or(a.span, |n| n.span);
                let given = a
                    .name
                    .as_ref()
                    .map_or("a positional argument".to_string(), |n| format!("`{n}:`"));
                let takes: Vec<String> = scheme
                    .args
                    .iter()
                    .map(|s| format!("`{}:`", s.name))
                    .collect();
                self.error(
                    Diagnostic::new(
                        Code::UnknownArgument,
                        span,
                        format!("`{}` takes {}, not {given}", scheme.name, and_list(&takes)),
                    )
                    .with_label("unknown argument")
                    .with_help(help.clone()),
                );
                self.option_args_loosely(std::slice::from_ref(a));
                unknown = true;
                continue;
            };
            seen.push(spec.name);
            self.scheme_arg_value(spec, value);
        }
        let missing: Vec<String> = scheme
            .args
            .iter()
            .filter(|s| s.required && !seen.contains(&s.name))
            .map(|s| format!("`{}:`", s.name))
            .collect();
        // After an unknown argument, which is likely the missing one
        // misspelt, one error says enough.
        if !missing.is_empty() && !unknown {
            let missing = and_list(&missing);
            self.error(
                Diagnostic::new(
                    Code::MissingArgument,
                    callee,
                    format!("`{}` is missing {missing}", scheme.name),
                )
                .with_label(format!("needs {missing}"))
                .with_help(help),
            );
        }
    }

    fn scheme_arg_value(&mut self, spec: &SchemeArg, value: &ast::Expr) {
        let name = spec.name;
        match spec.kind {
            ArgKind::Header => {
                let literal = matches!(&value.kind, ExprKind::Str(parts)
                    if parts.iter().all(|p| matches!(p, StrPart::Lit(_))));
                if !literal {
                    self.mark_config_refs(value);
                    self.error(Diagnostic::new(
                        Code::BadTriggerOption,
                        value.span,
                        format!("`{name}:` must be a string literal"),
                    ));
                }
            }
            ArgKind::Secrets => {
                let help = format!(
                    "pass a config entry, e.g. `{name}: config.{name}`, or a list of them to accept any (rotation): `[config.new, config.old]`"
                );
                match &value.kind {
                    ExprKind::List(items) if !items.is_empty() => {
                        for item in items {
                            self.option_value(name, item, &Type::Secret, &help);
                        }
                    }
                    _ => self.option_value(name, value, &Type::Secret, &help),
                }
            }
            ArgKind::Text => self.option_value(name, value, &Type::String, ""),
            ArgKind::Duration => {
                if !matches!(value.kind, ExprKind::Duration(ms) if ms > 0) {
                    self.mark_config_refs(value);
                    self.error(
                        Diagnostic::new(
                            Code::BadTriggerOption,
                            value.span,
                            format!("`{name}:` takes a positive duration"),
                        )
                        .with_help(format!("write e.g. `{name}: 5m`")),
                    );
                }
            }
        }
    }

    /// W0010 for each webhook or sync trigger with neither `verify:` nor
    /// `auth:`, reported only once the program has no error: who may call
    /// an endpoint matters when it is about to be deployed, and the
    /// warning would only crowd the errors before then.
    pub(super) fn warn_public_endpoints(&mut self) {
        if self.diags.iter().any(|d| d.is_error()) {
            return;
        }
        for span in std::mem::take(&mut self.public_endpoints) {
            self.diags.push(
                Diagnostic::new(
                    Code::PublicEndpoint,
                    span,
                    "anyone who can reach this endpoint can start this flow",
                )
                .with_label("neither `verify:` nor `auth:`")
                .with_help(
                    "add `auth: bearer(config.api_token)` (or `basic`, `api_key`), a signature check such as `verify: hmac_sha256(...)`, or `auth: none` if it is meant to be public",
                ),
            );
        }
    }
}
