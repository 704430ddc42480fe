//! `email.send(to, subject, text, attach:, from:)` → `true`, over SMTP.
//!
//! The server comes from the config entry `smtp_url` (the checker requires
//! the entry wherever `email.send` is used, E0504):
//!
//! * `smtp://[user:password@]host[:port]` (port 587 by default): plain SMTP,
//!   upgraded with `STARTTLS` when the server offers it. When the URL has a
//!   password and the server offers no `STARTTLS`, the step fails instead
//!   of sending the password in clear.
//! * `?tls=required`: `STARTTLS` is mandatory (the step fails without it).
//! * `?tls=none`: never upgrade (local relays and test servers).
//! * `smtps://...` (port 465 by default): TLS from the first byte.
//!
//! Certificates are checked against the Mozilla roots (webpki-roots), the
//! same as `http.*`. The message is `multipart/mixed` when it has
//! attachments: the text body, then each `File` (its `bytes` decoded,
//! base64 in the message so it arrives byte for byte, content type guessed
//! from the file name's extension). The sender is `from:`, else the URL's
//! user name when it is an address, else `flowc@localhost`.
//!
//! Failures: a connection that cannot be made, a timeout, a broken
//! connection and 4xx answers are retried; 5xx answers (a recipient the
//! server rejects, a refused login), invalid addresses and a missing
//! `STARTTLS` are permanent. Messages name the server (`host:port`, never
//! the URL with its password), the command, the address and the server's
//! answer.
//!
//! Delivery is at least once: a finished step is journaled and not sent
//! again on a replay, but a crash (or a lost connection) between the
//! server's acceptance and the journal write sends the message again. Every
//! attempt carries the same `Message-ID` (`<EXECUTION.STEP@flowc>`), so
//! receivers can drop the duplicate.

use std::time::Duration;

use futures::future::{BoxFuture, FutureExt as _};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::Address;
use serde_json::Value;

use crate::core::error::StepError;
use crate::engine::ctx::{Args, StepCall};

const FUNC: &str = "email.send";

/// The sender when neither `from:` nor the URL's user name gives one.
pub(crate) const DEFAULT_FROM: &str = "flowc@localhost";

/// Limit of each network operation (connect, one command, the message).
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://?tls=required`: `STARTTLS` or fail.
    StartTlsRequired,
    /// `smtp://`: `STARTTLS` when offered.
    StartTlsOpportunistic,
    /// `smtp://?tls=none`: plain text.
    None,
}

