//! A flow's resolved trigger facts → the `TriggerDef` the runtime serves.
//!
//! Every option arrives resolved, with its default applied, from the
//! checker ([`crate::check::facts`]); nothing here reads the syntax tree's
//! option lists or knows a default.

use std::time::Duration;

use crate::check::facts::{
    AfterRun, AuthFacts, DedupeKey, EmailAfter, FlowFacts, Setting, TriggerFacts, VerifyFacts,
};
use crate::syntax::ast::TypeExpr;

use super::{lit, Gen};

impl Gen<'_> {
    /// The `TriggerDef` of flow `name`.
    pub(super) fn trigger_def(&self, name: &str, facts: &FlowFacts) -> String {
        match &facts.trigger {
            TriggerFacts::Missing => "TriggerDef::Deploy".into(),
            TriggerFacts::Webhook {
                route,
                body,
                verify,
                auth,
                dedupe,
                max_body,
            } => format!(
                "TriggerDef::Webhook {{ method: {}, path: {}, body: {}, verify: {}, auth: {}, dedupe: {}, max_body: {} }}",
                lit(&route.method),
                lit(&route.path),
                self.body_schema(body),
                some_or_none(verify.as_ref().map(verify_def)),
                some_or_none(auth.as_ref().map(auth_def)),
                some_or_none(dedupe.as_ref().map(|_| format!("dedupe_{name} as DedupeFn"))),
                max_body.map_or("DEFAULT_MAX_BODY".into(), |n| n.to_string()),
            ),
            TriggerFacts::Sync {
                route,
                body,
                timeout,
                fallback_async,
                verify,
                auth,
            } => format!(
                "TriggerDef::Sync {{ method: {}, path: {}, body: {}, timeout: {}, fallback_async: {fallback_async}, reads_headers: {}, verify: {}, auth: {} }}",
                lit(&route.method),
                lit(&route.path),
                self.body_schema(body),
                duration(*timeout),
                facts.reads_headers,
                some_or_none(verify.as_ref().map(verify_def)),
                some_or_none(auth.as_ref().map(auth_def)),
            ),
            TriggerFacts::Cron { expr, tz, catch_up } => format!(
                "TriggerDef::Cron {{ expr: {}, tz: {}, catch_up: {catch_up} }}",
                lit(expr),
                some_or_none(tz.as_deref().map(lit)),
            ),
            TriggerFacts::Every { period, catch_up } => format!(
                "TriggerDef::Every {{ period: {}, catch_up: {catch_up} }}",
                duration(*period),
            ),
            TriggerFacts::Dispatch { input, .. } => {
                format!("TriggerDef::Dispatch {{ input: {} }}", self.types.schema(input))
            }
            TriggerFacts::Deploy => "TriggerDef::Deploy".into(),
            TriggerFacts::Remove => "TriggerDef::Remove".into(),
            TriggerFacts::Files {
                glob,
                every,
                batch,
                after,
                auth,
                via,
                done_marker,
            } => format!(
                "TriggerDef::Files(FilesTrigger {{ glob: {}, every: {}, batch: {batch}, after: {}, auth: {}, via: {}, done_marker: {} }})",
                if glob.contains("${config.") {
                    format!("config.fill({})", lit(glob))
                } else {
                    format!("{}.to_string()", lit(glob))
                },
                duration(*every),
                after.as_ref().map_or("AfterRun::default()".into(), after_run),
                optional_setting(auth),
                some_or_none(via.as_deref().map(lit)),
                some_or_none(done_marker.as_deref().map(lit)),
            ),
            TriggerFacts::Email {
                mailbox,
                every,
                url,
                after,
            } => format!(
                "TriggerDef::Email(EmailTrigger {{ mailbox: {}, every: {}, url: {}, after: {} }})",
                lit(mailbox),
                duration(*every),
                url.as_ref().map_or("String::new()".into(), setting),
                match after {
                    EmailAfter::MoveTo(m) => format!("EmailAfter::MoveTo({})", lit(m)),
                    EmailAfter::Seen => "EmailAfter::Seen".into(),
                },
            ),
            TriggerFacts::Subscribe {
                broker,
                subject,
                url,
                body,
                group,
                durable,
                via,
            } => format!(
                "TriggerDef::Subscribe(SubscribeTrigger {{ broker: {}, subject: {}, url: {}, body: {}, group: {}, durable: {}, via: {} }})",
                lit(broker),
                lit(subject),
                url.as_ref().map_or("String::new()".into(), setting),
                self.body_schema(body),
                optional_setting(group),
                optional_setting(durable),
                some_or_none(via.as_deref().map(lit)),
            ),
        }
    }

    /// The schema of a trigger's `body:` type, `Json` when none is written.
    fn body_schema(&self, body: &Option<TypeExpr>) -> String {
        body.as_ref()
            .map_or("Schema::Json".into(), |te| self.types.schema(te))
    }

    /// The key function of a webhook's `dedupe:` option, over the trigger
    /// value.
    pub(super) fn dedupe_fn(&mut self, name: &str, key: &DedupeKey) -> codegen::Function {
        let mut f = codegen::Function::new(format!("dedupe_{name}"));
        f.arg("trigger", "&Value").ret("Option<String>");
        f.line(match key {
            DedupeKey::Header(header) => format!(
                "ops::dedupe_key(ops::get(ops::get(trigger, \"headers\"), {}))",
                lit(header)
            ),
            DedupeKey::Expr(e) => {
                let v = self.expr(e).replace("cx.trigger()", "trigger");
                format!(
                    "let key: Result<Value, RunError> = (|| Ok({v}))();\nops::dedupe_key(&key.ok()?)"
                )
            }
        });
        f
    }
}

