//! The resolved facts of each flow, for code generation.
//!
//! The checker validates a trigger's options (`trigger`); this module turns
//! the validated options into values with their defaults applied — a
//! [`TriggerFacts`] variant per trigger kind — and works out what else code
//! generation needs to know about a flow (whether it reads its request
//! headers). Codegen reads these facts and never the option lists of the
//! syntax tree, so each default lives here and nowhere else.
//!
//! Options the runtime itself has a default for (`max_body`, a files
//! trigger's `after`) stay `None` when not written: the runtime's default
//! applies.

use std::time::Duration;

use crate::syntax::ast::{self, ArgValue, ExprKind, StrPart, TriggerKind, TypeExpr};
use crate::syntax::visit::for_each_expr;

use super::access::{is_auth_none, scheme_arg, scheme_of, AUTH_SCHEMES, VERIFY_SCHEMES};

/// A sync trigger without `timeout`: how long the caller waits.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// A schedule without `catch_up:` runs a missed tick once on start-up.
pub const DEFAULT_CATCH_UP: bool = true;
/// A files trigger without `batch:` runs once per file.
pub const DEFAULT_BATCH: bool = false;

/// What codegen needs to know about one flow.
#[derive(Debug, Clone)]
pub struct FlowFacts {
    pub trigger: TriggerFacts,
    /// Whether the body or the `on failure` block reads `trigger.headers`
    /// or the whole `trigger` (which may reach its headers): a sync flow
    /// that does not is served without turning its request headers into
    /// JSON.
    pub reads_headers: bool,
}

/// A trigger with its options resolved, one variant per kind.
#[derive(Debug, Clone)]
pub enum TriggerFacts {
    /// A flow without a trigger (only in a program with errors).
    Missing,
    Webhook {
        route: HttpRoute,
        /// The written body type; `None`: `Json`.
        body: Option<TypeExpr>,
        verify: Option<VerifyFacts>,
        auth: Option<AuthFacts>,
        /// `dedupe:`, or the scheme's own id (`webhook-id` for Standard
        /// Webhooks) when not written.
        dedupe: Option<DedupeKey>,
        /// Largest accepted body in bytes; `None`: the runtime's default.
        max_body: Option<i64>,
    },
    Sync {
        route: HttpRoute,
        /// The written body type; `None`: `Json`.
        body: Option<TypeExpr>,
        timeout: Duration,
        /// `fallback: async`: answer 202 when the timeout passes.
        fallback_async: bool,
        verify: Option<VerifyFacts>,
        auth: Option<AuthFacts>,
    },
    Cron {
        expr: String,
        tz: Option<String>,
        catch_up: bool,
    },
    Every {
        period: Duration,
        catch_up: bool,
    },
    Files {
        glob: String,
        every: Duration,
        batch: bool,
        /// `None`: the runtime's default (move into `processed/`).
        after: Option<AfterRun>,
        auth: Option<Setting>,
        /// `via:`: the `aws:` connection of an `s3://` glob.
        via: Option<String>,
        done_marker: Option<String>,
    },
    Email {
        mailbox: String,
        every: Duration,
        url: Option<Setting>,
        after: EmailAfter,
    },
    Subscribe {
        broker: String,
        subject: String,
        url: Option<Setting>,
        /// The written body type; `None`: `Json`.
        body: Option<TypeExpr>,
        group: Option<Setting>,
        durable: Option<Setting>,
        /// `via:`: the `aws:` connection of an SQS queue.
        via: Option<String>,
    },
    Deploy,
    Remove,
    Dispatch {
        /// The name the flow gives its input (`trigger.<param>`).
        param: String,
        input: TypeExpr,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub method: String,
    pub path: String,
}

/// A string option given as `config.key` or as a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Config(String),
    Literal(String),
}

/// `verify:` of a webhook or sync trigger; each secret list holds one or
/// more entries (rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyFacts {
    Hmac {
        header: String,
        secrets: Vec<Setting>,
    },
    Stripe {
        secrets: Vec<Setting>,
        tolerance: Duration,
    },
    StandardWebhooks {
        secrets: Vec<Setting>,
        tolerance: Duration,
    },
}

/// `auth:` of a webhook or sync trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFacts {
    Bearer {
        tokens: Vec<Setting>,
    },
    Basic {
        user: Setting,
        passwords: Vec<Setting>,
    },
    ApiKey {
        header: String,
        keys: Vec<Setting>,
    },
    /// `auth: none`.
    Public,
}

/// `tolerance:` of `stripe(...)` and `standard_webhooks(...)` when not written.
pub const DEFAULT_SIGNATURE_TOLERANCE: Duration = Duration::from_secs(300);