/// Where and how to send, from `smtp_url`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SmtpTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) security: Security,
    /// User name and password, percent-decoded (a user name without a
    /// password only gives the default sender; there is no login).
    pub(crate) credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpTarget {
    // Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

impl SmtpTarget {
    /// `host:port`, as errors name the server.
    pub(crate) fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `smtp_url`. Errors never quote the URL (it may hold a password).
pub(crate) fn parse_smtp_url(text: &str) -> Result<SmtpTarget, String> {
    let url = crate::core::schema::parse_url(text.trim())
        .map_err(|e| format!("config entry `smtp_url` is not a valid URL ({e})"))?;
    let mut tls: Option<String> = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "tls" => tls = Some(v.into_owned()),
            other => {
                return Err(format!(
                    "config entry `smtp_url`: unknown option `{other}` (the only option is `tls=required|none`)"
                ))
            }
        }
    }
    let (security, default_port) = match (url.scheme(), tls.as_deref()) {
        ("smtps", None | Some("required")) => (Security::Implicit, 465),
        ("smtp", None) => (Security::StartTlsOpportunistic, 587),
        ("smtp", Some("required")) => (Security::StartTlsRequired, 587),
        ("smtp", Some("none")) => (Security::None, 587),
        ("smtp" | "smtps", Some(other)) => {
            return Err(format!(
                "config entry `smtp_url`: `tls={other}` is not an option for {}:// (use tls=required or tls=none)",
                url.scheme()
            ))
        }
        (scheme, _) => {
            return Err(format!(
                "config entry `smtp_url` has scheme `{scheme}`; expected smtp:// (STARTTLS when offered) or smtps:// (TLS)"
            ))
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "config entry `smtp_url` has no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let decode = |s: &str, what: &str| -> Result<String, String> {
        crate::core::schema::percent_decode(s).ok_or_else(|| {
            format!("config entry `smtp_url`: the {what} is not valid percent-encoded UTF-8")
        })
    };
    let credentials = match url.password() {
        Some(p) => Some((decode(url.username(), "user name")?, decode(p, "password")?)),
        None if !url.username().is_empty() => {
            Some((decode(url.username(), "user name")?, String::new()))
        }
        None => None,
    };
    Ok(SmtpTarget {
        host,
        port: url.port().unwrap_or(default_port),
        security,
        credentials,
    })
}

/// A message ready to send: envelope and the formatted RFC 5322 bytes.
#[derive(Debug, Clone)]
pub(crate) struct Composed {
    pub(crate) from: Address,
    pub(crate) to: Vec<Address>,
    pub(crate) bytes: Vec<u8>,
}

fn mailbox(text: &str, what: &str) -> Result<Mailbox, StepError> {
    text.trim().parse::<Mailbox>().map_err(|e| {
        StepError::permanent(format!(
            "{FUNC}: {what} {text:?} is not a valid email address ({e})"
        ))
    })
}

/// The content type of an attachment, from its file name's extension.
pub(crate) fn content_type_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xls" => "application/vnd.ms-excel",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// One `File` value of `attach:` as (file name, content).
fn attachment(file: &Value, i: usize) -> Result<(String, Vec<u8>), StepError> {
    let bad = |why: &str| StepError::permanent(format!("{FUNC}: attach[{i}] {why}"));
    let Value::Object(f) = file else {
        return Err(bad("is not a File"));
    };
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .or_else(|| {
            f.get("path")
                .and_then(Value::as_str)
                .and_then(|p| std::path::Path::new(p).file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .ok_or_else(|| bad("has no name"))?;
    let bytes = match crate::core::files::file_data(file) {
        Some(data) => data.map_err(|_| bad(&format!("({name}): `bytes` is not valid base64")))?,
        None if f.contains_key("size") => {
            return Err(bad(&format!(
                "({name}) is too large to attach: it is passed by reference, not held in the run"
            )))
        }
        None => return Err(bad(&format!("({name}) has neither `bytes` nor `text`"))),
    };
    Ok((name, bytes))
}

/// The `Message-ID` of a step's message: the same on every attempt and
/// replay of that step in that execution.
pub(crate) fn message_id(execution_id: &str, step: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter_map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => Some(c),
                '[' | '.' => Some('.'),
                _ => None,
            })
            .collect()
    };
    format!("<{}.{}@flowc>", clean(execution_id), clean(step))
}

/// Builds the message from the call's arguments. `default_from` is used
/// when `from:` is not given.
pub(crate) fn compose(
    args: &Args,
    default_from: &str,
    message_id: String,
) -> Result<Composed, StepError> {
    let to = match args.param(0, "to") {
        Value::Array(items) if !items.is_empty() => items,
        Value::Array(_) => {
            return Err(StepError::permanent(format!(
                "{FUNC}: `to` is empty; give at least one address"
            )))
        }
        _ => {
            return Err(StepError::permanent(format!(
                "{FUNC}: `to` must be a list of addresses"
            )))
        }
    };
    let subject = args
        .param(1, "subject")
        .as_str()
        .ok_or_else(|| StepError::permanent(format!("{FUNC}: `subject` must be a String")))?;
    let text = args
        .param(2, "text")
        .as_str()
        .ok_or_else(|| StepError::permanent(format!("{FUNC}: `text` must be a String")))?;
    let from = match args.param(4, "from") {
        Value::String(s) => mailbox(s, "`from`")?,
        Value::Null => mailbox(default_from, "the default sender")?,
        _ => {
            return Err(StepError::permanent(format!(
                "{FUNC}: `from` must be a String"
            )))
        }
    };
    let files = match args.param(3, "attach") {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, f)| attachment(f, i))
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(StepError::permanent(format!(
                "{FUNC}: `attach` must be a list of Files"
            )))
        }
    };

    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(subject)
        .message_id(Some(message_id));
    let mut recipients = Vec::with_capacity(to.len());
    for (i, t) in to.iter().enumerate() {
        let text = t
            .as_str()
            .ok_or_else(|| StepError::permanent(format!("{FUNC}: to[{i}] must be a String")))?;
        let mb = mailbox(text, &format!("to[{i}]"))?;
        recipients.push(mb.email.clone());
        builder = builder.to(mb);
    }
    let built = if files.is_empty() {
        builder.singlepart(SinglePart::plain(text.to_string()))
    } else {
        let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(text.to_string()));
        for (name, bytes) in files {
            let content_type =
                ContentType::parse(content_type_for(&name)).unwrap_or(ContentType::TEXT_PLAIN);
            // Always base64, so the file arrives byte for byte: 7bit would
            // send its bare LFs, which servers rewrite or refuse.
            let body =
                Body::new_with_encoding(bytes, ContentTransferEncoding::Base64).map_err(|_| {
                    StepError::permanent(format!("{FUNC}: cannot encode attachment {name}"))
                })?;
            parts = parts.singlepart(Attachment::new(name).body(body, content_type));
        }
        builder.multipart(parts)
    };
    let message = built
        .map_err(|e| StepError::permanent(format!("{FUNC}: cannot build the message: {e}")))?;
    Ok(Composed {
        from: from.email,
        to: recipients,
        bytes: message.formatted(),
    })
}

