//! Code generation: a checked program → the Rust source of one binary.
//!
//! Generated code is thin. It holds the integration's description (config
//! entries, named types as schemas, flows with their triggers) and one
//! function per flow body; everything else — server, executor, journal,
//! stdlib — is `flow_runtime`, written and tested once. Items are built with
//! the `codegen` crate, bodies as strings, and the result is formatted with
//! `prettyplease` so `flowc emit` is readable. Codegen touches no disk.

mod connection;
mod expr;
mod schema;
mod stmt;
mod trigger;

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::check::facts::{FlowFacts, TriggerFacts};
use crate::check::{Program, Stdlib};
use crate::syntax::ast::{self, ArgValue, ExprKind, Item, TriggerKind, TypeDeclBody};
use crate::syntax::visit::for_each_expr;

use schema::TypeDecls;

/// A Rust string literal for `s`.
pub(crate) fn lit(s: &str) -> String {
    format!("{s:?}")
}

/// A `Vec` of the Rust expressions `items`: `Vec::new()` when there are
/// none.
pub(crate) fn vec_of(items: &[String]) -> String {
    if items.is_empty() {
        "Vec::new()".into()
    } else {
        format!("Vec::from([{}])", items.join(", "))
    }
}

/// Generation state for one file.
pub(crate) struct Gen<'a> {
    std: &'static Stdlib,
    types: TypeDecls<'a>,
    /// The checked program: expression types, for `@rename` wire names.
    program: &'a Program,
    /// Locals visible at this point, innermost last.
    locals: Vec<String>,
    /// Every name the flow (or test) being generated reads: a binding
    /// nobody reads is generated without a Rust variable, or with one
    /// named `_v_...`, so the generated code has no unused variables.
    read_names: BTreeSet<String>,
    /// How many `for ... parallel` bodies enclose this point.
    parallel: usize,
    /// How many blocks enclose this point: 1 in a flow's own body.
    depth: usize,
    /// Indexes in `locals` of the step outputs bound in a flow's own body
    /// (owned values, never borrowed by a loop or a parallel item): a
    /// `respond` there may move them instead of copying them.
    owned_steps: Vec<usize>,
    /// In a dispatch flow: the name of its input parameter.
    dispatch_param: Option<String>,
    /// In a webhook or sync flow, whose `trigger.headers` the runtime
    /// stores with lowercase names.
    http_trigger: bool,
    /// Whether the program reads `.bytes` of an HTTP response anywhere:
    /// only then do `http.*` calls keep a base64 copy of each answer.
    reads_response_bytes: bool,
}

impl Gen<'_> {
    fn is_local(&self, name: &str) -> bool {
        self.locals.iter().any(|l| l == name)
    }

    fn push_local(&mut self, name: &str) {
        self.locals.push(name.to_string());
    }

    fn pop_local(&mut self, name: &str) {
        if let Some(i) = self.locals.iter().rposition(|l| l == name) {
            self.locals.remove(i);
        }
    }

    /// Whether the flow or test being generated reads the name `name`.
    fn is_read(&self, name: &str) -> bool {
        self.read_names.contains(name)
    }
}

/// The names `visit_all` reaches through the shared walker
/// (`syntax::visit::for_each_expr`): what a flow's code reads.
fn names_read(visit_all: impl FnOnce(&mut dyn FnMut(&ast::Expr) -> bool)) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    visit_all(&mut |e: &ast::Expr| {
        if let ExprKind::Name(n) = &e.kind {
            names.insert(n.name.clone());
        }
        true
    });
    names
}

/// The type the checker gave `e`, `T?` read as `T`.
fn value_type<'p>(program: &'p Program, e: &ast::Expr) -> Option<&'p crate::check::types::Type> {
    program.expr_types.get(&e.span).map(|t| t.unwrap_optional())
}

/// Whether any `.bytes` in the file reads an HTTP response's bytes.
fn reads_response_bytes(file: &ast::File, program: &Program) -> bool {
    struct Finder<'p> {
        program: &'p Program,
        found: bool,
    }
    impl<'ast> crate::syntax::visit::Visitor<'ast> for Finder<'_> {
        fn visit_expr(&mut self, e: &'ast ast::Expr) {
            if let ExprKind::Field { target, name, .. } = &e.kind {
                self.found |= name.name == "bytes"
                    && matches!(
                        value_type(self.program, target),
                        Some(crate::check::types::Type::Response(_))
                    );
            }
            crate::syntax::visit::walk_expr(self, e);
        }
    }
    let mut finder = Finder {
        program,
        found: false,
    };
    crate::syntax::visit::walk_file(&mut finder, file);
    finder.found
}

