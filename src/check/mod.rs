//! The checker: name resolution, type checking and the rules of the
//! language (LANGUAGE.md §3–§10) over a parsed [`ast::File`].
//!
//! It never stops at the first mistake: every phase records diagnostics and
//! goes on with [`Type::Error`] in place of what it could not work out, so a
//! file's mistakes are all reported in one run and none twice.
//!
//! Phases, in order: config entries (`decls`), type declarations (`decls`),
//! flows' triggers (`trigger`, so that `dispatch` and `endpoint` can look at
//! any flow), flow bodies (`stmt`, `expr`), test blocks (`testblock`), then
//! the unused-name warnings.

mod access;
pub mod connection;
mod decls;
mod expr;
pub mod facts;
mod instance;
mod resolve;
mod scope;
pub mod stdlib;
mod stmt;
mod suggest;
mod testblock;
mod trigger;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Span};

pub use facts::{FlowFacts, TriggerFacts};
pub use resolve::TypeNames;
pub use stdlib::Stdlib;
pub use stmt::{csv_stream_call, is_pages_call, CSV_STREAMS};
pub use trigger::{Route, TriggerInfo};
pub use types::{Type, TypeTable};

use scope::Scopes;

/// What the checker learned about a program, for code generation.
#[derive(Debug, Default)]
pub struct Program {
    /// Declared record types with resolved fields.
    pub types: TypeTable,
    /// Resolved aliases (`type Action = "add" | "remove"`).
    pub aliases: BTreeMap<String, Type>,
    /// Config entries in declaration order.
    pub config: Vec<ConfigInfo>,
    /// Each flow's trigger, by flow name.
    pub flows: BTreeMap<String, TriggerInfo>,
    /// Each flow's resolved facts (trigger options with their defaults,
    /// whether it reads headers), by flow name: what codegen reads.
    pub facts: BTreeMap<String, FlowFacts>,
    /// Validated `connection` declarations by name, with the name's span.
    pub connections: BTreeMap<String, (connection::ConnectionFacts, Span)>,
    /// The inferred type of every checked expression, by its span. Fx
    /// hashing: with one insert per expression SipHash was a sixth of the
    /// checker's instructions, and spans come from the program, not from
    /// an adversary.
    pub expr_types: FxHashMap<Span, Type>,
    /// The config values of each test's `instance "NAME" from "FILE"`, read
    /// from the TOML file and checked against the config block, by the span
    /// of the file's string: codegen embeds them in the test.
    pub instance_configs: HashMap<Span, serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone)]
pub struct ConfigInfo {
    pub name: String,
    pub ty: Type,
    pub span: Span,
}

