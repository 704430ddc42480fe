//! Methods on values (`xs.map(x => ...)`, `s.lower()`, ...): the methods
//! of lists and strings, their arguments and lambdas.

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Arg, ArgValue, Expr, ExprKind};

use crate::check::scope::BindingKind;
use crate::check::suggest::did_you_mean;
use crate::check::types::Type;
use crate::check::Checker;

/// Method names from other languages, and the method meant.
const METHOD_SYNONYMS: &[(&str, &str)] = &[
    ("length", "len"),
    ("size", "len"),
    ("count", "len"),
    ("includes", "contains"),
    ("has", "contains"),
    ("lowercase", "lower"),
    ("to_lower", "lower"),
    ("to_lowercase", "lower"),
    ("uppercase", "upper"),
    ("to_upper", "upper"),
    ("to_uppercase", "upper"),
    ("strip", "trim"),
    ("where", "filter"),
    ("select", "map"),
    ("total", "sum"),
    ("head", "first"),
];

impl Checker<'_> {
    pub(super) fn method_call(&mut self, target: &Expr, name: &ast::Ident, args: &[Arg]) -> Type {
        let recv = self.check_expr(target, None);
        let m = name.name.as_str();
        let (params, ret): (Vec<Type>, Type) = match (&recv, m) {
            (Type::Error, _) => {
                self.check_args_loosely(args);
                return Type::Error;
            }
            (Type::List(_), "len") | (Type::String | Type::Lits(_) | Type::Url, "len") => {
                (vec![], Type::Int)
            }
            (Type::List(t), "first") => (vec![], Type::optional((**t).clone())),
            (Type::Response(_), "link") => (vec![Type::String], Type::optional(Type::Url)),
            (Type::List(t), "contains") => (vec![(**t).clone()], Type::Bool),
            (Type::List(t), "join") => {
                if !matches!(
                    **t,
                    Type::String
                        | Type::Lits(_)
                        | Type::Int
                        | Type::Float
                        | Type::Url
                        | Type::Error
                ) {
                    self.error(
                        Diagnostic::new(
                            Code::UnknownMethod,
                            name.span,
                            format!("`join` needs a list of strings or numbers, not `{recv}`"),
                        )
                        .with_label(format!("on a `{recv}`"))
                        .with_help("map to strings first: `xs.map(x => x.name).join(\",\")`"),
                    );
                }
                (vec![Type::String], Type::String)
            }
            (Type::List(t), "sum") => {
                if !matches!(**t, Type::Int | Type::Float | Type::Error) {
                    self.error(
                        Diagnostic::new(
                            Code::UnknownMethod,
                            name.span,
                            format!("`sum` needs a list of numbers, not `{recv}`"),
                        )
                        .with_label(format!("on a `{recv}`"))
                        .with_help("map to numbers first: `xs.map(x => x.quantity).sum()`"),
                    );
                    return Type::Error;
                }
                (vec![], (**t).clone())
            }
            (Type::List(t), "map") => {
                let body = self.lambda_arg(args, name, &[(**t).clone()]);
                return Type::list(body);
            }
            (Type::List(t), "filter") => {
                let body = self.lambda_arg(args, name, &[(**t).clone()]);
                if !self.assignable(&body, &Type::Bool) {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            name.span,
                            format!("`filter` needs a lambda returning `Bool`, this one returns `{body}`"),
                        )
                        .with_label(format!("the lambda returns `{body}`"))
                        .with_help("compare to get a `Bool`, e.g. `.filter(x => x.quantity > 0)`"),
                    );
                }
                return recv.clone();
            }
            (Type::String | Type::Lits(_) | Type::Url, "lower" | "upper" | "trim") => {
                (vec![], Type::String)
            }
            (Type::String | Type::Lits(_) | Type::Url, "split") => {
                (vec![Type::String], Type::list(Type::String))
            }
            (Type::String | Type::Lits(_) | Type::Url, "contains") => {
                (vec![Type::String], Type::Bool)
            }
            _ => {
                self.check_args_loosely(args);
                let methods: &[&str] = match recv {
                    Type::List(_) => &["len", "first", "contains", "join", "sum", "map", "filter"],
                    Type::String | Type::Lits(_) | Type::Url => {
                        &["len", "lower", "upper", "trim", "split", "contains"]
                    }
                    _ => &[],
                };
                let mut d = Diagnostic::new(
                    Code::UnknownMethod,
                    name.span,
                    format!("`{recv}` has no method `{m}`"),
                )
                .with_label("unknown method");
                let hidden_module = match &target.kind {
                    ExprKind::Name(n) if self.std.modules.contains_key(&n.name) => {
                        Some(n.name.clone())
                    }
                    _ => None,
                };
                d = if let Some(module) = hidden_module {
                    d.with_help(format!("`{module}` here is a local value, which hides the stdlib module `{module}`; rename the local"))
                } else if recv == Type::Json {
                    d.with_help("convert the value first, e.g. `(x as [Item]).len()`")
                } else if let Some((_, s)) = METHOD_SYNONYMS
                    .iter()
                    .find(|(other, s)| *other == m && methods.contains(s))
                {
                    d.with_help(format!("did you mean `{s}`?"))
                } else if let Some(s) = did_you_mean(m, methods.iter().copied()) {
                    d.with_help(format!("did you mean `{s}`?"))
                } else if methods.is_empty() {
                    d.with_help("methods exist on lists and strings only")
                } else {
                    d.with_help(format!("methods of `{recv}`: {}", methods.join(", ")))
                };
                self.error(d);
                return Type::Error;
            }
        };
        if let Some(d) = method_arity(name, &params, args) {
            self.check_args_loosely(args);
            self.error(d);
            return ret;
        }
        for (arg, p) in args.iter().zip(&params) {
            match &arg.value {
                ArgValue::Expr(
                    v @ Expr {
                        kind: ExprKind::Lambda { .. },
                        ..
                    },
                ) => {
                    self.error(
                        Diagnostic::new(Code::MisplacedLambda, v.span, format!("`.{m}()` takes a value, not a lambda"))
                            .with_label(format!("expected `{p}`"))
                            .with_help("only `.map()` and `.filter()` take a lambda; to test the elements, write `xs.filter(x => ...).len() > 0`"),
                    );
                }
                ArgValue::Expr(v) => {
                    self.expect(v, p, &format!("argument of `.{m}()`"));
                }
                ArgValue::Type(te) => self.error(Diagnostic::new(
                    Code::TypeMismatch,
                    te.span,
                    "expected a value, found a type",
                )),
            }
        }
        ret
    }

    /// Checks the single lambda argument of `map`/`filter` and returns the
    /// type of its body.
    fn lambda_arg(&mut self, args: &[Arg], method: &ast::Ident, param_types: &[Type]) -> Type {
        let lambda = match args {
            [Arg {
                name: None,
                value:
                    ArgValue::Expr(Expr {
                        kind: ExprKind::Lambda { params, body },
                        ..
                    }),
                ..
            }] => Some((params, body)),
            _ => None,
        };
        let Some((params, body)) = lambda else {
            self.check_args_loosely(args);
            self.error(
                Diagnostic::new(
                    Code::TypeMismatch,
                    method.span,
                    format!("`.{method}()` takes one lambda"),
                )
                .with_label("needs a lambda argument")
                .with_help(format!("write `.{method}(x => ...)`")),
            );
            return Type::Error;
        };
        if params.len() != param_types.len() {
            self.error(
                Diagnostic::new(
                    Code::TypeMismatch,
                    method.span,
                    format!(
                        "the lambda of `.{method}()` takes 1 parameter, not {}",
                        params.len()
                    ),
                )
                .with_label("each element is passed alone")
                .with_help(format!("write `.{method}(x => ...)`")),
            );
        }
        self.scopes.push();
        for (p, t) in params.iter().zip(param_types) {
            self.bind_checked(p, t.clone(), BindingKind::LambdaParam);
        }
        let t = self.check_expr(body, None);
        self.scopes.pop();
        t
    }
}

