//! Trigger rules (LANGUAGE.md §5): one trigger per flow, HTTP methods and
//! route paths, cron expressions and time zones, durations, options per
//! kind, and the type of the `trigger` value each kind hands its flow.

use std::str::FromStr;

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, ArgValue, ExprKind, Span, TriggerKind};
use crate::syntax::visit::{walk_expr, Visitor};

use super::suggest::did_you_mean;
use super::types::Type;
use super::Checker;

pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
pub const BROKERS: &[&str] = &["nats", "amqp", "mqtt", "redis", "kafka", "sqs"];
/// Products people name instead of the protocol, and the broker to write.
const BROKER_PRODUCTS: &[(&str, &str)] = &[
    ("rabbitmq", "amqp"),
    ("rabbit", "amqp"),
    ("activemq", "amqp"),
    ("mosquitto", "mqtt"),
    ("jetstream", "nats"),
    ("redpanda", "kafka"),
    ("valkey", "redis"),
];

/// What a flow's trigger means to the rest of the program.
#[derive(Debug, Clone)]
pub struct TriggerInfo {
    /// `webhook`, `sync`, `schedule`, ... (empty when the flow has none).
    pub kind: &'static str,
    pub route: Option<Route>,
    /// The type of `trigger` inside the flow.
    pub value_type: Type,
    /// For dispatch flows: the input's type.
    pub dispatch_input: Option<Type>,
    /// The type of the body (webhook, sync, subscribe), `Json` by default.
    pub body_type: Option<Type>,
}

impl TriggerInfo {
    pub fn is_sync(&self) -> bool {
        self.kind == "sync"
    }