/// The server's answer in an error (`550 5.1.1 no such user`), or the
/// error and its causes for anything else.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    match e.status() {
        Some(code) => match e.source() {
            Some(text) => format!("{code} {text}"),
            None => code.to_string(),
        },
        None => crate::core::error::error_chain(e),
    }
}

/// A permanent error for 5xx answers and client-side refusals, retryable
/// for 4xx answers and network trouble.
fn smtp_error(context: String, e: &lettre::transport::smtp::Error) -> StepError {
    let message = format!("{FUNC}: {context}: {}", describe(e));
    if e.is_permanent() || e.is_client() {
        StepError::permanent(message)
    } else {
        StepError::retryable(message)
    }
}

/// Sends `message` to the server of `target`: connect (TLS as asked),
/// `STARTTLS`, `AUTH`, `MAIL FROM`, one `RCPT TO` per recipient, `DATA`.
/// Each failure names its command and the server's answer.
pub(crate) async fn deliver(target: &SmtpTarget, message: &Composed) -> Result<(), StepError> {
    let server = target.server();
    let hello = ClientId::default();
    let tls = || {
        TlsParameters::new(target.host.clone()).map_err(|e| {
            StepError::permanent(format!("{FUNC}: TLS set-up for {server}: {}", describe(&e)))
        })
    };
    let wrapper = match target.security {
        Security::Implicit => Some(tls()?),
        _ => None,
    };
    let mut conn = AsyncSmtpConnection::connect_tokio1(
        (target.host.as_str(), target.port),
        Some(IO_TIMEOUT),
        &hello,
        wrapper,
        None,
    )
    .await
    .map_err(|e| {
        // Refused, unreachable, timed out, a greeting that is not 220: all
        // may pass.
        StepError::retryable(format!(
            "{FUNC}: cannot connect to SMTP server {server}: {}",
            describe(&e)
        ))
    })?;
    let mut usable = true;
    let result = session(&mut conn, target, &server, &hello, message, &mut usable).await;
    if result.is_ok() {
        // The message is accepted: a failed QUIT must not send it again.
        let _ = conn.quit().await;
    } else if usable {
        conn.abort().await;
    }
    // else: a failed TLS upgrade leaves no stream to say QUIT on; dropping
    // the connection closes the socket.
    result
}

