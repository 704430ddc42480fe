//! `test` blocks (LANGUAGE.md §9): flows run, mocks and expectations are
//! checked here; running them is `flowc test`'s job.

use std::collections::BTreeMap;

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, ArgValue, ExprKind, Item, Span, TestStmtKind};

use super::suggest::did_you_mean;
use super::trigger::METHODS;
use super::types::Type;
use super::Checker;

const OUTCOMES: &[&str] = &["succeeded", "failed", "skipped"];
/// Other words for the outcomes, and the outcome meant.
const OUTCOME_SYNONYMS: &[(&str, &str)] = &[
    ("success", "succeeded"),
    ("successful", "succeeded"),
    ("ok", "succeeded"),
    ("passed", "succeeded"),
    ("completed", "succeeded"),
    ("failure", "failed"),
    ("error", "failed"),
    ("skip", "skipped"),
];

impl Checker<'_> {
    pub(super) fn check_tests(&mut self) {
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        for item in &self.file.items {
            let Item::Test(test) = item else { continue };
            if let Some(first) = seen.get(&test.name.value) {
                self.error(
                    Diagnostic::new(
                        Code::DuplicateTest,
                        test.name.span,
                        format!("test {:?} is defined more than once", test.name.value),
                    )
                    .with_label("defined again here")
                    .with_secondary(*first, "first defined here")
                    .with_help("give each test its own name"),
                );
            } else {
                seen.insert(test.name.value.clone(), test.name.span);
            }
            self.check_test(test);
        }
    }

    fn check_test(&mut self, test: &ast::TestDecl) {
        self.scopes.push();
        let mut has_run = false;
        // The first `run` and the first `instance` statement.
        let mut first_run: Option<Span> = None;
        let mut instance: Option<Span> = None;
        // The flow the test runs, and its trigger kind.
        let mut ran: Option<(&ast::Ident, &'static str)> = None;
        for stmt in &test.stmts {
            match &stmt.kind {
                TestStmtKind::Config(entries) => self.test_config(entries),
                TestStmtKind::Instance { name, file } => {
                    self.test_instance(stmt.span, name, file.as_ref(), instance, first_run);
                    instance = instance.or(Some(stmt.span));
                }
                TestStmtKind::MockHttp {
                    method,
                    url,
                    status,
                    body,
                } => {
                    self.test_method(method, Code::BadMock);
                    self.expect(url, &Type::String, "mocked URL");
                    self.expect(status, &Type::Int, "mocked status");
                    if let Some(b) = body {
                        self.expect(b, &Type::Json, "mocked body");
                    }
                }
                TestStmtKind::Run { flow, input } => {
                    has_run = true;
                    first_run = first_run.or(Some(stmt.span));
                    self.test_run(flow, input);
                    ran = self.program.flows.get(&flow.name).map(|f| (flow, f.kind));
                }
                TestStmtKind::ExpectHttp {
                    method,
                    url,
                    json,
                    headers,
                } => {
                    self.test_method(method, Code::BadExpect);
                    self.expect(url, &Type::String, "expected URL");
                    if let Some(j) = json {
                        self.expect(j, &Type::Json, "expected JSON body");
                    }
                    if let Some(h) = headers {
                        let map = Type::Map(Box::new(Type::Secret));
                        self.expect(h, &map, "expected headers");
                    }
                }
                TestStmtKind::ExpectStatus(outcome) => {
                    if !OUTCOMES.contains(&outcome.name.as_str()) {
                        let mut d = Diagnostic::new(
                            Code::BadExpect,
                            outcome.span,
                            format!("unknown outcome `{outcome}`"),
                        )
                        .with_label("not an outcome");
                        let synonym = OUTCOME_SYNONYMS
                            .iter()
                            .find(|(w, _)| *w == outcome.name)
                            .map(|(_, o)| o.to_string());
                        d = match synonym
                            .or_else(|| did_you_mean(&outcome.name, OUTCOMES.iter().copied()))
                        {
                            Some(s) => d.with_help(format!("did you mean `{s}`?")),
                            None => d.with_help("outcomes: succeeded, failed, skipped"),
                        };
                        self.error(d);
                    }
                }
                TestStmtKind::ExpectResponse { status, body } => {
                    if let Some((flow, kind)) = ran.filter(|(_, kind)| *kind != "sync") {
                        self.error(
                            Diagnostic::new(
                                Code::BadExpect,
                                Span::new(stmt.span.start, status.span.end),
                                format!("`{flow}` has a {kind} trigger, so it answers no response"),
                            )
                            .with_label("only sync flows respond")
                            .with_secondary(flow.span, "the flow this test runs")
                            .with_help("check the outcome with `expect status succeeded`, or the calls with `expect http ...`"),
                        );
                    }
                    self.expect(status, &Type::Int, "expected status");
                    if let Some(b) = body {
                        self.expect(b, &Type::Json, "expected response body");
                    }
                }
            }
        }
        self.scopes.pop();
        if !has_run {
            self.error(
                Diagnostic::new(
                    Code::TestRunMissing,
                    test.name.span,
                    format!("test {:?} runs no flow", test.name.value),
                )
                .with_label("no `run` in this test")
                .with_help(
                    "add `run FLOW with { ... }`: the mocks and expectations are about that run",
                ),
            );
        }
    }

    fn test_method(&mut self, method: &ast::Ident, code: Code) {
        if !METHODS.contains(&method.name.as_str()) {
            let mut d =
                Diagnostic::new(code, method.span, format!("unknown HTTP method `{method}`"))
                    .with_label("not an HTTP method");
            d = match did_you_mean(&method.name, METHODS.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("methods: {}", METHODS.join(", "))),
            };
            self.error(d);
        }
    }

    fn test_config(&mut self, entries: &[ast::OptionEntry]) {
        for entry in entries {
            let ArgValue::Expr(value) = &entry.value else {
                self.error(Diagnostic::new(
                    Code::TypeMismatch,
                    entry.span,
                    "a config value must be a value, not a type",
                ));
                continue;
            };
            match self.config.get(&entry.name.name).map(|c| c.0.clone()) {
                Some(ty) => {
                    self.expect(value, &ty, &format!("config `{}`", entry.name));
                }
                None => {
                    let names: Vec<String> = self.config.keys().cloned().collect();
                    let mut d = Diagnostic::new(
                        Code::UnknownConfig,
                        entry.name.span,
                        format!("unknown config entry `{}`", entry.name),
                    )
                    .with_label("not in the config block");
                    if let Some(s) =
                        did_you_mean(&entry.name.name, names.iter().map(String::as_str))
                    {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    }
                    self.error(d);
                }
            }
        }
    }

    /// `run flow with { ... }`: the input gives some of the trigger's fields.
    fn test_run(&mut self, flow: &ast::Ident, input: &ast::Expr) {
        let Some(info) = self.program.flows.get(&flow.name).cloned() else {
            self.check_expr(input, None);
            self.unknown_flow(flow);
            return;
        };
        let fields = self.record_fields(&info.value_type);
        let (ExprKind::Record(entries), Some(fields)) = (&input.kind, fields) else {
            self.expect(input, &Type::Json, "test input");
            return;
        };
        for entry in entries {
            let name = entry.key.name();
            match fields.field(name).cloned() {
                Some(t) => {
                    let t = given_in_test(&t);
                    self.expect(&entry.value, &t, &format!("`trigger.{name}`"));
                }
                None => {
                    self.check_expr(&entry.value, None);
                    let mut d = Diagnostic::new(
                        Code::UnknownField,
                        entry.key.span(),
                        format!("the trigger of `{flow}` has no field `{name}`"),
                    );
                    d = match did_you_mean(name, fields.fields.iter().map(|f| f.name.as_str())) {
                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                        None => d.with_help(format!(
                            "fields: {}",
                            fields
                                .fields
                                .iter()
                                .map(|f| f.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    };
                    self.error(d);
                }
            }
        }
    }
}

/// What a test may give for a trigger field of type `t`: a `File` (files
/// triggers, an email's attachments) as a record of any of its fields — the
/// test runner derives the rest (`path` from `name`, `bytes` and `size`
/// from `text`, ...).
fn given_in_test(t: &Type) -> Type {
    match t {
        Type::File => Type::record(vec![
            ("path".into(), Type::optional(Type::String)),
            ("name".into(), Type::optional(Type::String)),
            ("size".into(), Type::optional(Type::Int)),
            ("modified".into(), Type::optional(Type::Time)),
            ("text".into(), Type::optional(Type::String)),
            ("bytes".into(), Type::optional(Type::Bytes)),
        ]),
        Type::List(inner) => Type::list(given_in_test(inner)),
        // `trigger.message` of an email trigger holds its Files.
        Type::Record(r) => Type::record(
            r.fields
                .iter()
                .map(|f| (f.name.clone(), given_in_test(&f.ty)))
                .collect(),
        ),
        other => other.clone(),
    }
}
