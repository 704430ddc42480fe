//! Expressions → Rust expressions of type `Value` (owned).
//!
//! Every value is a `serde_json::Value` at run time; the checker has already
//! proven the program well typed, so generated code only calls the
//! runtime's `ops` helpers, which report the few errors that remain possible
//! at run time (overflow, division by zero, failed `as`) as `RunError`s,
//! propagated with `?`.
//!
//! Locals are Rust variables named `v_<name>`. Field chains on a local,
//! `trigger` or `config` are compiled as borrowed *places*
//! (`ops::get(ops::get(cx.trigger(), "body"), "updates")`) so reading
//! `trigger.body.updates` clones only the list, not the whole trigger.

use crate::check::Type;
use crate::syntax::ast::{
    Arg, ArgValue, BinaryOp, Expr, ExprKind, Pattern, PatternKind, StrPart, TypeDeclBody, UnaryOp,
};

use super::{lit, vec_of, Gen};

/// The Rust name of a local.
pub fn local(name: &str) -> String {
    format!("v_{name}")
}

impl Gen<'_> {
    /// A Rust expression producing an owned `Value`.
    pub fn expr(&mut self, e: &Expr) -> String {
        if let Some(place) = self.place(e) {
            return match place.strip_prefix('&') {
                Some(local) => format!("{local}.clone()"),
                None => format!("{place}.clone()"),
            };
        }
        match &e.kind {
            ExprKind::Null => "Value::Null".into(),
            ExprKind::Bool(b) => format!("Value::Bool({b})"),
            ExprKind::Int(i) => format!("Value::from({i}i64)"),
            ExprKind::Float(f) => format!("Value::from({f:?}f64)"),
            ExprKind::Duration(ms) => format!("Value::from({ms}i64)"),
            ExprKind::Str(parts) => self.string(parts),
            ExprKind::List(items) => {
                let items: Vec<String> = items.iter().map(|i| self.expr(i)).collect();
                format!("Value::Array({})", vec_of(&items))
            }
            // `{}`: `ops::record([])` could not infer its key type.
            ExprKind::Record(entries) if entries.is_empty() => {
                "Value::Object(Default::default())".into()
            }
            ExprKind::Record(entries) => {
                let items: Vec<String> = entries
                    .iter()
                    .map(|en| format!("({}, {})", lit(en.key.name()), self.expr(&en.value)))
                    .collect();
                format!("ops::record([{}])", items.join(", "))
            }
            // Names and fields that are places were handled above.
            ExprKind::Name(n) => match n.name.as_str() {
                "env" => "cx.env()".into(),
                _ => "Value::Null".into(),
            },
            // A big file has no content in the run: its `.text` and
            // `.bytes` fail with a message rather than read as null.
            ExprKind::Field { target, name, .. } if self.is_file_content(target, &name.name) => {
                format!(
                    "ops::file_content({}, {})?",
                    self.borrowed(target),
                    lit(&name.name)
                )
            }
            ExprKind::Field { target, name, .. } => {
                format!(
                    "ops::get(&{}, {}).clone()",
                    self.expr(target),
                    lit(&name.name)
                )
            }
            ExprKind::Index { target, index } => {
                let t = self.borrowed(target);
                let key = if self.is_header_map(target) {
                    // HTTP header names are case-insensitive; the runtime
                    // keeps them lowercase.
                    match &index.kind {
                        ExprKind::Str(parts) => match parts.as_slice() {
                            [StrPart::Lit(s)] => {
                                format!("Value::from({})", lit(&s.to_ascii_lowercase()))
                            }
                            _ => format!("ops::lower(&{})?", self.expr(index)),
                        },
                        _ => format!("ops::lower(&{})?", self.expr(index)),
                    }
                } else {
                    self.expr(index)
                };
                format!("ops::index({t}, &{key})")
            }
            ExprKind::Call { callee, args } => self.call(callee, args),
            ExprKind::Lambda { .. } => "Value::Null".into(),
            ExprKind::Unary { op, expr } => {
                let inner = self.borrowed(expr);
                match op {
                    UnaryOp::Neg => format!("ops::neg({inner})?"),
                    UnaryOp::Not => format!("ops::not({inner})?"),
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs),
            ExprKind::As { expr, ty } => {
                let schema = self.types.schema(ty);
                let v = self.borrowed(expr);
                format!(
                    "{{ static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {schema}); ops::as_type({v}, &SCHEMA)? }}"
                )
            }
            ExprKind::If {
                branches,
                otherwise,
            } => {
                let mut out = String::new();
                for (i, (cond, body)) in branches.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" else ");
                    }
                    let c = self.borrowed(cond);
                    out.push_str(&format!("if ops::truthy({c}) {{ {} }}", self.expr(body)));
                }
                let other = otherwise
                    .as_ref()
                    .map_or("Value::Null".to_string(), |o| self.expr(o));
                out.push_str(&format!(" else {{ {other} }}"));
                out
            }
            ExprKind::Match { scrutinee, arms } => {
                let s = self.expr(scrutinee);
                let mut out = format!("{{ let scrutinee = {s}; ");
                for (i, arm) in arms.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" else ");
                    }
                    let cond = patterns_cond(&arm.patterns);
                    out.push_str(&format!("if {cond} {{ {} }}", self.expr(&arm.body)));
                }
                out.push_str(" else { Value::Null } }");
                out
            }
        }
    }

    /// Whether `target.field` is the content of a `File` (`.text`,
    /// `.bytes`), which a file passed by reference does not have.
    pub(super) fn is_file_content(&self, target: &Expr, field: &str) -> bool {
        matches!(field, "text" | "bytes")
            && super::value_type(self.program, target) == Some(&Type::File)
    }

    /// A Rust expression of type `&Value`, borrowing when `e` is a place.
    pub fn borrowed(&mut self, e: &Expr) -> String {
        match self.place(e) {
            Some(p) => p,
            None => format!("&{}", self.expr(e)),
        }
    }

    /// `e` as a borrowed place (`&Value`), when it is a local, `trigger`,
    /// `config.x`, `error`, or a field chain on one of them.
    pub(super) fn place(&self, e: &Expr) -> Option<String> {
        match &e.kind {
            ExprKind::Name(n) => {
                if self.is_local(&n.name) {
                    return Some(format!("&{}", local(&n.name)));
                }
                match n.name.as_str() {
                    "trigger" => Some("cx.trigger()".into()),
                    "error" => Some("cx.error()".into()),
                    _ => None,
                }
            }
            ExprKind::Field { target, name, .. } => {
                if matches!(&target.kind, ExprKind::Name(t) if t.name == "config" && !self.is_local("config"))
                {
                    return Some(format!("ops::get(cx.config(), {})", lit(&name.name)));
                }
                if self.is_file_content(target, &name.name) {
                    return None;
                }
                let base = match &target.kind {
                    ExprKind::Name(t) if t.name == "trigger" && !self.is_local("trigger") => {
                        "cx.trigger()".to_string()
                    }
                    _ => self.place(target)?,
                };
                // A dispatch flow's input is `trigger.input` at run time,
                // whatever the flow named its parameter.
                let is_dispatch_input = base == "cx.trigger()"
                    && self.dispatch_param.as_deref() == Some(name.name.as_str());
                let field = if is_dispatch_input {
                    "input"
                } else {
                    name.name.as_str()
                };
                Some(format!("ops::get({base}, {})", lit(field)))
            }
            _ => None,
        }
    }

    fn string(&mut self, parts: &[StrPart]) -> String {
        match parts {
            [] => "Value::from(\"\")".into(),
            [StrPart::Lit(s)] => format!("Value::from({})", lit(s)),
            _ => format!("{{ {} Value::String(s) }}", self.build_text(parts)),
        }
    }

    /// A Rust expression of type `String` for the text of a string
    /// expression, e.g. a `skip` or `fail` reason.
    pub fn text(&mut self, parts: &[StrPart]) -> String {
        match parts {
            [] => "String::new()".into(),
            [StrPart::Lit(s)] => format!("{}.to_string()", lit(s)),
            _ => format!("{{ {} s }}", self.build_text(parts)),
        }
    }

    /// Statements that build the text of `parts` in a `String` named `s`.
    fn build_text(&mut self, parts: &[StrPart]) -> String {
        let mut out = String::from("let mut s = String::new(); ");
        for p in parts {
            match p {
                StrPart::Lit(s) => out.push_str(&format!("s.push_str({}); ", lit(s))),
                StrPart::Interp(e) => {
                    let v = self.borrowed(e);
                    out.push_str(&format!("ops::display_into(&mut s, {v}); "));
                }
            }
        }
        out
    }

    fn binary(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> String {
        match op {
            BinaryOp::And => {
                let (l, r) = (self.borrowed(lhs), self.borrowed(rhs));
                format!("Value::Bool(ops::truthy({l}) && ops::truthy({r}))")
            }
            BinaryOp::Or => {
                let (l, r) = (self.borrowed(lhs), self.borrowed(rhs));
                format!("Value::Bool(ops::truthy({l}) || ops::truthy({r}))")
            }
            BinaryOp::Coalesce => {
                let (l, r) = (self.expr(lhs), self.expr(rhs));
                format!("{{ let left = {l}; if left.is_null() {{ {r} }} else {{ left }} }}")
            }
            _ => {
                let f = match op {
                    BinaryOp::Add => "add",
                    BinaryOp::Sub => "sub",
                    BinaryOp::Mul => "mul",
                    BinaryOp::Div => "div",
                    BinaryOp::Rem => "rem",
                    BinaryOp::Eq => "eq",
                    BinaryOp::Ne => "ne",
                    BinaryOp::Lt => "lt",
                    BinaryOp::Le => "le",
                    BinaryOp::Gt => "gt",
                    _ => "ge",
                };
                let (l, r) = (self.borrowed(lhs), self.borrowed(rhs));
                format!("ops::{f}({l}, {r})?")
            }
        }
    }

    fn call(&mut self, callee: &Expr, args: &[Arg]) -> String {
        match &callee.kind {
            ExprKind::Name(n) if n.name == "endpoint" => {
                let flow = match args.first().map(|a| &a.value) {
                    Some(ArgValue::Expr(Expr {
                        kind: ExprKind::Name(f),
                        ..
                    })) => f.name.clone(),
                    _ => String::new(),
                };
                format!("cx.endpoint({})?", lit(&flow))
            }
            ExprKind::Name(n) if n.name == "reveal" => match args.first().map(|a| &a.value) {
                Some(ArgValue::Expr(e)) => self.expr(e),
                _ => "Value::Null".into(),
            },
            ExprKind::Field { target, name, .. } => {
                if let ExprKind::Name(m) = &target.kind {
                    if !self.is_local(&m.name) && self.std.modules.contains_key(&m.name) {
                        return self.pure_call(&m.name, &name.name, args);
                    }
                }
                self.method(target, &name.name, args)
            }
            _ => "Value::Null".into(),
        }
    }

    /// A pure stdlib call, e.g. `json.encode(x)`; `state.get` reads the store.
    fn pure_call(&mut self, module: &str, function: &str, args: &[Arg]) -> String {
        if module == "state" && function == "get" {
            let key = match args.first().map(|a| &a.value) {
                // A literal key, the common case, is passed as it is.
                Some(ArgValue::Expr(e)) => match literal_text(e) {
                    Some(key) => lit(key),
                    None => format!("&ops::display({})", self.borrowed(e)),
                },
                _ => "&ops::display(&Value::Null)".into(),
            };
            return format!("cx.state_get({key})?");
        }
        let args = self.args(module, function, args);
        format!(
            "call_pure({}, {args})?",
            lit(&format!("{module}.{function}"))
        )
    }

    /// `Args::new().arg(..).kw(..)` for a stdlib call, normalised by the
    /// signature: required parameters (those without a default) are passed
    /// positionally in declaration order, the others by name, however the
    /// call wrote them; `as:` becomes the decode schema.
    pub fn args(&mut self, module: &str, function: &str, args: &[Arg]) -> String {
        let Some(sig) = self.std.function(module, function) else {
            return "Args::new()".into();
        };
        let params = sig.params.clone();
        let mut given: Vec<Option<&ArgValue>> = vec![None; params.len()];
        let mut position = 0;
        for arg in args {
            let index = match &arg.name {
                Some(n) => params.iter().position(|p| p.name == n.name),
                None => {
                    position += 1;
                    Some(position - 1)
                }
            };
            if let Some(slot) = index.and_then(|i| given.get_mut(i)) {
                *slot = Some(&arg.value);
            }
        }
        let mut out = String::from("Args::new()");
        for (param, value) in params.iter().zip(given) {
            match value {
                Some(ArgValue::Type(te)) => {
                    let schema = self.types.schema(te);
                    out.push_str(&format!(".decode_as({schema})"));
                }
                // `via: crm` names a connection, which is no value: the
                // runtime looks it up by name.
                Some(ArgValue::Expr(Expr {
                    kind: ExprKind::Name(connection),
                    ..
                })) if param.name == "via" => {
                    out.push_str(&format!(
                        ".kw(\"via\", Value::from({}))",
                        lit(&connection.name)
                    ));
                }
                Some(ArgValue::Expr(e)) => {
                    let mut v = self.expr(e);
                    // One item where the parameter takes a list: a list of
                    // one (the checker allowed it, `lone_item`).
                    if matches!(param.ty, Type::List(_))
                        && self.program.expr_types.get(&e.span).is_some_and(|t| {
                            !matches!(t, Type::List(_) | Type::Json | Type::Error | Type::Null)
                        })
                    {
                        v = format!("Value::Array(Vec::from([{v}]))");
                    }
                    // A typed value handed out as `Json` (`json:` bodies,
                    // `json.encode`) leaves in wire names.
                    if matches!(param.ty.unwrap_optional(), Type::Json) {
                        if let Some(schema) = self.wire_schema(e) {
                            v = format!("{schema}.encode(&{v})");
                        }
                    }
                    if param.has_default {
                        out.push_str(&format!(".kw({}, {v})", lit(&param.name)));
                    } else {
                        out.push_str(&format!(".arg({v})"));
                    }
                    // A parameter that takes text or `Bytes` (the checker's
                    // `expect_data`): the runtime decodes base64 only when told.
                    if matches!(param.ty.unwrap_optional(), Type::Bytes)
                        && super::value_type(self.program, e) == Some(&Type::Bytes)
                    {
                        out.push_str(&format!(
                            ".kw({}, Value::Bool(true))",
                            lit(&format!("{}_bytes", param.name))
                        ));
                    }
                    if module == "file" && PATH_PARAMS.contains(&param.name.as_str()) {
                        if let Some(trusted) = trusted_prefix(e) {
                            let prefix = self.string(trusted);
                            out.push_str(&format!(
                                ".kw({}, {prefix})",
                                lit(&format!("{}_within", param.name))
                            ));
                        }
                    }
                }
                None if !param.has_default => out.push_str(".arg(Value::Null)"),
                None => {}
            }
        }
        if module == "http" && self.reads_response_bytes {
            out.push_str(".kw(\"keep_bytes\", Value::Bool(true))");
        }
        out
    }

    /// Whether `e` is a map of HTTP headers: `trigger.headers` in a webhook
    /// or sync flow, or `.headers` of an HTTP response.
    fn is_header_map(&self, e: &Expr) -> bool {
        let ExprKind::Field { target, name, .. } = &e.kind else {
            return false;
        };
        if name.name != "headers" {
            return false;
        }
        let is_trigger = matches!(&target.kind, ExprKind::Name(n) if n.name == "trigger" && !self.is_local("trigger"));
        (is_trigger && self.http_trigger)
            || matches!(
                self.program.expr_types.get(&target.span),
                Some(Type::Response(_))
            )
    }

    /// The schema that maps `e`'s value to wire names, when its type has
    /// `@rename`d fields somewhere (else `None`: the value is sent as is).
    pub(super) fn wire_schema(&self, e: &Expr) -> Option<String> {
        let ty = self.program.expr_types.get(&e.span)?;
        self.has_renames(ty, 0).then(|| self.type_schema(ty, 0))
    }

    fn has_renames(&self, ty: &Type, depth: usize) -> bool {
        if depth > 32 {
            return false;
        }
        match ty {
            Type::Named(name) => {
                let renamed = matches!(
                    self.types.decls.get(&**name),
                    Some(TypeDeclBody::Record(fields)) if fields.iter().any(|f| f.rename.is_some())
                );
                renamed
                    || self.program.types.get(&**name).is_some_and(|r| {
                        r.fields.iter().any(|f| self.has_renames(&f.ty, depth + 1))
                    })
            }
            Type::List(t) | Type::Optional(t) | Type::Map(t) => self.has_renames(t, depth + 1),
            Type::Record(r) => r.fields.iter().any(|f| self.has_renames(&f.ty, depth + 1)),
            _ => false,
        }
    }

    /// A `Schema` expression for a checked type (named types by reference,
    /// which carries their wire names).
    fn type_schema(&self, ty: &Type, depth: usize) -> String {
        if depth > 32 {
            return "Schema::Json".into();
        }
        match ty {
            Type::Named(name) => format!("Schema::Ref({})", lit(name)),
            Type::List(t) => format!("Schema::list({})", self.type_schema(t, depth + 1)),
            Type::Optional(t) => format!("Schema::optional({})", self.type_schema(t, depth + 1)),
            Type::Map(t) => format!("Schema::map({})", self.type_schema(t, depth + 1)),
            Type::Record(r) => {
                let fields: Vec<String> = r
                    .fields
                    .iter()
                    .map(|f| {
                        format!(
                            "FieldSchema::new({}, {})",
                            lit(&f.name),
                            self.type_schema(&f.ty, depth + 1)
                        )
                    })
                    .collect();
                format!("Schema::Record({})", vec_of(&fields))
            }
            _ => "Schema::Json".into(),
        }
    }

    fn method(&mut self, target: &Expr, method: &str, args: &[Arg]) -> String {
        let recv = self.borrowed(target);
        let arg_exprs: Vec<&Expr> = args
            .iter()
            .filter_map(|a| match &a.value {
                ArgValue::Expr(e) => Some(e),
                ArgValue::Type(_) => None,
            })
            .collect();
        match method {
            "map" | "filter" => {
                let Some(Expr {
                    kind: ExprKind::Lambda { params, body },
                    ..
                }) = arg_exprs.first()
                else {
                    return "Value::Null".into();
                };
                let param = params.first().map_or("_".to_string(), |p| p.name.clone());
                self.push_local(&param);
                let body = self.expr(body);
                self.pop_local(&param);
                // The parameter borrows the item (a `&Value` local: places
                // built on it are `&&Value`, which coerces): nothing is
                // copied unless the body needs an owned value.
                let bind_item = if self.is_read(&param) {
                    format!("let {} = item;", local(&param))
                } else {
                    String::new()
                };
                let item = if bind_item.is_empty() {
                    "_item"
                } else {
                    "item"
                };
                format!(
                    "ops::{method}({recv}, |{item}: &Value| -> Result<Value, RunError> {{ {bind_item} Ok({body}) }})?"
                )
            }
            _ => {
                let mut call = format!("ops::{method}({recv}");
                for a in arg_exprs {
                    let v = self.borrowed(a);
                    call.push_str(&format!(", {v}"));
                }
                call.push_str(")?");
                call
            }
        }
    }
}