/// Generates the `main.rs` of the binary for a checked file.
pub fn generate(file: &ast::File, program: &Program, source: &str) -> String {
    let decls: BTreeMap<&str, &TypeDeclBody> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Type(t) => Some((t.name.name.as_str(), &t.body)),
            _ => None,
        })
        .collect();
    let mut gen = Gen {
        std: Stdlib::get(),
        types: TypeDecls { decls },
        program,
        locals: Vec::new(),
        read_names: BTreeSet::new(),
        parallel: 0,
        depth: 0,
        owned_steps: Vec::new(),
        dispatch_param: None,
        http_trigger: false,
        reads_response_bytes: reads_response_bytes(file, program),
    };
    let mut scope = codegen::Scope::new();
    scope.push_fn(integration_fn(&mut gen, file, program));
    scope.push_fn(flows_fn(&gen, file));
    if let Some(f) = connection::connections_fn(program) {
        scope.push_fn(f);
    }
    if let Some(f) = tests_fn(&mut gen, file) {
        scope.push_fn(f);
    }
    for item in &file.items {
        if let Item::Flow(flow) = item {
            for f in flow_fns(&mut gen, flow) {
                scope.push_fn(f);
            }
        }
    }
    let mut main = codegen::Function::new("main");
    main.ret("std::process::ExitCode").line(if has_tests(file) {
        "flow_runtime::main(integration(), tests())"
    } else {
        "flow_runtime::main(integration(), Vec::new())"
    });
    scope.push_fn(main);
    let items = scope.to_string();
    format_rust(&(header(file, source, &items) + &items))
}

/// Formats with prettyplease, with a blank line between items (but not
/// between consecutive `use`s); unparsable code (a flowc bug) is returned
/// as is, so `flowc emit` still shows it and cargo points at the problem.
pub fn format_rust(code: &str) -> String {
    let Ok(file) = syn::parse_file(code) else {
        return code.to_string();
    };
    let mut out = prettyplease::unparse(&syn::File {
        items: Vec::new(),
        ..file.clone()
    });
    let mut previous_was_use = false;
    for item in file.items {
        let is_use = matches!(item, syn::Item::Use(_));
        if !(out.is_empty() || is_use && previous_was_use) {
            out.push('\n');
        }
        previous_was_use = is_use;
        out.push_str(&prettyplease::unparse(&syn::File {
            shebang: None,
            attrs: Vec::new(),
            items: vec![item],
        }));
    }
    out
}

/// The file's doc, its one lint setting, and the imports `items` use.
/// Clippy's lints
/// stay off: generated code keeps one shape per construct (`Ok(x?)`, a
/// `&Value` of a borrowed local) rather than the idiom for each case;
/// rustc's warnings are all on and denied by flowc's tests
/// (`tests/generated_code_warnings.rs`).
fn header(file: &ast::File, source: &str, items: &str) -> String {
    let mut header = format!(
        "//! Generated by flowc {} from integration `{}`. Do not edit.\n\
         #![allow(clippy::all)]\n",
        env!("CARGO_PKG_VERSION"),
        file.integration.name,
    );
    for (path, name) in [
        ("std::sync::LazyLock", "LazyLock::"),
        ("std::time::Duration", "Duration::"),
    ] {
        if items.contains(name) {
            header.push_str(&format!("use {path};\n"));
        }
    }
    header
        + "use flow_runtime::prelude::*;\n"
        + &format!(
            "const SOURCE_SHA256: &str = {};\n",
            lit(&source_hash(source))
        )
}