/// `dedupe:` of a webhook.
#[derive(Debug, Clone)]
pub enum DedupeKey {
    /// `header("X-Id")`: the header's name, lowercase (as the runtime
    /// stores request headers).
    Header(String),
    /// Any other expression, evaluated over the trigger value.
    Expr(ast::Expr),
}

/// `after:` of a files trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRun {
    Delete,
    MoveTo(String),
}

/// `after:` of an email trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailAfter {
    /// Move the message into this mailbox (created when missing).
    MoveTo(String),
    /// `seen`: flag it `\Seen` and leave it where it is.
    Seen,
}

/// The mailbox an email trigger moves handled messages into by default.
pub const DEFAULT_EMAIL_AFTER: &str = "Processed";

/// The facts of `flow`, whose trigger the checker has validated.
pub fn flow_facts(flow: &ast::FlowDecl) -> FlowFacts {
    let trigger = flow
        .triggers
        .first()
        .map_or(TriggerFacts::Missing, trigger_facts);
    let mut reads_headers = false;
    let mut visit = |e: &ast::Expr| {
        let reads = reads_trigger_headers(e);
        reads_headers |= reads.unwrap_or(false);
        reads.is_none()
    };
    for_each_expr(&flow.body, &mut visit);
    if let Some(block) = &flow.on_failure {
        for_each_expr(block, &mut visit);
    }
    FlowFacts {
        trigger,
        reads_headers,
    }
}

/// `Some(true)` for `trigger.headers` and a whole `trigger`, `Some(false)`
/// for another field of the trigger (nothing inside to look at), `None`
/// for any other expression.
fn reads_trigger_headers(e: &ast::Expr) -> Option<bool> {
    let is_trigger = |e: &ast::Expr| matches!(&e.kind, ExprKind::Name(n) if n.name == "trigger");
    match &e.kind {
        ExprKind::Field { target, name, .. } if is_trigger(target) => Some(name.name == "headers"),
        _ if is_trigger(e) => Some(true),
        _ => None,
    }
}

fn trigger_facts(trigger: &ast::Trigger) -> TriggerFacts {
    let options = Options(&trigger.options);
    match &trigger.kind {
        TriggerKind::Webhook { method, path } => TriggerFacts::Webhook {
            route: HttpRoute::new(method, path),
            body: options.type_expr("body"),
            verify: options.expr("verify").and_then(verify_facts),
            auth: options.expr("auth").and_then(auth_facts),
            dedupe: options.expr("dedupe").map(dedupe_key).or_else(|| {
                options.expr("verify").and_then(verify_facts).and_then(|v| {
                    matches!(v, VerifyFacts::StandardWebhooks { .. })
                        .then(|| DedupeKey::Header("webhook-id".into()))
                })
            }),
            max_body: options.expr("max_body").and_then(|e| match e.kind {
                ExprKind::Int(n) => Some(n),
                _ => None,
            }),
        },
        TriggerKind::Sync {
            method,
            path,
            timeout,
        } => TriggerFacts::Sync {
            route: HttpRoute::new(method, path),
            body: options.type_expr("body"),
            timeout: timeout.map_or(DEFAULT_SYNC_TIMEOUT, |t| Duration::from_millis(t.millis)),
            fallback_async: options.expr("fallback").is_some(),
            verify: options.expr("verify").and_then(verify_facts),
            auth: options.expr("auth").and_then(auth_facts),
        },
        TriggerKind::Cron { expr, tz } => TriggerFacts::Cron {
            expr: expr.value.clone(),
            tz: tz.as_ref().map(|t| t.value.clone()),
            catch_up: options.bool("catch_up").unwrap_or(DEFAULT_CATCH_UP),
        },
        TriggerKind::Every { period } => TriggerFacts::Every {
            period: Duration::from_millis(period.millis),
            catch_up: options.bool("catch_up").unwrap_or(DEFAULT_CATCH_UP),
        },
        TriggerKind::Files { glob, every } => TriggerFacts::Files {
            glob: glob.value.clone(),
            every: Duration::from_millis(every.millis),
            batch: options.bool("batch").unwrap_or(DEFAULT_BATCH),
            after: options.expr("after").and_then(after_run),
            auth: options.setting("auth"),
            via: options.connection_name("via"),
            done_marker: options.expr("done_marker").and_then(literal_str),
        },
        TriggerKind::Email { mailbox, every } => TriggerFacts::Email {
            mailbox: mailbox.value.clone(),
            every: Duration::from_millis(every.millis),
            url: options.setting("url"),
            after: match options.expr("after") {
                Some(e) if matches!(&e.kind, ExprKind::Name(n) if n.name == "seen") => {
                    EmailAfter::Seen
                }
                e => EmailAfter::MoveTo(
                    e.and_then(literal_str)
                        .unwrap_or_else(|| DEFAULT_EMAIL_AFTER.to_string()),
                ),
            },
        },
        TriggerKind::Subscribe { broker, topic } => TriggerFacts::Subscribe {
            broker: broker.name.clone(),
            subject: topic.value.clone(),
            url: options.setting("url"),
            body: options.type_expr("body"),
            group: options.setting("group"),
            durable: options.setting("durable"),
            via: options.connection_name("via"),
        },
        TriggerKind::Deploy => TriggerFacts::Deploy,
        TriggerKind::Remove => TriggerFacts::Remove,
        TriggerKind::Dispatch { param, ty } => TriggerFacts::Dispatch {
            param: param.name.clone(),
            input: ty.clone(),
        },
    }
}

