//! Field access (`x.f`, `x?.f`, `config.NAME`) and indexing (`xs[0]`,
//! `m["key"]`).

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Expr, ExprKind};

use super::describe;
use crate::check::suggest::did_you_mean;
use crate::check::types::Type;
use crate::check::Checker;

impl Checker<'_> {
    pub(super) fn field(
        &mut self,
        target: &Expr,
        name: &ast::Ident,
        optional: bool,
        expected: Option<&Type>,
    ) -> Type {
        if self.is_global(target, "config") {
            return self.config_field(name, expected);
        }
        if let ExprKind::Name(m) = &target.kind {
            if self.scopes.find(&m.name).is_none() && self.std.modules.contains_key(&m.name) {
                self.error(
                    Diagnostic::new(
                        Code::NotCallable,
                        name.span,
                        format!("`{m}.{name}` is a function"),
                    )
                    .with_label("not called")
                    .with_help(format!("call it: `{m}.{name}(...)`")),
                );
                return Type::Error;
            }
        }
        let target_type = self.check_expr(target, None);
        let base = if optional {
            match &target_type {
                Type::Optional(inner) => (**inner).clone(),
                Type::Json | Type::Error => target_type.clone(),
                Type::Null => return Type::Null,
                other => {
                    self.error(
                        Diagnostic::new(
                            Code::NotOptional,
                            name.span,
                            format!("`?.` on `{other}`, which is never null"),
                        )
                        .with_label(format!("{} is never null", describe(target)))
                        .with_help(format!("write `.{name}`")),
                    );
                    other.clone()
                }
            }
        } else {
            if let Type::Optional(inner) = &target_type {
                self.error(
                    Diagnostic::new(
                        Code::OptionalAccess,
                        name.span,
                        format!("`{target_type}` may be null, so `.{name}` may fail"),
                    )
                    .with_label(format!("{} may be null", describe(target)))
                    .with_help(format!(
                        "use `?.{name}` (the result is optional) or give a default with `??`"
                    )),
                );
                return self
                    .field_of(&inner.clone(), name, Owner::Value)
                    .map_or(Type::Error, Type::optional);
            }
            target_type.clone()
        };
        let owner = self.owner(target);
        let t = self.field_of(&base, name, owner).unwrap_or(Type::Error);
        if optional {
            Type::optional(t)
        } else {
            t
        }
    }

    /// What the target of a field access is, for messages: `trigger` and
    /// `trigger.params` read better as "the webhook trigger" and "the route".
    fn owner(&self, target: &Expr) -> Owner {
        let kind = self.flow.as_ref().map_or("", |f| f.trigger_kind);
        if kind.is_empty() {
            return Owner::Value;
        }
        match &target.kind {
            ExprKind::Name(_) if self.is_global(target, "trigger") => Owner::Trigger(kind),
            ExprKind::Field {
                target: t,
                name,
                optional: false,
            } if name.name == "params" && self.is_global(t, "trigger") => Owner::Route,
            _ => Owner::Value,
        }
    }

    /// The type of `.name` on a value of type `ty`, reporting unknown fields.
    fn field_of(&mut self, ty: &Type, name: &ast::Ident, owner: Owner) -> Option<Type> {
        let n = name.name.as_str();
        let builtin: Option<Vec<(&str, Type)>> = match ty {
            Type::Json | Type::Error => return Some(ty.clone()),
            Type::Map(v) => return Some(Type::optional((**v).clone())),
            ty => ty.builtin_fields(),
        };
        let fields: Vec<(String, Type)> = match builtin {
            Some(b) => b.into_iter().map(|(k, t)| (k.to_string(), t)).collect(),
            None => match self.record_fields(ty) {
                Some(r) => r
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), f.ty.clone()))
                    .collect(),
                None => {
                    self.no_fields(ty, name);
                    return None;
                }
            },
        };
        if let Some((_, t)) = fields.iter().find(|(k, _)| k == n) {
            return Some(t.clone());
        }
        let names = fields
            .iter()
            .map(|(k, _)| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let (message, label, list) = match owner {
            Owner::Value => (
                format!("`{ty}` has no field `{n}`"),
                "unknown field",
                format!("fields of `{ty}`: {names}"),
            ),
            Owner::Trigger(kind) => (
                format!("a {kind} trigger has no field `{n}`"),
                "unknown field",
                format!("`trigger` of a {kind} flow has: {names}"),
            ),
            Owner::Route if fields.is_empty() => (
                format!("the route has no path parameter `{n}`"),
                "no such parameter",
                "the route has no parameters; write them in the path, e.g. `\"/customers/{id}\"`"
                    .to_string(),
            ),
            Owner::Route => (
                format!("the route has no path parameter `{n}`"),
                "no such parameter",
                format!("path parameters: {names}"),
            ),
        };
        let mut d = Diagnostic::new(Code::UnknownField, name.span, message).with_label(label);
        d = match did_you_mean(n, fields.iter().map(|(k, _)| k.as_str())) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d.with_help(list),
        };
        self.error(d);
        None
    }

    /// E0208 for `.name` on a value without fields, with the likely fix.
    fn no_fields(&mut self, ty: &Type, name: &ast::Ident) {
        let n = &name.name;
        let help = match ty {
            Type::List(_) => format!("a list has no fields; take each element's with `.map(x => x.{n})`, or one element with `.first()`"),
            Type::String | Type::Lits(_) | Type::Url => "strings have methods (`.len()`, `.lower()`, `.split(\",\")`, ...), not fields".to_string(),
            _ => "only records, `Json`, responses and files have fields".to_string(),
        };
        self.error(
            Diagnostic::new(Code::NoFields, name.span, format!("`{ty}` has no fields"))
                .with_label(format!("`.{n}` on a `{ty}`"))
                .with_help(help),
        );
    }

    fn config_field(&mut self, name: &ast::Ident, expected: Option<&Type>) -> Type {
        if let Some(t) = self.use_config(&name.name) {
            return t;
        }
        let mut d = Diagnostic::new(
            Code::UnknownConfig,
            name.span,
            format!("unknown config entry `{name}`"),
        )
        .with_label("not in the config block");
        let names: Vec<String> = self.config.keys().cloned().collect();
        d = match did_you_mean(&name.name, names.iter().map(String::as_str)) {
            Some(s) => {
                // The entry meant is not "unused": one mistake, one report.
                self.use_config(&s);
                d.with_help(format!("did you mean `{s}`?"))
            }
            None => {
                let ty = match expected.map(Type::unwrap_optional) {
                    Some(t) if !matches!(t, Type::Json | Type::Error | Type::Param(_)) => {
                        t.to_string()
                    }
                    _ => "String".to_string(),
                };
                d.with_help(format!(
                    "declare it in the config block: `config {{ {name}: {ty} }}`"
                ))
            }
        };
        self.error(d);
        Type::Error
    }

    pub(super) fn index(&mut self, target: &Expr, index: &Expr) -> Type {
        let t = self.check_expr(target, None);
        match t {
            Type::List(elem) => {
                self.expect(index, &Type::Int, "list index");
                Type::optional(*elem)
            }
            Type::Map(v) => {
                self.expect(index, &Type::String, "map key");
                Type::optional(*v)
            }
            Type::Json | Type::Error => {
                self.check_expr(index, None);
                t
            }
            other => {
                self.check_expr(index, None);
                self.error(
                    Diagnostic::new(
                        Code::NotAList,
                        target.span,
                        format!("`{other}` cannot be indexed"),
                    )
                    .with_label(format!("a `{other}`"))
                    .with_help(
                        "only lists (`xs[0]`), maps (`m[\"key\"]`) and `Json` can be indexed",
                    ),
                );
                Type::Error
            }
        }
    }
}

/// What a field is read from, for the wording of unknown-field errors.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Value,
    /// `trigger` of a flow with this trigger kind.
    Trigger(&'static str),
    /// `trigger.params` of a webhook or sync flow.
    Route,
}