pub fn source_hash(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

fn doc(d: &Option<String>) -> String {
    lit(d.as_deref().unwrap_or(""))
}

fn integration_fn(gen: &mut Gen, file: &ast::File, program: &Program) -> codegen::Function {
    let mut f = codegen::Function::new("integration");
    f.ret("Integration");
    let mut config = Vec::new();
    for item in &file.items {
        let Item::Config(block) = item else { continue };
        for entry in &block.entries {
            let schema = gen.types.schema(&entry.ty);
            let default = match &entry.default {
                Some(e) => format!("Some({})", constant(gen, e)),
                None => "None".into(),
            };
            let env = entry
                .env
                .as_ref()
                .map_or("None".to_string(), |e| format!("Some({})", lit(&e.value)));
            let secret = program
                .config
                .iter()
                .find(|c| c.name == entry.name.name)
                .is_some_and(|c| c.ty.contains_secret());
            config.push(format!(
                "ConfigEntry {{ name: {}, env: {env}, schema: {schema}, default: {default}, doc: {}, secret: {secret} }}",
                lit(&entry.name.name),
                doc(&entry.doc)
            ));
        }
    }
    let mut types = Vec::new();
    for item in &file.items {
        if let Item::Type(t) = item {
            if let TypeDeclBody::Record(fields) = &t.body {
                types.push(format!(
                    "({}, {})",
                    lit(&t.name.name),
                    gen.types.record(fields, 0)
                ));
            }
        }
    }
    f.line(format!(
        "Integration {{ name: {}, doc: {}, flowc_version: {}, source_hash: SOURCE_SHA256, config: {}, types: {}, flows, connections: {}, graph: include_str!(\"graph.svg\") }}",
        lit(&file.integration.name),
        doc(&file.doc),
        lit(env!("CARGO_PKG_VERSION")),
        vec_of(&config),
        vec_of(&types),
        if program.connections.is_empty() {
            "no_connections"
        } else {
            "connections"
        },
    ));
    f
}

fn has_tests(file: &ast::File) -> bool {
    file.items.iter().any(|i| matches!(i, Item::Test(_)))
}

/// A constant expression (config default) evaluated without a run context.
fn constant(gen: &mut Gen, e: &ast::Expr) -> String {
    gen.expr(e)
}

fn flows_fn(gen: &Gen, file: &ast::File) -> codegen::Function {
    let mut defs = Vec::new();
    for item in &file.items {
        let Item::Flow(flow) = item else { continue };
        let name = &flow.name.name;
        let Some(facts) = gen.program.facts.get(name) else {
            continue;
        };
        if matches!(facts.trigger, TriggerFacts::Missing) {
            continue;
        }
        let on_failure = if flow.on_failure.is_some() {
            format!("Some(on_failure_{name})")
        } else {
            "None".into()
        };
        defs.push(format!(
            "FlowDef {{ name: {}, doc: {}, trigger: {}, run: flow_{name}, on_failure: {on_failure} }}",
            lit(name),
            doc(&flow.doc),
            gen.trigger_def(name, facts),
        ));
    }
    let defs = vec_of(&defs);
    let mut f = codegen::Function::new("flows");
    f.arg(&unless_unused("config", &defs), "&Config")
        .ret("Vec<FlowDef>")
        .line(defs);
    f
}

/// `name` for a parameter that `code` reads, `_name` for one it does not.
fn unless_unused(name: &str, code: &str) -> String {
    if reads(code, name) {
        name.to_string()
    } else {
        format!("_{name}")
    }
}

/// Whether generated `code` reads the variable `name` (as `name.`, outside
/// string literals). Only for the variables generated code names itself,
/// `config` and `cx`: no identifier of a flow becomes one of them (locals
/// are `v_...`).
fn reads(code: &str, name: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    let mut previous = ' ';
    for (at, c) in code.char_indices() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else if !(previous.is_alphanumeric() || previous == '_')
            && code[at..].starts_with(name)
            && code[at + name.len()..].starts_with('.')
        {
            return true;
        }
        previous = c;
    }
    false
}

