//! A small SMTP server for tests, and a MIME reader for what it receives.
//!
//! [`SmtpServer::start`] listens on a free loopback port and speaks enough
//! SMTP (RFC 5321) for a client to deliver mail: `EHLO`/`HELO`, `AUTH PLAIN`
//! (credentials are recorded, any are accepted), `MAIL FROM`, `RCPT TO`,
//! `DATA` with dot-unstuffing, `RSET`, `NOOP`, `QUIT`. No TLS, and it does
//! not offer `STARTTLS` unless asked to (then the upgrade itself fails).
//! Each accepted message is kept as a [`Received`] (envelope and raw data)
//! for assertions; [`SmtpServer::reject_rcpt`] makes `RCPT TO` answer with
//! a given reply instead.
//!
//! [`Mime::parse`] splits a received message into its headers and parts
//! (recursively for `multipart/*`) and decodes bodies (`base64`,
//! `quoted-printable`, `7bit`/`8bit`), so tests can look for the text body
//! and an attachment by file name.
//!
//! Used by the end-to-end tests (`tests/support/mod.rs`) and, through
//! `#[path]`, by the runtime's own `email` tests, so there is one copy. It
//! uses the standard library only.

// Each user uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The `MAIL FROM` address (without `<>`).
    pub from: String,
    /// The `RCPT TO` addresses, in order.
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, CRLF line ends,
    /// without the terminating `CRLF.CRLF`.
    pub data: String,
    /// The `AUTH PLAIN` user and password of the session, if it logged in.
    pub auth: Option<(String, String)>,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    rcpt_reply: Option<String>,
    offer_starttls: bool,
    /// Every command line the server read, in order (for diagnostics).
    log: Vec<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running test SMTP server; stops when dropped.