/// E0112/E0114/E0115 for a method called with the wrong arguments:
/// methods take positional arguments only, exactly `params` of them.
fn method_arity(name: &ast::Ident, params: &[Type], args: &[Arg]) -> Option<Diagnostic> {
    let m = &name.name;
    let wanted = match params {
        [] => format!("`.{m}()` takes no arguments"),
        [p] => format!("`.{m}()` takes 1 argument (a `{p}`)"),
        _ => format!("`.{m}()` takes {} arguments", params.len()),
    };
    if let Some(named) = args.iter().find_map(|a| a.name.as_ref()) {
        return Some(
            Diagnostic::new(
                Code::UnknownArgument,
                named.span,
                format!("`.{m}()` has no parameter `{named}`"),
            )
            .with_label("methods take positional arguments only")
            .with_help(format!("{wanted}: remove `{named}:`")),
        );
    }
    if let Some(extra) = args.get(params.len()) {
        let span = extra.span.to(args.last().map_or(extra.span, |a| a.span));
        let n = args.len();
        return Some(
            Diagnostic::new(Code::TooManyArguments, span, format!("{wanted}, {n} given"))
                .with_label("extra argument")
                .with_help("remove it"),
        );
    }
    (args.len() < params.len()).then(|| {
        Diagnostic::new(
            Code::MissingArgument,
            name.span,
            format!("{wanted}, {} given", args.len()),
        )
        .with_label("missing argument")
        .with_help(match m.as_str() {
            "join" => "give the separator, e.g. `.join(\",\")`".to_string(),
            "split" => "give the separator, e.g. `.split(\",\")`".to_string(),
            _ => format!(
                "pass the `{}` to look for",
                params.first().map_or(String::new(), Type::to_string)
            ),
        })
    })
}