impl HttpRoute {
    fn new(method: &ast::Ident, path: &ast::StrLit) -> HttpRoute {
        HttpRoute {
            method: method.name.clone(),
            path: path.value.clone(),
        }
    }
}

/// A trigger's `{ name: value }` options, looked up by name.
struct Options<'a>(&'a [ast::OptionEntry]);

impl<'a> Options<'a> {
    fn get(&self, name: &str) -> Option<&'a ArgValue> {
        self.0
            .iter()
            .find(|o| o.name.name == name)
            .map(|o| &o.value)
    }

    fn expr(&self, name: &str) -> Option<&'a ast::Expr> {
        match self.get(name)? {
            ArgValue::Expr(e) => Some(e),
            ArgValue::Type(_) => None,
        }
    }

    fn type_expr(&self, name: &str) -> Option<TypeExpr> {
        match self.get(name)? {
            ArgValue::Type(te) => Some(te.clone()),
            ArgValue::Expr(_) => None,
        }
    }

    fn bool(&self, name: &str) -> Option<bool> {
        match self.expr(name)?.kind {
            ExprKind::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn setting(&self, name: &str) -> Option<Setting> {
        self.expr(name).and_then(setting)
    }

    /// A `via:`-style option naming a connection.
    fn connection_name(&self, name: &str) -> Option<String> {
        self.expr(name).and_then(|e| match &e.kind {
            ExprKind::Name(n) => Some(n.name.clone()),
            _ => None,
        })
    }
}

/// `config.key` or a string literal.
fn setting(e: &ast::Expr) -> Option<Setting> {
    match &e.kind {
        ExprKind::Field { name: entry, .. } => Some(Setting::Config(entry.name.clone())),
        _ => literal_str(e).map(Setting::Literal),
    }
}

/// The text of a string literal without interpolation.
fn literal_str(e: &ast::Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Str(parts) => parts
            .iter()
            .map(|p| match p {
                StrPart::Lit(s) => Some(s.as_str()),
                StrPart::Interp(_) => None,
            })
            .collect(),
        _ => None,
    }
}

fn after_run(e: &ast::Expr) -> Option<AfterRun> {
    match &e.kind {
        ExprKind::Name(n) if n.name == "delete" => Some(AfterRun::Delete),
        _ => literal_str(e).map(AfterRun::MoveTo),
    }
}

fn verify_facts(e: &ast::Expr) -> Option<VerifyFacts> {
    let (scheme, args) = scheme_of(VERIFY_SCHEMES, e)?;
    let secrets = secrets(scheme_arg(scheme, args, "secret"));
    let tolerance = scheme_arg(scheme, args, "tolerance")
        .and_then(|t| match t.kind {
            ExprKind::Duration(ms) => Some(Duration::from_millis(ms)),
            _ => None,
        })
        .unwrap_or(DEFAULT_SIGNATURE_TOLERANCE);
    Some(match scheme.name {
        "hmac_sha256" => VerifyFacts::Hmac {
            header: scheme_arg(scheme, args, "header")
                .and_then(literal_str)
                .unwrap_or_default(),
            secrets,
        },
        "stripe" => VerifyFacts::Stripe { secrets, tolerance },
        _ => VerifyFacts::StandardWebhooks { secrets, tolerance },
    })
}

fn auth_facts(e: &ast::Expr) -> Option<AuthFacts> {
    if is_auth_none(e) {
        return Some(AuthFacts::Public);
    }
    let (scheme, args) = scheme_of(AUTH_SCHEMES, e)?;
    let arg = |name| scheme_arg(scheme, args, name);
    Some(match scheme.name {
        "bearer" => AuthFacts::Bearer {
            tokens: secrets(arg("token")),
        },
        "basic" => AuthFacts::Basic {
            user: arg("user")
                .and_then(setting)
                .unwrap_or(Setting::Literal(String::new())),
            passwords: secrets(arg("password")),
        },
        _ => AuthFacts::ApiKey {
            header: arg("header").and_then(literal_str).unwrap_or_default(),
            keys: secrets(arg("key")),
        },
    })
}