    fn none() -> TriggerInfo {
        TriggerInfo {
            kind: "",
            route: None,
            value_type: Type::Error,
            dispatch_input: None,
            body_type: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub params: Vec<String>,
    pub span: Span,
}

impl Route {
    /// Paths that match the same requests: `{id}` and `{key}` are the same.
    pub fn same_path(&self, other: &Route) -> bool {
        self.shape() == other.shape()
    }

    /// The path with every `{param}` written `{}`, without a trailing
    /// slash: two routes with the same shape match the same requests.
    pub fn shape(&self) -> String {
        self.path
            .trim_end_matches('/')
            .split('/')
            .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl Checker<'_> {
    pub(super) fn flow_trigger(&mut self, flow: &ast::FlowDecl) -> TriggerInfo {
        let Some(trigger) = flow.triggers.first() else {
            self.error(
                Diagnostic::new(
                    Code::MissingTrigger,
                    flow.name.span,
                    format!("flow `{}` has no trigger", flow.name),
                )
                .with_label("no `trigger` line in this flow")
                .with_help(
                    "start the flow with a trigger, e.g. `trigger webhook POST \"/events\"`",
                ),
            );
            return TriggerInfo::none();
        };
        for extra in flow.triggers.iter().skip(1) {
            self.error(
                Diagnostic::new(
                    Code::MultipleTriggers,
                    extra.span,
                    format!("flow `{}` has more than one trigger", flow.name),
                )
                .with_label("second trigger")
                .with_secondary(trigger.span, "first trigger")
                .with_help("give each trigger its own flow; flows can share work with `dispatch`"),
            );
        }
        self.trigger_info(trigger)
    }

    fn trigger_info(&mut self, trigger: &ast::Trigger) -> TriggerInfo {
        let kind = trigger.kind.keyword();
        let allowed: &[&str] = match &trigger.kind {
            TriggerKind::Webhook { .. } => &["body", "verify", "auth", "dedupe", "max_body"],
            TriggerKind::Sync { .. } => &["body", "verify", "auth", "fallback"],
            TriggerKind::Cron { .. } | TriggerKind::Every { .. } => &["catch_up"],
            TriggerKind::Files { .. } => &["batch", "after", "auth", "via", "done_marker"],
            TriggerKind::Email { .. } => &["url", "after"],
            // `url:` on sqs gets its own diagnostic (`sqs_options`).
            TriggerKind::Subscribe { broker, .. } if broker.name == "sqs" => {
                &["via", "body", "url"]
            }
            TriggerKind::Subscribe { .. } => &["url", "body", "group", "durable"],
            TriggerKind::Deploy | TriggerKind::Remove | TriggerKind::Dispatch { .. } => &[],
        };
        let mut seen: Vec<(&str, Span)> = Vec::new();
        for opt in &trigger.options {
            let name = opt.name.name.as_str();
            if !allowed.contains(&name) {
                if let ArgValue::Expr(value) = &opt.value {
                    self.mark_config_refs(value);
                }
                let mut d = Diagnostic::new(
                    Code::UnknownTriggerOption,
                    opt.name.span,
                    format!(
                        "`{name}` is not an option of {} {kind} trigger",
                        article(kind)
                    ),
                )
                .with_label("unknown option");
                d = match did_you_mean(name, allowed.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None if allowed.is_empty() => {
                        d.with_help(format!("{} {kind} trigger takes no options", article(kind)))
                    }
                    None => d.with_help(format!(
                        "options of {} {kind} trigger: {}",
                        article(kind),
                        allowed.join(", ")
                    )),
                };
                self.error(d);
            } else if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                self.error(
                    Diagnostic::new(
                        Code::DuplicateArgument,
                        opt.name.span,
                        format!("option `{name}` is given twice"),
                    )
                    .with_label("given again here")
                    .with_secondary(*first, "first given here")
                    .with_help("keep one of them"),
                );
            } else {
                seen.push((name, opt.name.span));
            }
        }
        let body_type = self.body_option(trigger);
        let mut info = TriggerInfo {
            kind,
            route: None,
            value_type: Type::Error,
            dispatch_input: None,
            body_type: None,
        };
        let string_map = || Type::map(Type::String);
        match &trigger.kind {
            TriggerKind::Webhook { method, path } | TriggerKind::Sync { method, path, .. } => {
                let route = self.route(method, path);
                let params = Type::record(
                    route
                        .params
                        .iter()
                        .map(|p| (p.clone(), Type::String))
                        .collect(),
                );
                let body = body_type.unwrap_or(Type::Json);
                let mut fields = vec![
                    ("body".to_string(), body.clone()),
                    ("headers".to_string(), string_map()),
                    ("query".to_string(), string_map()),
                    ("params".to_string(), params),
                ];
                if let TriggerKind::Sync {
                    timeout: Some(t), ..
                } = &trigger.kind
                {
                    self.positive_duration(t, "a sync timeout");
                }
                fields.push(("received_at".to_string(), Type::Time));
                info.value_type = Type::record(fields);
                info.body_type = Some(body);
                info.route = Some(route);
                self.webhook_options(trigger, &info.value_type);
                self.caller_options(trigger);
            }
            TriggerKind::Cron { expr, tz } => {
                self.cron(expr);
                if let Some(tz) = tz {
                    if chrono_tz::Tz::from_str(&tz.value).is_err() {
                        let zones = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name());
                        let mut d = Diagnostic::new(
                            Code::BadTimeZone,
                            tz.span,
                            format!("unknown time zone `{}`", tz.value),
                        )
                        .with_label("not an IANA time zone");
                        d = match did_you_mean(&tz.value, zones) {
                            Some(s) => d.with_help(format!("did you mean `{s}`?")),
                            None => {
                                d.with_help("use an IANA name such as `Europe/Berlin` or `UTC`")
                            }
                        };
                        self.error(d);
                    }
                }
                info.value_type = schedule_type();
            }
            TriggerKind::Every { period } => {
                self.positive_duration(period, "a schedule period");
                info.value_type = schedule_type();
            }
            TriggerKind::Files { every, glob } => {
                self.positive_duration(every, "a scan period");
                self.files_glob(trigger, glob);
                let batch = trigger.options.iter().any(|o| {
                    o.name.name == "batch"
                        && matches!(&o.value, ArgValue::Expr(e) if e.kind == ExprKind::Bool(true))
                });
                info.value_type = if batch {
                    Type::record(vec![("files".into(), Type::list(Type::File))])
                } else {
                    Type::record(vec![("file".into(), Type::File)])
                };
            }
            TriggerKind::Email { mailbox, every } => {
                self.positive_duration(every, "a polling period");
                self.email_options(trigger, mailbox);
                info.value_type = Type::record(vec![("message".into(), email_message_type())]);
            }
            TriggerKind::Subscribe { broker, topic } => {
                if !BROKERS.contains(&broker.name.as_str()) {
                    let mut d = Diagnostic::new(
                        Code::BadBroker,
                        broker.span,
                        format!("unknown broker `{}`", broker.name),
                    );
                    let product = BROKER_PRODUCTS.iter().find(|(p, _)| *p == broker.name);
                    d = match (product, did_you_mean(&broker.name, BROKERS.iter().copied())) {
                        (Some((p, b)), _) => d.with_help(format!(
                            "{p} is reached through `{b}`: write `subscribe {b} ...`"
                        )),
                        (None, Some(s)) => d.with_help(format!("did you mean `{s}`?")),
                        (None, None) => d.with_help(format!("brokers: {}", BROKERS.join(", "))),
                    };
                    d = d.with_label("not a broker");
                    self.error(d);
                }
                if broker.name == "sqs" {
                    self.sqs_options(trigger, topic);
                } else if !trigger.options.iter().any(|o| o.name.name == "url") {
                    self.error(
                        Diagnostic::new(
                            Code::MissingTriggerOption,
                            Span::new(trigger.span.start, topic.span.end),
                            "a subscribe trigger needs the option `url:`",
                        )
                        .with_label("no `url:` option")
                        .with_help(format!(
                            "add `{{ url: config.{b}_url }}` to the trigger and `{b}_url: Secret` to the config block",
                            b = broker.name
                        )),
                    );
                }
                let body = body_type.unwrap_or(Type::Json);
                info.body_type = Some(body.clone());
                info.value_type = Type::record(vec![
                    ("body".into(), body),
                    ("subject".into(), Type::String),
                    ("headers".into(), string_map()),
                ]);
            }
            // Remove flows see what deploy flows saw: the endpoints to
            // unregister.
            TriggerKind::Deploy | TriggerKind::Remove => {
                info.value_type = Type::record(vec![
                    ("version".into(), Type::String),
                    ("endpoints".into(), Type::map(Type::Url)),
                ]);
            }
            TriggerKind::Dispatch { param, ty } => {
                let input = self.resolve_type(ty);
                info.value_type = Type::record(vec![(param.name.clone(), input.clone())]);
                info.dispatch_input = Some(input);
            }
        }
        self.simple_options(trigger);
        info
    }

    /// `subscribe sqs` reaches its queue through `via:` an `aws:` connection
    /// (E0312 when missing); `url:` is refused with the fix (E0307).
    fn sqs_options(&mut self, trigger: &ast::Trigger, queue: &ast::StrLit) {
        const HELP: &str = "declare `connection cloud { aws: { region: \"us-east-1\", access_key: config.aws_key, secret_key: config.aws_secret } }` and write `{ via: cloud }`";
        if let Some(url) = trigger.options.iter().find(|o| o.name.name == "url") {
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    url.name.span,
                    "`subscribe sqs` takes its queue's connection from `via:`, not `url:`",
                )
                .with_label("`url:` is for the other brokers")
                .with_help(HELP),
            );
        } else if !trigger.options.iter().any(|o| o.name.name == "via") {
            self.error(
                Diagnostic::new(
                    Code::MissingTriggerOption,
                    Span::new(trigger.span.start, queue.span.end),
                    "a `subscribe sqs` trigger needs the option `via:`",
                )
                .with_label("no `via:` option")
                .with_help(HELP),
            );
        }
    }

    /// The `body:` option's type, if given.
    fn body_option(&mut self, trigger: &ast::Trigger) -> Option<Type> {
        let opt = trigger.options.iter().find(|o| o.name.name == "body")?;
        match &opt.value {
            ArgValue::Type(te) => Some(self.resolve_type(te)),
            ArgValue::Expr(e) => {
                self.error(
                    Diagnostic::new(Code::BadTriggerOption, e.span, "`body:` takes a type")
                        .with_help("write a type, e.g. `body: OrderEvent` or `body: [Update]`"),
                );
                Some(Type::Error)
            }
        }
    }

    pub(super) fn option_expr<'t>(&mut self, opt: &'t ast::OptionEntry) -> Option<&'t ast::Expr> {
        match &opt.value {
            ArgValue::Expr(e) => Some(e),
            ArgValue::Type(te) => {
                self.error(Diagnostic::new(
                    Code::BadTriggerOption,
                    te.span,
                    format!("`{}:` takes a value, not a type", opt.name),
                ));
                None
            }
        }
    }

    /// A files trigger reads a local folder or an `sftp://` one, which
    /// needs `auth:`; the wildcards go in the last segment only.
    fn files_glob(&mut self, trigger: &ast::Trigger, glob: &ast::StrLit) {
        let has_auth = trigger.options.iter().any(|o| o.name.name == "auth");
        // `${config.name}` parts are filled in at start-up: each must be a
        // text entry; what is checked below is the written rest.
        for entry in config_refs(&glob.value) {
            let fits = |t: &Type| {
                matches!(
                    t,
                    Type::Url | Type::String | Type::Secret | Type::Int | Type::Error
                )
            };
            match self.use_config(entry) {
                Some(t) if fits(t.unwrap_optional()) => {}
                found => self.error(
                    Diagnostic::new(
                        Code::BadTriggerOption,
                        glob.span,
                        match found {
                            None => format!("the glob names `config.{entry}`, which is not declared"),
                            Some(t) => format!("the glob names `config.{entry}` of type `{t}`, not text"),
                        },
                    )
                    .with_help(format!("declare it in the config block, e.g. `{entry}: String` (a folder or `sftp://user@host/dir`)")),
                ),
            }
        }
        if glob.value.starts_with("${config.") {
            // The scheme and folder come from the config: validated when it
            // is loaded.
            return;
        }
        let text = glob.value.as_str();
        let has_via = trigger.options.iter().any(|o| o.name.name == "via");
        if let Some((scheme, _)) = text
            .split_once("://")
            .filter(|(s, _)| *s != "sftp" && *s != "s3")
        {
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    glob.span,
                    format!("files triggers read local folders, `sftp://` or `s3://`, not `{scheme}://`"),
                )
                .with_label("unsupported scheme")
                .with_help("write a local glob such as `\"inbox/*.xml\"`, `\"sftp://user@host/in/*.xml\"` or `\"s3://bucket/in/*.xml\"`"),
            );
        } else if text.starts_with("s3://") != has_via {
            let message = if has_via {
                "`via:` of a files trigger names the `aws:` connection of an `s3://` glob"
            } else {
                "an `s3://` files trigger needs the option `via:`"
            };
            self.error(
                Diagnostic::new(
                    Code::MissingTriggerOption,
                    Span::new(trigger.span.start, glob.span.end),
                    message,
                )
                .with_help("declare `connection cloud { aws: { region: \"us-east-1\", access_key: config.aws_key, secret_key: config.aws_secret } }` and write `{ via: cloud }`"),
            );
        } else if text.starts_with("sftp://") && !has_auth {
            self.error(
                Diagnostic::new(
                    Code::MissingTriggerOption,
                    Span::new(trigger.span.start, glob.span.end),
                    "an `sftp://` files trigger needs the option `auth:`",
                )
                .with_label("no `auth:` option")
                .with_help("add `{ auth: config.sftp_key }` and `sftp_key: Secret` (a password or a private key) to the config block"),
            );
        }
        let (folder, name) = text.rsplit_once('/').unwrap_or(("", text));
        // A config entry in the folder (`${config.dir}`) is no wildcard.
        let folder = without_config_refs(folder);
        if name.is_empty() {
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    glob.span,
                    "a files trigger's glob must end with a file-name pattern",
                )
                .with_label("a folder, not files")
                .with_help(format!("e.g. `\"{text}*.csv\"`")),
            );
        } else if folder.contains(['*', '?', '[', '{']) {
            let help = if folder.contains("**") {
                "a files trigger watches one folder (its runs move files out of it); `file.list(\"in/**/*.xml\")` lists a whole tree"
            } else {
                "give one folder per trigger, e.g. `\"inbox/*.xml\"`"
            };
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    glob.span,
                    "wildcards are allowed in the file name only, not in folders",
                )
                .with_label("wildcard in a folder")
                .with_help(help),
            );
        } else if let Some(problem) = name_pattern_problem(name) {
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    glob.span,
                    format!("the file-name pattern `{name}` {problem}"),
                )
                .with_label("not a file-name pattern")
                .with_help(
                    "`*` any characters, `?` one, `[0-9]` a class, `{csv,txt}` alternatives",
                ),
            );
        }
    }

    /// `url:` (required, a Secret or Url: it holds the mailbox password)
    /// and `after:` (a mailbox name, or `seen`) of an email trigger.
    fn email_options(&mut self, trigger: &ast::Trigger, mailbox: &ast::StrLit) {
        if mailbox.value.trim().is_empty() {
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    mailbox.span,
                    "the mailbox name is empty",
                )
                .with_label("no mailbox")
                .with_help("name the mailbox to read, e.g. `\"INBOX\"`"),
            );
        }
        if !trigger.options.iter().any(|o| o.name.name == "url") {
            self.error(
                Diagnostic::new(
                    Code::MissingTriggerOption,
                    Span::new(trigger.span.start, mailbox.span.end),
                    "an email trigger needs the option `url:`",
                )
                .with_label("no `url:` option")
                .with_help("add `{ url: config.imap_url }` to the trigger and `imap_url: Secret` (`imaps://user:password@host`) to the config block"),
            );
        }
        for opt in &trigger.options {
            let check: fn(&mut Self, &ast::Expr) = match opt.name.name.as_str() {
                "url" => Self::email_url,
                "after" => Self::email_after,
                // Reported as unknown already.
                _ => continue,
            };
            if let Some(e) = self.option_expr(opt) {
                check(self, e);
            }
        }
    }

    /// The IMAP URL carries the mailbox password, so it comes from the
    /// config as a `Secret` (or a `Url`), never as text in the source.
    fn email_url(&mut self, e: &ast::Expr) {
        let before = self.diags.len();
        let actual = self.infer_const(e, &Type::Secret);
        let fits = matches!(
            actual.unwrap_optional(),
            Type::Secret | Type::Url | Type::Error
        );
        if self.diags.len() == before && !fits {
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    e.span,
                    format!("`url:` of an email trigger takes a `Secret` config entry, found `{actual}`"),
                )
                .with_label(format!("this is `{actual}`"))
                .with_help("the URL holds the mailbox password: declare `imap_url: Secret` in the config block and write `url: config.imap_url`"),
            );
        }
    }

    /// `after:` of an email trigger: a mailbox to move messages into, or
    /// the bare word `seen` (flag them `\Seen` and leave them in place).
    fn email_after(&mut self, e: &ast::Expr) {
        match &e.kind {
            ExprKind::Name(n) if n.name == "seen" => {}
            ExprKind::Name(n) => {
                let help = match did_you_mean(&n.name, ["seen"]) {
                    Some(_) => "did you mean `seen`?".to_string(),
                    None => "write a mailbox such as `\"Processed\"`, or `seen`".to_string(),
                };
                self.error(
                    Diagnostic::new(
                        Code::BadTriggerOption,
                        e.span,
                        "`after:` takes a mailbox or `seen`",
                    )
                    .with_label("neither a mailbox nor `seen`")
                    .with_help(help),
                );
            }
            _ => self.option_value(
                "after",
                e,
                &Type::String,
                "`after:` takes a mailbox such as `\"Processed\"`, or `seen`",
            ),
        }
    }

    /// Options whose values are constants of a fixed type.
    fn simple_options(&mut self, trigger: &ast::Trigger) {
        for opt in &trigger.options {
            if matches!(trigger.kind, TriggerKind::Email { .. }) {
                // Checked by `email_options`.
                continue;
            }
            let expected = match opt.name.name.as_str() {
                "via" => {
                    let what = match &trigger.kind {
                        TriggerKind::Subscribe { .. } => "a `subscribe sqs` trigger",
                        _ => "a files trigger on `s3://`",
                    };
                    if let Some(e) = self.option_expr(opt) {
                        self.check_via(e, what);
                    }
                    continue;
                }
                "catch_up" | "batch" => Type::Bool,
                "max_body" => Type::Int,
                "group" | "durable" | "done_marker" => Type::String,
                "url" => Type::Secret,
                // The SFTP credential; webhook and sync `auth:` is a scheme
                // (`caller_options`).
                "auth" if matches!(trigger.kind, TriggerKind::Files { .. }) => Type::Secret,
                "after" => {
                    if let Some(e) = self.option_expr(opt) {
                        let is_delete = matches!(&e.kind, ExprKind::Name(n) if n.name == "delete");
                        if let (ExprKind::Name(n), false) = (&e.kind, is_delete) {
                            // A bare word: `delete` misspelt, not a value.
                            let help = match did_you_mean(&n.name, ["delete"]) {
                                Some(_) => "did you mean `delete`?".to_string(),
                                None => {
                                    "write a folder such as `\"done/\"`, or `delete`".to_string()
                                }
                            };
                            self.error(
                                Diagnostic::new(
                                    Code::BadTriggerOption,
                                    e.span,
                                    "`after:` takes a folder or `delete`",
                                )
                                .with_label("neither a folder nor `delete`")
                                .with_help(help),
                            );
                        } else if !is_delete {
                            self.option_value(
                                "after",
                                e,
                                &Type::String,
                                "`after:` takes a folder such as `\"done/\"`, or `delete`",
                            );
                        }
                    }
                    continue;
                }
                "fallback" => {
                    if let Some(e) = self.option_expr(opt) {
                        let is_async = matches!(&e.kind, ExprKind::Name(n) if n.name == "async");
                        if !is_async {
                            self.error(
                                Diagnostic::new(
                                    Code::BadTriggerOption,
                                    e.span,
                                    "`fallback:` must be `async`",
                                )
                                .with_label("not `async`")
                                .with_help(
                                    "write `fallback: async` to answer 202 and call back when done",
                                ),
                            );
                        }
                    }
                    continue;
                }
                _ => continue,
            };
            if let Some(e) = self.option_expr(opt) {
                self.option_value(&opt.name.name, e, &expected, "");
                if opt.name.name == "max_body" {
                    if let ExprKind::Int(n) = e.kind {
                        if n <= 0 {
                            self.error(Diagnostic::new(
                                Code::BadTriggerOption,
                                e.span,
                                "`max_body` must be a positive number of bytes",
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Checks an option value (config references allowed) against a type.
    pub(super) fn option_value(&mut self, name: &str, e: &ast::Expr, expected: &Type, help: &str) {
        let before = self.diags.len();
        let actual = self.infer_const(e, expected);
        if self.diags.len() == before && !self.assignable(&actual, expected) {
            let help = match expected {
                _ if !help.is_empty() => help.to_string(),
                Type::Bool => format!("write `{name}: true` or `{name}: false`"),
                Type::Int => format!("write a whole number, e.g. `{name}: 1048576`"),
                Type::Secret => format!("pass a config entry, e.g. `{name}: config.{name}`"),
                _ => format!("write a string, e.g. `{name}: \"...\"`"),
            };
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    e.span,
                    format!("`{name}:` takes `{expected}`, found `{actual}`"),
                )
                .with_label(format!("this is `{actual}`"))
                .with_help(help),
            );
        }
    }

    /// `dedupe:` of webhooks.
    fn webhook_options(&mut self, trigger: &ast::Trigger, trigger_type: &Type) {
        for opt in trigger.options.iter().filter(|o| o.name.name == "dedupe") {
            if let Some(e) = self.option_expr(opt) {
                self.dedupe_option(e, trigger_type);
            }
        }
    }

    /// Checks argument values of a call already reported as wrong, so that
    /// the config entries they name still count as used.
    pub(super) fn option_args_loosely(&mut self, args: &[ast::Arg]) {
        for arg in args {
            if let ArgValue::Expr(value) = &arg.value {
                self.mark_config_refs(value);
            }
        }
    }

    /// Marks the `config.x` entries inside a value already reported as
    /// wrong as used, without checking it further.
    pub(super) fn mark_config_refs(&mut self, e: &ast::Expr) {
        let mut refs = ConfigRefs::default();
        refs.visit_expr(e);
        for name in refs.names {
            self.use_config(name);
        }
    }

    fn dedupe_option(&mut self, e: &ast::Expr, trigger_type: &Type) {
        if let ExprKind::Call { callee, args } = &e.kind {
            if matches!(&callee.kind, ExprKind::Name(n) if n.name == "header") {
                let ok = matches!(args.as_slice(), [arg] if arg.name.is_none()
                    && matches!(&arg.value, ArgValue::Expr(v) if matches!(v.kind, ExprKind::Str(_))));
                if !ok {
                    self.error(
                        Diagnostic::new(
                            Code::BadTriggerOption,
                            e.span,
                            "`header(...)` takes one header name",
                        )
                        .with_help("write `dedupe: header(\"X-Delivery-Id\")`"),
                    );
                }
                return;
            }
        }
        // Any expression over `trigger`, e.g. `trigger.body.id`.
        let saved = self.flow.take();
        self.flow = Some(super::FlowCtx {
            trigger_kind: "webhook",
            trigger_type: trigger_type.clone(),
            ..Default::default()
        });
        let t = self.infer_const(e, &Type::String);
        self.flow = saved;
        let fits = matches!(
            t.unwrap_optional(),
            Type::String | Type::Lits(_) | Type::Int | Type::Error | Type::Json
        );
        if !fits {
            self.error(
                Diagnostic::new(
                    Code::BadTriggerOption,
                    e.span,
                    format!("a dedupe key must be a String or Int, found `{t}`"),
                )
                .with_help("use `header(\"X-Delivery-Id\")` or a field such as `trigger.body.id`"),
            );
        }
    }

    fn route(&mut self, method: &ast::Ident, path: &ast::StrLit) -> Route {
        if !METHODS.contains(&method.name.as_str()) {
            let mut d = Diagnostic::new(
                Code::BadMethod,
                method.span,
                format!("unknown HTTP method `{}`", method.name),
            )
            .with_label("not an HTTP method");
            d = match did_you_mean(&method.name, METHODS.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("methods: {}", METHODS.join(", "))),
            };
            self.error(d);
        }
        let params = self.path_params(path);
        Route {
            method: method.name.clone(),
            path: path.value.clone(),
            params,
            span: path.span,
        }
    }

    /// Validates a route path and returns its `{param}` names.
    fn path_params(&mut self, path: &ast::StrLit) -> Vec<String> {
        let mut params: Vec<String> = Vec::new();
        let value = path.value.as_str();
        // Without the leading `/`, the segments are still read for their
        // parameters, so `trigger.params` is not wrong as well.
        let (rest, mut offset) = match value.strip_prefix('/') {
            Some(rest) => (rest, 1),
            None => {
                self.error(
                    Diagnostic::new(
                        Code::BadPath,
                        path.span,
                        format!("route path `{value}` must start with `/`"),
                    )
                    .with_label("no leading `/`")
                    .with_help(format!("write `\"/{value}\"`")),
                );
                (value, 0)
            }
        };
        let segments: Vec<&str> = rest.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            let span = sub_span(path, offset, seg.len().max(1));
            offset += seg.len() + 1;
            if seg.is_empty() {
                if i + 1 < segments.len() {
                    self.error(bad_path(
                        span,
                        format!("route path `{value}` has an empty segment"),
                        "`//`",
                        "remove the extra `/`".into(),
                    ));
                }
                continue; // "/" or a trailing slash
            }
            match seg
                .strip_prefix('{')
                .map(|inner| (inner, inner.strip_suffix('}')))
            {
                Some((_, Some(name))) => {
                    // Even a badly named parameter is one: uses of it are
                    // not reported again.
                    if let Some(d) = path_param(span, name, &params) {
                        self.error(d);
                    }
                    if !params.iter().any(|p| p == name) {
                        params.push(name.to_string());
                    }
                }
                Some((inner, None)) if !inner.contains('}') => self.error(bad_path(
                    span,
                    format!("unclosed `{{` in segment `{seg}`"),
                    "no closing `}`",
                    format!("write `{seg}}}`"),
                )),
                _ if seg.contains(['{', '}']) => self.error(bad_path(
                    span,
                    format!("a path parameter must be a whole segment, not part of `{seg}`"),
                    "mixes a parameter and text",
                    "write the parameter as its own segment, e.g. `/orders/{id}`".into(),
                )),
                _ if !seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)) =>
                {
                    self.error(bad_path(
                        span,
                        format!("segment `{seg}` has characters that need escaping in a URL"),
                        "not URL-safe",
                        "use letters, digits and `-._~` in paths".into(),
                    ))
                }
                _ => {}
            }
        }
        params
    }

    fn cron(&mut self, expr: &ast::StrLit) {
        if let Err(msg) = parse_cron(&expr.value) {
            self.error(
                Diagnostic::new(Code::BadCron, expr.span, format!("invalid cron expression `{}`", expr.value))
                    .with_label(msg)
                    .with_help("five fields: minute hour day-of-month month day-of-week, e.g. `\"0 19 * * THU\"`"),
            );
        }
    }

    fn positive_duration(&mut self, d: &ast::DurationLit, what: &str) {
        if d.millis == 0 {
            self.error(
                Diagnostic::new(
                    Code::BadDurationValue,
                    d.span,
                    format!("{what} must be longer than zero"),
                )
                .with_label("zero")
                .with_help("use a positive duration such as `30s`"),
            );
        }
    }
}

/// Parses a five-field (or six-field, with seconds first) cron expression
/// exactly as the runtime does (`croner`, seconds optional), so that what
/// checks also runs.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let nickname = expr.trim_start().starts_with('@');
    if !nickname && !(5..=6).contains(&fields.len()) {
        let n = fields.len();
        return Err(format!(
            "{n} field{}; expected 5",
            if n == 1 { "" } else { "s" }
        ));
    }
    croner::Cron::new(expr)
        .with_seconds_optional()
        .parse()
        .map_err(|e| out_of_range(&fields).unwrap_or_else(|| cron_reason(&e.to_string())))
}

