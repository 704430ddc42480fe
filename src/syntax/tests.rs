//! Parser tests: every form of LANGUAGE.md parses and lowers as intended,
//! each rule consumes its whole input, typical mistakes give readable
//! errors (snapshots), and no input makes the parser panic.

use pest::Parser as _;

use super::ast::*;
use super::parser::{FlowParser, Rule};
use super::{parse_file, parse_module};
use crate::diagnostics::{render, Code, Diagnostic};

// ---------------------------------------------------------------- helpers

#[track_caller]
fn parse_ok(source: &str) -> File {
    match parse_file(source) {
        Ok(file) => file,
        Err(diags) => panic!(
            "expected to parse:\n{source}\n{}",
            render("test.flow", source, &diags, false)
        ),
    }
}

#[track_caller]
fn parse_err(source: &str) -> Vec<Diagnostic> {
    match parse_file(source) {
        Ok(file) => panic!("expected an error for:\n{source}\ngot {file:#?}"),
        Err(diags) => diags,
    }
}

/// Renders the diagnostics of a program that must fail, framed with its
/// source, for snapshots.
#[track_caller]
fn error_report(source: &str) -> String {
    let diags = parse_err(source);
    format!(
        "----- SOURCE CODE\n{source}\n----- ERROR\n{}",
        render("test.flow", source, &diags, false)
    )
}

/// Wraps statements into a whole program with one flow.
fn in_flow(stmts: &str) -> String {
    format!("integration t\n\nflow f {{\n  trigger deploy\n{stmts}\n}}\n")
}

#[track_caller]
fn flow_body(stmts: &str) -> Vec<Stmt> {
    let file = parse_ok(&in_flow(stmts));
    match file.items.into_iter().next() {
        Some(Item::Flow(flow)) => flow.body.stmts,
        other => panic!("expected a flow, got {other:?}"),
    }
}

#[track_caller]
fn one_stmt(stmt: &str) -> StmtKind {
    let mut stmts = flow_body(stmt);
    assert_eq!(stmts.len(), 1, "expected one statement in {stmt}");
    stmts.remove(0).kind
}

/// The expression of `let x = EXPR`.
#[track_caller]
fn expr(source: &str) -> Expr {
    match one_stmt(&format!("let x = {source}")) {
        StmtKind::Let { value, .. } => value,
        other => panic!("expected let, got {other:?}"),
    }
}

/// A compact S-expression of an expression, to check shape and precedence.
fn sexp(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Null => "null".into(),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Int(i) => i.to_string(),
        ExprKind::Float(f) => format!("{f:?}"),
        ExprKind::Duration(ms) => format!("{ms}ms"),
        ExprKind::Str(parts) => {
            let parts: Vec<String> = parts
                .iter()
                .map(|p| match p {
                    StrPart::Lit(s) => format!("{s:?}"),
                    StrPart::Interp(e) => format!("${{{}}}", sexp(e)),
                })
                .collect();
            format!("(str {})", parts.join(" "))
        }
        ExprKind::List(items) => {
            let items: Vec<String> = items.iter().map(sexp).collect();
            format!("[{}]", items.join(" "))
        }
        ExprKind::Record(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|e| format!("{}: {}", e.key.name(), sexp(&e.value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        ExprKind::Name(n) => n.name.clone(),
        ExprKind::Field {
            target,
            name,
            optional,
        } => format!(
            "{}{}{}",
            sexp(target),
            if *optional { "?." } else { "." },
            name
        ),
        ExprKind::Index { target, index } => format!("{}[{}]", sexp(target), sexp(index)),
        ExprKind::Call { callee, args } => {
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    let value = match &a.value {
                        ArgValue::Expr(e) => sexp(e),
                        ArgValue::Type(t) => format!("type {}", ty(t)),
                    };
                    match &a.name {
                        Some(n) => format!("{n}: {value}"),
                        None => value,
                    }
                })
                .collect();
            format!("(call {} {})", sexp(callee), args.join(", "))
        }
        ExprKind::Lambda { params, body } => {
            let params: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            format!("(fn ({}) {})", params.join(" "), sexp(body))
        }
        ExprKind::Unary { op, expr } => format!("({op:?} {})", sexp(expr)),
        ExprKind::Binary { op, lhs, rhs } => {
            format!("({} {} {})", op.symbol(), sexp(lhs), sexp(rhs))
        }
        ExprKind::As { expr, ty: t } => format!("(as {} {})", sexp(expr), ty(t)),
        ExprKind::If {
            branches,
            otherwise,
        } => {
            let mut out = String::from("(if");
            for (c, v) in branches {
                out.push_str(&format!(" {} => {}", sexp(c), sexp(v)));
            }
            if let Some(o) = otherwise {
                out.push_str(&format!(" else {}", sexp(o)));
            }
            out + ")"
        }
        ExprKind::Match { scrutinee, arms } => {
            let arms: Vec<String> = arms
                .iter()
                .map(|a| format!("{} => {}", pats(&a.patterns), sexp(&a.body)))
                .collect();
            format!("(match {} {})", sexp(scrutinee), arms.join(", "))
        }
    }
}

fn pats(patterns: &[Pattern]) -> String {
    let p: Vec<String> = patterns
        .iter()
        .map(|p| match &p.kind {
            PatternKind::Wildcard => "_".into(),
            PatternKind::Str(s) => format!("{s:?}"),
            PatternKind::Int(i) => i.to_string(),
            PatternKind::Float(f) => format!("{f:?}"),
            PatternKind::Bool(b) => b.to_string(),
            PatternKind::Null => "null".into(),
        })
        .collect();
    p.join(" | ")
}