/// A Rust condition testing `scrutinee` (a `Value` in scope) against patterns.
pub fn patterns_cond(patterns: &[Pattern]) -> String {
    let conds: Vec<String> = patterns
        .iter()
        .map(|p| match &p.kind {
            PatternKind::Wildcard => "true".to_string(),
            PatternKind::Null => "scrutinee.is_null()".to_string(),
            PatternKind::Bool(b) => format!("scrutinee == Value::Bool({b})"),
            PatternKind::Str(s) => format!("scrutinee.as_str() == Some({})", lit(s)),
            PatternKind::Int(i) => format!("ops::equal(&scrutinee, &Value::from({i}i64))"),
            PatternKind::Float(f) => format!("ops::equal(&scrutinee, &Value::from({f:?}f64))"),
        })
        .collect();
    conds.join(" || ")
}

/// The text of a string literal without interpolation.
fn literal_text(e: &Expr) -> Option<&str> {
    match &e.kind {
        ExprKind::Str(parts) => match parts.as_slice() {
            [] => Some(""),
            [StrPart::Lit(s)] => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// The path parameters of the `file.*` steps.
const PATH_PARAMS: [&str; 4] = ["path", "from", "to", "glob"];

/// The part of a path string that does not come from run data: its parts
/// before the first interpolation not read from `config` (`"out/${n}"`:
/// `out/`; `"${config.dir}/${n}"`: the configured folder and `/`). The
/// runtime confines the path to the folder this prefix names (up to its
/// last `/`; `file.*` steps' `NAME_within`). `None` when nothing in the
/// string is run data.
fn trusted_prefix(e: &Expr) -> Option<&[StrPart]> {
    let ExprKind::Str(parts) = &e.kind else {
        return None;
    };
    let trusted = |p: &StrPart| match p {
        StrPart::Lit(_) => true,
        StrPart::Interp(x) => reads_only_config(x),
    };
    let first_untrusted = parts.iter().position(|p| !trusted(p))?;
    Some(&parts[..first_untrusted])
}

/// Whether `e` is `config` or a field path into it.
fn reads_only_config(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Name(n) => n.name == "config",
        ExprKind::Field { target, .. } => reads_only_config(target),
        _ => false,
    }
}
