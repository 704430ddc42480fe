//! `flowc lsp`: a Language Server over stdio.
//!
//! JSON-RPC 2.0 messages framed with `Content-Length` headers, as the
//! Language Server Protocol says; hand-rolled on `serde_json` (the server
//! needs a handful of messages, not a framework). Documents are synced in
//! full; on every open or change the text is parsed and checked and the
//! diagnostics published. Hover, go to definition and completion work on
//! the newest analysis (see [`features`]).
//!
//! The server never panics on bad input: a malformed message is logged to
//! stderr and skipped, and a request whose handler fails anyway is answered
//! with an internal error.

mod features;
mod index;
mod text;

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::{json, Value};

use crate::diagnostics::{Diagnostic, Severity};
use features::Analysis;
use text::LineIndex;

/// JSON-RPC error codes.
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INVALID_REQUEST: i64 = -32600;
const INTERNAL_ERROR: i64 = -32603;
const SERVER_NOT_INITIALIZED: i64 = -32002;

/// Larger messages are skipped (no editor sends a `.flow` file this big).
const MAX_MESSAGE: usize = 64 << 20;

/// Runs the server on stdin/stdout until `exit` or end of input. Returns
/// the process exit code: 0 after `shutdown` then `exit`, 1 otherwise (as
/// the protocol asks).
pub fn run() -> u8 {
    let stdin = io::stdin();
    let stdout = io::stdout();
    serve(stdin.lock(), stdout.lock())
}

/// The server loop over any transport.
pub fn serve(mut input: impl BufRead, output: impl Write) -> u8 {
    let mut server = Server::new(output);
    loop {
        match read_message(&mut input) {
            Ok(Some(body)) => match serde_json::from_slice::<Value>(&body) {
                Ok(msg) => {
                    if let Some(code) = server.handle(msg) {
                        return code;
                    }
                }
                Err(e) => log(&format!("skipping a message that is not JSON: {e}")),
            },
            Ok(None) => {
                log("end of input");
                return if server.shut_down { 0 } else { 1 };
            }
            Err(e) => {
                log(&format!("cannot read from the client: {e}"));
                return 1;
            }
        }
    }
}

fn log(text: &str) {
    eprintln!("flowc lsp: {text}");
}

/// Reads one framed message body; `None` at end of input. A header block
/// without a usable `Content-Length` is logged and skipped.
fn read_message(input: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    loop {
        let mut length: Option<usize> = None;
        let mut saw_header = false;
        loop {
            let mut line = String::new();
            if input.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if saw_header {
                    break;
                }
                // Stray blank line between messages.
                continue;
            }
            saw_header = true;
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok();
                }
            }
        }
        match length {
            Some(n) if n <= MAX_MESSAGE => {
                let mut body = vec![0; n];
                input.read_exact(&mut body)?;
                return Ok(Some(body));
            }
            Some(n) => {
                log(&format!("skipping a message of {n} bytes"));
                io::copy(&mut input.take(n as u64), &mut io::sink())?;
            }
            None => log("skipping a message without a valid Content-Length header"),
        }
    }
}

/// One open document.
struct Doc {
    text: String,
    /// The analysis of `text`, when it parses.
    current: Option<std::rc::Rc<Analysis>>,
    /// The newest analysis of any version (for completion while the text
    /// does not parse, e.g. right after typing `.`).
    last_good: Option<std::rc::Rc<Analysis>>,
}

struct Server<W: Write> {
    out: W,
    initialized: bool,
    shut_down: bool,
    docs: HashMap<String, Doc>,
}

impl<W: Write> Server<W> {
    fn new(out: W) -> Self {
        Server {
            out,
            initialized: false,
            shut_down: false,
            docs: HashMap::new(),
        }
    }

    fn send(&mut self, msg: &Value) {
        let body = msg.to_string();
        let written = write!(self.out, "Content-Length: {}\r\n\r\n{body}", body.len())
            .and_then(|()| self.out.flush());
        if let Err(e) = written {
            log(&format!("cannot write to the client: {e}"));
        }
    }