/// Names and ranges of the five cron fields (a sixth, seconds, comes first).
const CRON_FIELDS: &[(&str, u32, u32)] = &[
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// "hour 25 is out of range (0-23)" for the first number outside its
/// field's range.
fn out_of_range(fields: &[&str]) -> Option<String> {
    let seconds = [("second", 0, 59)];
    let names: Vec<(&str, u32, u32)> = if fields.len() == 6 {
        seconds.iter().chain(CRON_FIELDS).copied().collect()
    } else {
        CRON_FIELDS.to_vec()
    };
    fields
        .iter()
        .zip(names)
        .find_map(|(field, (name, min, max))| {
            let values = field.split(',').flat_map(|part| {
                let range = part.split('/').next().unwrap_or_default();
                range.split('-').map(str::parse::<u32>).collect::<Vec<_>>()
            });
            values
                .flatten()
                .find(|n| *n < min || *n > max)
                .map(|n| format!("{name} {n} is out of range ({min}-{max})"))
        })
}

/// croner's message without its prefixes ("Invalid pattern: ...").
fn cron_reason(message: &str) -> String {
    let reason = message.rsplit(": ").next().unwrap_or(message).trim();
    let reason = reason.trim_end_matches('.');
    let mut chars = reason.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "not a cron expression".to_string(),
    }
}

