//! `connection` declarations (LANGUAGE.md §12) as the runtime's
//! `ConnectionDef`s, built once the config is loaded.

use crate::check::connection::{AwsFacts, ConnectionAuth, ConnectionFacts, Grant, RequestLimit};
use crate::check::Program;

use super::lit;
use super::trigger::{duration, optional_setting, setting};

/// `fn connections(config: &Config) -> Vec<ConnectionDef>`, or `None` for a
/// file without connections (the runtime's `no_connections` is used).
pub(super) fn connections_fn(program: &Program) -> Option<codegen::Function> {
    if program.connections.is_empty() {
        return None;
    }
    let defs: Vec<String> = program
        .connections
        .values()
        .map(|(facts, _)| connection_def(facts))
        .collect();
    let mut f = codegen::Function::new("connections");
    f.arg("config", "&Config")
        .ret("Vec<ConnectionDef>")
        .line(format!("Vec::from([{}])", defs.join(", ")));
    Some(f)
}

fn connection_def(c: &ConnectionFacts) -> String {
    let limit = match c.limit {
        Some(RequestLimit { requests, per }) => format!(
            "Some(RequestLimit {{ requests: {requests}, per: {} }})",
            duration(per)
        ),
        None => "None".to_string(),
    };
    format!(
        "ConnectionDef {{ name: {}, auth: {}, limit: {limit} }}",
        lit(&c.name),
        auth(&c.auth)
    )
}

fn auth(a: &ConnectionAuth) -> String {
    match a {
        ConnectionAuth::None => "ConnectionAuth::None".to_string(),
        ConnectionAuth::Bearer(token) => {
            format!("ConnectionAuth::Bearer {{ token: {} }}", setting(token))
        }
        ConnectionAuth::Basic { user, password } => format!(
            "ConnectionAuth::Basic {{ user: {}, password: {} }}",
            setting(user),
            setting(password)
        ),
        ConnectionAuth::ApiKey { header, key } => format!(
            "ConnectionAuth::ApiKey {{ header: {}, key: {} }}",
            lit(header),
            setting(key)
        ),
        ConnectionAuth::Aws(AwsFacts {
            region,
            access_key,
            secret_key,
            endpoint,
        }) => format!(
            "ConnectionAuth::Aws(AwsDef {{ region: {}, access_key: {}, secret_key: {}, endpoint: {} }})",
            setting(region),
            setting(access_key),
            setting(secret_key),
            // An unset `Url?` entry reads as empty: AWS itself.
            match endpoint {
                Some(e) => format!("Some({}).filter(|e: &String| !e.is_empty())", setting(e)),
                None => "None".to_string(),
            },
        ),
        ConnectionAuth::OAuth2(o) => {
            let grant = match o.grant {
                Grant::ClientCredentials => "OAuth2Grant::ClientCredentials",
                Grant::RefreshToken => "OAuth2Grant::RefreshToken",
            };
            let scopes: Vec<String> = o.scopes.iter().map(|s| lit(s)).collect();
            format!(
                "ConnectionAuth::OAuth2(OAuth2Def {{ grant: {grant}, token_url: {}, client_id: {}, client_secret: {}, scopes: vec![{}], refresh_token: {}, authorize_url: {} }})",
                setting(&o.token_url),
                setting(&o.client_id),
                optional_setting(&o.client_secret),
                scopes.join(", "),
                optional_setting(&o.refresh_token),
                optional_setting(&o.authorize_url),
            )
        }
    }
}
