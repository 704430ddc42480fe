//! Connections (LANGUAGE.md §12): `connection NAME { ... }` declarations
//! and the `via: NAME` argument of `http.*` steps.
//!
//! A connection's options are validated here and turned into
//! [`ConnectionFacts`] with nothing left to interpret: codegen reads the
//! facts, never the option list.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, ArgValue, ExprKind, Item, StrPart};

use super::facts::Setting;
use super::suggest::did_you_mean;
use super::types::Type;
use super::Checker;

/// A validated `connection` declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionFacts {
    pub name: String,
    pub auth: ConnectionAuth,
    /// `limit: { requests: N, per: D }`.
    pub limit: Option<RequestLimit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimit {
    pub requests: u32,
    pub per: Duration,
}

/// How requests through a connection authenticate.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionAuth {
    /// No credentials (a connection for its `limit:` only).
    None,
    Bearer(Setting),
    Basic {
        user: Setting,
        password: Setting,
    },
    ApiKey {
        header: String,
        key: Setting,
    },
    OAuth2(OAuth2Facts),
    Aws(AwsFacts),
}

/// `aws: { region, access_key, secret_key, endpoint }`.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsFacts {
    pub region: Setting,
    pub access_key: Setting,
    pub secret_key: Setting,
    /// An S3-compatible service or emulator; `None`: AWS itself.
    pub endpoint: Option<Setting>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2Facts {
    pub grant: Grant,
    pub token_url: Setting,
    pub client_id: Setting,
    pub client_secret: Option<Setting>,
    pub scopes: Vec<String>,
    /// The first refresh token (`oauth2: refresh_token`); `None`: the one
    /// `BINARY connect NAME` stored.
    pub refresh_token: Option<Setting>,
    /// Where `BINARY connect NAME` sends the person who consents.
    pub authorize_url: Option<Setting>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    RefreshToken,
}

/// The ways a connection authenticates; at most one per connection.
const SCHEMES: &[&str] = &["oauth2", "bearer", "basic", "api_key", "aws"];
/// Options of `oauth2:` connections only.
const OAUTH2_OPTIONS: &[&str] = &[
    "token_url",
    "client_id",
    "client_secret",
    "scopes",
    "refresh_token",
    "authorize_url",
];
const GRANTS: &[&str] = &["client_credentials", "refresh_token"];

/// A complete example per scheme, for help texts.
fn example(scheme: &str) -> &'static str {
    match scheme {
        "bearer" => "bearer: config.helpdesk_token",
        "basic" => "basic: { user: config.erp_user, password: config.erp_password }",
        "api_key" => "api_key: { header: \"X-Shop-Key\", key: config.shop_key }",
        "limit" => "limit: { requests: 10, per: 1s }",
        "scopes" => "scopes: [\"contacts.read\"]",
        "aws" => "aws: { region: \"us-east-1\", access_key: config.aws_key, secret_key: config.aws_secret }",
        _ => "oauth2: client_credentials",
    }
}

/// What an option's value must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    /// `config.x` (a `Secret` or text) or a string literal.
    Secret,
    /// `config.x` of type `Url` or a URL literal.
    Url,
    /// The same, or a `Url?` config entry (unset: no value).
    OptionalUrl,
    /// `config.x` or a string literal, not secret.
    Text,
}