    fn respond(&mut self, id: Value, result: Result<Value, (i64, String)>) {
        let msg = match result {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err((code, message)) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": code, "message": message },
            }),
        };
        self.send(&msg);
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Handles one message; `Some(code)` when the server should exit.
    fn handle(&mut self, msg: Value) -> Option<u8> {
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            if msg.get("id").is_none() {
                log("skipping a message without a method");
            }
            // A response to a request we never sent: nothing to do.
            return None;
        };
        let method = method.to_string();
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        match msg.get("id").cloned() {
            Some(id) => {
                let result = catch_unwind(AssertUnwindSafe(|| self.request(&method, &params)))
                    .unwrap_or_else(|_| {
                        Err((
                            INTERNAL_ERROR,
                            format!("internal error handling `{method}`"),
                        ))
                    });
                self.respond(id, result);
                None
            }
            None => {
                if method == "exit" {
                    return Some(if self.shut_down { 0 } else { 1 });
                }
                if catch_unwind(AssertUnwindSafe(|| self.notification(&method, &params))).is_err() {
                    log(&format!("internal error handling `{method}`"));
                }
                None
            }
        }
    }

    fn request(&mut self, method: &str, params: &Value) -> Result<Value, (i64, String)> {
        if method == "initialize" {
            self.initialized = true;
            return Ok(initialize_result());
        }
        if !self.initialized {
            return Err((SERVER_NOT_INITIALIZED, "not initialized".into()));
        }
        if self.shut_down {
            return Err((INVALID_REQUEST, "the server is shutting down".into()));
        }
        match method {
            "shutdown" => {
                self.shut_down = true;
                Ok(Value::Null)
            }
            "textDocument/hover" => self.hover(params),
            "textDocument/definition" => self.definition(params),
            "textDocument/completion" => self.completion(params),
            _ => Err((METHOD_NOT_FOUND, format!("unknown method `{method}`"))),
        }
    }

    fn notification(&mut self, method: &str, params: &Value) {
        match method {
            "textDocument/didOpen" => {
                let doc = &params["textDocument"];
                match (doc["uri"].as_str(), doc["text"].as_str()) {
                    (Some(uri), Some(text)) => self.update(uri, text.to_string()),
                    _ => log("didOpen without a uri and text"),
                }
            }
            "textDocument/didChange" => {
                let uri = params["textDocument"]["uri"].as_str();
                // Full sync: the last change holds the whole text.
                let text = params["contentChanges"]
                    .as_array()
                    .and_then(|c| c.last())
                    .and_then(|c| c["text"].as_str());
                match (uri, text) {
                    (Some(uri), Some(text)) => self.update(uri, text.to_string()),
                    _ => log("didChange without a uri and text"),
                }
            }
            "textDocument/didClose" => {
                if let Some(uri) = params["textDocument"]["uri"].as_str() {
                    self.docs.remove(uri);
                    let uri = uri.to_string();
                    self.notify(
                        "textDocument/publishDiagnostics",
                        json!({ "uri": uri, "diagnostics": [] }),
                    );
                }
            }
            // `initialized`, `$/cancelRequest`, `$/setTrace`, saves, ...
            _ => {}
        }
    }

    /// Re-analyses a document and publishes its diagnostics.
    fn update(&mut self, uri: &str, text: String) {
        let dir = file_uri_dir(uri);
        let (diagnostics, analysis) = features::analyze_in(&text, dir.as_deref());
        let index = LineIndex::new(&text);
        let lsp: Vec<Value> = diagnostics
            .iter()
            .map(|d| to_lsp(uri, &text, &index, d))
            .collect();
        let current = analysis.map(std::rc::Rc::new);
        let last_good = current
            .clone()
            .or_else(|| self.docs.get(uri).and_then(|d| d.last_good.clone()));
        self.docs.insert(
            uri.to_string(),
            Doc {
                text,
                current,
                last_good,
            },
        );
        self.notify(
            "textDocument/publishDiagnostics",
            json!({ "uri": uri, "diagnostics": lsp }),
        );
    }

    /// The document and byte offset a position request is about.
    fn locate<'a>(&'a self, params: &'a Value) -> Result<(&'a str, &'a Doc, usize), (i64, String)> {
        let uri = params["textDocument"]["uri"]
            .as_str()
            .ok_or((INVALID_PARAMS, "missing textDocument.uri".to_string()))?;
        let pos = &params["position"];
        let (Some(line), Some(character)) = (pos["line"].as_u64(), pos["character"].as_u64())
        else {
            return Err((INVALID_PARAMS, "missing position".into()));
        };
        let doc = self
            .docs
            .get(uri)
            .ok_or((INVALID_PARAMS, format!("document `{uri}` is not open")))?;
        let line = u32::try_from(line).unwrap_or(u32::MAX);
        let character = u32::try_from(character).unwrap_or(u32::MAX);
        let offset = LineIndex::new(&doc.text).offset(&doc.text, line, character);
        Ok((uri, doc, offset))
    }

    fn hover(&self, params: &Value) -> Result<Value, (i64, String)> {
        let (_, doc, offset) = self.locate(params)?;
        let Some(a) = &doc.current else {
            return Ok(Value::Null);
        };
        Ok(match features::hover(a, offset) {
            Some((markdown, span)) => json!({
                "contents": { "kind": "markdown", "value": markdown },
                "range": LineIndex::new(&a.text).range(&a.text, span),
            }),
            None => Value::Null,
        })
    }

    fn definition(&self, params: &Value) -> Result<Value, (i64, String)> {
        let (uri, doc, offset) = self.locate(params)?;
        let Some(a) = &doc.current else {
            return Ok(Value::Null);
        };
        Ok(match features::definition(a, offset) {
            Some(span) => json!({
                "uri": uri,
                "range": LineIndex::new(&a.text).range(&a.text, span),
            }),
            None => Value::Null,
        })
    }

    fn completion(&self, params: &Value) -> Result<Value, (i64, String)> {
        let (_, doc, offset) = self.locate(params)?;
        let items = features::completion(&doc.text, offset, doc.last_good.as_deref());
        Ok(json!({ "isIncomplete": false, "items": items }))
    }
}