/// The result of checking: all diagnostics (errors and warnings, in source
/// order) and what was learned.
#[derive(Debug)]
pub struct Checked {
    pub diagnostics: Vec<Diagnostic>,
    pub program: Program,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Checks a parsed file against the embedded stdlib. Files the program
/// names (a test's `instance ... from "FILE"`) are read relative to the
/// current directory; [`check_in`] gives the `.flow` file's folder.
pub fn check(file: &ast::File) -> Checked {
    check_in(file, None)
}

/// [`check`] for a file in folder `dir`: relative paths in the program are
/// read from there.
pub fn check_in(file: &ast::File, dir: Option<&Path>) -> Checked {
    let mut checker = Checker::new(file, Stdlib::get());
    checker.base_dir = dir.map(Path::to_path_buf);
    checker.run();
    let mut diagnostics = checker.diags;
    diagnostics.sort_by(|a, b| source_order(a).cmp(&source_order(b)));
    // One mistake, one diagnostic, even when two phases meet it.
    diagnostics.dedup_by(|a, b| a.code == b.code && a.span == b.span && a.message == b.message);
    Checked {
        diagnostics,
        program: checker.program,
    }
}

/// Diagnostics are listed in source order; equal ones end up adjacent.
fn source_order(d: &Diagnostic) -> (usize, usize, Code, &str) {
    (d.span.start, d.span.end, d.code, &d.message)
}

/// Parses and checks source text: the whole front end.
pub fn check_source(source: &str) -> Checked {
    check_source_in(source, None)
}

/// [`check_source`] for a file in folder `dir` (see [`check_in`]).
pub fn check_source_in(source: &str, dir: Option<&Path>) -> Checked {
    parse_and_check_in(source, dir).1
}

/// [`check_source_in`] that also hands back the syntax tree (`None` when
/// the source does not parse), for a caller that decides when it is freed.
pub fn parse_and_check_in(source: &str, dir: Option<&Path>) -> (Option<ast::File>, Checked) {
    match crate::syntax::parse_file(source) {
        Ok(file) => {
            let checked = check_in(&file, dir);
            (Some(file), checked)
        }
        Err(diagnostics) => (
            None,
            Checked {
                diagnostics,
                program: Program::default(),
            },
        ),
    }
}

pub(crate) struct Checker<'a> {
    file: &'a ast::File,
    std: &'static Stdlib,
    diags: Vec<Diagnostic>,
    names: TypeNames,
    program: Program,
    /// Config entries by name: (type, span, used).
    config: BTreeMap<String, (Type, Span, bool)>,
    scopes: Scopes,
    flow: Option<FlowCtx>,
    /// Declared types some type expression names (for W0005).
    used_types: BTreeSet<String>,
    /// The record declaration whose fields are being resolved.
    current_type: Option<String>,
    /// Webhook and sync triggers with neither `verify:` nor `auth:` (W0010).
    public_endpoints: Vec<Span>,
    /// Declared connections: whether a `via:` names them (W0011).
    used_connections: BTreeMap<String, bool>,
    /// The folder of the `.flow` file, for the files a test names; `None`:
    /// the current directory.
    base_dir: Option<PathBuf>,
}

/// What the checker knows about the flow whose body it is in.
#[derive(Debug, Clone)]
struct FlowCtx {
    is_sync: bool,
    /// `webhook`, `sync`, ... (empty when the flow has no trigger).
    trigger_kind: &'static str,
    trigger_type: Type,
    in_on_failure: bool,
    loop_depth: usize,
    /// Step names already used in this flow (journal identities).
    steps: BTreeMap<String, Span>,
    /// Every name the flow binds anywhere, for "defined later" and "out of
    /// scope" hints on unknown names.
    bindings: Vec<stmt::FlowBinding>,
}

impl Default for FlowCtx {
    fn default() -> Self {
        FlowCtx {
            is_sync: false,
            trigger_kind: "",
            trigger_type: Type::Error,
            in_on_failure: false,
            loop_depth: 0,
            steps: BTreeMap::new(),
            bindings: Vec::new(),
        }
    }
}

impl<'a> Checker<'a> {
    fn new(file: &'a ast::File, std: &'static Stdlib) -> Self {
        Checker {
            file,
            std,
            diags: Vec::new(),
            names: TypeNames::default(),
            program: Program::default(),
            config: BTreeMap::new(),
            scopes: Scopes::default(),
            flow: None,
            used_types: BTreeSet::new(),
            current_type: None,
            public_endpoints: Vec::new(),
            used_connections: BTreeMap::new(),
            base_dir: None,
        }
    }