impl Checker<'_> {
    /// Validates every `connection` declaration (before the flows, whose
    /// `via:` arguments name them).
    pub(super) fn collect_connections(&mut self) {
        for item in &self.file.items {
            let Item::Connection(decl) = item else {
                continue;
            };
            if let Some(first) = self.program.connections.get(&decl.name.name) {
                let first = first.1;
                self.error(
                    Diagnostic::new(
                        Code::DuplicateConnection,
                        decl.name.span,
                        format!("connection `{}` is declared twice", decl.name),
                    )
                    .with_label("second declaration")
                    .with_secondary(first, "first declared here")
                    .with_help("give each connection its own name, or remove one"),
                );
                for opt in &decl.options {
                    if let ArgValue::Expr(value) = &opt.value {
                        self.mark_config_refs(value);
                    }
                }
                continue;
            }
            let facts = self.connection(decl);
            self.used_connections.insert(decl.name.name.clone(), false);
            self.program
                .connections
                .insert(decl.name.name.clone(), (facts, decl.name.span));
        }
    }

    fn connection(&mut self, decl: &ast::ConnectionDecl) -> ConnectionFacts {
        let mut seen: BTreeMap<&str, ast::Span> = BTreeMap::new();
        let mut scheme: Option<(&str, ast::Span)> = None;
        for opt in &decl.options {
            let name = opt.name.name.as_str();
            if let Some(first) = seen.insert(name, opt.name.span) {
                self.error(
                    Diagnostic::new(
                        Code::BadConnectionOption,
                        opt.name.span,
                        format!("option `{name}:` is given twice"),
                    )
                    .with_label("given again here")
                    .with_secondary(first, "first given here")
                    .with_help("remove one of them"),
                );
                continue;
            }
            if SCHEMES.contains(&name) {
                if let Some((first, span)) = scheme {
                    self.error(
                        Diagnostic::new(
                            Code::BadConnectionOption,
                            opt.name.span,
                            format!("a connection authenticates one way, but this one has `{first}:` and `{name}:`"),
                        )
                        .with_label("second way to authenticate")
                        .with_secondary(span, "first one")
                        .with_help("declare two connections if the service takes both"),
                    );
                } else {
                    scheme = Some((name, opt.name.span));
                }
            }
        }
        let scheme_name = scheme.map(|(s, _)| s);
        let mut oauth2 = OAuth2Parts::default();
        let mut auth = ConnectionAuth::None;
        let mut limit = None;
        for opt in &decl.options {
            let name = opt.name.name.as_str();
            let ArgValue::Expr(value) = &opt.value else {
                self.error(
                    Diagnostic::new(
                        Code::BadConnectionOption,
                        opt.span,
                        format!("`{name}:` takes a value, not a type"),
                    )
                    .with_help(format!("write e.g. `{}`", example(name))),
                );
                continue;
            };
            if seen.get(name) != Some(&opt.name.span) {
                continue; // a repeated option, reported above
            }
            match name {
                "bearer" => {
                    if let Some(token) = self.setting(name, value, Takes::Secret) {
                        auth = ConnectionAuth::Bearer(token);
                    }
                }
                "basic" => {
                    let fields = self.record_option(name, value, &["user", "password"]);
                    let user = fields
                        .get("user")
                        .and_then(|e| self.setting("user", e, Takes::Text));
                    let password = fields
                        .get("password")
                        .and_then(|e| self.setting("password", e, Takes::Secret));
                    if let (Some(user), Some(password)) = (user, password) {
                        auth = ConnectionAuth::Basic { user, password };
                    }
                }
                "api_key" => {
                    let fields = self.record_option(name, value, &["header", "key"]);
                    let header = fields.get("header").and_then(|e| self.header_name(e));
                    let key = fields
                        .get("key")
                        .and_then(|e| self.setting("key", e, Takes::Secret));
                    if let (Some(header), Some(key)) = (header, key) {
                        auth = ConnectionAuth::ApiKey { header, key };
                    }
                }
                "aws" => {
                    if let Some(facts) = self.aws(value) {
                        auth = ConnectionAuth::Aws(facts);
                    }
                }
                "oauth2" => oauth2.grant = self.grant(value),
                "limit" => limit = self.limit(value),
                _ if OAUTH2_OPTIONS.contains(&name) => {
                    if scheme_name != Some("oauth2") {
                        self.error(
                            Diagnostic::new(
                                Code::BadConnectionOption,
                                opt.name.span,
                                format!("`{name}:` is an option of `oauth2:` connections"),
                            )
                            .with_label(match scheme_name {
                                Some(s) => format!("this connection uses `{s}:`"),
                                None => "this connection has no `oauth2:`".to_string(),
                            })
                            .with_help("add `oauth2: client_credentials` (or `refresh_token`), or remove this option"),
                        );
                        self.mark_config_refs(value);
                        continue;
                    }
                    oauth2.option(self, name, value);
                }
                _ => {
                    let known = SCHEMES
                        .iter()
                        .chain(OAUTH2_OPTIONS)
                        .chain(&["limit"])
                        .copied();
                    let mut d = Diagnostic::new(
                        Code::BadConnectionOption,
                        opt.name.span,
                        format!("unknown connection option `{name}:`"),
                    )
                    .with_label("unknown option");
                    d = match did_you_mean(name, known) {
                        Some(s) => d.with_help(format!("did you mean `{s}:`?")),
                        None => d.with_help(format!(
                            "options: {}, token_url, client_id, client_secret, scopes, refresh_token, authorize_url, limit",
                            SCHEMES.join(", ")
                        )),
                    };
                    self.error(d);
                    self.mark_config_refs(value);
                }
            }
        }
        if scheme_name == Some("oauth2") {
            if let Some(facts) = oauth2.finish(self, decl) {
                auth = ConnectionAuth::OAuth2(facts);
            }
        }
        ConnectionFacts {
            name: decl.name.name.clone(),
            auth,
            limit,
        }
    }

    /// `config.x` or a string literal of the kind `takes`.
    fn setting(&mut self, option: &str, e: &ast::Expr, takes: Takes) -> Option<Setting> {
        let expected = match takes {
            Takes::Secret | Takes::Text => Type::Secret,
            Takes::Url => Type::Url,
            Takes::OptionalUrl => Type::optional(Type::Url),
        };
        let setting = match &e.kind {
            ExprKind::Field { target, name, .. } if matches!(&target.kind, ExprKind::Name(n) if n.name == "config") => {
                Some(Setting::Config(name.name.clone()))
            }
            ExprKind::Str(parts) => match parts.as_slice() {
                [] => Some(Setting::Literal(String::new())),
                [StrPart::Lit(text)] => Some(Setting::Literal(text.clone())),
                _ => None,
            },
            _ => None,
        };
        let Some(setting) = setting else {
            self.mark_config_refs(e);
            self.error(
                Diagnostic::new(
                    Code::BadConnectionOption,
                    e.span,
                    format!("`{option}:` takes a config entry or a string literal"),
                )
                .with_label("computed value")
                .with_help(format!(
                    "write `{option}: config.{option}`: a connection is set up once, at start-up"
                )),
            );
            return None;
        };
        let before = self.diags.len();
        let actual = self.infer_const(e, &expected);
        if self.diags.len() > before {
            return None;
        }
        if !self.assignable(&actual, &expected) {
            let wanted = match takes {
                Takes::Url | Takes::OptionalUrl => "a `Url`",
                Takes::Secret => "a `Secret`",
                Takes::Text => "text",
            };
            self.error(
                Diagnostic::new(
                    Code::BadConnectionOption,
                    e.span,
                    format!("`{option}:` takes {wanted}, not `{actual}`"),
                )
                .with_label(format!("`{actual}`")),
            );
            return None;
        }
        if matches!(takes, Takes::Url | Takes::OptionalUrl) {
            if let Setting::Literal(text) = &setting {
                if let Some(problem) = super::expr::url_problem(text, &Type::Url) {
                    self.error(
                        Diagnostic::new(
                            Code::BadConnectionOption,
                            e.span,
                            format!("`{option}:` is not a valid URL"),
                        )
                        .with_label(problem),
                    );
                    return None;
                }
            }
        }
        Some(setting)
    }

    /// `aws: { region, access_key, secret_key, endpoint }` (`endpoint`
    /// optional).
    fn aws(&mut self, e: &ast::Expr) -> Option<AwsFacts> {
        let fields = self.record_entries(
            "aws",
            e,
            &["region", "access_key", "secret_key"],
            &["endpoint"],
        );
        let mut take =
            |name: &str, takes| fields.get(name).and_then(|v| self.setting(name, v, takes));
        let region = take("region", Takes::Text);
        let access_key = take("access_key", Takes::Secret);
        let secret_key = take("secret_key", Takes::Secret);
        let endpoint = take("endpoint", Takes::OptionalUrl);
        Some(AwsFacts {
            region: region?,
            access_key: access_key?,
            secret_key: secret_key?,
            endpoint,
        })
    }

    /// The entries of a `{ a: ..., b: ... }` option, each of `fields`
    /// required and no other allowed.
    fn record_option<'e>(
        &mut self,
        option: &str,
        e: &'e ast::Expr,
        fields: &[&str],
    ) -> BTreeMap<String, &'e ast::Expr> {
        self.record_entries(option, e, fields, &[])
    }

    /// The entries of a `{ a: ..., b: ... }` option: each of `required`,
    /// any of `optional`, no other.
    fn record_entries<'e>(
        &mut self,
        option: &str,
        e: &'e ast::Expr,
        required: &[&str],
        optional: &[&str],
    ) -> BTreeMap<String, &'e ast::Expr> {
        let all: Vec<&str> = required.iter().chain(optional).copied().collect();
        let fields = all.as_slice();
        let mut found = BTreeMap::new();
        let ExprKind::Record(entries) = &e.kind else {
            self.mark_config_refs(e);
            self.error(
                Diagnostic::new(
                    Code::BadConnectionOption,
                    e.span,
                    format!(
                        "`{option}:` takes {{ {} }}",
                        fields
                            .iter()
                            .map(|f| format!("{f}: ..."))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .with_help(format!("write e.g. `{}`", example(option))),
            );
            return found;
        };
        for entry in entries {
            let key = entry.key.name().to_string();
            if fields.contains(&key.as_str()) {
                found.insert(key, &entry.value);
            } else {
                self.mark_config_refs(&entry.value);
                let mut d = Diagnostic::new(
                    Code::BadConnectionOption,
                    entry.span,
                    format!("`{option}:` has no field `{key}`"),
                );
                if let Some(s) = did_you_mean(&key, fields.iter().copied()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.error(d);
            }
        }
        let missing: Vec<String> = required
            .iter()
            .filter(|f| !found.contains_key(**f))
            .map(|f| format!("`{f}`"))
            .collect();
        if !missing.is_empty() {
            self.error(
                Diagnostic::new(
                    Code::BadConnectionOption,
                    e.span,
                    format!("`{option}:` is missing {}", missing.join(" and ")),
                )
                .with_help(format!("write e.g. `{}`", example(option))),
            );
        }
        found
    }

    fn header_name(&mut self, e: &ast::Expr) -> Option<String> {
        let text = match &e.kind {
            ExprKind::Str(parts) => match parts.as_slice() {
                [StrPart::Lit(text)] => Some(text.clone()),
                _ => None,
            },
            _ => None,
        };
        let valid = text.as_deref().is_some_and(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        });
        if !valid {
            self.mark_config_refs(e);
            self.error(
                Diagnostic::new(
                    Code::BadConnectionOption,
                    e.span,
                    "`header:` takes a header name as a string literal",
                )
                .with_help(format!("write e.g. `{}`", example("api_key"))),
            );
            return None;
        }
        text
    }

    fn grant(&mut self, e: &ast::Expr) -> Option<Grant> {
        let given = match &e.kind {
            ExprKind::Name(n) => n.name.as_str(),
            _ => "",
        };
        match given {
            "client_credentials" => return Some(Grant::ClientCredentials),
            "refresh_token" => return Some(Grant::RefreshToken),
            _ => {}
        }
        let mut d = Diagnostic::new(
            Code::BadConnectionOption,
            e.span,
            "`oauth2:` takes the grant: `client_credentials` or `refresh_token`",
        )
        .with_label("unknown grant");
        d = match did_you_mean(given, GRANTS.iter().copied()) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d.with_help(
                "`client_credentials` for a service account; `refresh_token` when a person consented (see `BINARY connect`)",
            ),
        };
        self.error(d);
        None
    }

    fn limit(&mut self, e: &ast::Expr) -> Option<RequestLimit> {
        let fields = self.record_option("limit", e, &["requests", "per"]);
        let requests = fields.get("requests").and_then(|r| match r.kind {
            ExprKind::Int(n) if n > 0 && n <= i64::from(u32::MAX) => Some(n as u32),
            _ => {
                self.error(
                    Diagnostic::new(
                        Code::BadConnectionOption,
                        r.span,
                        "`requests:` takes a whole number of requests, at least 1",
                    )
                    .with_help(format!("write e.g. `{}`", example("limit"))),
                );
                None
            }
        });
        let per = fields.get("per").and_then(|p| match p.kind {
            ExprKind::Duration(ms) if ms > 0 => Some(Duration::from_millis(ms)),
            _ => {
                self.error(
                    Diagnostic::new(
                        Code::BadConnectionOption,
                        p.span,
                        "`per:` takes a duration such as `1s` or `1m`",
                    )
                    .with_help(format!("write e.g. `{}`", example("limit"))),
                );
                None
            }
        });
        Some(RequestLimit {
            requests: requests?,
            per: per?,
        })
    }

    /// `via: NAME` of a call (`what`: `http.get`, `file.read`, ...) or a
    /// trigger: a declared connection of the kind it needs: `aws:` for
    /// everything but `http.*`, which takes any other (E0705).
    pub(super) fn check_via(&mut self, e: &ast::Expr, what: &str) {
        let ExprKind::Name(n) = &e.kind else {
            self.check_expr(e, None);
            self.error(
                Diagnostic::new(
                    Code::UnknownConnection,
                    e.span,
                    "`via:` takes the name of a connection",
                )
                .with_label("not a connection name")
                .with_help("declare `connection crm { ... }` and write `via: crm`"),
            );
            return;
        };
        if let Some(entry) = self.used_connections.get_mut(&n.name) {
            *entry = true;
            self.check_connection_kind(n, what);
            return;
        }
        let declared: Vec<&str> = self
            .program
            .connections
            .keys()
            .map(String::as_str)
            .collect();
        let mut d = Diagnostic::new(
            Code::UnknownConnection,
            n.span,
            format!("unknown connection `{}`", n.name),
        )
        .with_label("no connection by this name");
        d = match did_you_mean(&n.name, declared.iter().copied()) {
            Some(s) => {
                // Meant, so not also reported unused.
                self.used_connections.insert(s.clone(), true);
                d.with_help(format!("did you mean `{s}`?"))
            }
            None if declared.is_empty() => d.with_help(format!(
                "declare it: `connection {} {{ bearer: config.{}_token }}`",
                n.name, n.name
            )),
            None => d.with_help(format!("connections: {}", declared.join(", "))),
        };
        self.error(d);
    }

    /// E0705: an `aws:` connection for an `http.*` call, or another kind
    /// for an `s3://` path, a queue or a topic.
    fn check_connection_kind(&mut self, n: &ast::Ident, what: &str) {
        let Some((_, declared)) = self.program.connections.get(&n.name) else {
            return;
        };
        // By the declaration, not the facts: an `aws:` option with a
        // mistake (already reported) still makes an `aws:` connection.
        let is_aws = self.file.items.iter().any(|item| {
            matches!(item, Item::Connection(c) if c.name.name == n.name
                && c.options.iter().any(|o| o.name.name == "aws"))
        });
        let wants_aws = !what.starts_with("http.");
        if is_aws == wants_aws {
            return;
        }
        let declared = *declared;
        // `file.read`, or a phrase such as "a files trigger on `s3://`".
        let what = if what.contains(' ') {
            what.to_string()
        } else {
            format!("`{what}`")
        };
        let d = if is_aws {
            Diagnostic::new(
                Code::WrongConnectionKind,
                n.span,
                format!("{what} cannot go through `aws:` connection `{}`", n.name),
            )
            .with_label("an `aws:` connection")
            .with_secondary(declared, "declared here")
            .with_help("an `aws:` connection signs `s3://` paths and SQS/SNS requests; declare another connection (`bearer:`, `oauth2:`, ...) for this HTTP API")
        } else {
            Diagnostic::new(
                Code::WrongConnectionKind,
                n.span,
                format!(
                    "{what} needs an `aws:` connection, and `{}` is not one",
                    n.name
                ),
            )
            .with_label("not an `aws:` connection")
            .with_secondary(declared, "declared here")
            .with_help(format!(
                "declare `connection cloud {{ {} }}` and write `via: cloud`",
                example("aws")
            ))
        };
        self.error(d);
    }

    /// E0703: a step through a connection takes its credentials from the
    /// connection, never also from `bearer:`/`basic:`.
    pub(super) fn check_via_credentials(&mut self, args: &[ast::Arg]) {
        let named = |name: &str| {
            args.iter()
                .find(|a| a.name.as_ref().is_some_and(|n| n.name == name))
        };
        let Some(via) = named("via") else { return };
        for credentials in ["bearer", "basic"] {
            if let Some(arg) = named(credentials) {
                self.error(
                    Diagnostic::new(
                        Code::ViaWithCredentials,
                        arg.span,
                        format!("`{credentials}:` together with `via:`"),
                    )
                    .with_label("credentials given twice")
                    .with_secondary(via.span, "the connection authenticates this request")
                    .with_help(format!(
                        "remove `{credentials}:`; the connection's own credentials are sent"
                    )),
                );
            }
        }
    }

    /// W0011 for connections no step uses.
    pub(super) fn warn_unused_connections(&mut self) {
        let unused: Vec<(String, ast::Span)> = self
            .program
            .connections
            .iter()
            .filter(|(name, _)| self.used_connections.get(*name) == Some(&false))
            .map(|(name, (_, span))| (name.clone(), *span))
            .collect();
        for (name, span) in unused {
            self.diags.push(
                Diagnostic::new(
                    Code::UnusedConnection,
                    span,
                    format!("connection `{name}` is never used"),
                )
                .with_label("no step uses it")
                .with_help(format!(
                    "remove it, or pass `via: {name}` to the steps that reach this service"
                )),
            );
        }
    }
}