/// The file's `test` blocks as data (`None` when it has none): each
/// expression is a function of the test's config, generated like flow
/// expressions with a `flow_runtime::testing::TestCx` as `cx`.
fn tests_fn(gen: &mut Gen, file: &ast::File) -> Option<codegen::Function> {
    use ast::TestStmtKind as T;
    let mut cases = Vec::new();
    for item in &file.items {
        let Item::Test(test) = item else { continue };
        gen.locals.clear();
        gen.dispatch_param = None;
        gen.http_trigger = false;
        let mut config = Vec::new();
        let mut stmts = Vec::new();
        let mut instance = "None".to_string();
        for stmt in &test.stmts {
            match &stmt.kind {
                // The file's values were read and checked by the checker;
                // the binary gets them as JSON text.
                T::Instance { name, file } => {
                    let values = file
                        .as_ref()
                        .and_then(|f| gen.program.instance_configs.get(&f.span))
                        .map_or_else(
                            || "{}".to_string(),
                            |m| serde_json::Value::Object(m.clone()).to_string(),
                        );
                    instance = format!(
                        "Some(TestInstance {{ name: {}, config: {} }})",
                        lit(&name.value),
                        lit(&values)
                    );
                }
                T::Config(entries) => {
                    for entry in entries {
                        if let ArgValue::Expr(e) = &entry.value {
                            config.push(format!("({}, {})", lit(&entry.name.name), gen.expr(e)));
                        }
                    }
                }
                T::MockHttp {
                    method,
                    url,
                    status,
                    body,
                } => stmts.push(format!(
                    "TestStmt::Mock(MockHttp {{ method: {}, url: {}, status: {}, body: {} }})",
                    lit(&method.name),
                    gen.expr(url),
                    gen.expr(status),
                    body.as_ref()
                        .map_or("Value::Null".to_string(), |b| wire_value(gen, b)),
                )),
                T::Run { flow, input } => {
                    // Trigger fields, typed bodies in wire names (as they
                    // arrive over HTTP).
                    let input = match &input.kind {
                        ExprKind::Record(entries) if !entries.is_empty() => {
                            let fields: Vec<String> = entries
                                .iter()
                                .map(|en| {
                                    format!(
                                        "({}, {})",
                                        lit(en.key.name()),
                                        wire_value(gen, &en.value)
                                    )
                                })
                                .collect();
                            format!("ops::record([{}])", fields.join(", "))
                        }
                        _ => gen.expr(input),
                    };
                    stmts.push(format!(
                        "TestStmt::Run(TestRun {{ flow: {}, input: {input} }})",
                        lit(&flow.name)
                    ));
                }
                T::ExpectHttp {
                    method,
                    url,
                    json,
                    headers,
                } => stmts.push(format!(
                    "TestStmt::Expect(Expect::Http {{ method: {}, url: {}, json: {}, headers: {} }})",
                    lit(&method.name),
                    gen.expr(url),
                    json.as_ref().map_or("None".to_string(), |j| format!(
                        "Some({})",
                        wire_value(gen, j)
                    )),
                    headers
                        .as_ref()
                        .map_or("None".to_string(), |h| format!("Some({})", gen.expr(h))),
                )),
                T::ExpectStatus(outcome) => stmts.push(format!(
                    "TestStmt::Expect(Expect::Status({}))",
                    lit(&outcome.name)
                )),
                T::ExpectResponse { status, body } => stmts.push(format!(
                    "TestStmt::Expect(Expect::Response {{ status: {}, body: {} }})",
                    gen.expr(status),
                    body.as_ref().map_or("None".to_string(), |b| format!(
                        "Some({})",
                        wire_value(gen, b)
                    )),
                )),
            }
        }
        let config = format!("Ok({})", vec_of(&config));
        let stmts = format!("Ok({})", vec_of(&stmts));
        cases.push(format!(
            "TestCase {{ name: {}, \
             config: |{}: &TestCx| -> Result<Vec<(&'static str, Value)>, RunError> {{ {config} }}, \
             stmts: |{}: &TestCx| -> Result<Vec<TestStmt>, RunError> {{ {stmts} }}, \
             instance: {instance} }}",
            lit(&test.name.value),
            unless_unused("cx", &config),
            unless_unused("cx", &stmts),
        ));
    }
    if cases.is_empty() {
        return None;
    }
    let mut f = codegen::Function::new("tests");
    f.doc("The file's `test` blocks (`BINARY test`, `flowc test`).");
    f.ret("Vec<TestCase>");
    f.line(vec_of(&cases));
    Some(f)
}

/// A value as it leaves the process: typed values with `@rename`d fields
/// in wire names.
fn wire_value(gen: &mut Gen, e: &ast::Expr) -> String {
    let v = gen.expr(e);
    match gen.wire_schema(e) {
        Some(schema) => format!("{schema}.encode(&{v})"),
        None => v,
    }
}