/// The span of `len` bytes at `offset` of a string literal's value, when
/// the literal has no escapes (so value and source line up); else the
/// whole literal.
fn sub_span(lit: &ast::StrLit, offset: usize, len: usize) -> Span {
    if lit.span.len() == lit.value.len() + 2 {
        let start = lit.span.start + 1 + offset;
        Span::new(start, (start + len).min(lit.span.end - 1).max(start))
    } else {
        lit.span
    }
}

fn bad_path(span: Span, message: String, label: &str, help: String) -> Diagnostic {
    Diagnostic::new(Code::BadPath, span, message)
        .with_label(label.to_string())
        .with_help(help)
}

/// Checks the name of a `{param}`: lower_snake_case and not repeated.
fn path_param(span: Span, name: &str, seen: &[String]) -> Option<Diagnostic> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        let help = if name.is_empty() {
            "name the parameter, e.g. `{id}`".to_string()
        } else {
            format!(
                "parameter names are lower_snake_case: `{{{}}}`",
                snake(name)
            )
        };
        return Some(bad_path(
            span,
            format!("`{{{name}}}` is not a valid path parameter name"),
            "invalid name",
            help,
        ));
    }
    seen.iter().any(|p| p == name).then(|| {
        bad_path(
            span,
            format!("path parameter `{name}` appears twice"),
            "repeated",
            "give each parameter its own name".into(),
        )
    })
}