/// The `oauth2:` options as they are read.
#[derive(Default)]
struct OAuth2Parts {
    grant: Option<Grant>,
    token_url: Option<Setting>,
    client_id: Option<Setting>,
    client_secret: Option<Setting>,
    scopes: Vec<String>,
    refresh_token: Option<Setting>,
    authorize_url: Option<Setting>,
}

impl OAuth2Parts {
    fn option(&mut self, checker: &mut Checker<'_>, name: &str, value: &ast::Expr) {
        match name {
            "token_url" => self.token_url = checker.setting(name, value, Takes::Url),
            "authorize_url" => self.authorize_url = checker.setting(name, value, Takes::Url),
            "client_id" => self.client_id = checker.setting(name, value, Takes::Text),
            "client_secret" => self.client_secret = checker.setting(name, value, Takes::Secret),
            "refresh_token" => self.refresh_token = checker.setting(name, value, Takes::Secret),
            "scopes" => self.scopes = scopes(checker, value),
            _ => {}
        }
    }

    /// The facts, once the required options are there (E0702 naming the
    /// missing ones otherwise).
    fn finish(self, checker: &mut Checker<'_>, decl: &ast::ConnectionDecl) -> Option<OAuth2Facts> {
        let given = |name: &str| decl.options.iter().any(|o| o.name.name == name);
        let mut missing = Vec::new();
        for required in ["token_url", "client_id"] {
            if !given(required) {
                missing.push(format!("`{required}:`"));
            }
        }
        if self.grant == Some(Grant::ClientCredentials) && !given("client_secret") {
            missing.push("`client_secret:`".to_string());
        }
        if !missing.is_empty() {
            checker.error(
                Diagnostic::new(
                    Code::BadConnectionOption,
                    decl.name.span,
                    format!(
                        "OAuth2 connection `{}` is missing {}",
                        decl.name,
                        missing.join(", ")
                    ),
                )
                .with_label("declared here")
                .with_help("an OAuth2 connection needs `token_url: config.x_token_url`, `client_id: config.x_client_id` and, for `client_credentials`, `client_secret: config.x_client_secret`"),
            );
            return None;
        }
        Some(OAuth2Facts {
            grant: self.grant?,
            token_url: self.token_url?,
            client_id: self.client_id?,
            client_secret: self.client_secret,
            scopes: self.scopes,
            refresh_token: self.refresh_token,
            authorize_url: self.authorize_url,
        })
    }
}

/// `scopes: ["a", "b"]`: string literals without spaces.
fn scopes(checker: &mut Checker<'_>, e: &ast::Expr) -> Vec<String> {
    let items = match &e.kind {
        ExprKind::List(items) => items
            .iter()
            .map(|i| match &i.kind {
                ExprKind::Str(parts) => match parts.as_slice() {
                    [StrPart::Lit(s)] if !s.is_empty() && !s.contains(char::is_whitespace) => {
                        Some(s.clone())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<_>>>(),
        _ => None,
    };
    items.unwrap_or_else(|| {
        checker.error(
            Diagnostic::new(
                Code::BadConnectionOption,
                e.span,
                "`scopes:` takes a list of scope names as string literals",
            )
            .with_help(format!("write e.g. `{}`", example("scopes"))),
        );
        Vec::new()
    })
}
