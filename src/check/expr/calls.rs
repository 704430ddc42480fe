//! Calls of stdlib functions (`module.function(...)`) and built-ins
//! (`endpoint`, `reveal`): resolving the callee, the effect rule, needed
//! config entries and arguments against parameters.

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Arg, ArgValue, Expr, ExprKind, StrPart};

use super::AMBIENT;
use crate::check::stdlib::ParamSig;
use crate::check::suggest::did_you_mean;
use crate::check::types::Type;
use crate::check::Checker;

/// Functions callable without a module.
const BUILTIN_FNS: &[&str] = &["endpoint", "reveal"];

impl Checker<'_> {
    /// A call: stdlib function, builtin or method. `as_step`: this is the
    /// call of a `step` statement, where effectful functions are allowed.
    pub(in crate::check) fn call(&mut self, e: &Expr, as_step: bool) -> Type {
        let ExprKind::Call { callee, args } = &e.kind else {
            return self.check_expr(e, None);
        };
        let t = match &callee.kind {
            ExprKind::Field {
                target,
                name,
                optional: false,
            } => {
                if let ExprKind::Name(m) = &target.kind {
                    let is_module =
                        self.scopes.find(&m.name).is_none() && !AMBIENT.contains(&m.name.as_str());
                    if is_module {
                        let t = self.stdlib_call(e, m, name, args, as_step);
                        return self.record_call(e, t);
                    }
                }
                self.method_call(target, name, args)
            }
            ExprKind::Name(n) => self.builtin_call(n, args),
            _ => {
                self.check_args_loosely(args);
                self.error(
                    Diagnostic::new(Code::NotCallable, callee.span, "this is not a function")
                        .with_help("call stdlib functions as `module.function(...)`"),
                );
                Type::Error
            }
        };
        self.record_call(e, t)
    }

    fn record_call(&mut self, e: &Expr, t: Type) -> Type {
        self.program.expr_types.insert(e.span, t.clone());
        t
    }

    pub(super) fn check_args_loosely(&mut self, args: &[Arg]) {
        for arg in args {
            if let ArgValue::Expr(v) = &arg.value {
                if !matches!(v.kind, ExprKind::Lambda { .. }) {
                    self.check_expr(v, None);
                }
            }
        }
    }

    /// Whether `v` is one item given where a list of such items is
    /// expected (`to: config.report_to` for `to: [String]`): a stdlib call
    /// takes it as a list of one (codegen wraps it). Reports nothing: when
    /// it is not, the caller checks `v` against the list type as usual.
    fn lone_item(&mut self, v: &Expr, expected: &Type) -> bool {
        let Type::List(item) = expected else {
            return false;
        };
        let before = self.diags.len();
        let actual = self.check_expr(v, Some(item));
        let lone = self.diags.len() == before
            && !matches!(
                actual,
                Type::List(_) | Type::Json | Type::Error | Type::Null
            )
            && self.assignable(&actual, item)
            && !super::leaks(&actual, item);
        self.diags.truncate(before);
        lone
    }

    /// A stdlib parameter of type `Bytes` also takes text, as its UTF-8
    /// bytes (LANGUAGE.md §14): `file.write(path, csv_text)`,
    /// `http.post(url, body: xml)`. Code generation tells the runtime which
    /// of the two it passes.
    fn expect_data(&mut self, v: &Expr, expected: &Type, context: &str) {
        let before = self.diags.len();
        let actual = self.check_expr(v, Some(expected));
        if self.diags.len() > before {
            return;
        }
        let text = match expected {
            Type::Optional(_) => Type::optional(Type::String),
            _ => Type::String,
        };
        if !self.assignable(&actual, expected) && !self.assignable(&actual, &text) {
            self.mismatch(v, &actual, expected, context);
        }
    }

    /// E0704 for `parallel` over a list whose items come one after another
    /// (`http.pages`, `csv.rows`, `csv.chunks`).
    fn refuse_parallel(&mut self, p: &Expr, message: &str, label: String, help: &str) {
        self.check_expr(p, None);
        self.error(
            Diagnostic::new(Code::PagesOutsideFor, p.span, message)
                .with_label(label)
                .with_help(help),
        );
    }

    /// `for page in http.pages(URL, ...options of http.get..., next: p =>
    /// ..., max_pages: N)` (LANGUAGE.md §13): the type of each page,
    /// `Response<T>`.
    pub(in crate::check) fn pages_loop(&mut self, call: &Expr, parallel: Option<&Expr>) -> Type {
        let ExprKind::Call { callee, args } = &call.kind else {
            return Type::Error;
        };
        if let Some(p) = parallel {
            self.refuse_parallel(
                p,
                "pages are fetched one after another",
                "`parallel` over `http.pages`".into(),
                "drop `parallel` here; loop over a page's items with `parallel` inside",
            );
        }
        let Some(get) = self.std.function("http", "get").cloned() else {
            return Type::Error;
        };
        let named = |a: &Arg, n: &str| a.name.as_ref().is_some_and(|x| x.name == n);
        let request: Vec<Arg> = args
            .iter()
            .filter(|a| !named(a, "next") && !named(a, "max_pages"))
            .cloned()
            .collect();
        self.check_call_args("http.pages", &get.params, &request, callee.span);
        self.check_via_credentials(args);
        let type_arg = request
            .iter()
            .find_map(|a| match (&a.name, &a.value) {
                (Some(n), ArgValue::Type(te)) if n.name == "as" => Some(self.resolve_type(te)),
                _ => None,
            })
            .unwrap_or(Type::Json);
        let page = Type::Response(Box::new(type_arg));
        if let Some(max) = args.iter().find(|a| named(a, "max_pages")) {
            if let ArgValue::Expr(v) = &max.value {
                self.expect(v, &Type::Int, "`max_pages:`");
            }
        }
        match args.iter().find(|a| named(a, "next")).map(|a| &a.value) {
            Some(ArgValue::Expr(Expr {
                kind: ExprKind::Lambda { params, body },
                span,
            })) => {
                if params.len() != 1 {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            *span,
                            format!("`next:` takes a lambda of one page, not {} parameters", params.len()),
                        )
                        .with_help("write `next: p => p.body.next_url`"),
                    );
                }
                self.scopes.push();
                if let Some(p) = params.first() {
                    self.bind_checked(p, page.clone(), crate::check::scope::BindingKind::LambdaParam);
                }
                self.expect(body, &Type::optional(Type::Url), "the next page's URL");
                self.scopes.pop();
            }
            Some(ArgValue::Expr(other)) => {
                self.check_expr(other, None);
                self.error(
                    Diagnostic::new(Code::TypeMismatch, other.span, "`next:` takes a lambda")
                        .with_label("not a lambda")
                        .with_help("write `next: p => p.link(\"next\")` or `next: p => p.body.next_url`"),
                );
            }
            _ => self.error(
                Diagnostic::new(
                    Code::MissingArgument,
                    callee.span,
                    "`http.pages` is missing `next:`",
                )
                .with_label("how is the next page found?")
                .with_help("pass `next: p => p.link(\"next\")` (a `Link` header) or `next: p => p.body.next_url`; `null` ends the loop"),
            ),
        }
        page
    }

    /// `for row in csv.rows(FILE, as: T, delimiter: ",")` (one row per
    /// iteration) and `for rows in csv.chunks(FILE, size: N, as: T,
    /// delimiter: ",")` (lists of up to N rows): the type of each item.
    pub(in crate::check) fn csv_stream_loop(
        &mut self,
        call: &Expr,
        function: &str,
        parallel: Option<&Expr>,
    ) -> Type {
        let ExprKind::Call { callee, args } = &call.kind else {
            return Type::Error;
        };
        if let Some(p) = parallel {
            self.refuse_parallel(
                p,
                "the rows of a file are read one after another",
                format!("`parallel` over `csv.{function}`"),
                "drop `parallel` here; with `csv.chunks`, loop over a chunk's rows with `parallel` inside",
            );
        }
        let param = |name: &str, ty: Type, has_default: bool| ParamSig {
            name: name.to_string(),
            ty,
            takes_type: false,
            has_default,
            default_type: None,
        };
        let mut params = vec![param("file", Type::File, false)];
        if function == "chunks" {
            params.push(param("size", Type::Int, false));
        }
        params.push(param("delimiter", Type::String, true));
        params.push(param("auth", Type::optional(Type::Secret), true));
        params.push(ParamSig {
            takes_type: true,
            default_type: Some(Type::Json),
            ..param("as", Type::Param("T".into()), true)
        });
        self.check_call_args(&format!("csv.{function}"), &params, args, callee.span);
        let row = args
            .iter()
            .find_map(|a| match (&a.name, &a.value) {
                (Some(n), ArgValue::Type(te)) if n.name == "as" => Some(self.resolve_type(te)),
                _ => None,
            })
            .unwrap_or(Type::Json);
        if function == "chunks" {
            Type::list(row)
        } else {
            row
        }
    }

    fn stdlib_call(
        &mut self,
        e: &Expr,
        module: &ast::Ident,
        name: &ast::Ident,
        args: &[Arg],
        as_step: bool,
    ) -> Type {
        let Some(m) = self.std.modules.get(&module.name) else {
            self.check_args_loosely(args);
            let modules = self.std.modules.keys().map(String::as_str);
            let mut d = Diagnostic::new(
                Code::UnknownName,
                module.span,
                format!("unknown name `{module}`"),
            )
            .with_label("not a value or stdlib module");
            if let Some(s) = did_you_mean(&module.name, modules) {
                d = d.with_help(format!("did you mean the module `{s}`?"));
            }
            self.error(d);
            return Type::Error;
        };
        if module.name == "csv" && crate::check::CSV_STREAMS.contains(&name.name.as_str()) {
            self.check_args_loosely(args);
            for arg in args {
                if let ArgValue::Type(te) = &arg.value {
                    self.resolve_type(te);
                }
            }
            let example = match name.name.as_str() {
                "chunks" => "for rows in csv.chunks(file, size: 500, as: Row) { ... }",
                _ => "for row in csv.rows(file, as: Row) { ... }",
            };
            self.error(
                Diagnostic::new(
                    Code::PagesOutsideFor,
                    e.span,
                    format!("`csv.{name}` is only the list of a `for` loop"),
                )
                .with_label("read from the file as the loop goes")
                .with_help(format!("write `{example}`; `csv.decode(file.text, as: [Row])` reads a small file at once")),
            );
            return Type::Error;
        }
        if module.name == "http" && name.name == "pages" {
            self.check_args_loosely(args);
            self.error(
                Diagnostic::new(
                    Code::PagesOutsideFor,
                    e.span,
                    "`http.pages` is only the list of a `for` loop",
                )
                .with_label("fetched page by page, as the loop goes")
                .with_help("write `for page in http.pages(URL, next: p => p.link(\"next\")) { ... }`; `http.get` fetches one page"),
            );
            return Type::Error;
        }
        let Some(sig) = m.functions.get(&name.name) else {
            self.check_args_loosely(args);
            let mut d = Diagnostic::new(
                Code::UnknownFunction,
                name.span,
                format!("module `{module}` has no function `{name}`"),
            )
            .with_label(format!("not in `{module}`"));
            d = match did_you_mean(&name.name, m.functions.keys().map(String::as_str)) {
                Some(s) => d.with_help(format!("did you mean `{module}.{s}`?")),
                None => d.with_help(format!(
                    "functions of `{module}`: {}",
                    m.functions.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            };
            self.error(d);
            return Type::Error;
        };
        if sig.effectful && !as_step {
            self.error(
                Diagnostic::new(
                    Code::EffectOutsideStep,
                    e.span,
                    format!("`{}` has effects, so it can only be called as a step", sig.qualified()),
                )
                .with_label("effectful call")
                .with_help(format!("write `step {} = {}(...)`: a step's result is journaled and not repeated on retry", sig.name, sig.qualified())),
            );
        }
        let qualified = sig.qualified();
        let sig = sig.clone();
        self.check_needed_config(&qualified, module.span.to(name.span));
        self.check_call_args(&qualified, &sig.params, args, name.span);
        self.check_via_credentials(args);
        // Substitute the type argument (`as:`) into the result type.
        let type_arg = args.iter().find_map(|a| match (&a.name, &a.value) {
            (Some(n), ArgValue::Type(te)) if sig.param(&n.name).is_some_and(|p| p.takes_type) => {
                Some(self.resolve_type(te))
            }
            _ => None,
        });
        let type_arg = type_arg
            .or_else(|| sig.params.iter().find_map(|p| p.default_type.clone()))
            .unwrap_or(Type::Json);
        if module.name == "sql" {
            self.check_sql_call(&qualified, args, &type_arg);
        }
        if module.name == "file" {
            self.check_s3_via(&qualified, args, name.span);
        }
        substitute(&sig.ret, &type_arg)
    }

    /// Stdlib functions that the runtime configures from a config entry
    /// (E0504): the entry must be declared, with a text type.
    fn check_needed_config(&mut self, qualified: &str, span: ast::Span) {
        /// (function, entry, example value)
        const NEEDS: &[(&str, &str, &str)] = &[(
            "email.send",
            "smtp_url",
            "smtp://user:password@mail.example.com:587",
        )];
        let Some((_, entry, example)) = NEEDS.iter().find(|(f, _, _)| *f == qualified) else {
            return;
        };
        let fits = |t: &Type| matches!(t, Type::Url | Type::Secret | Type::String | Type::Error);
        let declared = self.config.get(*entry).map(|(t, s, _)| (t.clone(), *s));
        match declared {
            None => self.error(
                Diagnostic::new(
                    Code::MissingNeededConfig,
                    span,
                    format!("`{qualified}` needs the config entry `{entry}`, which is not declared"),
                )
                .with_label(format!("reads config `{entry}`"))
                .with_help(format!(
                    "declare it: `config {{ {entry}: Secret }}` and set it at start-up (e.g. {example})"
                )),
            ),
            Some((t, decl)) => {
                let ok = match &t {
                    Type::Optional(inner) => fits(inner),
                    t => fits(t),
                };
                if !ok {
                    self.error(
                        Diagnostic::new(
                            Code::MissingNeededConfig,
                            decl,
                            format!(
                                "config entry `{entry}` is read by `{qualified}` as a URL, but its type is `{t}`"
                            ),
                        )
                        .with_label("declared here")
                        .with_help(format!("declare it as `{entry}: Secret` (or `Url`)")),
                    );
                }
            }
        }
    }

    /// Arguments against parameters: positional in order, named by name.
    pub(in crate::check) fn check_call_args(
        &mut self,
        what: &str,
        params: &[crate::check::stdlib::ParamSig],
        args: &[Arg],
        call_span: ast::Span,
    ) {
        let mut filled: Vec<Option<ast::Span>> = vec![None; params.len()];
        let mut positional = 0usize;
        for arg in args {
            let index = match &arg.name {
                None => {
                    // Positional arguments fill value parameters in order.
                    let i = positional;
                    positional += 1;
                    if i >= params.len() {
                        let n = params.len();
                        self.error(
                            Diagnostic::new(
                                Code::TooManyArguments,
                                arg.span,
                                format!(
                                    "`{what}` takes at most {n} argument{}",
                                    if n == 1 { "" } else { "s" }
                                ),
                            )
                            .with_label("extra argument")
                            .with_help(format!(
                                "parameters: {}",
                                params
                                    .iter()
                                    .map(|p| p.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        );
                        if let ArgValue::Expr(v) = &arg.value {
                            self.check_expr(v, None);
                        }
                        continue;
                    }
                    i
                }
                Some(n) => match params.iter().position(|p| p.name == n.name) {
                    Some(i) => i,
                    None => {
                        let mut d = Diagnostic::new(
                            Code::UnknownArgument,
                            n.span,
                            format!("`{what}` has no parameter `{n}`"),
                        )
                        .with_label("unknown argument");
                        d = match did_you_mean(&n.name, params.iter().map(|p| p.name.as_str())) {
                            Some(s) => d.with_help(format!("did you mean `{s}:`?")),
                            None => d.with_help(format!(
                                "parameters: {}",
                                params
                                    .iter()
                                    .map(|p| p.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        };
                        self.error(d);
                        if let ArgValue::Expr(v) = &arg.value {
                            self.check_expr(v, None);
                        }
                        continue;
                    }
                },
            };
            let Some(param) = params.get(index) else {
                continue;
            };
            if let Some(first) = filled[index] {
                self.error(
                    Diagnostic::new(
                        Code::DuplicateArgument,
                        arg.span,
                        format!("argument `{}` is given twice", param.name),
                    )
                    .with_label("given again here")
                    .with_secondary(first, "first given here")
                    .with_help("remove one of them"),
                );
                if let ArgValue::Expr(v) = &arg.value {
                    self.check_expr(v, None);
                }
                continue;
            }
            filled[index] = Some(arg.span);
            match (&arg.value, param.takes_type) {
                (ArgValue::Type(te), true) => {
                    self.resolve_type(te);
                }
                (ArgValue::Expr(v), true) => {
                    self.error(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            v.span,
                            format!("`{}:` takes a type", param.name),
                        )
                        .with_help(format!("write a type, e.g. `{}: [Order]`", param.name)),
                    );
                }
                (ArgValue::Type(te), false) => {
                    self.error(Diagnostic::new(
                        Code::TypeMismatch,
                        te.span,
                        format!("`{}:` takes a value, not a type", param.name),
                    ));
                }
                (
                    ArgValue::Expr(
                        v @ Expr {
                            kind: ExprKind::Lambda { .. },
                            ..
                        },
                    ),
                    false,
                ) => {
                    self.error(
                        Diagnostic::new(
                            Code::MisplacedLambda,
                            v.span,
                            format!("argument `{}` of `{what}` cannot be a lambda", param.name),
                        )
                        .with_label(format!("expected `{}`", param.ty))
                        .with_help("lambdas are arguments of list methods: compute the value first, e.g. `json: lines.map(l => l.sku)`"),
                    );
                }
                (ArgValue::Expr(v), false) if param.name == "via" => self.check_via(v, what),
                (ArgValue::Expr(v), false) if self.lone_item(v, &param.ty) => {}
                (ArgValue::Expr(v), false) if matches!(param.ty.unwrap_optional(), Type::Bytes) => {
                    self.expect_data(
                        v,
                        &param.ty,
                        &format!("argument `{}` of `{what}`", param.name),
                    );
                }
                (ArgValue::Expr(v), false) => {
                    self.expect(
                        v,
                        &param.ty,
                        &format!("argument `{}` of `{what}`", param.name),
                    );
                }
            }
        }
        let missing: Vec<&str> = params
            .iter()
            .zip(&filled)
            .filter(|(p, f)| f.is_none() && !p.has_default)
            .map(|(p, _)| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            self.error(
                Diagnostic::new(
                    Code::MissingArgument,
                    call_span,
                    format!(
                        "`{what}` is missing {}",
                        missing
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .with_label(format!(
                    "missing {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}:`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .with_help(format!(
                    "pass {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}: ...`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
    }

    fn builtin_call(&mut self, name: &ast::Ident, args: &[Arg]) -> Type {
        match name.name.as_str() {
            "endpoint" => {
                let target = match args {
                    [Arg {
                        name: None,
                        value:
                            ArgValue::Expr(Expr {
                                kind: ExprKind::Name(flow),
                                ..
                            }),
                        ..
                    }] => flow,
                    _ => {
                        self.error(
                            Diagnostic::new(
                                Code::NotEndpoint,
                                name.span,
                                "`endpoint` takes one flow name",
                            )
                            .with_label("not a flow name")
                            .with_help("write the flow's name without quotes, e.g. `endpoint(order_created)`"),
                        );
                        self.check_args_loosely(args);
                        return Type::Url;
                    }
                };
                match self.program.flows.get(&target.name) {
                    Some(info) if info.kind == "webhook" || info.kind == "sync" => {}
                    Some(info) => {
                        let kind = info.kind;
                        self.error(
                            Diagnostic::new(
                                Code::NotEndpoint,
                                target.span,
                                format!(
                                    "flow `{target}` has a {kind} trigger, so it has no endpoint"
                                ),
                            )
                            .with_label(format!("a {kind} flow has no URL"))
                            .with_help("`endpoint` names a flow with a webhook or sync trigger"),
                        );
                    }
                    None => self.unknown_flow(target),
                }
                Type::Url
            }
            "reveal" => {
                match args {
                    [Arg {
                        name: None,
                        value: ArgValue::Expr(v),
                        ..
                    }] => {
                        self.expect(v, &Type::Secret, "argument of `reveal`");
                    }
                    _ => {
                        self.check_args_loosely(args);
                        self.error(
                            Diagnostic::new(
                                Code::TooManyArguments,
                                name.span,
                                "`reveal` takes one secret",
                            )
                            .with_label(format!("given {} arguments", args.len()))
                            .with_help("write `reveal(config.api_key)`"),
                        );
                    }
                }
                Type::String
            }
            "header" | "hmac_sha256" => {
                self.check_args_loosely(args);
                self.error(
                    Diagnostic::new(Code::UnknownFunction, name.span, format!("`{name}` is only available in webhook trigger options"))
                        .with_label("not a function of flow bodies")
                        .with_help("use it as `dedupe: header(\"X-Id\")` or `verify: hmac_sha256(...)`; in a flow body use `trigger.headers` or `crypto.hmac_sha256`"),
                );
                Type::Error
            }
            n => {
                self.check_args_loosely(args);
                let modules: Vec<String> = self
                    .std
                    .modules
                    .values()
                    .flat_map(|m| m.functions.keys().map(move |f| format!("{}.{f}", m.name)))
                    .collect();
                let mut candidates: Vec<&str> = BUILTIN_FNS.to_vec();
                candidates.extend(modules.iter().map(String::as_str));
                let mut d = Diagnostic::new(
                    Code::UnknownFunction,
                    name.span,
                    format!("unknown function `{n}`"),
                )
                .with_label("not a built-in function");
                let by_name = modules.iter().find(|q| q.rsplit('.').next() == Some(n));
                if let Some(q) = by_name {
                    d = d.with_help(format!("did you mean `{q}`?"));
                } else if let Some(s) = did_you_mean(n, candidates) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.error(d);
                Type::Error
            }
        }
    }

    pub(in crate::check) fn unknown_flow(&mut self, name: &ast::Ident) {
        let mut d = Diagnostic::new(
            Code::UnknownFlow,
            name.span,
            format!("unknown flow `{name}`"),
        )
        .with_label("no flow has this name");
        let flows: Vec<String> = self.program.flows.keys().cloned().collect();
        d = match did_you_mean(&name.name, flows.iter().map(String::as_str)) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None if flows.is_empty() => d.with_help("declare it with `flow NAME { trigger ... }`"),
            None => d.with_help(format!(
                "flows: {}",
                flows
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        self.error(d);
    }
}

/// Replaces the type parameter in a stdlib result type.
fn substitute(t: &Type, arg: &Type) -> Type {
    match t {
        Type::Param(_) => arg.clone(),
        Type::List(i) => Type::list(substitute(i, arg)),
        Type::Optional(i) => Type::optional(substitute(i, arg)),
        Type::Map(i) => Type::map(substitute(i, arg)),
        Type::Response(i) => Type::Response(Box::new(substitute(i, arg))),
        other => other.clone(),
    }
}

impl Checker<'_> {
    /// E0114: a `file.*` call on an `s3://` path written in the source
    /// (its first text before any interpolation) without `via:`, the
    /// connection that signs its requests.
    fn check_s3_via(&mut self, what: &str, args: &[Arg], call_span: ast::Span) {
        let names_s3 = |a: &&Arg| match &a.value {
            ArgValue::Expr(Expr {
                kind: ExprKind::Str(parts),
                ..
            }) => matches!(parts.first(), Some(StrPart::Lit(text)) if text.starts_with("s3://")),
            _ => false,
        };
        let has_via = args
            .iter()
            .any(|a| a.name.as_ref().is_some_and(|n| n.name == "via"));
        if has_via || !args.iter().any(|a| names_s3(&a)) {
            return;
        }
        self.error(
            Diagnostic::new(
                Code::MissingArgument,
                call_span,
                format!("`{what}` on an `s3://` path needs `via:`"),
            )
            .with_label("no `via:`")
            .with_help("name the `aws:` connection that signs its requests, e.g. `via: cloud`"),
        );
    }
}