async fn session(
    conn: &mut AsyncSmtpConnection,
    target: &SmtpTarget,
    server: &str,
    hello: &ClientId,
    message: &Composed,
    usable: &mut bool,
) -> Result<(), StepError> {
    let has_password = target
        .credentials
        .as_ref()
        .is_some_and(|(_, p)| !p.is_empty());
    let upgrade = match target.security {
        Security::StartTlsRequired => {
            if !conn.can_starttls() {
                return Err(StepError::permanent(format!(
                    "{FUNC}: SMTP server {server} does not offer STARTTLS, which smtp_url requires (tls=required)"
                )));
            }
            true
        }
        Security::StartTlsOpportunistic => {
            if !conn.can_starttls() && has_password {
                return Err(StepError::permanent(format!(
                    "{FUNC}: SMTP server {server} does not offer STARTTLS; not sending the password of smtp_url in clear (use smtps://, or add ?tls=none to allow it)"
                )));
            }
            conn.can_starttls()
        }
        Security::Implicit | Security::None => false,
    };
    if upgrade {
        let params = TlsParameters::new(target.host.clone()).map_err(|e| {
            StepError::permanent(format!("{FUNC}: TLS set-up for {server}: {}", describe(&e)))
        })?;
        conn.starttls(params, hello).await.map_err(|e| {
            *usable = false;
            smtp_error(format!("STARTTLS with {server}"), &e)
        })?;
    }
    if let Some((user, password)) = target.credentials.as_ref().filter(|_| has_password) {
        conn.auth(
            &[Mechanism::Plain, Mechanism::Login],
            &Credentials::new(user.clone(), password.clone()),
        )
        .await
        .map_err(|e| smtp_error(format!("login to {server} refused"), &e))?;
    }

    let info = conn.server_info();
    let mut params = Vec::new();
    let non_ascii_address = !message.from.to_string().is_ascii()
        || message.to.iter().any(|a| !a.to_string().is_ascii());
    if non_ascii_address {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Err(StepError::permanent(format!(
                "{FUNC}: an address is not ASCII and SMTP server {server} does not support SMTPUTF8"
            )));
        }
        params.push(MailParameter::SmtpUtfEight);
    }
    if !message.bytes.is_ascii() && info.supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    conn.command(Mail::new(Some(message.from.clone()), params))
        .await
        .map_err(|e| smtp_error(format!("sender <{}> refused by {server}", message.from), &e))?;
    for to in &message.to {
        conn.command(Rcpt::new(to.clone(), Vec::new()))
            .await
            .map_err(|e| smtp_error(format!("recipient <{to}> refused by {server}"), &e))?;
    }
    conn.command(Data)
        .await
        .map_err(|e| smtp_error(format!("DATA refused by {server}"), &e))?;
    conn.message(&message.bytes)
        .await
        .map_err(|e| smtp_error(format!("message refused by {server}"), &e))?;
    Ok(())
}

/// The sender when `from:` is not given: the URL's user name when it is an
/// address, else [`DEFAULT_FROM`].
pub(crate) fn default_from(target: Option<&SmtpTarget>) -> String {
    target
        .and_then(|t| t.credentials.as_ref())
        .map(|(user, _)| user.as_str())
        .filter(|u| u.parse::<Address>().is_ok())
        .unwrap_or(DEFAULT_FROM)
        .to_string()
}

/// `smtp_url` from the run's config, parsed; its password is added to the
/// runtime's redactor.
pub(crate) fn target_of(call: &StepCall) -> Result<SmtpTarget, StepError> {
    let text = match call.cx.config().get("smtp_url") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(StepError::permanent(format!(
                "{FUNC}: config entry `smtp_url` is not set (e.g. smtp://user:password@host:587)"
            )))
        }
    };
    let target = parse_smtp_url(&text).map_err(|e| StepError::permanent(format!("{FUNC}: {e}")))?;
    if let Some((_, password)) = &target.credentials {
        call.cx.services().redactor().add(password);
    }
    Ok(target)
}