/// `customerId` -> `customer_id`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// `a` or `an`, before a trigger kind.
fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// `trigger.message` of an email trigger.
fn email_message_type() -> Type {
    Type::record(vec![
        ("from".into(), Type::String),
        ("to".into(), Type::list(Type::String)),
        ("subject".into(), Type::String),
        ("text".into(), Type::String),
        ("html".into(), Type::optional(Type::String)),
        ("headers".into(), Type::map(Type::String)),
        ("attachments".into(), Type::list(Type::File)),
        ("message_id".into(), Type::String),
    ])
}

fn schedule_type() -> Type {
    Type::record(vec![
        ("fired_at".into(), Type::Time),
        ("previous".into(), Type::optional(Type::Time)),
    ])
}

/// The `config.x` entries an expression names, found where a value is read
/// as it is: through fields, calls and their arguments, lists, records and
/// interpolations. Operators, lambdas and conditionals are not looked into,
/// as before the shared walk: that decides which entries count as unused.
#[derive(Default)]
struct ConfigRefs<'ast> {
    names: Vec<&'ast str>,
}

impl<'ast> Visitor<'ast> for ConfigRefs<'ast> {
    fn visit_expr(&mut self, e: &'ast ast::Expr) {
        match &e.kind {
            ExprKind::Field { target, name, .. } if matches!(&target.kind, ExprKind::Name(n) if n.name == "config") =>
            {
                self.names.push(&name.name);
            }
            ExprKind::Field { .. }
            | ExprKind::Call { .. }
            | ExprKind::List(_)
            | ExprKind::Record(_)
            | ExprKind::Str(_) => walk_expr(self, e),
            _ => {}
        }
    }
}