/// The flow's body function, its `on failure` function and its dedupe
/// key function.
fn flow_fns(gen: &mut Gen, flow: &ast::FlowDecl) -> Vec<codegen::Function> {
    let name = &flow.name.name;
    let facts: Option<&FlowFacts> = gen.program.facts.get(name);
    let trigger = facts.map(|f| &f.trigger);
    gen.dispatch_param = match trigger {
        Some(TriggerFacts::Dispatch { param, .. }) => Some(param.clone()),
        _ => None,
    };
    gen.http_trigger = matches!(
        trigger,
        Some(TriggerFacts::Webhook { .. } | TriggerFacts::Sync { .. })
    );
    gen.read_names = names_read(|visit| {
        for_each_expr(&flow.body, visit);
        flow.on_failure.iter().for_each(|b| for_each_expr(b, visit));
    });
    let mut fns = vec![body_fn(
        gen,
        &format!("flow_{name}"),
        &flow.body,
        flow.doc.as_deref(),
    )];
    if let Some(block) = &flow.on_failure {
        fns.push(body_fn(
            gen,
            &format!("on_failure_{name}"),
            block,
            Some("`on failure` block"),
        ));
    }
    if let Some(TriggerFacts::Webhook {
        dedupe: Some(key), ..
    }) = trigger
    {
        fns.push(gen.dedupe_fn(name, key));
    }
    fns
}

/// A flow body (or `on failure` block) as a function: its statements,
/// then success, unless every path through them has already returned.
fn body_fn(
    gen: &mut Gen,
    fn_name: &str,
    block: &ast::Block,
    doc: Option<&str>,
) -> codegen::Function {
    let mut f = codegen::Function::new(fn_name);
    if let Some(d) = doc {
        f.doc(d);
    }
    gen.locals.clear();
    gen.owned_steps.clear();
    let mut body = gen.block(block);
    if !stmt::always_returns(block) {
        body.push_str("Ok(Outcome::Succeeded)\n");
    }
    let body = format!("Box::pin(async move {{\n{body}}})");
    f.arg(&unless_unused("cx", &body), "Ctx")
        .ret("FlowFuture")
        .line(body);
    f
}

/// Stdlib modules declared (and checked) whose runtime implementation comes
/// with a later milestone.
pub const MODULES_NOT_IN_RUNTIME: &[&str] = &[];