/// `email.send(to, subject, text, attach:, from:)` → `true`.
pub(crate) fn send(call: StepCall) -> BoxFuture<'static, Result<Value, StepError>> {
    async move {
        let target = target_of(&call)?;
        let id = message_id(call.cx.execution_id(), &call.step);
        let message = compose(&call.args, &default_from(Some(&target)), id)?;
        deliver(&target, &message).await?;
        tracing::info!(
            server = %target.server(),
            recipients = message.to.len(),
            "email sent"
        );
        Ok(Value::Bool(true))
    }
    .boxed()
}

/// The test SMTP server and MIME reader of the end-to-end tests (one copy
/// for both crates; the path is relative to this file's folder).
#[cfg(test)]
#[path = "../../../tests/support/smtp.rs"]
mod smtp;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::smtp;
    use smtp::{Mime, SmtpServer};

    const WAIT: Duration = Duration::from_secs(10);

    fn target(url: &str) -> SmtpTarget {
        parse_smtp_url(url).unwrap()
    }

    fn file(name: &str, content: &[u8]) -> Value {
        json!({
            "path": format!("out/{name}"),
            "name": name,
            "size": content.len(),
            "text": String::from_utf8_lossy(content),
            "bytes": crate::core::bytes::encode(content),
        })
    }

    fn args(to: &[&str], attach: Vec<Value>) -> Args {
        Args::new()
            .arg(json!(to))
            .arg(json!("Weekly report"))
            .arg(json!("Hello,\nthe report is attached.\n"))
            .kw("attach", Value::Array(attach))
    }

    #[test]
    fn urls_give_server_security_and_credentials() {
        let t = target("smtp://mailer%40example.com:p%40ss@mail.example.com");
        assert_eq!(t.host, "mail.example.com");
        assert_eq!(t.port, 587);
        assert_eq!(t.security, Security::StartTlsOpportunistic);
        assert_eq!(
            t.credentials,
            Some(("mailer@example.com".into(), "p@ss".into()))
        );
        assert_eq!(default_from(Some(&t)), "mailer@example.com");
        assert!(!format!("{t:?}").contains("p@ss"));

        let t = target("smtps://relay.example:2465");
        assert_eq!((t.port, t.security), (2465, Security::Implicit));
        assert_eq!(target("smtps://relay.example").port, 465);
        assert_eq!(
            target("smtp://h:25?tls=required").security,
            Security::StartTlsRequired
        );
        let t = target("smtp://127.0.0.1:2525?tls=none");
        assert_eq!(
            (t.server().as_str(), t.security),
            ("127.0.0.1:2525", Security::None)
        );
        assert_eq!(t.credentials, None);
        assert_eq!(default_from(Some(&t)), DEFAULT_FROM);
        assert_eq!(target("smtp://[::1]:25").server(), "[::1]:25");
    }

    #[test]
    fn bad_urls_are_named_without_the_password() {
        for (url, want) in [
            ("http://user:hunter22@h", "scheme `http`"),
            (
                "smtp://user:hunter22@h?tls=maybe",
                "`tls=maybe` is not an option",
            ),
            ("smtp://user:hunter22@h?port=2", "unknown option `port`"),
            ("not a url hunter22", "not a valid URL"),
        ] {
            let e = parse_smtp_url(url).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("hunter22"), "{e}");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type_for("orders.CSV"), "text/csv");
        assert_eq!(content_type_for("a.pdf"), "application/pdf");
        assert_eq!(content_type_for("archive"), "application/octet-stream");
        assert_eq!(content_type_for("x.unknown"), "application/octet-stream");
        for name in ["a.csv", "a.xlsx", "a.json", "a.bin"] {
            assert!(ContentType::parse(content_type_for(name)).is_ok(), "{name}");
        }
    }

    #[test]
    fn message_ids_are_stable_and_well_formed() {
        let id = message_id("0190f1c2-aaaa-7bbb-8ccc-0123456789ab", "mail[1][0]");
        assert_eq!(id, "<0190f1c2-aaaa-7bbb-8ccc-0123456789ab.mail.1.0@flowc>");
        assert_ne!(
            id,
            message_id("0190f1c2-aaaa-7bbb-8ccc-0123456789ab", "mail[10]")
        );
    }

    #[test]
    fn bad_arguments_are_permanent_and_named() {
        let cases = [
            (args(&[], vec![]), "`to` is empty"),
            (
                args(&["not an address"], vec![]),
                "to[0] \"not an address\" is not a valid email address",
            ),
            (
                args(
                    &["a@example.com"],
                    vec![json!({"name": "x.csv", "bytes": "%%%"})],
                ),
                "attach[0] (x.csv): `bytes` is not valid base64",
            ),
            (
                args(&["a@example.com"], vec![]).kw("from", json!("nobody")),
                "`from` \"nobody\" is not a valid email address",
            ),
        ];
        for (a, want) in cases {
            let e = compose(&a, DEFAULT_FROM, message_id("e", "s")).unwrap_err();
            assert!(!e.retryable, "{e}");
            assert!(e.message.contains(want), "{e}");
        }
    }

    #[tokio::test]
    async fn a_message_with_an_attachment_arrives_intact() {
        let server = SmtpServer::start();
        let csv = b"sku,quantity\r\nwidget,3\nunicode,\xc3\xa9\n";
        let a = args(
            &["ops@example.com", "Boss <boss@example.com>"],
            vec![
                file("report.csv", csv),
                file("blob", &[0, 1, 2, 255]),
                file("plain.txt", b"a\nb\n.dot\n"),
            ],
        )
        .kw("from", json!("Reports <reports@example.com>"));
        let message = compose(&a, DEFAULT_FROM, message_id("exec-1", "mail")).unwrap();
        deliver(&target(&format!("{}?tls=none", server.url())), &message)
            .await
            .unwrap();
        let got = server.wait_for(1, WAIT);
        assert_eq!(got[0].from, "reports@example.com");
        assert_eq!(got[0].to, ["ops@example.com", "boss@example.com"]);
        assert_eq!(got[0].auth, None);
        let mime = Mime::parse(&got[0].data);
        assert_eq!(mime.header("Subject"), Some("Weekly report"));
        assert_eq!(mime.header("Message-ID"), Some("<exec-1.mail@flowc>"));
        assert_eq!(mime.header("From"), Some("Reports <reports@example.com>"));
        assert_eq!(
            mime.text().unwrap(),
            "Hello,\r\nthe report is attached.\r\n"
        );
        let report = mime.attachment("report.csv").expect("report.csv attached");
        assert_eq!(report.body, csv);
        assert!(report
            .header("content-type")
            .unwrap()
            .starts_with("text/csv"));
        let blob = mime.attachment("blob").expect("blob attached");
        assert_eq!(blob.body, [0, 1, 2, 255]);
        assert!(blob
            .header("content-type")
            .unwrap()
            .starts_with("application/octet-stream"));
        // Plain ASCII with bare LFs (and a leading dot) arrives unchanged too.
        let plain = mime.attachment("plain.txt").expect("plain.txt attached");
        assert_eq!(plain.header("content-transfer-encoding"), Some("base64"));
        assert_eq!(plain.body, b"a\nb\n.dot\n");
        assert_eq!(mime.attachment_names(), ["report.csv", "blob", "plain.txt"]);
    }

    #[tokio::test]
    async fn plain_text_and_login_when_tls_is_none() {
        let server = SmtpServer::start();
        let t = target(&format!(
            "smtp://sender%40example.com:s3cret@{}?tls=none",
            server.addr()
        ));
        let a = args(&["ops@example.com"], vec![]);
        let message = compose(&a, &default_from(Some(&t)), message_id("e", "s")).unwrap();
        deliver(&t, &message).await.unwrap();
        let got = server.wait_for(1, WAIT);
        assert_eq!(got[0].from, "sender@example.com");
        assert_eq!(
            got[0].auth,
            Some(("sender@example.com".into(), "s3cret".into()))
        );
        let mime = Mime::parse(&got[0].data);
        assert!(mime.parts.is_empty());
        // lettre ends a single-part body with a line break of its own.
        assert_eq!(
            mime.text().unwrap(),
            "Hello,\r\nthe report is attached.\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_rejected_recipient_is_permanent_and_named() {
        let server = SmtpServer::start();
        server.reject_rcpt("550 5.1.1 <ghost@example.com>: mailbox unavailable");
        let a = args(&["ghost@example.com"], vec![]);
        let message = compose(&a, DEFAULT_FROM, message_id("e", "s")).unwrap();
        let e = deliver(&target(&server.url()), &message).await.unwrap_err();
        assert!(!e.retryable, "{e}");
        assert_eq!(
            e.message,
            format!(
                "email.send: recipient <ghost@example.com> refused by {}: 550 5.1.1 <ghost@example.com>: mailbox unavailable",
                server.addr()
            )
        );
        assert!(server.received().is_empty());
    }

    #[tokio::test]
    async fn a_temporary_rejection_is_retried() {
        let server = SmtpServer::start();
        server.reject_rcpt("451 4.3.0 try again later");
        let a = args(&["ops@example.com"], vec![]);
        let message = compose(&a, DEFAULT_FROM, message_id("e", "s")).unwrap();
        let e = deliver(&target(&server.url()), &message).await.unwrap_err();
        assert!(e.retryable, "{e}");
        assert!(e.message.ends_with(": 451 4.3.0 try again later"), "{e}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let a = args(&["ops@example.com"], vec![]);
        let message = compose(&a, DEFAULT_FROM, message_id("e", "s")).unwrap();
        let e = deliver(&target(&format!("smtp://127.0.0.1:{port}")), &message)
            .await
            .unwrap_err();
        assert!(e.retryable, "{e}");
        assert!(
            e.message.starts_with(&format!(
                "email.send: cannot connect to SMTP server 127.0.0.1:{port}: "
            )),
            "{e}"
        );
    }

    #[tokio::test]
    async fn starttls_rules() {
        let a = args(&["ops@example.com"], vec![]);
        let message = compose(&a, DEFAULT_FROM, message_id("e", "s")).unwrap();

        // Required but not offered: permanent, nothing sent.
        let server = SmtpServer::start();
        let e = deliver(&target(&format!("{}?tls=required", server.url())), &message)
            .await
            .unwrap_err();
        assert!(!e.retryable, "{e}");
        assert!(
            e.message
                .contains("does not offer STARTTLS, which smtp_url requires"),
            "{e}"
        );

        // A password is not sent in clear when STARTTLS is not offered.
        let e = deliver(
            &target(&format!("smtp://u:hunter22@{}", server.addr())),
            &message,
        )
        .await
        .unwrap_err();
        assert!(!e.retryable, "{e}");
        assert!(e.message.contains("not sending the password"), "{e}");
        assert!(!e.message.contains("hunter22"), "{e}");
        assert!(!server.log().iter().any(|l| l.starts_with("AUTH")));

        // Offered: the client upgrades (this server then fails the handshake).
        server.offer_starttls();
        let e = deliver(&target(&server.url()), &message).await.unwrap_err();
        server.wait_for_command("STARTTLS", WAIT);
        assert!(e.message.contains("STARTTLS with"), "{e}");
        assert!(!server.log().iter().any(|l| l.starts_with("MAIL")));
        assert!(server.received().is_empty());
    }

    #[test]
    fn mime_helpers_decode() {
        assert_eq!(
            smtp::base64_decode("aGVsbG8=").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            smtp::base64_decode("aGVs\r\nbG8h").as_deref(),
            Some(&b"hello!"[..])
        );
        assert_eq!(smtp::base64_decode("aGk"), None);
        assert_eq!(
            smtp::quoted_printable_decode("caf=C3=A9 =\nau lait"),
            "café au lait".as_bytes()
        );
        assert_eq!(
            smtp::param("multipart/mixed; boundary=\"b1\"", "boundary").as_deref(),
            Some("b1")
        );
    }
}
