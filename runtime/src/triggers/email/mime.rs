//! A raw RFC 5322 message → `trigger.message` (`from`, `to`, `subject`,
//! `text`, `html`, `headers`, `attachments`, `message_id`), by stalwart's
//! `mail-parser`.

use mail_parser::{Address, MessageParser, MimeHeaders as _};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

/// The value a run sees as `trigger.message`, or why the message cannot be
/// read as one. A message is refused when it has no header block or no
/// `From:` address (RFC 5322 requires one): what arrived is not mail a
/// flow can act on.
pub(crate) fn message_value(raw: &[u8]) -> Result<Value, String> {
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or("it is not an email message (no header block)")?;
    let from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .ok_or("it has no From address")?;
    let html = (message.html_body_count() > 0)
        .then(|| message.html_part(0))
        .flatten()
        .filter(|part| part.is_text_html())
        .and_then(|part| part.text_contents());
    let date = message
        .date()
        .and_then(|d| chrono::DateTime::from_timestamp(d.to_timestamp(), 0));
    let attachments: Vec<Value> = message
        .attachments()
        .enumerate()
        .map(|(i, part)| {
            let name = part
                .attachment_name()
                .map(safe_file_name)
                .unwrap_or_else(|| format!("attachment-{}", i + 1));
            crate::core::files::file_json(&name, &name, part.contents(), date)
        })
        .collect();
    Ok(json!({
        "from": from,
        "to": addresses(message.to()),
        "subject": message.subject().unwrap_or_default(),
        "text": message.body_text(0).unwrap_or_default(),
        "html": html,
        "headers": headers(&message),
        "attachments": attachments,
        "message_id": message_id(message.message_id(), raw),
    }))
}

/// The message's identity, the dedupe key of its run: its `Message-ID`
/// without the angle brackets, or for a message without one
/// `sha256:HEX` of its bytes (the same message delivered again has the
/// same bytes).
pub(crate) fn message_id(header: Option<&str>, raw: &[u8]) -> String {
    match header.map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => id.to_string(),
        None => format!("sha256:{}", hex::encode(Sha256::digest(raw))),
    }
}

/// Every address of `To:` (groups flattened).
fn addresses(to: Option<&Address<'_>>) -> Vec<String> {
    to.map(|a| {
        a.iter()
            .filter_map(|a| a.address().map(str::to_string))
            .collect()
    })
    .unwrap_or_default()
}

/// Header names in lowercase (as webhooks give theirs) with their raw
/// values unfolded; a repeated header's values are joined with `, ` (as
/// HTTP joins repeated headers).
fn headers(message: &mail_parser::Message<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in message.headers_raw() {
        let value = unfold(value);
        match out.get_mut(&name.to_ascii_lowercase()) {
            Some(Value::String(earlier)) => {
                earlier.push_str(", ");
                earlier.push_str(&value);
            }
            _ => {
                out.insert(name.to_ascii_lowercase(), Value::String(value));
            }
        }
    }
    out
}

/// A folded header value on one line.
fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An attachment's name without any folder part a sender put in it
/// (`../../etc/passwd` → `passwd`), so writing it under its name stays in
/// the folder the flow chose.
fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if base.is_empty() || base == "." || base == ".." {
        "attachment".to_string()
    } else {
        base.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = "From: Shop <shop@example.com>\r\n\
        To: orders@example.org, Bob <bob@example.org>\r\n\
        Subject: Order 42\r\n\
        Message-ID: <order-42@example.com>\r\n\
        X-Tag: one\r\n\
        X-Tag: two\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\
        \r\n\
        --b\r\n\
        Content-Type: text/plain\r\n\
        \r\n\
        See attached.\r\n\
        --b\r\n\
        Content-Type: text/csv; name=\"../order.csv\"\r\n\
        Content-Disposition: attachment; filename=\"../order.csv\"\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        c2t1LHF0eQpBLTEsMgo=\r\n\
        --b--\r\n";

    #[test]
    fn a_message_becomes_the_trigger_value() {
        let m = message_value(ORDER.as_bytes()).unwrap();
        assert_eq!(m["from"], "shop@example.com");
        assert_eq!(m["to"], json!(["orders@example.org", "bob@example.org"]));
        assert_eq!(m["subject"], "Order 42");
        assert_eq!(m["text"].as_str().unwrap().trim(), "See attached.");
        assert_eq!(m["html"], Value::Null);
        assert_eq!(m["message_id"], "order-42@example.com");
        assert_eq!(m["headers"]["x-tag"], "one, two");
        let csv = &m["attachments"][0];
        assert_eq!(csv["name"], "order.csv");
        let data = crate::core::files::file_data(csv).unwrap().unwrap();
        assert_eq!(data, b"sku,qty\nA-1,2\n");
    }

    #[test]
    fn what_is_not_mail_is_refused() {
        let e = message_value(b"just some words\r\n").unwrap_err();
        assert!(e.contains("From") || e.contains("header"), "{e}");
        assert!(message_value(b"Subject: hi\r\n\r\nno sender\r\n").is_err());
        assert!(message_value(b"").is_err());
    }

    #[test]
    fn a_message_without_id_is_named_by_its_bytes() {
        let a = message_id(None, b"x");
        assert_eq!(a, message_id(None, b"x"));
        assert!(a.starts_with("sha256:"), "{a}");
        assert_ne!(a, message_id(None, b"y"));
        assert_eq!(message_id(Some(" id@host "), b"x"), "id@host");
    }
}