/// The entries a config template names (`"${config.inbox}/*.csv"`: `inbox`).
fn config_refs(template: &str) -> Vec<&str> {
    let mut refs = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${config.") {
        let after = &rest[start + "${config.".len()..];
        let Some(end) = after.find('}') else { break };
        refs.push(&after[..end]);
        rest = &after[end + 1..];
    }
    refs
}

/// `template` with each `${config.name}` replaced by the entry's name, so
/// that the braces of a config reference are not taken for a wildcard.
fn without_config_refs(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${config.") {
        let after = &rest[start + "${config.".len()..];
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..start]);
        out.push_str(&after[..end]);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// What is wrong with a file-name pattern, if anything: exactly what the
/// runtime's matcher refuses.
fn name_pattern_problem(pattern: &str) -> Option<String> {
    glob::Glob::new(pattern).err()
}

/// The runtime's file-name matcher, compiled into flowc as well (the file
/// depends on nothing else), so that one parser decides what is a pattern.
#[allow(dead_code)] // flowc only parses; matching is the runtime's
#[path = "../../runtime/src/core/glob.rs"]
mod glob;

#[cfg(test)]
mod name_pattern_tests {
    use super::name_pattern_problem;

    #[test]
    fn brackets_must_close() {
        for ok in [
            "*.csv",
            "order-[0-9].csv",
            "[!.]*",
            "[]x]*",
            "stock.{csv,txt}",
            "a\\[b",
            "{a,{b,c}}",
        ] {
            assert_eq!(name_pattern_problem(ok), None, "{ok}");
        }
        for bad in ["order-[0-9.csv", "stock.{csv,txt", "{a,{b,c}"] {
            assert!(name_pattern_problem(bad).is_some(), "{bad}");
        }
    }
}
