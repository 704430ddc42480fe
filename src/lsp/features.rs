//! Hover, go to definition and completion over an analysed document.

use serde_json::{json, Value};

use crate::check::stdlib::{FnSig, FILES};
use crate::check::{self, Program, Stdlib, Type};
use crate::syntax::ast::{self, Span};

use super::index::{Index, Local, Sym};

/// A document that parsed: its text, what the checker learned and the
/// symbol index.
pub struct Analysis {
    pub text: String,
    pub program: Program,
    pub index: Index,
}

impl Analysis {
    pub fn new(text: String, file: &ast::File, program: Program) -> Self {
        let index = Index::build(file);
        Analysis {
            text,
            program,
            index,
        }
    }
}

/// Parses and checks a text: its diagnostics, and its analysis if it parsed.
#[cfg(test)]
pub fn analyze(text: &str) -> (Vec<crate::diagnostics::Diagnostic>, Option<Analysis>) {
    analyze_in(text, None)
}

/// [`analyze`] for a document in folder `dir` (a test's `instance ... from
/// "FILE"` is read from there).
pub fn analyze_in(
    text: &str,
    dir: Option<&std::path::Path>,
) -> (Vec<crate::diagnostics::Diagnostic>, Option<Analysis>) {
    match crate::syntax::parse_file(text) {
        Ok(file) => {
            let checked = check::check_in(&file, dir);
            let analysis = Analysis::new(text.to_string(), &file, checked.program);
            (checked.diagnostics, Some(analysis))
        }
        Err(diagnostics) => (diagnostics, None),
    }
}

// ---------------------------------------------------------------- hover

/// Hover text (markdown) and the span it is about.
pub fn hover(a: &Analysis, offset: usize) -> Option<(String, Span)> {
    if let Some(occ) = a.index.at(offset) {
        if let Some(text) = symbol_hover(a, &occ.sym) {
            return Some((text, occ.span));
        }
    }
    let (span, ty) = expr_type_at(&a.program, offset)?;
    Some((code(&ty.to_string()), span))
}

/// The type of the innermost checked expression at an offset.
fn expr_type_at(program: &Program, offset: usize) -> Option<(Span, &Type)> {
    let inner = |inclusive: bool| {
        program
            .expr_types
            .iter()
            .filter(|(s, t)| {
                **t != Type::Error
                    && s.start <= offset
                    && (offset < s.end || (inclusive && offset == s.end))
            })
            .min_by_key(|(s, _)| (s.len(), s.start))
            .map(|(s, t)| (*s, t))
    };
    inner(false).or_else(|| inner(true))
}

fn code(text: &str) -> String {
    format!("```flow\n{text}\n```")
}

fn with_doc(head: String, doc: Option<&String>) -> String {
    match doc {
        Some(d) if !d.trim().is_empty() => format!("{head}\n\n---\n\n{d}"),
        _ => head,
    }
}

fn symbol_hover(a: &Analysis, sym: &Sym) -> Option<String> {
    match sym {
        Sym::Flow(n) => {
            let (_, doc, _) = a.index.flows.get(n)?;
            let kind = a
                .program
                .flows
                .get(n)
                .map(|t| t.kind)
                .filter(|k| !k.is_empty());
            let head = match kind {
                Some(k) => format!("{}\n\n{k} trigger", code(&format!("flow {n}"))),
                None => code(&format!("flow {n}")),
            };
            Some(with_doc(head, doc.as_ref()))
        }
        Sym::Type(n) => {
            let (_, doc) = a.index.types.get(n)?;
            let body = match a.program.types.get(n) {
                Some(r) => {
                    let fields: Vec<String> = r
                        .fields
                        .iter()
                        .map(|f| format!("  {}: {}", f.name, f.ty))
                        .collect();
                    format!("type {n} {{\n{}\n}}", fields.join("\n"))
                }
                None => match a.program.aliases.get(n) {
                    Some(t) => format!("type {n} = {t}"),
                    None => format!("type {n}"),
                },
            };
            Some(with_doc(code(&body), doc.as_ref()))
        }
        Sym::Config(n) => {
            let doc = a.index.config.get(n).and_then(|c| c.1.as_ref());
            let ty = a.program.config.iter().find(|c| &c.name == n)?;
            Some(with_doc(code(&format!("config.{n}: {}", ty.ty)), doc))
        }
        Sym::Connection(n) => {
            let doc = a.index.connections.get(n).and_then(|c| c.1.as_ref());
            let (facts, _) = a.program.connections.get(n)?;
            let mut head = format!("connection {n}");
            let how = match &facts.auth {
                crate::check::connection::ConnectionAuth::OAuth2(o) => match o.grant {
                    crate::check::connection::Grant::ClientCredentials => {
                        "oauth2: client_credentials"
                    }
                    crate::check::connection::Grant::RefreshToken => "oauth2: refresh_token",
                },
                crate::check::connection::ConnectionAuth::Bearer(_) => "bearer",
                crate::check::connection::ConnectionAuth::Basic { .. } => "basic",
                crate::check::connection::ConnectionAuth::ApiKey { .. } => "api_key",
                crate::check::connection::ConnectionAuth::Aws(_) => "aws",
                crate::check::connection::ConnectionAuth::None => "",
            };
            if !how.is_empty() {
                head.push_str(&format!("\n  {how}"));
            }
            if let Some(limit) = facts.limit {
                head.push_str(&format!(
                    "\n  limit: {} requests per {:?}",
                    limit.requests, limit.per
                ));
            }
            Some(with_doc(code(&head), doc))
        }
        Sym::Module(m) => {
            let module = Stdlib::get().modules.get(m)?;
            Some(with_doc(code(&format!("module {m}")), module.doc.as_ref()))
        }
        Sym::StdFn(m, f) => {
            let sig = Stdlib::get().function(m, f)?;
            Some(with_doc(code(&signature(sig)), sig.doc.as_ref()))
        }
        Sym::Local(l) => {
            let ty = local_type(&a.program, l)
                .map(|t| format!(": {t}"))
                .unwrap_or_default();
            let keyword = match l.kind {
                "loop variable" => "for",
                "parameter" => "parameter",
                other => other,
            };
            Some(code(&format!("{keyword} {}{ty}", l.name)))
        }
    }
}

