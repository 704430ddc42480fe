//! `flowc lsp` driven over stdio with JSON-RPC messages, as an editor does.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);
const URI: &str = "file:///work/demo.flow";

/// The program with a mistake: `cont` instead of `count`, after
/// characters that take more bytes than UTF-16 units.
const BAD: &str = r#"integration demo

config {
  /// Base URL of the ERP.
  erp_url: Url
  /// How many per batch.
  batch_size: Int = 100
}

/// Receives orders.
flow order_received {
  trigger webhook POST "/orders" { auth: none }
  let count = config.batch_size + 1
  let label = "é😀 ${cont}"
  step send = http.post("${config.erp_url}/x", json: { n: count, label: label })
  dispatch audit({ id: count })
}

/// Writes an audit record.
flow audit {
  trigger dispatch (input: Json)
  skip "done"
}
"#;

struct Server {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
}

/// Reads framed messages from the server's stdout into a channel.
fn reader(out: impl Read + Send + 'static) -> Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = BufReader::new(out);
        loop {
            let mut length = None;
            loop {
                let mut line = String::new();
                match out.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length:") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
            let Some(n) = length else { return };
            let mut body = vec![0; n];
            if out.read_exact(&mut body).is_err() {
                return;
            }
            let msg: Value = serde_json::from_slice(&body).expect("server sent JSON");
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    rx
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flowc lsp");
        let stdin = child.stdin.take().expect("stdin");
        let rx = reader(child.stdout.take().expect("stdout"));
        Server {
            child,
            stdin,
            rx,
            next_id: 0,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).expect("write to server");
        self.stdin.flush().expect("flush");
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        let framed = format!("Content-Length: {}\r\n\r\n{body}", body.len());
        self.send_raw(framed.as_bytes());
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and waits for its response (skipping notifications).
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        self.wait(|m| m["id"] == json!(id))
    }

    fn wait(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let msg = self
                .rx
                .recv_timeout(TIMEOUT)
                .expect("the server answered in time");
            if wanted(&msg) {
                return msg;
            }
        }
    }

    fn diagnostics(&self) -> Vec<Value> {
        let msg = self.wait(|m| m["method"] == "textDocument/publishDiagnostics");
        assert_eq!(msg["params"]["uri"], URI);
        msg["params"]["diagnostics"]
            .as_array()
            .expect("diagnostics array")
            .clone()
    }

    fn at(&mut self, method: &str, text: &str, needle: &str, delta: usize) -> Value {
        let (line, character) = position(text, needle, delta);
        self.request(
            method,
            json!({
                "textDocument": { "uri": URI },
                "position": { "line": line, "character": character },
            }),
        )
    }

    /// Shuts down and exits; returns the exit code.
    fn stop(mut self) -> Option<i32> {
        let r = self.request("shutdown", Value::Null);
        assert_eq!(r["result"], Value::Null);
        assert!(r.get("error").is_none(), "{r}");
        self.notify("exit", Value::Null);
        self.exit_code()
    }

    /// Waits (bounded) for the process to end; its exit code.
    fn exit_code(self) -> Option<i32> {
        let Server {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let status = child.wait().map(|s| s.code());
            let _ = tx.send((status, child));
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok((status, _)) => status.expect("wait for flowc lsp"),
            Err(_) => panic!("flowc lsp did not exit"),
        }
    }
}

/// The LSP position (line, UTF-16 column) of `needle` + `delta` chars.
fn position(text: &str, needle: &str, delta: usize) -> (usize, usize) {
    let offset = text.find(needle).expect("needle in text");
    let offset = text[offset..]
        .char_indices()
        .nth(delta)
        .map_or(text.len(), |(i, _)| offset + i);
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].encode_utf16().count())
}

/// The range of the first `len` characters of `needle` in `text`.
fn range_of(text: &str, needle: &str, len: usize) -> Value {
    let (l, c) = position(text, needle, 0);
    let (el, ec) = position(text, needle, len);
    json!({ "start": { "line": l, "character": c }, "end": { "line": el, "character": ec } })
}

fn initialized() -> Server {
    let mut s = Server::start();
    let init = s.request(
        "initialize",
        json!({ "processId": null, "rootUri": null, "capabilities": {} }),
    );
    let caps = &init["result"]["capabilities"];
    assert_eq!(caps["hoverProvider"], true);
    assert_eq!(caps["definitionProvider"], true);
    assert_eq!(caps["textDocumentSync"]["change"], 1);
    s.notify("initialized", json!({}));
    s
}

fn open(s: &mut Server, text: &str) -> Vec<Value> {
    s.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "flow", "version": 1, "text": text } }),
    );
    s.diagnostics()
}