pub struct SmtpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// Listens on `127.0.0.1:0` and serves each connection on its own thread.
    pub fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test SMTP server");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    // A client that vanishes mid-session only ends its session.
                    let _ = serve(conn, &s);
                });
            }
        });
        SmtpServer {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:PORT` (plain SMTP; STARTTLS only if offered).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Answers every `RCPT TO` with `reply` (a full reply line such as
    /// `550 5.1.1 <x@example.com>: no such user`).
    pub fn reject_rcpt(&self, reply: &str) {
        self.shared.lock().rcpt_reply = Some(reply.to_string());
    }

    /// Advertises `STARTTLS` in the `EHLO` answer (the server cannot
    /// actually upgrade, so a client that tries fails its handshake).
    pub fn offer_starttls(&self) {
        self.shared.lock().offer_starttls = true;
    }

    /// The messages accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Every command line read so far, for failure messages.
    pub fn log(&self) -> Vec<String> {
        self.shared.lock().log.clone()
    }

    /// Waits until at least `n` messages were accepted; panics after
    /// `timeout` naming the commands seen.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.received.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "the test SMTP server received {} of {n} messages within {timeout:?}; commands: {:?}",
                    state.received.len(),
                    state.log
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        state.received.clone()
    }

    /// Waits until a command line starting with `prefix` (case-insensitive)
    /// was read; panics after `timeout`.
    pub fn wait_for_command(&self, prefix: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let prefix = prefix.to_ascii_uppercase();
        let mut state = self.shared.lock();
        while !state
            .log
            .iter()
            .any(|l| l.to_ascii_uppercase().starts_with(&prefix))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "the test SMTP server saw no {prefix} within {timeout:?}; commands: {:?}",
                    state.log
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `<addr>` or `addr` after `MAIL FROM:` / `RCPT TO:`, parameters dropped.
fn path_arg(rest: &str) -> String {
    let rest = rest.trim();
    match (rest.find('<'), rest.find('>')) {
        (Some(a), Some(b)) if a < b => rest[a + 1..b].to_string(),
        _ => rest.split_whitespace().next().unwrap_or("").to_string(),
    }
}

fn serve(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut input = BufReader::new(conn);
    let reply = |out: &mut TcpStream, text: &str| -> std::io::Result<()> {
        out.write_all(text.as_bytes())?;
        out.write_all(b"\r\n")?;
        out.flush()
    };
    reply(&mut out, "220 localhost test SMTP server ready")?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut auth: Option<(String, String)> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']).to_string();
        {
            let mut state = shared.lock();
            state.log.push(command.clone());
        }
        shared.changed.notify_all();
        let upper = command.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("").to_string();
        match verb.as_str() {
            "EHLO" => {
                let starttls = shared.lock().offer_starttls;
                reply(&mut out, "250-localhost greets you")?;
                reply(&mut out, "250-8BITMIME")?;
                reply(&mut out, "250-SMTPUTF8")?;
                if starttls {
                    reply(&mut out, "250-STARTTLS")?;
                }
                reply(&mut out, "250 AUTH PLAIN")?;
            }
            "HELO" => reply(&mut out, "250 localhost")?,
            "AUTH" => {
                let mut parts = command.split_whitespace().skip(1);
                let mechanism = parts.next().unwrap_or("").to_ascii_uppercase();
                let initial = parts.next();
                if mechanism != "PLAIN" {
                    reply(&mut out, "504 5.5.4 only AUTH PLAIN is supported")?;
                    continue;
                }
                let encoded = match initial {
                    Some(i) => i.to_string(),
                    None => {
                        reply(&mut out, "334 ")?;
                        let mut l = String::new();
                        input.read_line(&mut l)?;
                        l.trim().to_string()
                    }
                };
                let decoded = base64_decode(&encoded).unwrap_or_default();
                let fields: Vec<String> = decoded
                    .split(|b| *b == 0)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                if fields.len() == 3 {
                    auth = Some((fields[1].clone(), fields[2].clone()));
                    reply(&mut out, "235 2.7.0 authentication succeeded")?;
                } else {
                    reply(&mut out, "501 5.5.2 malformed AUTH PLAIN response")?;
                }
            }
            "STARTTLS" => {
                reply(&mut out, "220 2.0.0 ready to start TLS")?;
                // This server cannot speak TLS: the client's handshake fails.
                return Ok(());
            }
            "MAIL" => match upper.strip_prefix("MAIL FROM:") {
                Some(_) => {
                    from = Some(path_arg(&command["MAIL FROM:".len()..]));
                    to.clear();
                    reply(&mut out, "250 2.1.0 sender ok")?;
                }
                None => reply(&mut out, "501 5.5.4 syntax: MAIL FROM:<address>")?,
            },
            "RCPT" => {
                if from.is_none() {
                    reply(&mut out, "503 5.5.1 MAIL first")?;
                } else if upper.starts_with("RCPT TO:") {
                    let rejection = shared.lock().rcpt_reply.clone();
                    match rejection {
                        Some(r) => reply(&mut out, &r)?,
                        None => {
                            to.push(path_arg(&command["RCPT TO:".len()..]));
                            reply(&mut out, "250 2.1.5 recipient ok")?;
                        }
                    }
                } else {
                    reply(&mut out, "501 5.5.4 syntax: RCPT TO:<address>")?;
                }
            }
            "DATA" => {
                let Some(sender) = from.clone() else {
                    reply(&mut out, "503 5.5.1 MAIL first")?;
                    continue;
                };
                if to.is_empty() {
                    reply(&mut out, "554 5.5.1 no valid recipients")?;
                    continue;
                }
                reply(&mut out, "354 end data with <CR><LF>.<CR><LF>")?;
                let mut lines: Vec<String> = Vec::new();
                loop {
                    let mut l = String::new();
                    if input.read_line(&mut l)? == 0 {
                        return Ok(());
                    }
                    let content = l.trim_end_matches(['\r', '\n']);
                    if content == "." {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 §4.5.2).
                    lines.push(content.strip_prefix('.').unwrap_or(content).to_string());
                }
                // The CRLF before the final `.` belongs to the terminator.
                let data = lines.join("\r\n");
                {
                    let mut state = shared.lock();
                    state.received.push(Received {
                        from: sender,
                        to: std::mem::take(&mut to),
                        data,
                        auth: auth.clone(),
                    });
                }
                shared.changed.notify_all();
                from = None;
                reply(&mut out, "250 2.0.0 message accepted")?;
            }
            "RSET" => {
                from = None;
                to.clear();
                reply(&mut out, "250 2.0.0 reset")?;
            }
            "NOOP" => reply(&mut out, "250 2.0.0 ok")?,
            "QUIT" => {
                reply(&mut out, "221 2.0.0 bye")?;
                return Ok(());
            }
            _ => reply(&mut out, "502 5.5.2 command not recognised")?,
        }
    }
}

// ------------------------------------------------------------------ MIME

/// One MIME entity: its headers, its decoded body, and its parts when it
/// is a `multipart/*`.
#[derive(Debug, Clone)]
pub struct Mime {
    /// Header names (as sent) and unfolded values, in order.
    pub headers: Vec<(String, String)>,
    /// The body after the transfer decoding (empty for multiparts).
    pub body: Vec<u8>,
    /// The parts of a multipart, in order.
    pub parts: Vec<Mime>,
}

impl Mime {
    /// Parses a message or part (CRLF or LF line ends).
    pub fn parse(raw: &str) -> Mime {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = match raw.find("\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw.as_str(), ""),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = headers.last_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let mut mime = Mime {
            headers,
            body: Vec::new(),
            parts: Vec::new(),
        };
        let content_type = mime.header("content-type").unwrap_or("").to_string();
        if content_type.to_ascii_lowercase().starts_with("multipart/") {
            if let Some(boundary) = param(&content_type, "boundary") {
                let delimiter = format!("--{boundary}");
                let mut current: Option<String> = None;
                for line in body.split('\n') {
                    if line == delimiter || line == format!("{delimiter}--") {
                        if let Some(part) = current.take() {
                            // The line end before a boundary belongs to it.
                            let part = part.strip_suffix('\n').unwrap_or(&part);
                            mime.parts.push(Mime::parse(part));
                        }
                        if line == delimiter {
                            current = Some(String::new());
                        } else {
                            break;
                        }
                    } else if let Some(part) = current.as_mut() {
                        part.push_str(line);
                        part.push('\n');
                    }
                }
            }
            return mime;
        }
        let encoding = mime
            .header("content-transfer-encoding")
            .unwrap_or("7bit")
            .to_ascii_lowercase();
        mime.body = match encoding.as_str() {
            "base64" => base64_decode(body).unwrap_or_else(|| {
                panic!("part body is not valid base64: {body:?}");
            }),
            "quoted-printable" => quoted_printable_decode(body),
            _ => body.replace('\n', "\r\n").into_bytes(),
        };
        mime
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// This entity and every part below it, depth first.
    pub fn all(&self) -> Vec<&Mime> {
        let mut out = vec![self];
        for p in &self.parts {
            out.extend(p.all());
        }
        out
    }

    /// The part whose `Content-Disposition` or `Content-Type` names
    /// `filename`.
    pub fn attachment(&self, filename: &str) -> Option<&Mime> {
        self.all().into_iter().find(|m| {
            m.header("content-disposition")
                .and_then(|d| param(d, "filename"))
                .or_else(|| m.header("content-type").and_then(|t| param(t, "name")))
                .is_some_and(|n| n == filename)
        })
    }

    /// The decoded body of the first `text/plain` part that is not an
    /// attachment, as text.
    pub fn text(&self) -> Option<String> {
        self.all()
            .into_iter()
            .find(|m| {
                m.parts.is_empty()
                    && m.header("content-type")
                        .unwrap_or("text/plain")
                        .to_ascii_lowercase()
                        .starts_with("text/plain")
                    && !m
                        .header("content-disposition")
                        .unwrap_or("")
                        .to_ascii_lowercase()
                        .starts_with("attachment")
            })
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
    }

    /// The file names of every attachment.
    pub fn attachment_names(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|m| {
                m.header("content-disposition")
                    .and_then(|d| param(d, "filename"))
            })
            .collect()
    }
}

/// The value of `name=value` or `name="value"` in a header such as
/// `multipart/mixed; boundary="x"`.
pub fn param(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let v = v.trim();
        Some(
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
                .to_string(),
        )
    })
}

/// Decodes standard base64, ignoring whitespace; `None` if malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if clean.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad { 0 } else { value(c)? };
            n = (n << 6) | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// Decodes quoted-printable text (soft line breaks and `=XX` escapes).
pub fn quoted_printable_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches('\r');
        let (content, soft) = match line.strip_suffix('=') {
            Some(c) => (c, true),
            None => (line, false),
        };
        let bytes = content.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            if bytes[j] == b'=' {
                let hex = content
                    .get(j + 1..j + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    j += 3;
                    continue;
                }
            }
            out.push(bytes[j]);
            j += 1;
        }
        if !soft && i + 1 < lines.len() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}
