//! Signed requests to AWS (or to an S3-compatible service or emulator
//! named by the connection's `endpoint:`), over the runtime's reqwest
//! client.
//!
//! Signature V4 is AWS's own `aws-sigv4` crate (feature `aws`); without
//! the feature every request fails with a permanent error that says how to
//! rebuild. The keys are secrets: they go into the signature only, and no
//! error repeats what a service answered beyond its error code and
//! message (a `SignatureDoesNotMatch` answer echoes the access key id, so
//! a message holding it is left out).

use std::time::Duration;

use crate::engine::integration::AwsDef;

/// Timeout of one request whose body is held in memory (a part of a
/// multipart upload is at most 8 MiB).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest error answer read (they are a few hundred bytes).
const MAX_ERROR_ANSWER: usize = 16 * 1024;

/// An error of a request to AWS: a one-line message (naming the object or
/// queue, never a key) and whether another attempt may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsError {
    pub message: String,
    pub retryable: bool,
    /// The HTTP status, when the service answered.
    pub status: Option<u16>,
}

impl AwsError {
    pub(crate) fn permanent(message: impl Into<String>) -> AwsError {
        AwsError {
            message: message.into(),
            retryable: false,
            status: None,
        }
    }

    pub(crate) fn retryable(message: impl Into<String>) -> AwsError {
        AwsError {
            message: message.into(),
            retryable: true,
            status: None,
        }
    }

    /// The service answered `404` (no such key, bucket or queue).
    pub(crate) fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// As a step's error, `what` (`file.read`) in front.
    pub(crate) fn into_step_error(self, what: &str) -> crate::core::error::StepError {
        let message = format!("{what}: {}", self.message);
        if self.retryable {
            crate::core::error::StepError::retryable(message)
        } else {
            crate::core::error::StepError::permanent(message)
        }
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The body of a request: bytes held in memory (signed with their hash).
pub(crate) struct Payload<'a> {
    pub bytes: &'a [u8],
    pub content_type: Option<&'a str>,
}

impl Payload<'_> {
    pub(crate) const EMPTY: Payload<'static> = Payload {
        bytes: &[],
        content_type: None,
    };
}

/// A connection's settings and the runtime's HTTP client.
#[derive(Clone, Copy)]
pub(crate) struct AwsClient<'a> {
    pub def: &'a AwsDef,
    pub http: &'a reqwest::Client,
}

impl AwsClient<'_> {
    /// One signed request: `service` is the signing name (`s3`, `sqs`,
    /// `sns`), `what` names the object or queue in errors. Answers other
    /// than 2xx become errors with the service's error code.
    pub(crate) async fn send(
        &self,
        service: &str,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
        what: &str,
    ) -> Result<reqwest::Response, AwsError> {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(ct) = payload.content_type {
            all.push(("content-type", ct));
        }
        let signed = sign::headers(self.def, service, method.as_str(), url, &all, payload.bytes)
            .map_err(|e| AwsError::permanent(format!("{what}: {e}")))?;
        let mut req = self
            .http
            .request(method, url)
            .timeout(REQUEST_TIMEOUT)
            .body(payload.bytes.to_vec());
        for (name, value) in all.iter().copied() {
            req = req.header(name, value);
        }
        for (name, value) in signed {
            let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                AwsError::permanent(format!("{what}: a signature header is not valid"))
            })?;
            value.set_sensitive(true);
            req = req.header(name, value);
        }
        let resp = req.send().await.map_err(|e| {
            AwsError::retryable(format!(
                "{what}: {}",
                crate::core::error::error_chain(&e.without_url())
            ))
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(answer_error(resp, self.def, what).await)
    }
}

/// The error of a non-2xx answer: its status and the service's error code
/// and message (XML `<Code>`/`<Message>` or JSON `__type`/`message`).
async fn answer_error(mut resp: reqwest::Response, def: &AwsDef, what: &str) -> AwsError {
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_ANSWER {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let detail = error_detail(&text, &[&def.access_key, &def.secret_key]);
    AwsError {
        message: format!("{what}: HTTP {status}{detail}"),
        // Throttling, a timeout or a failing service may pass; a refused
        // signature, a missing bucket or a bad request will not.
        retryable: status == 429 || status == 408 || status >= 500,
        status: Some(status),
    }
}

/// `: NoSuchBucket (The specified bucket does not exist)` from an error
/// answer, leaving out any part that holds one of `secrets`.
pub(crate) fn error_detail(body: &str, secrets: &[&str]) -> String {
    let clean = |s: Option<String>| {
        s.map(|s| s.chars().take(200).collect::<String>())
            .filter(|s| !s.is_empty())
            .filter(|s| !secrets.iter().any(|k| !k.is_empty() && s.contains(k)))
    };
    let (code, message) = if body.trim_start().starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let code = field("__type").map(|t| t.rsplit('#').next().unwrap_or_default().to_string());
        (code, field("message").or_else(|| field("Message")))
    } else {
        (xml_text(body, "Code"), xml_text(body, "Message"))
    };
    match (clean(code), clean(message)) {
        (Some(code), Some(message)) => format!(": {code} ({message})"),
        (Some(code), None) => format!(": {code}"),
        (None, Some(message)) => format!(": {message}"),
        (None, None) => String::new(),
    }
}