#[test]
fn diagnostics_hover_definition_completion_and_exit() {
    let mut s = initialized();

    // A mistake: E0100 on `cont`, the range in UTF-16 units.
    let diags = open(&mut s, BAD);
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["code"], "E0100");
    assert_eq!(d["severity"], 1);
    assert_eq!(d["range"], range_of(BAD, "cont}", 4));
    // 21 UTF-16 units (24 bytes) into the line.
    assert_eq!(d["range"]["start"]["character"], 21);
    let message = d["message"].as_str().unwrap_or("");
    assert!(message.contains("unknown name `cont`"), "{message}");
    assert!(message.contains("did you mean `count`?"), "{message}");

    // Fixed: no diagnostics.
    let good = BAD.replace("${cont}", "${count}");
    s.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": URI, "version": 2 },
            "contentChanges": [{ "text": good }],
        }),
    );
    assert_eq!(s.diagnostics(), Vec::<Value>::new());

    // Hover: the type of an expression, a config entry with its doc, a
    // stdlib function with its signature.
    let h = s.at("textDocument/hover", &good, "config.batch_size + 1", 0);
    let value = h["result"]["contents"]["value"].as_str().unwrap_or("");
    assert!(value.contains("Int"), "{h}");
    let h = s.at("textDocument/hover", &good, "batch_size + 1", 2);
    let value = h["result"]["contents"]["value"].as_str().unwrap_or("");
    assert!(value.contains("config.batch_size: Int"), "{h}");
    assert!(value.contains("How many per batch."), "{h}");
    let h = s.at("textDocument/hover", &good, "post(", 1);
    let value = h["result"]["contents"]["value"].as_str().unwrap_or("");
    assert!(value.contains("step fn post<T>(url: Url"), "{h}");
    let h = s.at("textDocument/hover", &good, "{ id: count }", 2);
    let value = h["result"]["contents"]["value"].as_str().unwrap_or("");
    assert!(
        value.contains("{ id: Int }") || value.contains("Int"),
        "{h}"
    );

    // Definition: the flow named in `dispatch`, a `let` used later.
    let def = s.at("textDocument/definition", &good, "audit({", 2);
    assert_eq!(def["result"]["uri"], URI);
    assert_eq!(def["result"]["range"], range_of(&good, "audit {", 5));
    let def = s.at("textDocument/definition", &good, "count, label", 1);
    assert_eq!(def["result"]["range"], range_of(&good, "count =", 5));
    let def = s.at("textDocument/definition", &good, "erp_url}/x", 1);
    assert_eq!(def["result"]["range"], range_of(&good, "erp_url: Url", 7));

    // Completion after `config.` while the text does not parse.
    let typing = good.replace("let count = config.batch_size + 1", "let count = config.");
    s.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": URI, "version": 3 },
            "contentChanges": [{ "text": typing }],
        }),
    );
    let diags = s.diagnostics();
    assert!(!diags.is_empty());
    let c = s.at("textDocument/completion", &typing, "config.\n", 7);
    let labels: Vec<&str> = c["result"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["label"].as_str())
        .collect();
    assert_eq!(labels, ["erp_url", "batch_size"], "{c}");

    // Completion of a stdlib module's functions and the trigger's fields.
    let typing = good.replace("let count = config.batch_size + 1", "let count = http.");
    s.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": URI, "version": 4 }, "contentChanges": [{ "text": typing }] }),
    );
    s.diagnostics();
    let c = s.at("textDocument/completion", &typing, "http.\n", 5);
    let items = c["result"]["items"].as_array().expect("items");
    let post = items
        .iter()
        .find(|i| i["label"] == "post")
        .expect("http.post");
    assert!(post["detail"].as_str().unwrap_or("").contains("fn post"));
    let typing = good.replace("let count = config.batch_size + 1", "let count = trigger.");
    s.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": URI, "version": 5 }, "contentChanges": [{ "text": typing }] }),
    );
    s.diagnostics();
    let c = s.at("textDocument/completion", &typing, "trigger.\n", 8);
    let labels: Vec<&str> = c["result"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["label"].as_str())
        .collect();
    assert!(
        labels.contains(&"body") && labels.contains(&"headers"),
        "{c}"
    );

    // An unknown request is answered with MethodNotFound.
    let r = s.request("textDocument/rename", json!({}));
    assert_eq!(r["error"]["code"], -32601);

    assert_eq!(s.stop(), Some(0));
}

#[test]
fn malformed_messages_are_skipped() {
    let mut s = initialized();
    s.send_raw(b"Content-Length: 5\r\n\r\n{{{{{");
    s.send_raw(b"X-Nothing: 1\r\n\r\n");
    s.send(json!({ "jsonrpc": "2.0", "id": 50, "method": "textDocument/hover", "params": 7 }));
    let r = s.wait(|m| m["id"] == 50);
    assert_eq!(r["error"]["code"], -32602);
    // Still serving.
    let diags = open(
        &mut s,
        "integration x\nflow f {\n  trigger deploy\n  let = 1\n}\n",
    );
    assert!(!diags.is_empty());
    assert_eq!(s.stop(), Some(0));
}

#[test]
fn exit_without_shutdown_is_code_1() {
    let mut s = initialized();
    s.notify("exit", Value::Null);
    assert_eq!(s.exit_code(), Some(1));
}