/// The type of a local binding, from the checker's expression types.
fn local_type(program: &Program, l: &Local) -> Option<Type> {
    let ty = program.expr_types.get(&l.value?)?;
    if l.element {
        match ty {
            Type::List(t) => Some((**t).clone()),
            _ => None,
        }
    } else {
        Some(ty.clone())
    }
}

/// A stdlib function's signature as declared in its signature file
/// (`step fn post<T>(url: Url, ...) -> Response<T>`).
pub fn signature(sig: &FnSig) -> String {
    let file = format!("{}.flow", sig.module);
    let from_source = FILES
        .iter()
        .find(|(name, _)| *name == file)
        .and_then(|(_, source)| {
            let name_start = sig.decl.name.span.start;
            let line_start = source.get(..name_start)?.rfind('\n').map_or(0, |i| i + 1);
            source.get(line_start..sig.decl.ret.span.end)
        })
        .filter(|s| s.contains(&format!("fn {}", sig.name)));
    if let Some(s) = from_source {
        return s.trim().to_string();
    }
    let params: Vec<String> = sig
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name, p.ty))
        .collect();
    format!(
        "{}fn {}({}) -> {}",
        if sig.effectful { "step " } else { "" },
        sig.name,
        params.join(", "),
        sig.ret
    )
}

// ---------------------------------------------------------------- definition

pub fn definition(a: &Analysis, offset: usize) -> Option<Span> {
    let occ = a.index.at(offset)?;
    a.index.definition(&occ.sym)
}

// ---------------------------------------------------------------- completion

/// LSP `CompletionItemKind`s used here.
mod kind {
    pub const METHOD: u32 = 2;
    pub const FUNCTION: u32 = 3;
    pub const FIELD: u32 = 5;
    pub const VARIABLE: u32 = 6;
    pub const CLASS: u32 = 7;
    pub const MODULE: u32 = 9;
    pub const PROPERTY: u32 = 10;
    pub const KEYWORD: u32 = 14;
}

/// Words completed outside a `.` besides the reserved words
/// ([`crate::syntax::RESERVED`]): the other keywords of statements,
/// triggers and tests, and the special names.
pub const OTHER_KEYWORDS: &[&str] = &[
    "config",
    "env",
    "error",
    "on",
    "failure",
    "retry",
    "backoff",
    "timeout",
    "parallel",
    "headers",
    "webhook",
    "sync",
    "schedule",
    "every",
    "tz",
    "files",
    "email",
    "subscribe",
    "deploy",
    "remove",
    "instance",
    "from",
    "mock",
    "run",
    "with",
    "expect",
    "status",
    "response",
];

const BUILTIN_TYPES: &[&str] = &[
    "String", "Int", "Float", "Bool", "Time", "Duration", "Url", "Secret", "Bytes", "Json", "File",
    "Response", "Map",
];

fn item(label: &str, kind: u32, detail: Option<String>, doc: Option<&String>) -> Value {
    let mut v = json!({ "label": label, "kind": kind });
    if let Some(d) = detail {
        v["detail"] = json!(d);
    }
    if let Some(doc) = doc {
        v["documentation"] = json!({ "kind": "markdown", "value": doc });
    }
    v
}