fn ty(t: &TypeExpr) -> String {
    match &t.kind {
        TypeExprKind::Named { name, args } if args.is_empty() => name.name.clone(),
        TypeExprKind::Named { name, args } => {
            let args: Vec<String> = args.iter().map(ty).collect();
            format!("{}<{}>", name, args.join(", "))
        }
        TypeExprKind::List(inner) => format!("[{}]", ty(inner)),
        TypeExprKind::Optional(inner) => format!("{}?", ty(inner)),
        TypeExprKind::LitUnion(lits) => {
            let lits: Vec<String> = lits.iter().map(|l| format!("{:?}", l.value)).collect();
            lits.join(" | ")
        }
        TypeExprKind::Record(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.name, ty(&f.ty)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

#[track_caller]
fn sx(source: &str) -> String {
    sexp(&expr(source))
}

/// `rule` parses `source` and its pair ends exactly at the end.
#[track_caller]
fn consumes_all(rule: Rule, source: &str) {
    match FlowParser::parse(rule, source) {
        Ok(mut pairs) => {
            let end = pairs.next().map(|p| p.as_span().end());
            assert_eq!(
                end,
                Some(source.len()),
                "{rule:?} stopped early in {source:?}"
            );
        }
        Err(e) => panic!("{rule:?} failed on {source:?}:\n{e}"),
    }
}

// ---------------------------------------------------------------- whole programs

/// Every form of LANGUAGE.md, completed into one program.
const LANGUAGE_TOUR: &str = r#"/// Keeps the ERP's stock levels in step with the inventory app.
integration inventory_sync

config {
  /// Base URL of the ERP's REST API.
  erp_url: Url
  erp_token: Secret
  batch_size: Int = 100
  region: String = "eu" env "INVENTORY_REGION"
  public_url: Url = "http://localhost:8080"
  webhook_secret: Secret, nats_url: Url,
  label: String env "LABEL"
}

type Update {
  /// Stock keeping unit name.
  item: String
  action: "add" | "remove"
  quantity: Int
  note: String?            // may be missing or null
}
type InventoryEvent {
  event: "INVENTORY_UPDATE"
  updates: [Update]
}
type Action = "add" | "remove"   // alias
type Envelope { type: String, data: Json, }
type Weird {
  @rename("Item-Name") item_name: String
  counts: Map<Int>
  lines: [{ id: Int, name: String? }]?
  maybe: [Update]?
}

/// One webhook call carries several updates; each becomes one ERP call.
flow stock_changed {
  trigger webhook POST "/inventory" {
    body: InventoryEvent
    verify: hmac_sha256(header: "X-Signature", secret: config.webhook_secret)
    dedupe: header("X-Delivery-Id")
  }
  for update in trigger.body.updates parallel 4 {
    let delta = match update.action {
      "add" => update.quantity
      "remove" => -update.quantity
    }
    if delta == 0 { skip "nothing to change" }
    step adjust = http.post("${config.erp_url}/stock/${update.item}",
      json: { delta: delta },
      bearer: config.erp_token,
    ) retry 5 backoff 1s..2m
  }
}

flow get_customer {
  trigger sync GET "/customers/{id}" timeout 5s { fallback: async }
  step customer = http.get("${config.erp_url}/customers/${trigger.params.id}",
    headers: { "X-Api-Key": config.erp_token },
    ok: [404],
    as: Customer,
  )
  if customer.status == 404 {
    respond 404, { error: "no customer ${trigger.params.id}" }
  } else if customer.status == 500 {
    fail "upstream broken"
  } else {
    let ignored = 1
  }
  respond 200, { name: customer.body.name } headers { "Cache-Control": "max-age=60" }
}

flow weekly {
  trigger schedule "0 19 * * THU" tz "America/New_York"
  step summary = http.post("${config.public_url}/summary", json: { at: trigger.fired_at })
  on failure {
    step alert = http.post("${config.public_url}/alerts", json: { error: error.message, step: error.step, run: error.execution_id })
  }
}

flow poll {
  trigger schedule every 5m { catch_up: false }
  let cursor = state.get("cursor") ?? "1970-01-01T00:00:00Z"
  step save = state.set("cursor", cursor)
}

flow inbox {
  trigger files "inbox/*.xml" every 1m { batch: true, after: delete }
  for file in trigger.files {
    step text = file.read(file.path)
  }
}

flow orders {
  trigger subscribe nats "orders.created" { url: config.nats_url, body: Order, group: "workers" }
  let total = trigger.body.lines.map(l => l.quantity * l.price).sum()
}

flow on_deploy {
  trigger deploy
  let url = "${endpoint(stock_changed)} ${env.version}"
}

flow crm_webhook {
  trigger webhook POST "/crm/events" { body: Envelope }
  match trigger.body.type {
    "opportunity.updated" => dispatch opportunity_updated(trigger.body.data as Opportunity)
    "contact.created" => { dispatch contact_created(trigger.body.data as Contact) }
    _ => skip "unhandled event type"
  }
}

flow opportunity_updated {
  trigger dispatch (input: Opportunity)
  log.info("won ${trigger.input.id}")
}

test "an add and a remove make two ERP calls" {
  config { erp_url: "http://erp.test" erp_token: "t", webhook_secret: "s" }
  mock http POST "${config.erp_url}/stock/widgets" => 200, {}
  mock http POST "${config.erp_url}/stock/gadgets" => 200, {}
  run stock_changed with { body: { event: "INVENTORY_UPDATE", updates: [
    { item: "widgets", action: "add", quantity: 20 },
    { item: "gadgets", action: "remove", quantity: 5 },
  ] } }
  expect http POST "${config.erp_url}/stock/gadgets" with json { delta: -5 }
  expect http POST "${config.erp_url}/stock/widgets"
  expect status succeeded
}

test "a lookup answers" {
  mock http GET "${config.erp_url}/customers/7" => 200
  run get_customer with { params: { id: "7" } }
  expect response 200, { name: "Ann" }
  expect response 404
}
"#;

#[test]
fn language_tour_parses() {
    let file = parse_ok(LANGUAGE_TOUR);
    assert_eq!(file.integration.name, "inventory_sync");
    assert_eq!(
        file.doc.as_deref(),
        Some("Keeps the ERP's stock levels in step with the inventory app.")
    );
    assert_eq!(file.span, Span::new(0, LANGUAGE_TOUR.len()));
    let flows: Vec<&str> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Flow(f) => Some(f.name.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        flows,
        [
            "stock_changed",
            "get_customer",
            "weekly",
            "poll",
            "inbox",
            "orders",
            "on_deploy",
            "crm_webhook",
            "opportunity_updated"
        ]
    );
}

#[test]
fn examples_and_stdlib_parse() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut seen = 0;
    for (dir, module) in [("examples", false), ("stdlib", true)] {
        let Ok(entries) = std::fs::read_dir(format!("{root}/{dir}")) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "flow") {
                continue;
            }
            let Ok(source) = std::fs::read_to_string(&path) else {
                continue;
            };
            let result = if module {
                parse_module(&source).map(|_| ())
            } else {
                parse_file(&source).map(|_| ())
            };
            if let Err(diags) = result {
                panic!(
                    "{}",
                    render(&path.display().to_string(), &source, &diags, false)
                );
            }
            seen += 1;
        }
    }
    let _ = seen;
}

#[test]
fn config_entries() {
    let file = parse_ok(LANGUAGE_TOUR);
    let Some(Item::Config(config)) = file.items.first() else {
        panic!("config first");
    };
    let names: Vec<&str> = config
        .entries
        .iter()
        .map(|e| e.name.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "erp_url",
            "erp_token",
            "batch_size",
            "region",
            "public_url",
            "webhook_secret",
            "nats_url",
            "label"
        ]
    );
    let e = &config.entries;
    assert_eq!(e[0].doc.as_deref(), Some("Base URL of the ERP's REST API."));
    assert_eq!(e[1].doc, None);
    assert_eq!(e[2].default.as_ref().map(sexp).as_deref(), Some("100"));
    assert_eq!(
        e[3].default.as_ref().map(sexp).as_deref(),
        Some("(str \"eu\")")
    );
    assert_eq!(
        e[3].env.as_ref().map(|s| s.value.as_str()),
        Some("INVENTORY_REGION")
    );
    assert!(e[7].default.is_none());
    assert_eq!(e[7].env.as_ref().map(|s| s.value.as_str()), Some("LABEL"));
    assert_eq!(ty(&e[1].ty), "Secret");
}

#[test]
fn type_declarations() {
    let file = parse_ok(LANGUAGE_TOUR);
    let types: Vec<&TypeDecl> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    let TypeDeclBody::Record(update) = &types[0].body else {
        panic!("record");
    };
    assert_eq!(update[0].doc.as_deref(), Some("Stock keeping unit name."));
    assert_eq!(ty(&update[1].ty), "\"add\" | \"remove\"");
    assert_eq!(ty(&update[3].ty), "String?");
    let TypeDeclBody::Record(event) = &types[1].body else {
        panic!("record");
    };
    assert_eq!(ty(&event[0].ty), "\"INVENTORY_UPDATE\"");
    assert_eq!(ty(&event[1].ty), "[Update]");
    let TypeDeclBody::Alias(alias) = &types[2].body else {
        panic!("alias");
    };
    assert_eq!(ty(alias), "\"add\" | \"remove\"");
    let TypeDeclBody::Record(envelope) = &types[3].body else {
        panic!("record");
    };
    assert_eq!(envelope[0].name.name, "type");
    let TypeDeclBody::Record(weird) = &types[4].body else {
        panic!("record");
    };
    assert_eq!(weird[0].wire_name(), "Item-Name");
    assert_eq!(weird[0].name.name, "item_name");
    assert_eq!(ty(&weird[1].ty), "Map<Int>");
    assert_eq!(ty(&weird[2].ty), "[{id: Int, name: String?}]?");
    assert_eq!(ty(&weird[3].ty), "[Update]?");
}