    fn run(&mut self) {
        self.collect_types();
        self.collect_config();
        self.collect_connections();
        self.collect_flows();
        for item in &self.file.items {
            if let ast::Item::Flow(flow) = item {
                self.check_flow(flow);
            }
        }
        self.check_tests();
        self.warn_unused_config();
        self.warn_unused_types();
        self.warn_public_endpoints();
        self.warn_unused_connections();
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn resolve_type(&mut self, te: &ast::TypeExpr) -> Type {
        let within = self.current_type.clone();
        self.note_type_uses(te, within.as_deref());
        resolve::resolve_type(te, &self.names, &mut self.diags)
    }

    fn assignable(&self, from: &Type, to: &Type) -> bool {
        types::assignable(from, to, &self.program.types)
    }

    /// Fields of a record-like type (named or inline), if it has fields.
    fn record_fields(&self, ty: &Type) -> Option<std::sync::Arc<types::Record>> {
        match ty {
            Type::Record(r) => Some(r.clone()),
            Type::Named(n) => self.program.types.get(&**n).cloned(),
            _ => None,
        }
    }

    fn check_flow(&mut self, flow: &ast::FlowDecl) {
        // A second flow of the same name is an error; the first one counts.
        self.program
            .facts
            .entry(flow.name.name.clone())
            .or_insert_with(|| facts::flow_facts(flow));
        let info = self.program.flows.get(&flow.name.name).cloned();
        let (is_sync, trigger_kind, trigger_type) = match &info {
            Some(t) => (t.is_sync(), t.kind, t.value_type.clone()),
            None => (false, "", Type::Error),
        };
        let mut bindings = Vec::new();
        stmt::bindings_in(&flow.body, false, &mut bindings);
        if let Some(block) = &flow.on_failure {
            stmt::bindings_in(block, true, &mut bindings);
        }
        self.flow = Some(FlowCtx {
            is_sync,
            trigger_kind,
            trigger_type,
            bindings,
            ..FlowCtx::default()
        });
        self.scopes.push();
        let ending = self.check_block(&flow.body);
        if is_sync && ending == stmt::Ending::Continues {
            self.missing_respond(flow);
        }
        self.pop_scope_warn_unused();
        if let Some(block) = &flow.on_failure {
            if let Some(ctx) = self.flow.as_mut() {
                ctx.in_on_failure = true;
            }
            self.scopes.push();
            self.check_block(block);
            self.pop_scope_warn_unused();
        }
        self.flow = None;
    }

    /// E0402, pointing at the end of the flow a run can reach, and at the
    /// `if` without `else` that lets it through.
    fn missing_respond(&mut self, flow: &ast::FlowDecl) {
        let end = flow.body.span.end;
        let span = Span::new(end.saturating_sub(1), end);
        let mut d = Diagnostic::new(
            Code::MissingRespond,
            span,
            format!("sync flow `{}` can end without `respond`", flow.name),
        )
        .with_label("a run can reach the end of the flow here")
        .with_secondary(flow.name.span, "this flow answers a waiting caller");
        if let Some(ast::Stmt {
            kind:
                ast::StmtKind::If {
                    branches,
                    otherwise: None,
                },
            span: if_span,
        }) = flow.body.stmts.last()
        {
            let cond_end = branches.first().map_or(if_span.end, |(c, _)| c.span.end);
            d = d.with_secondary(
                Span::new(if_span.start, cond_end),
                "when this is false, nothing responds",
            );
            d = d.with_help("add an `else { respond ... }`, or a `respond` after the `if`");
        } else {
            d = d.with_help("end every path with `respond STATUS, BODY` (or `fail`/`skip`)");
        }
        self.error(d);
    }

    /// Leaves a scope, warning about `let` bindings nobody read.
    fn pop_scope_warn_unused(&mut self) {
        for b in self.scopes.pop() {
            if b.kind == scope::BindingKind::Let && !b.used && !b.name.starts_with('_') {
                self.diags.push(
                    Diagnostic::new(
                        Code::UnusedLet,
                        b.span,
                        format!("`{}` is never used", b.name),
                    )
                    .with_label("never read")
                    .with_help(format!(
                        "remove the `let`, or name it `_{}` to keep it",
                        b.name
                    )),
                );
            }
        }
    }

    fn warn_unused_config(&mut self) {
        // Entries the runtime reads by itself, not only through `config.x`.
        const IMPLICIT: &[&str] = &["public_url", "smtp_url"];
        let unused: Vec<(String, Span)> = self
            .config
            .iter()
            .filter(|(name, (_, _, used))| !used && !IMPLICIT.contains(&name.as_str()))
            .map(|(name, (_, span, _))| (name.clone(), *span))
            .collect();
        for (name, span) in unused {
            self.diags.push(
                Diagnostic::new(
                    Code::UnusedConfig,
                    span,
                    format!("config entry `{name}` is never used"),
                )
                .with_label("no flow reads it")
                .with_help("remove it, or use it as `config.".to_string() + &name + "`"),
            );
        }
    }
}