/// Completion items at an offset of `text`. `a` is the newest analysis of
/// the document (possibly of an older text, when the current one does not
/// parse, as is usual right after typing a `.`): the context is read from
/// the text, the names and types from the analysis.
pub fn completion(text: &str, offset: usize, a: Option<&Analysis>) -> Vec<Value> {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line = before.rsplit('\n').next().unwrap_or("");
    if in_comment(line) {
        return Vec::new();
    }
    let word_start = before.trim_end_matches(is_ident_char).len();
    let head = before.get(..word_start).unwrap_or("");
    let flow = enclosing_flow(before);
    if let Some(rest) = head.strip_suffix('.') {
        let rest = rest.strip_suffix('?').unwrap_or(rest);
        return match chain_before(rest) {
            Some(chain) => member_items(&chain, flow.as_deref(), a),
            None => Vec::new(),
        };
    }
    general_items(flow.as_deref(), a)
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether the cursor (at the end of `line`) is in a `//` comment.
fn in_comment(line: &str) -> bool {
    let mut in_string = false;
    let mut prev = '\0';
    for c in line.chars() {
        match c {
            '"' if prev != '\\' => in_string = !in_string,
            '/' if prev == '/' && !in_string => return true,
            _ => {}
        }
        prev = if prev == '\\' && c == '\\' { '\0' } else { c };
    }
    false
}

/// The names of `a.b.c` (with `?.` too) ending `text`, outermost first.
fn chain_before(text: &str) -> Option<Vec<String>> {
    let mut chain = Vec::new();
    let mut rest = text;
    loop {
        let start = rest.trim_end_matches(is_ident_char).len();
        let name = rest.get(start..)?;
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        chain.push(name.to_string());
        rest = rest.get(..start)?;
        match rest.strip_suffix('.') {
            Some(r) => rest = r.strip_suffix('?').unwrap_or(r),
            None => break,
        }
    }
    chain.reverse();
    Some(chain)
}

/// The name of the last `flow NAME` before the cursor.
fn enclosing_flow(before: &str) -> Option<String> {
    let mut found = None;
    for (i, _) in before.match_indices("flow") {
        let boundary = before
            .get(..i)
            .and_then(|s| s.chars().next_back())
            .is_none_or(|c| !is_ident_char(c));
        let after = before.get(i + 4..).unwrap_or("");
        if !boundary || !after.starts_with(char::is_whitespace) {
            continue;
        }
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|c| is_ident_char(*c))
            .collect();
        if !name.is_empty() {
            found = Some(name);
        }
    }
    found
}

fn member_items(chain: &[String], flow: Option<&str>, a: Option<&Analysis>) -> Vec<Value> {
    let std = Stdlib::get();
    let Some((first, path)) = chain.split_first() else {
        return Vec::new();
    };
    let local = a.and_then(|a| {
        let locals = a.index.locals.get(flow?)?;
        locals.iter().rev().find(|l| &l.name == first)
    });
    if local.is_none() && path.is_empty() {
        if first == "config" {
            let Some(a) = a else { return Vec::new() };
            return a
                .program
                .config
                .iter()
                .map(|c| {
                    let doc = a.index.config.get(&c.name).and_then(|e| e.1.as_ref());
                    item(&c.name, kind::PROPERTY, Some(c.ty.to_string()), doc)
                })
                .collect();
        }
        if first == "env" {
            return vec![item("version", kind::PROPERTY, Some("String".into()), None)];
        }
        if let Some(module) = std.modules.get(first) {
            return module
                .functions
                .values()
                .map(|f| item(&f.name, kind::FUNCTION, Some(signature(f)), f.doc.as_ref()))
                .collect();
        }
    }
    let Some(a) = a else { return Vec::new() };
    let root = match (local, first.as_str()) {
        (Some(l), _) => local_type(&a.program, l),
        (None, "trigger") => flow
            .and_then(|f| a.program.flows.get(f))
            .map(|t| t.value_type.clone()),
        (None, "error") => Some(error_type()),
        _ => None,
    };
    let mut ty = match root {
        Some(t) => t,
        None => return Vec::new(),
    };
    for name in path {
        match field_type(&ty, name, &a.program) {
            Some(t) => ty = t,
            None => return Vec::new(),
        }
    }
    members(&ty, &a.program)
}

fn error_type() -> Type {
    use crate::check::types::{Record, RecordField};
    let field = |name: &str, ty: Type| RecordField {
        name: name.to_string(),
        ty,
    };
    Type::Record(std::sync::Arc::new(Record {
        fields: vec![
            field("message", Type::String),
            field("step", Type::optional(Type::String)),
            field("execution_id", Type::String),
        ],
    }))
}