/// `Some(x)`, or `None`.
fn some_or_none(value: Option<String>) -> String {
    value.map_or("None".into(), |v| format!("Some({v})"))
}

pub(super) fn duration(d: Duration) -> String {
    format!("Duration::from_millis({})", d.as_millis())
}

/// A setting as the `String` the runtime reads when the flows are built.
pub(super) fn setting(s: &Setting) -> String {
    match s {
        Setting::Config(entry) => format!("config.str({})", lit(entry)),
        Setting::Literal(text) => format!("{}.to_string()", lit(text)),
    }
}

pub(super) fn optional_setting(s: &Option<Setting>) -> String {
    some_or_none(s.as_ref().map(setting))
}

fn verify_def(v: &VerifyFacts) -> String {
    match v {
        VerifyFacts::Hmac { header, secrets } => format!(
            "Verify::Hmac {{ header: {}, secrets: {} }}",
            lit(header),
            settings(secrets)
        ),
        VerifyFacts::Stripe { secrets, tolerance } => format!(
            "Verify::Stripe {{ secrets: {}, tolerance: {} }}",
            settings(secrets),
            duration(*tolerance)
        ),
        VerifyFacts::StandardWebhooks { secrets, tolerance } => format!(
            "Verify::StandardWebhooks {{ secrets: {}, tolerance: {} }}",
            settings(secrets),
            duration(*tolerance)
        ),
    }
}

fn auth_def(a: &AuthFacts) -> String {
    match a {
        AuthFacts::Bearer { tokens } => format!("Auth::Bearer {{ tokens: {} }}", settings(tokens)),
        AuthFacts::Basic { user, passwords } => format!(
            "Auth::Basic {{ user: {}, passwords: {} }}",
            setting(user),
            settings(passwords)
        ),
        AuthFacts::ApiKey { header, keys } => format!(
            "Auth::ApiKey {{ header: {}, keys: {} }}",
            lit(header),
            settings(keys)
        ),
        AuthFacts::Public => "Auth::Public".into(),
    }
}

/// Several settings as the `Vec<String>` the runtime reads.
fn settings(list: &[Setting]) -> String {
    let items: Vec<String> = list.iter().map(setting).collect();
    format!("vec![{}]", items.join(", "))
}

fn after_run(after: &AfterRun) -> String {
    match after {
        AfterRun::Delete => "AfterRun::Delete".into(),
        AfterRun::MoveTo(folder) => format!("AfterRun::MoveTo({})", lit(folder)),
    }
}