/// The text of the first `<tag>` element of `xml`, unescaped.
pub(crate) fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    quick_xml::escape::unescape(&xml[start..end])
        .ok()
        .map(|s| s.into_owned())
}

/// `text` percent-encoded as AWS wants in paths and query strings: all but
/// the unreserved characters (`/` kept when `keep_slash`).
pub(crate) fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(feature = "aws")]
mod sign {
    use std::time::SystemTime;

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
        SigningSettings, UriPathNormalizationMode,
    };
    use aws_sigv4::sign::v4;

    use crate::engine::integration::AwsDef;

    /// The headers that sign a request (`authorization`, `x-amz-date`, and
    /// for S3 `x-amz-content-sha256`).
    pub(super) fn headers(
        def: &AwsDef,
        service: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let request = Request {
            method,
            url,
            headers,
            body,
        };
        headers_at(def, service, &request, SystemTime::now())
    }

    /// What is signed.
    pub(super) struct Request<'a> {
        pub method: &'a str,
        pub url: &'a str,
        pub headers: &'a [(&'a str, &'a str)],
        pub body: &'a [u8],
    }

    /// [`headers`] at a given time (tests check AWS's published examples).
    pub(super) fn headers_at(
        def: &AwsDef,
        service: &str,
        request: &Request<'_>,
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, String> {
        let identity = Credentials::new(
            def.access_key.clone(),
            def.secret_key.clone(),
            None,
            None,
            "flow-connection",
        )
        .into();
        let mut settings = SigningSettings::default();
        if service == "s3" {
            // S3 signs the path as sent (keys are encoded once, `//` and
            // `..` are parts of a key) and wants the payload hash header.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&def.region)
            .name(service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| format!("signing the request: {e}"))?
            .into();
        let signable = SignableRequest::new(
            request.method,
            request.url,
            request.headers.iter().copied(),
            SignableBody::Bytes(request.body),
        )
        .map_err(|e| format!("signing the request: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("signing the request: {e}"))?
            .into_parts();
        let signed = instructions
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Ok(signed)
    }
}

#[cfg(not(feature = "aws"))]
mod sign {
    use crate::engine::integration::AwsDef;

    /// Without the `aws` feature nothing is signed: say how to rebuild.
    pub(super) fn headers(
        _def: &AwsDef,
        _service: &str,
        _method: &str,
        _url: &str,
        _headers: &[(&str, &str)],
        _body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        Err("this binary was built without AWS support (s3://, SQS, SNS); rebuild it with `flowc build --with aws`".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_name_the_code_but_never_a_key() {
        let xml = "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(
            error_detail(xml, &["AKID"]),
            ": NoSuchBucket (The specified bucket does not exist)"
        );
        let leaky =
            "<Error><Code>SignatureDoesNotMatch</Code><Message>key AKID wrong</Message></Error>";
        assert_eq!(error_detail(leaky, &["AKID"]), ": SignatureDoesNotMatch");
        let json = r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no queue"}"#;
        assert_eq!(error_detail(json, &[]), ": QueueDoesNotExist (no queue)");
        assert_eq!(error_detail("", &[]), "");
    }

    /// AWS's own example of a signed S3 GET (S3 API reference, "Signature
    /// Calculations for the Authorization Header: Transferring Payload in
    /// a Single Chunk", GET Object): the same signature.
    #[cfg(feature = "aws")]
    #[test]
    fn s3_requests_are_signed_as_aws_documents() {
        let def = AwsDef {
            region: "us-east-1".into(),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            endpoint: None,
        };
        let request = sign::Request {
            method: "GET",
            url: "https://examplebucket.s3.amazonaws.com/test.txt",
            headers: &[("range", "bytes=0-9")],
            body: &[],
        };
        // 2013-05-24T00:00:00Z
        let time = std::time::UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let signed = sign::headers_at(&def, "s3", &request, time).unwrap();
        let authorization = signed
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, value)| value.as_str())
            .unwrap_or_default();
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn keys_are_encoded_once_with_slashes_kept() {
        assert_eq!(uri_encode("in/a b+c.csv", true), "in/a%20b%2Bc.csv");
        assert_eq!(uri_encode("in/x", false), "in%2Fx");
    }
}