fn flows(file: &File) -> Vec<&FlowDecl> {
    file.items
        .iter()
        .filter_map(|i| match i {
            Item::Flow(f) => Some(f),
            _ => None,
        })
        .collect()
}

#[test]
fn triggers() {
    let file = parse_ok(LANGUAGE_TOUR);
    let kinds: Vec<String> = flows(&file)
        .iter()
        .map(|f| {
            let t = &f.triggers[0];
            let opts: Vec<String> = t
                .options
                .iter()
                .map(|o| match &o.value {
                    ArgValue::Expr(e) => format!("{}={}", o.name, sexp(e)),
                    ArgValue::Type(t) => format!("{}:{}", o.name, ty(t)),
                })
                .collect();
            let kind = match &t.kind {
                TriggerKind::Webhook { method, path } => format!("webhook {method} {}", path.value),
                TriggerKind::Sync {
                    method,
                    path,
                    timeout,
                } => format!(
                    "sync {method} {} {:?}",
                    path.value,
                    timeout.map(|t| t.millis)
                ),
                TriggerKind::Cron { expr, tz } => {
                    format!("cron {} {:?}", expr.value, tz.as_ref().map(|t| &t.value))
                }
                TriggerKind::Every { period } => format!("every {}", period.millis),
                TriggerKind::Files { glob, every } => {
                    format!("files {} {}", glob.value, every.millis)
                }
                TriggerKind::Email { mailbox, every } => {
                    format!("email {} {}", mailbox.value, every.millis)
                }
                TriggerKind::Subscribe { broker, topic } => {
                    format!("subscribe {broker} {}", topic.value)
                }
                TriggerKind::Deploy => "deploy".into(),
                TriggerKind::Remove => "remove".into(),
                TriggerKind::Dispatch { param, ty: t } => format!("dispatch {param} {}", ty(t)),
            };
            format!("{kind} [{}]", opts.join(" "))
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "webhook POST /inventory [body:InventoryEvent verify=(call hmac_sha256 header: (str \"X-Signature\"), secret: config.webhook_secret) dedupe=(call header (str \"X-Delivery-Id\"))]",
            "sync GET /customers/{id} Some(5000) [fallback=async]",
            "cron 0 19 * * THU Some(\"America/New_York\") []",
            "every 300000 [catch_up=false]",
            "files inbox/*.xml 60000 [batch=true after=delete]",
            "subscribe nats orders.created [url=config.nats_url body:Order group=(str \"workers\")]",
            "deploy []",
            "webhook POST /crm/events [body:Envelope]",
            "dispatch input Opportunity []",
        ]
    );
}

#[test]
fn email_is_a_trigger_kind_and_still_a_module_name() {
    let src = "integration t\nflow f {\n  trigger email \"INBOX\" every 1m { url: config.imap_url, after: seen }\n  step s = email.send(to: [\"a@b.c\"], subject: \"x\", text: \"y\")\n}\n";
    let file = parse_ok(src);
    let flow = flows(&file)[0];
    let TriggerKind::Email { mailbox, every } = &flow.triggers[0].kind else {
        panic!("not an email trigger: {:?}", flow.triggers[0].kind);
    };
    assert_eq!((mailbox.value.as_str(), every.millis), ("INBOX", 60_000));
    assert_eq!(flow.body.stmts.len(), 1, "`email.send` is a statement");
}

#[test]
fn flow_docs_and_on_failure() {
    let file = parse_ok(LANGUAGE_TOUR);
    let flows = flows(&file);
    assert_eq!(
        flows[0].doc.as_deref(),
        Some("One webhook call carries several updates; each becomes one ERP call.")
    );
    assert_eq!(flows[1].doc, None);
    assert!(flows[2].on_failure.is_some());
    assert!(flows[0].on_failure.is_none());
    let body = &flows[2].body;
    assert_eq!(body.stmts.len(), 1);
    let text = LANGUAGE_TOUR
        .get(body.span.start..body.span.end)
        .unwrap_or("");
    assert!(text.starts_with('{') && text.ends_with('}'), "{text}");
}

#[test]
fn triggers_are_collected_and_misplaced_ones_reported() {
    let src =
        "integration t\nflow f {\n  trigger deploy\n  trigger schedule every 1h\n  let a = 1\n}\n";
    let file = parse_ok(src);
    assert_eq!(flows(&file)[0].triggers.len(), 2);
    let none = parse_ok("integration t\nflow f { let a = 1 }");
    assert!(flows(&none)[0].triggers.is_empty());
    let diags = parse_err("integration t\nflow f {\n  let a = 1\n  trigger deploy\n}\n");
    assert_eq!(diags[0].code, Code::Syntax);
    assert_eq!(
        diags[0].message,
        "a trigger must come before the flow's statements"
    );
}

// ---------------------------------------------------------------- statements

#[test]
fn let_and_step() {
    let StmtKind::Step(step) = one_stmt(
        "step adjust = http.post(\"${config.erp_url}/stock\", json: { delta: delta }, bearer: config.erp_token,) retry 5 backoff 1s..2m timeout 30s",
    ) else {
        panic!("step");
    };
    assert_eq!(step.name.name, "adjust");
    assert_eq!(
        sexp(&step.call),
        "(call http.post (str ${config.erp_url} \"/stock\"), json: {delta: delta}, bearer: config.erp_token)"
    );
    assert_eq!(step.retry.as_ref().map(sexp).as_deref(), Some("5"));
    assert_eq!(
        step.backoff.map(|(a, b)| (a.millis, b.millis)),
        Some((1000, 120_000))
    );
    assert_eq!(step.timeout.map(|t| t.millis), Some(30_000));

    // Any order of modifiers.
    let StmtKind::Step(step) = one_stmt("step s = f() timeout 1m retry 2") else {
        panic!("step");
    };
    assert_eq!(step.timeout.map(|t| t.millis), Some(60_000));
    assert!(step.retry.is_some() && step.backoff.is_none());

    let diags = parse_err(&in_flow("step s = f() retry 1 retry 2"));
    assert_eq!(diags[0].message, "`retry` is given twice");
}

#[test]
fn if_statements() {
    let StmtKind::If {
        branches,
        otherwise,
    } = one_stmt("if a { skip \"x\" } else if b { fail \"y\" } else if c {} else { let z = 1 }")
    else {
        panic!("if");
    };
    assert_eq!(branches.len(), 3);
    assert_eq!(sexp(&branches[1].0), "b");
    assert_eq!(otherwise.map(|b| b.stmts.len()), Some(1));

    let StmtKind::If { otherwise, .. } = one_stmt("if delta == 0 { skip \"nothing to change\" }")
    else {
        panic!("if");
    };
    assert!(otherwise.is_none());
}