/// A secret argument: one setting, or a list of them (rotation).
fn secrets(e: Option<&ast::Expr>) -> Vec<Setting> {
    match e.map(|e| &e.kind) {
        Some(ExprKind::List(items)) => items.iter().filter_map(setting).collect(),
        _ => e.and_then(setting).into_iter().collect(),
    }
}

fn dedupe_key(e: &ast::Expr) -> DedupeKey {
    if let ExprKind::Call { callee, args } = &e.kind {
        if matches!(&callee.kind, ExprKind::Name(n) if n.name == "header") {
            let name = match args.first().map(|a| &a.value) {
                Some(ArgValue::Expr(v)) => literal_str(v).unwrap_or_default(),
                _ => String::new(),
            };
            return DedupeKey::Header(name.to_ascii_lowercase());
        }
    }
    DedupeKey::Expr(e.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_of(source: &str) -> FlowFacts {
        let file = crate::syntax::parse_file(source).expect("parses");
        let checked = super::super::check(&file);
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        checked
            .program
            .facts
            .values()
            .next()
            .cloned()
            .expect("one flow")
    }

    #[test]
    fn a_sync_trigger_without_options_gets_the_defaults() {
        let facts = facts_of(
            "integration t\n\nflow f {\n  trigger sync GET \"/x\"\n  respond 200, {}\n}\n",
        );
        let TriggerFacts::Sync {
            route,
            body,
            timeout,
            fallback_async,
            verify,
            auth,
        } = facts.trigger
        else {
            panic!("a sync trigger: {:?}", facts.trigger)
        };
        assert_eq!(route.method, "GET");
        assert!(body.is_none());
        assert_eq!(timeout, DEFAULT_SYNC_TIMEOUT);
        assert!(!fallback_async);
        assert!(!facts.reads_headers);
        assert_eq!((verify, auth), (None, None));
    }

    #[test]
    fn caller_checks_are_resolved_with_their_defaults() {
        let facts = facts_of(
            "integration t\n\nconfig {\n  a: Secret\n  b: Secret\n}\n\nflow f {\n  trigger webhook POST \"/x\" { verify: standard_webhooks(secret: [config.a, config.b]), auth: bearer(config.a) }\n  skip \"x\"\n}\n",
        );
        let TriggerFacts::Webhook {
            verify,
            auth,
            dedupe,
            ..
        } = facts.trigger
        else {
            panic!("a webhook trigger: {:?}", facts.trigger)
        };
        let config = |name: &str| Setting::Config(name.into());
        assert_eq!(
            verify,
            Some(VerifyFacts::StandardWebhooks {
                secrets: vec![config("a"), config("b")],
                tolerance: DEFAULT_SIGNATURE_TOLERANCE,
            })
        );
        assert_eq!(
            auth,
            Some(AuthFacts::Bearer {
                tokens: vec![config("a")]
            })
        );
        assert!(matches!(dedupe, Some(DedupeKey::Header(h)) if h == "webhook-id"));

        let facts = facts_of(
            "integration t\n\nconfig {\n  a: Secret\n}\n\nflow f {\n  trigger sync GET \"/x\" { verify: stripe(secret: config.a, tolerance: 90s), auth: none }\n  respond 200, {}\n}\n",
        );
        let TriggerFacts::Sync { verify, auth, .. } = facts.trigger else {
            panic!("a sync trigger: {:?}", facts.trigger)
        };
        assert_eq!(
            verify,
            Some(VerifyFacts::Stripe {
                secrets: vec![config("a")],
                tolerance: Duration::from_secs(90),
            })
        );
        assert_eq!(auth, Some(AuthFacts::Public));
    }

    #[test]
    fn files_options_are_resolved() {
        let facts = facts_of(
            "integration t\n\nconfig {\n  key: Secret\n}\n\nflow f {\n  trigger files \"sftp://u@h/in/*.csv\" every 1m { batch: true, after: delete, auth: config.key, done_marker: \".ok\" }\n  skip \"x\"\n}\n",
        );
        let TriggerFacts::Files {
            batch,
            after,
            auth,
            done_marker,
            every,
            ..
        } = facts.trigger
        else {
            panic!("a files trigger: {:?}", facts.trigger)
        };
        assert!(batch);
        assert_eq!(after, Some(AfterRun::Delete));
        assert_eq!(auth, Some(Setting::Config("key".into())));
        assert_eq!(done_marker.as_deref(), Some(".ok"));
        assert_eq!(every, Duration::from_secs(60));
    }
}