/// What the runtime does not run yet — `subscribe` triggers of brokers
/// without a runtime feature (see [`BROKER_FEATURES`]),
/// the modules in [`MODULES_NOT_IN_RUNTIME`] — reported by `flowc build`
/// before generating code, so a program that checks never fails to build
/// or fails at run time with "unknown function".
pub fn unsupported(file: &ast::File) -> Vec<(ast::Span, String)> {
    let mut out = Vec::new();
    let mut calls = Vec::new();
    for item in &file.items {
        if let Item::Flow(flow) = item {
            collect_module_calls(&flow.body, &mut calls);
            if let Some(b) = &flow.on_failure {
                collect_module_calls(b, &mut calls);
            }
        }
    }
    for (span, module, function) in calls {
        if MODULES_NOT_IN_RUNTIME.contains(&module.as_str()) {
            out.push((span, format!("`{module}.{function}` is checked but not yet run by this version of flowc's runtime")));
        }
    }
    for item in &file.items {
        let Item::Flow(flow) = item else { continue };
        for t in &flow.triggers {
            if let TriggerKind::Subscribe { broker, .. } = &t.kind {
                if broker_feature(&broker.name).is_none() {
                    out.push((
                        t.span,
                        format!(
                            "flow `{}`: `subscribe {}` triggers are checked but not built yet by this version of flowc",
                            flow.name.name, broker.name
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// The runtime's broker features: each turns on the subscribe trigger of
/// that broker and its stdlib module's steps.
pub const BROKER_FEATURES: &[&str] = &["amqp", "kafka", "mqtt", "nats", "redis"];

/// The runtime feature of a subscribe trigger's broker: its own, or `aws`
/// for `sqs` (its queues are reached through an `aws:` connection).
fn broker_feature(broker: &str) -> Option<&'static str> {
    if broker == "sqs" {
        return Some("aws");
    }
    BROKER_FEATURES.iter().copied().find(|f| *f == broker)
}

/// Every optional feature of the runtime, the brokers' and the heavier
/// stdlib clients': `aws` (`aws:` connections: `s3://` paths),
/// `email` (`email.send`), `email_in` (email triggers: IMAP), `mysql`
/// (`sql.*` on mysql://),
/// `otel` (OTLP export of traces: chosen by the operator with `--with
/// otel`, never derived from the source), `pdf` (`pdf.report`,
/// `pdf.text`), `postgres` (`sql.*` on postgres://, and the shared store
/// of replicas, `--store postgres://`: an operator's choice, so `--with
/// postgres` for an integration without `sql.*` calls), `sftp` (`file.*`
/// and files triggers on sftp://). `flowc build --with` takes these names.
/// SQLite (the default store) is always in.
pub const RUNTIME_FEATURES: &[&str] = &[
    "amqp", "aws", "email", "email_in", "kafka", "mqtt", "mysql", "nats", "otel", "pdf",
    "postgres", "redis", "sftp",
];

/// The runtime features `file` needs, sorted. `flowc build` turns on
/// exactly these (plus `--with`), so an integration compiles only the
/// client libraries it can use. Each rule errs on the side of compiling a
/// client, never of leaving one out that a run could need:
///
/// * a broker: a subscribe trigger naming it or a call to its module
///   (`nats.publish` → `nats`; `subscribe sqs` → `aws`);
/// * `email`: a call to `email.*`;
/// * `email_in`: an email trigger (its own feature: reading a mailbox
///   needs an IMAP client and a MIME parser that sending mail does not);
/// * `mysql` and `postgres`: a call to `sql.*` (its `db` URL is a Secret,
///   known only at run time, so it may be a mysql:// or a postgres:// one);
///   never for the store (`--store postgres://` is chosen when the binary
///   runs: `flowc build --with postgres`);
/// * `sftp`: a files trigger on an `sftp://` glob or with `auth:`, or a
///   `file.*` call with an `auth:` argument (an `sftp://` path needs one:
///   without it, the step fails before connecting anyway);
/// * `aws`: an `aws:` connection (every `s3://` path, queue and topic is
///   reached through one).
pub fn runtime_features(file: &ast::File) -> Vec<&'static str> {
    let mut used = BTreeSet::new();
    for item in &file.items {
        if let Item::Connection(c) = item {
            if c.options.iter().any(|o| o.name.name == "aws") {
                used.insert("aws");
            }
        }
    }
    for item in &file.items {
        let Item::Flow(flow) = item else { continue };
        for t in &flow.triggers {
            match &t.kind {
                TriggerKind::Subscribe { broker, .. } => {
                    used.extend(broker_feature(&broker.name));
                }
                TriggerKind::Email { .. } => {
                    used.insert("email_in");
                }
                TriggerKind::Files { glob, .. } => {
                    // A glob from the config may name an SFTP server.
                    let remote = glob.value.to_ascii_lowercase().starts_with("sftp://")
                        || glob.value.contains("${config.");
                    if remote || t.options.iter().any(|o| o.name.name == "auth") {
                        used.insert("sftp");
                    }
                }
                _ => {}
            }
        }
        for block in std::iter::once(&flow.body).chain(&flow.on_failure) {
            for_each_expr(block, &mut |e| {
                if let Some((module, function, args)) = module_call(e) {
                    used.extend(features_of_call(module, function, args));
                }
                true
            });
        }
    }
    RUNTIME_FEATURES
        .iter()
        .copied()
        .filter(|f| used.contains(*f))
        .collect()
}

/// The features one `module.function(args)` call needs.
fn features_of_call(module: &str, function: &str, args: &[ast::Arg]) -> Vec<&'static str> {
    match module {
        "email" => vec!["email"],
        "pdf" => vec!["pdf"],
        // `csv.rows(file, auth: ...)` reads a big file on an SFTP server.
        "csv"
            if args
                .iter()
                .any(|a| a.name.as_ref().is_some_and(|n| n.name == "auth")) =>
        {
            vec!["sftp"]
        }
        // The `db` URL may be either (a Secret from the config).
        "sql" => vec!["mysql", "postgres"],
        "file" if file_call_has_auth(function, args) => vec!["sftp"],
        _ => BROKER_FEATURES
            .iter()
            .copied()
            .filter(|b| *b == module)
            .collect(),
    }
}

/// Whether a `file.*` call passes `auth:`, by name or by position (it
/// follows the one or two paths and contents: stdlib/file.flow).
fn file_call_has_auth(function: &str, args: &[ast::Arg]) -> bool {
    let auth_position = match function {
        "write" | "append" | "move" => 2,
        _ => 1,
    };
    let positional = args.iter().filter(|a| a.name.is_none()).count();
    positional > auth_position
        || args
            .iter()
            .any(|a| a.name.as_ref().is_some_and(|n| n.name == "auth"))
}

/// `module.function(args)`: the module's and function's names and the
/// arguments.
fn module_call(e: &ast::Expr) -> Option<(&str, &str, &[ast::Arg])> {
    let ExprKind::Call { callee, args } = &e.kind else {
        return None;
    };
    let ExprKind::Field { target, name, .. } = &callee.kind else {
        return None;
    };
    let ExprKind::Name(m) = &target.kind else {
        return None;
    };
    Some((m.name.as_str(), name.name.as_str(), args))
}

/// Every `module.function(...)` call in a block: (span, module, function).
fn collect_module_calls(block: &ast::Block, out: &mut Vec<(ast::Span, String, String)>) {
    for_each_expr(block, &mut |e: &ast::Expr| {
        if let ExprKind::Call { callee, .. } = &e.kind {
            if let ExprKind::Field { target, name, .. } = &callee.kind {
                if let ExprKind::Name(m) = &target.kind {
                    out.push((e.span, m.name.clone(), name.name.clone()));
                }
            }
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::reads;

    #[test]
    fn a_lone_item_for_a_list_parameter_is_passed_as_a_list_of_one() {
        let source = "integration t\n\nconfig {\n  to: String\n  smtp_url: Secret\n}\n\nflow f {\n  trigger schedule every 1h\n\n  step sent = email.send(to: config.to, subject: \"s\", text: \"t\")\n  step again = email.send(to: [config.to], subject: \"s\", text: \"t\")\n}\n";
        let file = crate::syntax::parse_file(source).expect("parses");
        let checked = crate::check::check(&file);
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        let code = super::generate(&file, &checked.program, source);
        // The lone address becomes the same list as the written one, and
        // the written list is not wrapped again.
        let list = "Value::Array(Vec::from([ops::get(cx.config(), \"to\").clone()]))";
        assert_eq!(code.matches(list).count(), 2, "{code}");
        assert!(!code.contains("Vec::from([Value::Array"), "{code}");
    }

    /// `respond` moves a step's output only where nothing can read it
    /// afterwards; elsewhere it copies, as before.
    #[test]
    fn a_respond_at_the_end_moves_the_steps_output_instead_of_copying_it() {
        let flow = |name: &str, path: &str, body: &str| {
            format!(
                "flow {name} {{\n  trigger sync POST \"/{path}\" {{\n    auth: none\n  }}\n\n  step sent = http.get(config.url)\n{body}\n}}\n"
            )
        };
        let source = [
            "integration t\n\nconfig {\n  url: Url\n}\n".to_string(),
            flow("whole", "a", "  respond 200, sent"),
            flow("field", "b", "  respond 201, sent.body.items"),
            flow(
                "branch",
                "c",
                "  if sent.status == 404 {\n    respond 404, sent.body\n  }\n  respond 202, sent.text",
            ),
            flow(
                "headers",
                "d",
                "  respond 203, sent.body headers { \"X-Text\": sent.text }",
            ),
            flow("borrowed", "e", "  let got = trigger.body\n  respond 204, got.items"),
        ]
        .concat();
        let file = crate::syntax::parse_file(&source).expect("parses");
        let checked = crate::check::check(&file);
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        let code = super::generate(&file, &checked.program, &source);
        let compact: String = code.split_whitespace().collect();
        for moved in [
            "status:200,body:v_sent,",
            "status:201,body:ops::take(v_sent,&[\"body\",\"items\"]),",
            "status:202,body:ops::take(v_sent,&[\"text\"]),",
        ] {
            assert!(compact.contains(moved), "{moved} in {code}");
        }
        for copied in [
            "status:404,body:ops::get(&v_sent,\"body\").clone(),",
            "status:203,body:ops::get(&v_sent,\"body\").clone(),",
            "status:204,body:ops::get(&v_got,\"items\").clone(),",
        ] {
            assert!(compact.contains(copied), "{copied} in {code}");
        }
    }

    #[test]
    fn a_variable_is_read_where_code_calls_a_method_on_it() {
        assert!(reads("ops::get(cx.config(), \"a\")", "cx"));
        assert!(reads("Some(config.str(\"key\"))", "config"));
        assert!(!reads("v_cx.clone()", "cx"));
        assert!(!reads("let cx = 1;", "cx"));
    }

    #[test]
    fn string_literals_do_not_read_variables() {
        assert!(!reads("doc: \"give auth: config.key\"", "config"));
        assert!(!reads("doc: \"a \\\" quote, then config.key\"", "config"));
        assert!(reads("doc: \"a \\\\\", x: config.key", "config"));
    }
}