fn initialize_result() -> Value {
    json!({
        "capabilities": {
            "positionEncoding": "utf-16",
            "textDocumentSync": { "openClose": true, "change": 1 },
            "hoverProvider": true,
            "definitionProvider": true,
            "completionProvider": { "triggerCharacters": ["."] },
        },
        "serverInfo": { "name": "flowc", "version": env!("CARGO_PKG_VERSION") },
    })
}

/// An LSP `Diagnostic` object: the help line appended to the message, the
/// secondary labels as related information.
fn to_lsp(uri: &str, text: &str, index: &LineIndex, d: &Diagnostic) -> Value {
    let mut message = d.message.clone();
    // The label adds to the message unless it repeats it (syntax errors).
    if !d.label.is_empty() && !d.message.contains(&d.label) {
        message.push_str(&format!(" ({})", d.label));
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let severity = match d.severity() {
        Severity::Error => 1,
        Severity::Warning => 2,
    };
    let mut v = json!({
        "range": index.range(text, d.span),
        "severity": severity,
        "code": d.code.as_str(),
        "source": "flowc",
        "message": message,
    });
    if !d.secondary.is_empty() {
        v["relatedInformation"] = d
            .secondary
            .iter()
            .map(|l| {
                json!({
                    "location": { "uri": uri, "range": index.range(text, l.span) },
                    "message": l.text,
                })
            })
            .collect();
    }
    v
}

/// The folder of a `file://` document (`%XX` decoded); `None` for other
/// URIs.
fn file_uri_dir(uri: &str) -> Option<std::path::PathBuf> {
    let path = uri.strip_prefix("file://")?;
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    let path = std::path::PathBuf::from(String::from_utf8(out).ok()?);
    path.parent().map(std::path::Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_uri_gives_its_folder() {
        assert_eq!(
            file_uri_dir("file:///home/a%20b/x.flow"),
            Some(std::path::PathBuf::from("/home/a b"))
        );
        assert_eq!(file_uri_dir("untitled:Untitled-1"), None);
    }

    fn frame(v: &Value) -> String {
        let body = v.to_string();
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn malformed_input_is_skipped() {
        let mut input = String::new();
        input.push_str("Content-Type: x\r\n\r\n");
        input.push_str("Content-Length: 3\r\n\r\n{{{");
        input.push_str(&frame(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
        ));
        input.push_str(&frame(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "nope"}),
        ));
        input.push_str(&frame(
            &json!({"jsonrpc": "2.0", "id": 3, "method": "textDocument/hover", "params": 5}),
        ));
        input.push_str(&frame(
            &json!({"jsonrpc": "2.0", "id": 4, "method": "shutdown"}),
        ));
        input.push_str(&frame(&json!({"jsonrpc": "2.0", "method": "exit"})));
        let mut out = Vec::new();
        let code = serve(input.as_bytes(), &mut out);
        assert_eq!(code, 0);
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("-32601"), "{out}");
        assert!(out.contains("-32602"), "{out}");
        assert!(out.contains("\"id\":4,\"result\":null") || out.contains("\"result\":null"));
    }
}

#[cfg(test)]
mod robustness {
    /// Hover, definition and completion at every offset of every example,
    /// and completion in every prefix of it: no panics.
    #[test]
    fn every_offset_of_the_examples() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let (_, analysis) = super::features::analyze(&text);
            let Some(a) = analysis else { continue };
            for offset in (0..=text.len()).filter(|i| text.is_char_boundary(*i)) {
                let _ = super::features::hover(&a, offset);
                let _ = super::features::definition(&a, offset);
                let prefix = &text[..offset];
                let _ = super::features::completion(prefix, offset, Some(&a));
            }
        }
    }
}