#[test]
fn match_statements() {
    let StmtKind::Match { scrutinee, arms } = one_stmt(
        r#"match trigger.body.type {
    "opportunity.updated" => dispatch opportunity_updated(trigger.body.data as Opportunity)
    "contact.created" => { dispatch contact_created(trigger.body.data as Contact) }
    "a" | "b" => respond 404, "x",
    1 | -1 | 2.5 | -0.5 => skip "n"
    true | false | null => fail "t"
    _ => skip "unhandled event type"
  }"#,
    ) else {
        panic!("match");
    };
    assert_eq!(sexp(&scrutinee), "trigger.body.type");
    let patterns: Vec<String> = arms.iter().map(|a| pats(&a.patterns)).collect();
    assert_eq!(
        patterns,
        [
            "\"opportunity.updated\"",
            "\"contact.created\"",
            "\"a\" | \"b\"",
            "1 | -1 | 2.5 | -0.5",
            "true | false | null",
            "_"
        ]
    );
    assert!(matches!(
        arms[0].body.stmts[0].kind,
        StmtKind::Dispatch { .. }
    ));
    assert!(matches!(
        &arms[2].body.stmts[0].kind,
        StmtKind::Respond { body: Some(_), .. }
    ));

    // `respond 404, "b" => ...`: the comma separates arms.
    let StmtKind::Match { arms, .. } = one_stmt(
        "match x { \"a\" => respond 404, \"b\" => respond 200, \"c\" | \"d\" => skip \"e\" }",
    ) else {
        panic!("match");
    };
    assert_eq!(arms.len(), 3);
    assert!(matches!(
        &arms[0].body.stmts[0].kind,
        StmtKind::Respond { body: None, .. }
    ));
}

#[test]
fn for_dispatch_skip_fail_respond() {
    let StmtKind::For {
        var,
        iter,
        parallel,
        body,
    } = one_stmt("for update in trigger.body.updates parallel 4 { let a = update }")
    else {
        panic!("for");
    };
    assert_eq!(var.name, "update");
    assert_eq!(sexp(&iter), "trigger.body.updates");
    assert_eq!(parallel.as_ref().map(sexp).as_deref(), Some("4"));
    assert_eq!(body.stmts.len(), 1);
    assert!(matches!(
        one_stmt("for x in xs {}"),
        StmtKind::For { parallel: None, .. }
    ));

    let StmtKind::Dispatch { flow, arg } = one_stmt("dispatch contact_created(x as Contact,)")
    else {
        panic!("dispatch");
    };
    assert_eq!(flow.name, "contact_created");
    assert_eq!(sexp(&arg), "(as x Contact)");

    assert!(matches!(one_stmt("skip \"r\""), StmtKind::Skip(_)));
    assert!(matches!(one_stmt("fail \"r ${x}\""), StmtKind::Fail(_)));

    let StmtKind::Respond {
        status,
        body,
        headers,
    } = one_stmt(
        "respond 200, { name: customer.body.name } headers { \"Cache-Control\": \"no-store\" }",
    )
    else {
        panic!("respond");
    };
    assert_eq!(sexp(&status), "200");
    assert_eq!(
        body.as_ref().map(sexp).as_deref(),
        Some("{name: customer.body.name}")
    );
    assert_eq!(
        headers.as_ref().map(sexp).as_deref(),
        Some("{Cache-Control: (str \"no-store\")}")
    );
    assert!(matches!(
        one_stmt("respond 204"),
        StmtKind::Respond {
            body: None,
            headers: None,
            ..
        }
    ));
    assert!(matches!(
        one_stmt("respond 204 headers { a: \"b\" }"),
        StmtKind::Respond {
            body: None,
            headers: Some(_),
            ..
        }
    ));
}

#[test]
fn call_statements() {
    let StmtKind::Expr(call) = one_stmt("log.info(\"hi\").done()") else {
        panic!("expr stmt");
    };
    assert_eq!(sexp(&call), "(call (call log.info (str \"hi\")).done )");
    let StmtKind::Expr(call) = one_stmt("endpoint(f)") else {
        panic!("expr stmt");
    };
    assert_eq!(sexp(&call), "(call endpoint f)");
    // `trigger` is an ordinary name in expressions.
    let StmtKind::Expr(call) = one_stmt("trigger.body.items[0]?.touch()") else {
        panic!("expr stmt");
    };
    assert_eq!(sexp(&call), "(call trigger.body.items[0]?.touch )");
    // A name alone is not a statement.
    parse_err(&in_flow("x"));
    parse_err(&in_flow("a.b"));
}

#[test]
fn statements_without_separators() {
    let stmts = flow_body(
        "let a = b\nlet c = [1, 2]\nstep d = f(a)\nif a { skip \"x\" }\nlog.info(a)\nrespond 200",
    );
    assert_eq!(stmts.len(), 6);
}

// ---------------------------------------------------------------- expressions

#[test]
fn literals() {
    assert_eq!(sx("42"), "42");
    assert_eq!(sx("1_000_000"), "1000000");
    assert_eq!(sx("-7"), "(Neg 7)");
    assert_eq!(sx("3.14"), "3.14");
    assert_eq!(sx("500ms"), "500ms");
    assert_eq!(sx("30s"), "30000ms");
    assert_eq!(sx("2m"), "120000ms");
    assert_eq!(sx("1h"), "3600000ms");
    assert_eq!(sx("1d"), "86400000ms");
    assert_eq!(sx("true"), "true");
    assert_eq!(sx("false"), "false");
    assert_eq!(sx("null"), "null");
    assert_eq!(sx("[1, 2,]"), "[1 2]");
    assert_eq!(sx("[]"), "[]");
    assert_eq!(sx("{}"), "{}");
    assert_eq!(
        sx("{ a: 1, b: x, \"X-Api-Key\": k }"),
        "{a: 1, b: x, X-Api-Key: k}"
    );
    assert_eq!(sx("{ a: 1 b: 2 }"), "{a: 1, b: 2}");
    assert_eq!(
        sx("{ type: \"x\", match: 1, for: 2 }"),
        "{type: (str \"x\"), match: 1, for: 2}"
    );
}

