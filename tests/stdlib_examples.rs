//! Every stdlib function's `example CALL => EXPECTED` line: the call must
//! type-check against its own signature, and for pure functions with an
//! expected value (not `null`, which marks examples that need the network,
//! the clock or randomness) the runtime's implementation must return it.
//!
//! The examples are constant expressions, so this test evaluates them with
//! a tiny evaluator and calls `flow_runtime::call_pure` with arguments
//! normalised the way code generation does (required parameters
//! positionally, defaulted ones by name, `as:` as a schema).

use flow_runtime::{json, Args, Schema, Value};
use flowc::check::stdlib::{Stdlib, FILES};
use flowc::syntax::ast::{ArgValue, Expr, ExprKind, StrPart, TypeExpr, TypeExprKind, UnaryOp};

fn eval(e: &Expr) -> Value {
    match &e.kind {
        ExprKind::Null => Value::Null,
        ExprKind::Bool(b) => json!(b),
        ExprKind::Int(i) => json!(i),
        ExprKind::Float(f) => json!(f),
        ExprKind::Str(parts) => Value::String(
            parts
                .iter()
                .map(|p| match p {
                    StrPart::Lit(s) => s.clone(),
                    StrPart::Interp(_) => panic!("examples use plain strings"),
                })
                .collect(),
        ),
        ExprKind::List(items) => Value::Array(items.iter().map(eval).collect()),
        ExprKind::Record(entries) => Value::Object(
            entries
                .iter()
                .map(|en| (en.key.name().to_string(), eval(&en.value)))
                .collect(),
        ),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => json!(-eval(expr).as_i64().expect("int")),
        ExprKind::Call { .. } => call(e),
        other => panic!("unsupported in an example: {other:?}"),
    }
}

fn schema(te: &TypeExpr) -> Schema {
    match &te.kind {
        TypeExprKind::Named { name, .. } => match name.name.as_str() {
            "Int" => Schema::Int,
            "String" => Schema::String,
            "Float" => Schema::Float,
            "Bool" => Schema::Bool,
            _ => Schema::Json,
        },
        TypeExprKind::List(t) => Schema::list(schema(t)),
        TypeExprKind::Optional(t) => Schema::optional(schema(t)),
        _ => Schema::Json,
    }
}

fn call(e: &Expr) -> Value {
    let ExprKind::Call { callee, args } = &e.kind else {
        unreachable!()
    };
    let ExprKind::Field { target, name, .. } = &callee.kind else {
        panic!("module.function")
    };
    let ExprKind::Name(module) = &target.kind else {
        panic!("module.function")
    };
    let sig = Stdlib::get()
        .function(&module.name, &name.name)
        .unwrap_or_else(|| panic!("{}.{} exists", module.name, name.name));
    let mut given: Vec<Option<&ArgValue>> = vec![None; sig.params.len()];
    let mut position = 0;
    for arg in args {
        let i = match &arg.name {
            Some(n) => sig
                .params
                .iter()
                .position(|p| p.name == n.name)
                .expect("known parameter"),
            None => {
                position += 1;
                position - 1
            }
        };
        given[i] = Some(&arg.value);
    }
    let mut out = Args::new();
    for (param, value) in sig.params.iter().zip(given) {
        match value {
            Some(ArgValue::Type(te)) => out = out.decode_as(schema(te)),
            Some(ArgValue::Expr(v)) if !param.has_default => out = out.arg(eval(v)),
            Some(ArgValue::Expr(v)) => {
                let name: &'static str = Box::leak(param.name.clone().into_boxed_str());
                out = out.kw(name, eval(v));
            }
            None if !param.has_default => out = out.arg(Value::Null),
            None => {}
        }
    }
    flow_runtime::call_pure(&format!("{}.{}", module.name, name.name), out)
        .unwrap_or_else(|err| panic!("{}.{}: {err}", module.name, name.name))
}

#[test]
fn every_example_checks_and_pure_ones_run() {
    let mut ran = 0;
    for (file, source) in FILES {
        let module = flowc::syntax::parse_module(source).expect("signature file parses");
        for f in &module.functions {
            for example in &f.examples {
                // Type-check the call as a program would write it, with
                // the config entries stdlib functions need (E0504) and the
                // `aws:` connection `cloud` of the SQS examples' `via:`.
                let program = format!(
                    "integration stdlib_example\nconfig {{\n  smtp_url: Secret\n  aws_key: Secret\n  aws_secret: Secret\n}}\nconnection cloud {{ aws: {{ region: \"us-east-1\", access_key: config.aws_key, secret_key: config.aws_secret }} }}\nflow f {{\n  trigger files \"in/*.pdf\" every 1m\n  step s = {}\n}}\n",
                    &source[example.call.span.start..example.call.span.end]
                );
                let checked = flowc::check::check_source(&program);
                assert!(
                    !checked.has_errors(),
                    "{file}: example of `{}` does not check: {:?}",
                    f.name.name,
                    checked.diagnostics
                );
                let not_in_runtime =
                    flowc::codegen::MODULES_NOT_IN_RUNTIME.contains(&module.name.name.as_str());
                if f.effectful || not_in_runtime || matches!(example.expected.kind, ExprKind::Null)
                {
                    continue;
                }
                let actual = call(&example.call);
                let expected = eval(&example.expected);
                assert_eq!(actual, expected, "{file}: example of `{}`", f.name.name);
                ran += 1;
            }
        }
    }
    assert!(ran >= 8, "only {ran} examples ran");
}