/// Fields every value of a type has, by name and type.
fn fields_of(ty: &Type, program: &Program) -> Vec<(String, Type)> {
    match ty {
        Type::Optional(t) => fields_of(t, program),
        Type::Record(r) => r
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.ty.clone()))
            .collect(),
        Type::Named(n) => program
            .types
            .get(&**n)
            .map(|r| {
                r.fields
                    .iter()
                    .map(|f| (f.name.clone(), f.ty.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        other => other
            .builtin_fields()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, ty)| (name.to_string(), ty))
            .collect(),
    }
}

fn field_type(ty: &Type, name: &str, program: &Program) -> Option<Type> {
    fields_of(ty, program)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
}

fn members(ty: &Type, program: &Program) -> Vec<Value> {
    let mut items: Vec<Value> = fields_of(ty, program)
        .into_iter()
        .map(|(n, t)| item(&n, kind::FIELD, Some(t.to_string()), None))
        .collect();
    let methods: &[(&str, &str)] = match ty {
        Type::List(_) => &[
            ("len", "len() -> Int"),
            ("first", "first() -> T?"),
            ("contains", "contains(T) -> Bool"),
            ("join", "join(String) -> String"),
            ("sum", "sum() -> T"),
            ("map", "map(x => ...) -> [U]"),
            ("filter", "filter(x => Bool) -> [T]"),
        ],
        Type::String | Type::Lits(_) | Type::Url => &[
            ("len", "len() -> Int"),
            ("lower", "lower() -> String"),
            ("upper", "upper() -> String"),
            ("trim", "trim() -> String"),
            ("split", "split(String) -> [String]"),
            ("contains", "contains(String) -> Bool"),
        ],
        _ => &[],
    };
    items.extend(
        methods
            .iter()
            .map(|(n, sig)| item(n, kind::METHOD, Some((*sig).to_string()), None)),
    );
    items
}

fn general_items(flow: Option<&str>, a: Option<&Analysis>) -> Vec<Value> {
    let std = Stdlib::get();
    let mut items: Vec<Value> = crate::syntax::RESERVED
        .iter()
        .chain(OTHER_KEYWORDS)
        .map(|k| item(k, kind::KEYWORD, None, None))
        .collect();
    for f in ["endpoint", "reveal"] {
        items.push(item(f, kind::FUNCTION, None, None));
    }
    for m in std.modules.values() {
        items.push(item(&m.name, kind::MODULE, None, m.doc.as_ref()));
    }
    for t in BUILTIN_TYPES {
        items.push(item(t, kind::CLASS, None, None));
    }
    let Some(a) = a else { return items };
    for (name, (_, doc)) in &a.index.types {
        items.push(item(name, kind::CLASS, None, doc.as_ref()));
    }
    for (name, (_, doc, _)) in &a.index.flows {
        items.push(item(
            name,
            kind::FUNCTION,
            Some("flow".into()),
            doc.as_ref(),
        ));
    }
    if let Some(locals) = flow.and_then(|f| a.index.locals.get(f)) {
        let mut seen = std::collections::BTreeSet::new();
        for l in locals.iter().rev() {
            if seen.insert(l.name.clone()) {
                let detail = local_type(&a.program, l)
                    .map_or_else(|| l.kind.to_string(), |t| format!("{}: {t}", l.kind));
                items.push(item(&l.name, kind::VARIABLE, Some(detail), None));
            }
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains() {
        assert_eq!(
            chain_before("  let x = trigger.body"),
            Some(vec!["trigger".to_string(), "body".to_string()])
        );
        assert_eq!(
            chain_before("a?.b"),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(chain_before("f()"), None);
        assert_eq!(
            enclosing_flow("flow a {\n}\nflow b_2 { x"),
            Some("b_2".into())
        );
        assert!(in_comment("let x = 1 // config."));
        assert!(!in_comment("let x = \"a//b\" + config."));
    }

    #[test]
    fn a_via_name_hovers_and_leads_to_its_connection() {
        let text = "integration t\n\nconfig {\n  u: Url\n  k: Secret\n}\n\n/// The CRM.\nconnection crm {\n  bearer: config.k\n  limit: { requests: 5, per: 1s }\n}\n\nflow f {\n  trigger schedule every 5m\n\n  step s = http.get(config.u, via: crm)\n}\n";
        let (diagnostics, analysis) = analyze(text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let a = analysis.expect("analysis");
        let use_at = text.find("via: crm").expect("via") + "via: ".len() + 1;
        let declared = text.find("connection crm").expect("decl") + "connection ".len();
        let definition = definition(&a, use_at).expect("a definition");
        assert_eq!(definition.start, declared);
        let (hover_text, _) = hover(&a, use_at).expect("a hover");
        assert!(hover_text.contains("connection crm"), "{hover_text}");
        assert!(hover_text.contains("bearer"), "{hover_text}");
        assert!(
            hover_text.contains("limit: 5 requests per 1s"),
            "{hover_text}"
        );
        assert!(hover_text.contains("The CRM."), "{hover_text}");
    }
}