#[test]
fn strings() {
    assert_eq!(sx(r#""""#), "(str )");
    assert_eq!(
        sx(r#""a\"b\\c\nd\te\r\$\u{e9}\u{1F600}""#),
        format!("(str {:?})", "a\"b\\c\nd\te\r$\u{e9}\u{1F600}")
    );
    assert_eq!(
        sx(r#""${config.erp_url}/stock/${ update.item }!""#),
        "(str ${config.erp_url} \"/stock/\" ${update.item} \"!\")"
    );
    assert_eq!(
        sx(r#""${ f("x ${y}") }""#),
        "(str ${(call f (str \"x \" ${y}))})"
    );
    assert_eq!(sx(r#""$ and { and }""#), "(str \"$ and { and }\")");
    assert_eq!(sx("\"two\nlines\""), "(str \"two\\nlines\")");
}

#[test]
fn precedence() {
    assert_eq!(sx("a or b and c"), "(or a (and b c))");
    assert_eq!(sx("a and b or c"), "(or (and a b) c)");
    assert_eq!(sx("a == b and c != d"), "(and (== a b) (!= c d))");
    assert_eq!(sx("a < b == c"), "(== (< a b) c)");
    assert_eq!(sx("a <= b"), "(<= a b)");
    assert_eq!(sx("a >= b"), "(>= a b)");
    assert_eq!(sx("a > b"), "(> a b)");
    assert_eq!(sx("a ?? b == c"), "(== (?? a b) c)");
    assert_eq!(sx("a ?? b ?? c"), "(?? a (?? b c))");
    assert_eq!(sx("a + b ?? c"), "(?? (+ a b) c)");
    assert_eq!(sx("a - b - c"), "(- (- a b) c)");
    assert_eq!(sx("a + b * c % d / e"), "(+ a (/ (% (* b c) d) e))");
    assert_eq!(sx("-a * b"), "(* (Neg a) b)");
    assert_eq!(sx("not a and b"), "(and (Not a) b)");
    assert_eq!(sx("-x as Int"), "(Neg (as x Int))");
    assert_eq!(sx("x as Int + 1"), "(+ (as x Int) 1)");
    assert_eq!(sx("-a.b"), "(Neg a.b)");
    assert_eq!(sx("(a + b) * c"), "(* (+ a b) c)");
    assert_eq!(sx("a.b?.c[0](1).d"), "(call a.b?.c[0] 1).d");
    assert_eq!(sx("x as Int ?? 0"), "(?? (as x Int) 0)");
    assert_eq!(sx("x as Int? ?? 0"), "(?? (as x Int?) 0)");
    assert_eq!(sx("x as Foo?.bar"), "(as x Foo)?.bar");
    assert_eq!(sx("x as Map<Int> < y"), "(< (as x Map<Int>) y)");
    assert_eq!(sx("x as Int < y"), "(< (as x Int) y)");
    assert_eq!(sx("a // comment\n + b"), "(+ a b)");
}

#[test]
fn names_fields_and_calls() {
    assert_eq!(sx("trigger.body.type"), "trigger.body.type");
    assert_eq!(sx("config.erp_url"), "config.erp_url");
    assert_eq!(sx("error.message"), "error.message");
    assert_eq!(sx("env.version"), "env.version");
    assert_eq!(sx("x.match.for.if.in"), "x.match.for.if.in");
    assert_eq!(sx("a?.b"), "a?.b");
    assert_eq!(sx("a[0]"), "a[0]");
    assert_eq!(
        sx("xs\n  .map(u => u.quantity)\n  .sum()"),
        "(call (call xs.map (fn (u) u.quantity)).sum )"
    );
    assert_eq!(
        sx("xs.reduce((a, b) => a + b, 0)"),
        "(call xs.reduce (fn (a b) (+ a b)), 0)"
    );
    assert_eq!(
        sx("xs.sort(by: x => x.a)"),
        "(call xs.sort by: (fn (x) x.a))"
    );
    assert_eq!(
        sx("csv.decode(text, as: [Order])"),
        "(call csv.decode text, as: type [Order])"
    );
    assert_eq!(
        sx("json.decode(t, as: Customer,)"),
        "(call json.decode t, as: type Customer)"
    );
    assert_eq!(sx("f(as: { id: Int })"), "(call f as: type {id: Int})");
    assert_eq!(
        sx("f(json: x, if: 1, type: 2)"),
        "(call f json: x, if: 1, type: 2)"
    );
    assert_eq!(sx("f()"), "(call f )");
    let e = expr("http.post(u)");
    let ExprKind::Call { callee, .. } = &e.kind else {
        panic!("call");
    };
    assert!(matches!(callee.kind, ExprKind::Field { .. }));
}

#[test]
fn if_and_match_expressions() {
    assert_eq!(
        sx("if a { 1 } else if b { 2 } else { 3 }"),
        "(if a => 1 b => 2 else 3)"
    );
    assert_eq!(sx("if a { 1 }"), "(if a => 1)");
    assert_eq!(
        sx("if a { {} } else { { b: 1 } }"),
        "(if a => {} else {b: 1})"
    );
    assert_eq!(
        sx("match update.action {\n \"add\" => update.quantity\n \"remove\" => -update.quantity\n}"),
        "(match update.action \"add\" => update.quantity, \"remove\" => (Neg update.quantity))"
    );
    assert_eq!(
        sx("match n { 0 => a  -1 => b, 1 | 2 => c - 1 _ => d }"),
        "(match n 0 => a, -1 => b, 1 | 2 => (- c 1), _ => d)"
    );
}

#[test]
fn spans_are_byte_offsets() {
    let src = in_flow("let é = 1");
    let _ = parse_file(&src); // an error (non-ASCII name), but no panic
    let src = in_flow("let x = \"é\" + y.z(1)");
    let stmts = flow_body("let x = \"é\" + y.z(1)");
    let StmtKind::Let { value, name } = &stmts[0].kind else {
        panic!("let");
    };
    let at = |s: Span| src.get(s.start..s.end).unwrap_or("?").to_string();
    assert_eq!(at(name.span), "x");
    assert_eq!(at(value.span), "\"é\" + y.z(1)");
    let ExprKind::Binary { rhs, .. } = &value.kind else {
        panic!("binary");
    };
    assert_eq!(at(rhs.span), "y.z(1)");
    assert_eq!(at(stmts[0].span), "let x = \"é\" + y.z(1)");
}

// ---------------------------------------------------------------- tests and modules

#[test]
fn test_blocks() {
    let file = parse_ok(LANGUAGE_TOUR);
    let tests: Vec<&TestDecl> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Test(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(
        tests[0].name.value,
        "an add and a remove make two ERP calls"
    );
    let kinds: Vec<String> = tests
        .iter()
        .flat_map(|t| &t.stmts)
        .map(|s| match &s.kind {
            TestStmtKind::Config(entries) => format!("config {}", entries.len()),
            TestStmtKind::MockHttp {
                method,
                url,
                status,
                body,
            } => format!(
                "mock {method} {} {} {:?}",
                sexp(url),
                sexp(status),
                body.as_ref().map(sexp)
            ),
            TestStmtKind::Run { flow, input } => {
                format!("run {flow} {}", matches!(input.kind, ExprKind::Record(_)))
            }
            TestStmtKind::ExpectHttp {
                method, url, json, ..
            } => {
                format!(
                    "expect {method} {} {:?}",
                    sexp(url),
                    json.as_ref().map(sexp)
                )
            }
            TestStmtKind::ExpectStatus(s) => format!("status {s}"),
            TestStmtKind::ExpectResponse { status, body } => {
                format!("response {} {:?}", sexp(status), body.as_ref().map(sexp))
            }
            TestStmtKind::Instance { name, file } => {
                format!(
                    "instance {} {:?}",
                    name.value,
                    file.as_ref().map(|f| &f.value)
                )
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "config 3",
            "mock POST (str ${config.erp_url} \"/stock/widgets\") 200 Some(\"{}\")",
            "mock POST (str ${config.erp_url} \"/stock/gadgets\") 200 Some(\"{}\")",
            "run stock_changed true",
            "expect POST (str ${config.erp_url} \"/stock/gadgets\") Some(\"{delta: (Neg 5)}\")",
            "expect POST (str ${config.erp_url} \"/stock/widgets\") None",
            "status succeeded",
            "mock GET (str ${config.erp_url} \"/customers/7\") 200 None",
            "run get_customer true",
            "response 200 Some(\"{name: (str \\\"Ann\\\")}\")",
            "response 404 None",
        ]
    );
}

#[test]
fn test_instances() {
    let src = "integration x\ntest \"t\" {\n  instance \"acme\" from \"customers/acme.toml\"\n  instance \"b\"\n}\n";
    let file = parse_ok(src);
    let Item::Test(test) = &file.items[0] else {
        panic!("a test");
    };
    let TestStmtKind::Instance { name, file: path } = &test.stmts[0].kind else {
        panic!("an instance");
    };
    assert_eq!(name.value, "acme");
    let path = path.as_ref().expect("a file");
    assert_eq!(path.value, "customers/acme.toml");
    assert_eq!(
        &src[path.span.start..path.span.end],
        "\"customers/acme.toml\""
    );
    assert_eq!(
        &src[test.stmts[0].span.start..test.stmts[0].span.end],
        "instance \"acme\" from \"customers/acme.toml\""
    );
    assert!(matches!(
        &test.stmts[1].kind,
        TestStmtKind::Instance { file: None, .. }
    ));
    // The name and the path are constant strings; the name is required.
    for bad in [
        "integration x\ntest \"t\" { instance \"${a}\" }\n",
        "integration x\ntest \"t\" { instance \"a\" from \"${b}.toml\" }\n",
        "integration x\ntest \"t\" { instance from \"a.toml\" }\n",
    ] {
        assert!(crate::syntax::parse_file(bad).is_err(), "{bad}");
    }
}

const MODULE: &str = r#"/// Calls HTTP APIs.
module http

/// A page of results.
type Page<T> = [T]
type Response { status: Int, text: String }

/// Sends a POST request.
step fn post<T>(url: Url, json: Json? = null, headers: Map<Secret> = {}, ok: [Int] = [], as: T = Json) -> Response<T>
example http.post("https://x.test/a") => null

/// Encodes a value as JSON text.
/// Second line.
fn encode(value: Json) -> String
example json.encode({ a: 1 }) => "{\"a\":1}"
example json.encode([]) => "[]"

fn decode<T, U,>(text: String, as: T,) -> T
fn delete(path: String) -> Bool
"#;

#[test]
fn stdlib_module() {
    // `type Page<T>` is not in the grammar: generic types are the stdlib's
    // built-ins. Without it the module parses.
    assert!(parse_module(MODULE).is_err());
    let source = MODULE.replace("type Page<T> = [T]\n", "type Page = [Json]\n");
    let module = match parse_module(&source) {
        Ok(m) => m,
        Err(d) => panic!("{}", render("m.flow", &source, &d, false)),
    };
    assert_eq!(module.name.name, "http");
    assert_eq!(module.doc.as_deref(), Some("Calls HTTP APIs."));
    assert_eq!(module.types.len(), 2);
    assert_eq!(module.types[0].doc.as_deref(), Some("A page of results."));
    let [post, encode, decode, delete] = module.functions.as_slice() else {
        panic!("four functions");
    };
    assert!(post.effectful && !encode.effectful);
    assert_eq!(post.doc.as_deref(), Some("Sends a POST request."));
    assert_eq!(
        encode.doc.as_deref(),
        Some("Encodes a value as JSON text.\nSecond line.")
    );
    assert_eq!(post.type_params[0].name, "T");
    assert_eq!(ty(&post.ret), "Response<T>");
    let defaults: Vec<String> = post
        .params
        .iter()
        .map(|p| match &p.default {
            None => format!("{}: {}", p.name, ty(&p.ty)),
            Some(ParamDefault::Expr(e)) => format!("{}: {} = {}", p.name, ty(&p.ty), sexp(e)),
            Some(ParamDefault::Type(t)) => format!("{}: {} = type {}", p.name, ty(&p.ty), ty(t)),
        })
        .collect();
    assert_eq!(
        defaults,
        [
            "url: Url",
            "json: Json? = null",
            "headers: Map<Secret> = {}",
            "ok: [Int] = []",
            "as: T = type Json"
        ]
    );
    assert_eq!(post.examples.len(), 1);
    assert_eq!(encode.examples.len(), 2);
    assert_eq!(
        sexp(&encode.examples[0].expected),
        "(str \"{\\\"a\\\":1}\")"
    );
    assert_eq!(decode.type_params.len(), 2);
    assert_eq!(decode.params.len(), 2);
    assert!(decode.examples.is_empty());
    assert_eq!(delete.name.name, "delete");
}

#[test]
fn module_errors() {
    let diags = parse_module("fn f() -> Int").unwrap_err();
    assert_eq!(diags[0].code, Code::MissingIntegration);
    let diags = parse_module("module m\nfn f(as: T = Json) -> Int").unwrap_err();
    assert_eq!(diags[0].message, "expected an expression");
    let diags = parse_module("module m\nfn f<T>(as: T = 1) -> T").unwrap_err();
    assert_eq!(diags[0].message, "expected a type");
}

// ---------------------------------------------------------------- rules consume their input

#[test]
fn each_rule_consumes_its_input() {
    use Rule::*;
    let cases: &[(Rule, &str)] = &[
        (integration_decl, "integration inventory_sync"),
        (config_block, "config { a: Int = 1 env \"A\", b: Secret }"),
        (
            config_entry,
            "region: String = \"eu\" env \"INVENTORY_REGION\"",
        ),
        (config_entry, "batch_size: Int = 100"),
        (type_decl, "type Update { item: String, note: String? }"),
        (type_decl, "type Action = \"add\" | \"remove\""),
        (field_decl, "@rename(\"Item-Name\") item: String"),
        (type_expr, "[{ id: Int, name: String? }]?"),
        (type_expr, "Response<Map<Int>>"),
        (type_expr, "\"a\" | \"b\""),
        (
            flow_decl,
            "flow f { trigger deploy let a = 1 on failure { skip \"x\" } }",
        ),
        (
            trigger,
            "trigger webhook POST \"/inventory\" { body: T, dedupe: header(\"X\") }",
        ),
        (trigger, "trigger sync GET \"/c/{id}\" timeout 5s"),
        (
            trigger,
            "trigger schedule \"0 19 * * THU\" tz \"America/New_York\"",
        ),
        (trigger, "trigger schedule every 5m"),
        (trigger, "trigger files \"inbox/*.xml\" every 1m"),
        (trigger, "trigger subscribe nats \"orders.created\""),
        (trigger, "trigger deploy"),
        (trigger, "trigger dispatch (input: Opportunity)"),
        (options, "{ a: 1 b: 2, }"),
        (block, "{ let a = 1 skip a }"),
        (stmt, "let x = 1"),
        (stmt, "step s = f() retry 5 backoff 1s..2m timeout 3s"),
        (stmt, "if a { } else if b { } else { }"),
        (stmt, "match a { 1 => skip \"x\", _ => { fail \"y\" } }"),
        (stmt, "for x in xs parallel 4 { }"),
        (stmt, "dispatch f(x)"),
        (stmt, "skip \"r\""),
        (stmt, "fail \"r\""),
        (stmt, "respond 200, {} headers { a: \"b\" }"),
        (stmt, "a.b(c)[0].d()"),
        (pattern, "-1.5"),
        (expr, "a or b and not c == -d ?? e + f * g as Int"),
        (expr, "a.b?.c[d](e, f: g, as: [T], x => y, (a, b) => c)"),
        (expr, "if a { b } else { c }"),
        (expr, "match a { \"x\" => 1, _ => 2 }"),
        (expr, "\"a ${b} c\""),
        (expr, "{ a: [1, 2.5, 3s], \"b\": null }"),
        (
            test_decl,
            "test \"t\" { config { a: 1 } run f with {} expect status failed }",
        ),
        (test_stmt, "mock http POST \"u\" => 200, {}"),
        (test_stmt, "expect http POST \"u\" with json { a: 1 }"),
        (test_stmt, "expect response 200, { a: 1 }"),
        (
            fn_decl,
            "step fn post<T>(url: Url, as: T = Json) -> Response<T> example f() => null",
        ),
        (module_header, "module http"),
    ];
    for (rule, source) in cases {
        consumes_all(*rule, source);
    }
    consumes_all(Rule::type_only, "Map<Int>?");
    consumes_all(Rule::type_only, "(\"open\" | \"won\")?");
    consumes_all(Rule::expr_only, "a + b");
    consumes_all(Rule::stmt_only, "let a = b");
}

#[test]
fn keywords_need_a_boundary() {
    // `index`, `iffy`, `order`, `note` are names, not `in`/`if`/`or`/`not`.
    assert_eq!(sx("index + iffy"), "(+ index iffy)");
    assert_eq!(sx("order ?? note"), "(?? order note)");
    parse_err(&in_flow("let x = a or_else"));
}

// ---------------------------------------------------------------- lowering diagnostics

#[test]
fn keyword_as_name() {
    for stmt in [
        "let if = 1",
        "step match = f()",
        "for in in xs {}",
        "let trigger = 1",
        "let x = xs.map(not => 1)",
    ] {
        let diags = parse_err(&in_flow(stmt));
        assert!(
            diags.iter().any(|d| d.code == Code::KeywordAsName),
            "{stmt}: {diags:?}"
        );
    }
    let diags = parse_err("integration t\nconfig { type: Int }");
    assert_eq!(diags[0].code, Code::KeywordAsName);
    let diags = parse_err("integration t\nflow match { trigger deploy }");
    assert_eq!(diags[0].code, Code::KeywordAsName);
    // `config`, `error`, `env` may be bound (the checker may object).
    flow_body("let env2 = env.version");
}

#[test]
fn literal_diagnostics() {
    let code = |stmt: &str| parse_err(&in_flow(stmt))[0].code;
    assert_eq!(code("let x = 9223372036854775808"), Code::NumberOutOfRange);
    assert_eq!(sx("9223372036854775807"), "9223372036854775807");
    assert_eq!(code("let x = \"\\q\""), Code::InvalidEscape);
    assert_eq!(code("let x = \"\\u{110000}\""), Code::InvalidEscape);
    assert_eq!(code("let x = \"\\u{}\""), Code::InvalidEscape);
    assert_eq!(code("let x = \"\\u12\""), Code::InvalidEscape);
    assert_eq!(code("let x = 1.5s"), Code::BadDuration);
    assert_eq!(code("let x = 99999999999999999d"), Code::BadDuration);
    assert_eq!(code("let x = 1e999999"), Code::Syntax);
    let diags = parse_err(&in_flow("let x = 1.5s"));
    assert_eq!(diags[0].help.as_deref(), Some("write `1500ms`"));
    // Interpolation where a constant string is required.
    let diags = parse_err("integration t\nflow f { trigger webhook POST \"/${x}\" }");
    assert_eq!(diags[0].code, Code::Syntax);
    // camelCase and snake_case misuse.
    let diags = parse_err(&in_flow("let x = trigger.body.orderId"));
    assert!(diags[0].help.as_deref().unwrap_or("").contains("order_id"));
    let diags = parse_err("integration t\ntype Foo_Bar { a: Int }");
    assert!(diags[0].message.contains("Foo_Bar"));
}

#[test]
fn integration_line() {
    let diags = parse_err("flow f { trigger deploy }");
    assert_eq!(diags[0].code, Code::MissingIntegration);
    let diags = parse_err("");
    assert_eq!(diags[0].code, Code::MissingIntegration);
    let diags = parse_err("integration a\nintegration b");
    assert_eq!(diags[0].code, Code::MissingIntegration);
    let diags = parse_err("config {}\nintegration a");
    assert_eq!(diags[0].code, Code::MissingIntegration);
    let diags = parse_err("// comment\nintegraton a");
    assert_eq!(diags[0].code, Code::MissingIntegration);
    // Comments and docs before the integration line are fine.
    let file = parse_ok("// a comment\n\n/// The doc.\n/// More.\nintegration a\n");
    assert_eq!(file.doc.as_deref(), Some("The doc.\nMore."));
}

#[test]
fn doc_comments() {
    let src = "/// not the file's: a blank line follows\n\nintegration a\n\
               ///   indented text\n///\n////not a doc\n/// Flow doc.\nflow f { trigger deploy }\n\
               type T { a: Int /// trailing\n  b: Int }\n";
    let file = parse_ok(src);
    assert_eq!(file.doc, None);
    let Item::Flow(flow) = &file.items[0] else {
        panic!("flow");
    };
    assert_eq!(flow.doc.as_deref(), Some("Flow doc."));
    let Item::Type(t) = &file.items[1] else {
        panic!("type");
    };
    let TypeDeclBody::Record(fields) = &t.body else {
        panic!("record");
    };
    assert_eq!(fields[1].doc, None);
    let file =
        parse_ok("integration a\n///   indented text\n///\n/// end\r\nflow f { trigger deploy }");
    let Item::Flow(flow) = &file.items[0] else {
        panic!("flow");
    };
    assert_eq!(flow.doc.as_deref(), Some("  indented text\n\nend"));
}

// ---------------------------------------------------------------- error messages

#[test]
fn error_snapshots() {
    let cases: &[(&str, &str)] = &[
        ("bad_trigger_kind", "integration t\nflow f {\n  trigger hook POST \"/x\"\n}\n"),
        ("missing_expression", "integration t\nflow f {\n  trigger deploy\n  let x = 1 +\n}\n"),
        ("missing_rbrace", "integration t\nflow f {\n  trigger deploy\n  let x = 1\n"),
        ("missing_integration", "flw f {}\n"),
        ("typo_in_keyword", "integration t\nflow f {\n  trigger deploy\n  lett x = 1\n}\n"),
        ("missing_let", "integration t\nflow f {\n  trigger deploy\n  x = 1\n}\n"),
        ("unclosed_call", "integration t\nflow f {\n  trigger deploy\n  step s = http.get(\"u\", as: Json\n}\n"),
        ("missing_in", "integration t\nflow f {\n  trigger deploy\n  for x of xs {}\n}\n"),
        ("unterminated_string", "integration t\nflow f {\n  trigger deploy\n  skip \"oops\n}\n"),
        ("on_failure_not_last", "integration t\nflow f {\n  trigger deploy\n  on failure { skip \"a\" }\n  let x = 1\n}\n"),
        ("as_takes_a_type", "integration t\nflow f {\n  trigger deploy\n  let x = json.decode(t, as: 5)\n}\n"),
        ("bad_duration_unit", "integration t\nflow f {\n  trigger schedule every 5 minutes\n}\n"),
        ("stray_declaration", "integration t\nflows f {}\n"),
        ("missing_http_method", "integration t\nflow f {\n  trigger webhook \"/x\"\n}\n"),
        ("config_entry_without_type", "integration t\nconfig {\n  url = \"x\"\n}\n"),
        ("bad_escape", "integration t\nflow f {\n  trigger deploy\n  skip \"a\\qb\"\n}\n"),
        ("semicolon", "integration t\nflow f {\n  trigger deploy\n  let x = 1;\n}\n"),
        (
            "c_style_and",
            "integration t\nflow f {\n  trigger deploy\n  if a && b { skip \"x\" }\n}\n",
        ),
        (
            "duration_with_long_unit",
            "integration t\nflow f {\n  trigger deploy\n  step s = f() timeout 5min\n}\n",
        ),
        (
            "match_arm_without_arrow",
            "integration t\nflow f {\n  trigger deploy\n  match x {\n    \"a\" skip \"b\"\n  }\n}\n",
        ),
        ("keyword_as_name", "integration t\nflow f {\n  trigger deploy\n  let match = 1\n}\n"),
    ];
    for (name, source) in cases {
        insta::assert_snapshot!(*name, error_report(source));
    }
}

// ---------------------------------------------------------------- robustness

/// A compact program with every construct, for the truncation test.
const DENSE: &str = r#"/// Doc.
integration d
config { a: Int = 1 env "A", b: Secret }
type T { @rename("X-Y") x: "a" | "b", y: [Map<Int>]?, z: { q: Int } }
type U = T?
/// Flow doc.
flow f {
  trigger webhook POST "/p" { body: T, verify: v(h: "x\n\u{e9}") }
  trigger sync GET "/s/{id}" timeout 5s
  trigger schedule "0 * * * *" tz "UTC"
  trigger schedule every 5m
  trigger files "in/*" every 1m { batch: true }
  trigger subscribe nats "a.b" { url: config.u }
  trigger deploy
  trigger dispatch (input: T)
  let a = -1 + 2 * 3.5 / x % 4 ?? null == true and not false or y != z <= 1s
  step s = http.post("${config.a}/x/${ a.b?.c[0] }", json: { k: [1, 2,], "K": a }, as: [T],) retry 3 backoff 1s..2m timeout 30s
  if a { skip "x" } else if b { fail "y" } else { dispatch g(a as T) }
  match a { "x" | "y" => respond 200, { a: 1 } headers { h: "v" }, 1 | -2 => { skip "n" } _ => log.info(a) }
  for x in xs.map(v => v.w).filter((p, q) => p) parallel 2 { let m = match x { 1.5 => if c { 1 } else { 2 }, null => 3 } }
  on failure { step e = http.post(error.message) }
}
test "t" {
  config { a: 2 }
  mock http POST "u" => 200, {}
  run f with { body: {} }
  expect http POST "u" with json { d: -5 }
  expect status succeeded
  expect response 200, "ok"
}
"#;

#[test]
fn dense_program_parses() {
    let file = parse_ok(DENSE);
    assert_eq!(flows(&file)[0].triggers.len(), 8);
}

/// Truncating a valid program anywhere must give a result, never a panic.
#[test]
fn no_panic_on_truncation() {
    for (i, _) in DENSE.char_indices() {
        let _ = parse_file(&DENSE[..i]);
    }
    for (i, _) in MODULE.char_indices() {
        let _ = parse_module(&MODULE[..i]);
    }
}

/// Deep nesting is an error, not a stack overflow, in the parser and in
/// later recursive phases (the tree's depth is bounded).
#[test]
fn no_panic_on_deep_nesting() {
    let n = 5_000;
    let cases = [
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}1{}", "[".repeat(n), "]".repeat(n)),
        format!("{}1", "-".repeat(n * 10)),
        format!("{}1", "not ".repeat(n * 4)),
        format!("1{}", " ?? 1".repeat(n * 4)),
        format!("1{}", " + 1".repeat(n * 4)),
        format!("a{}", ".b".repeat(n * 4)),
        format!("\"{}1{}\"", "${\"".repeat(n), "\"}".repeat(n)),
        format!("{}1{}", "{ a: ".repeat(n), " }".repeat(n)),
        format!("x as {}Int{}", "[".repeat(n), "]".repeat(n)),
        format!("x as Int{}", "?".repeat(n * 4)),
    ];
    for case in &cases {
        let diags = parse_err(&in_flow(&format!("let x = {case}")));
        assert!(diags.iter().all(|d| d.code == Code::Syntax), "{diags:?}");
    }
    let blocks = format!("{}{}", "if a { ".repeat(n), "}".repeat(n));
    parse_err(&in_flow(&blocks));
    // Moderate nesting is fine.
    parse_ok(&in_flow(&format!(
        "let x = {}1{}",
        "(".repeat(40),
        ")".repeat(40)
    )));
}

#[test]
fn spans_exclude_trailing_trivia() {
    let src = in_flow("step s = f() // note\n  let t = x as Int? // more\n");
    let stmts = flow_body("step s = f() // note\n  let t = x as Int? // more\n");
    let at = |s: Span| src.get(s.start..s.end).unwrap_or("?").to_string();
    assert_eq!(at(stmts[0].span), "step s = f()");
    assert_eq!(at(stmts[1].span), "let t = x as Int?");
}

/// Random edits of valid programs never make the parser panic.
#[test]
fn no_panic_on_mutations() {
    let iterations: usize = std::env::var("FLOWC_FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(600);
    let vocabulary = [
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "\"",
        "${",
        "\\",
        "\\u{",
        "=>",
        "->",
        "..",
        "?",
        "??",
        "?.",
        "-",
        ".",
        ",",
        ":",
        "=",
        "|",
        "@",
        "//",
        "///",
        "\n",
        " ",
        "let ",
        "step ",
        "trigger ",
        "on failure ",
        "as ",
        "not ",
        "if ",
        "else ",
        "match ",
        "1",
        "1.5",
        "5m",
        "1.5s",
        "99999999999999999999",
        "é",
        "_",
        "x",
        "T",
        "GET",
        "integration ",
        "module ",
        "fn ",
        "example ",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % (bound.max(1) as u64)).unwrap_or(0)
    };
    let boundary = |s: &str, mut i: usize| {
        i = i.min(s.len());
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    for i in 0..iterations {
        let base = if i % 4 == 3 { MODULE } else { DENSE };
        let mut source = base.to_string();
        for _ in 0..1 + next(3) {
            let at = boundary(&source, next(source.len() + 1));
            match next(3) {
                0 => {
                    let end = boundary(&source, at + next(12));
                    source.replace_range(at..end, "");
                }
                1 => source.insert_str(at, vocabulary[next(vocabulary.len())]),
                _ => {
                    let end = boundary(&source, at + next(40));
                    let slice = source[at..end].to_string();
                    let to = boundary(&source, next(source.len() + 1));
                    source.insert_str(to, &slice);
                }
            }
        }
        let _ = parse_file(&source);
        let _ = parse_module(&source);
    }
}

/// Nesting up to the limit is fine on a test thread's small stack too.
#[test]
fn nesting_near_the_limit() {
    for n in [60, 120, 250, 300] {
        let exprs = [
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            format!("{}1{}", "[".repeat(n), "]".repeat(n)),
            format!("{}1{}", "f(".repeat(n), ")".repeat(n)),
            format!("{}1{}", "{ a: ".repeat(n), " }".repeat(n)),
            format!("\"{}1{}\"", "${\"".repeat(n), "\"}".repeat(n)),
            format!("{}1{}", "if a { ".repeat(n), " }".repeat(n)),
            format!("{}1{}", "xs.map(x => ".repeat(n), ")".repeat(n)),
            format!("x as {}Int{}", "[".repeat(n), "]".repeat(n)),
            format!("{}1", "-".repeat(n)),
        ];
        for e in &exprs {
            let result = parse_file(&in_flow(&format!("let x = {e}")));
            if n <= 60 {
                assert!(result.is_ok(), "{e}");
            }
        }
        let _ = parse_file(&in_flow(&format!(
            "{}{}",
            "if a { ".repeat(n),
            "}".repeat(n)
        )));
        let _ = parse_file(&in_flow(&format!(
            "{}{}",
            "for x in y { ".repeat(n),
            "}".repeat(n)
        )));
    }
}

#[test]
fn reserved_words_agree_with_the_grammar() {
    for word in super::lower::RESERVED {
        let is_name = FlowParser::parse(Rule::name, word).is_ok();
        assert_eq!(is_name, *word == "trigger", "{word}");
    }
    for word in [
        "trigger", "config", "error", "env", "on", "with", "index", "iffy",
    ] {
        consumes_all(Rule::name, word);
    }
    // Keywords are fine as option names, record keys and test config keys.
    let file = parse_ok(
        "integration t\nflow f { trigger deploy { match: 1, for: 2 } }\ntest \"x\" { config { type: 1 } run f with { if: 1 } }",
    );
    assert_eq!(flows(&file)[0].triggers[0].options[0].name.name, "match");
}

#[test]
fn deep_nesting_is_a_diagnostic_not_a_stack_overflow() {
    for (open, close) in [("(", ")"), ("[", "]"), ("{a: ", "}")] {
        let src = format!(
            "integration x\nflow f {{\n  trigger deploy\n  let a = {}1{}\n}}\n",
            open.repeat(100_000),
            close.repeat(100_000)
        );
        let diags = super::parse_file(&src).expect_err("too deep");
        assert!(
            diags[0].message.contains("nested more than"),
            "{:?}",
            diags[0]
        );
    }
    // Interpolations count, string text does not.
    let fine = format!(
        "integration x\nflow f {{\n  trigger deploy\n  let a = \"{}\"\n}}\n",
        "(".repeat(1000)
    );
    assert!(super::parse_file(&fine).is_ok());
    let nested = format!(
        "integration x\nflow f {{\n  trigger deploy\n  let a = {}1{}\n}}\n",
        "\"${".repeat(300),
        "}\"".repeat(300)
    );
    assert!(super::parse_file(&nested).is_err());
}
