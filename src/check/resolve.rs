//! Resolution of written types (`TypeExpr`) into checker [`Type`]s.

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{TypeExpr, TypeExprKind};

use super::suggest::did_you_mean;
use super::types::Type;

/// The built-in scalar types, by name.
pub const BUILTIN_SCALARS: &[&str] = &[
    "String", "Int", "Float", "Bool", "Time", "Duration", "Url", "Secret", "Bytes", "Json", "File",
];

/// The built-in generic types and their number of type arguments.
const BUILTIN_GENERICS: &[(&str, usize)] = &[("Map", 1), ("Response", 1)];

/// Is `name` a built-in type (scalar or generic)?
pub fn is_builtin(name: &str) -> bool {
    BUILTIN_SCALARS.contains(&name) || BUILTIN_GENERICS.iter().any(|(n, _)| *n == name)
}

/// The type names visible where a type is written.
#[derive(Debug, Default, Clone)]
pub struct TypeNames {
    /// Declared record types.
    pub records: BTreeSet<String>,
    /// Declared aliases (`type Action = "add" | "remove"`), unresolved.
    pub aliases: BTreeMap<String, TypeExpr>,
    /// Type parameters of a stdlib function.
    pub type_params: Vec<String>,
    /// Aliases already resolved, so a mistake inside one is reported once,
    /// at its declaration, not at every use.
    pub resolved: BTreeMap<String, Type>,
}

impl TypeNames {
    fn all_names(&self) -> impl Iterator<Item = &str> {
        BUILTIN_SCALARS
            .iter()
            .copied()
            .chain(BUILTIN_GENERICS.iter().map(|(n, _)| *n))
            .chain(self.records.iter().map(String::as_str))
            .chain(self.aliases.keys().map(String::as_str))
            .chain(self.type_params.iter().map(String::as_str))
    }
}

pub fn resolve_type(te: &TypeExpr, names: &TypeNames, diags: &mut Vec<Diagnostic>) -> Type {
    Resolver {
        names,
        diags,
        alias_stack: Vec::new(),
    }
    .resolve(te)
}

/// Resolves the declaration `type NAME = te`, reporting `te` naming `NAME`.
pub fn resolve_alias(
    name: &str,
    te: &TypeExpr,
    names: &TypeNames,
    diags: &mut Vec<Diagnostic>,
) -> Type {
    Resolver {
        names,
        diags,
        alias_stack: vec![name.to_string()],
    }
    .resolve(te)
}

struct Resolver<'a> {
    names: &'a TypeNames,
    diags: &'a mut Vec<Diagnostic>,
    /// Aliases being expanded, to report `type A = [A]` instead of looping.
    alias_stack: Vec<String>,
}

impl Resolver<'_> {
    fn resolve(&mut self, te: &TypeExpr) -> Type {
        match &te.kind {
            TypeExprKind::Named { name, args } => self.named(te, &name.name, args),
            TypeExprKind::List(t) => Type::list(self.resolve(t)),
            TypeExprKind::Optional(t) => Type::optional(self.resolve(t)),
            TypeExprKind::LitUnion(lits) => {
                Type::Lits(lits.iter().map(|l| l.value.clone()).collect())
            }
            TypeExprKind::Record(fields) => {
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                for f in fields {
                    if !seen.insert(f.name.name.clone()) {
                        self.diags.push(
                            Diagnostic::new(
                                Code::DuplicateField,
                                f.name.span,
                                format!("field `{}` is declared twice", f.name),
                            )
                            .with_label("declared again here"),
                        );
                        continue;
                    }
                    out.push((f.name.name.clone(), self.resolve(&f.ty)));
                }
                Type::record(out)
            }
        }
    }

    fn named(&mut self, te: &TypeExpr, name: &str, args: &[TypeExpr]) -> Type {
        if let Some((_, arity)) = BUILTIN_GENERICS.iter().find(|(n, _)| *n == name) {
            if args.len() != *arity {
                self.diags.push(
                    Diagnostic::new(
                        Code::BadTypeArguments,
                        te.span,
                        format!("`{name}` takes {arity} type argument, {} given", args.len()),
                    )
                    .with_label(if args.is_empty() {
                        "needs a type argument"
                    } else {
                        "too many type arguments"
                    })
                    .with_help(format!("write `{name}<T>`, e.g. `{name}<String>`")),
                );
                return Type::Error;
            }
            let arg = args.first().map_or(Type::Error, |a| self.resolve(a));
            return match name {
                "Map" => Type::map(arg),
                _ => Type::Response(Box::new(arg)),
            };
        }
        if !args.is_empty() {
            self.diags.push(
                Diagnostic::new(
                    Code::BadTypeArguments,
                    te.span,
                    format!("`{name}` takes no type arguments"),
                )
                .with_label(format!("`{name}` is not generic"))
                .with_help(format!("write `{name}`")),
            );
            return Type::Error;
        }
        if let Some(t) = scalar(name) {
            return t;
        }
        if self.names.type_params.iter().any(|p| p == name) {
            return Type::Param(name.into());
        }
        if self.names.records.contains(name) {
            return Type::Named(name.into());
        }
        if let Some(resolved) = self.names.resolved.get(name) {
            return resolved.clone();
        }
        if let Some(alias) = self.names.aliases.get(name) {
            if self.alias_stack.iter().any(|a| a == name) {
                self.diags.push(
                    Diagnostic::new(
                        Code::RecursiveType,
                        te.span,
                        format!("type alias `{name}` refers to itself"),
                    )
                    .with_label(format!("`{name}` again, inside its own definition"))
                    .with_help(
                        "declare a record type (`type Name { ... }`) to nest a type in itself",
                    ),
                );
                return Type::Error;
            }
            self.alias_stack.push(name.to_string());
            let t = self.resolve(alias);
            self.alias_stack.pop();
            return t;
        }
        let mut d = Diagnostic::new(Code::UnknownType, te.span, format!("unknown type `{name}`"))
            .with_label("not a built-in or declared type");
        if let Some(s) = did_you_mean(name, self.names.all_names()) {
            d = d.with_help(format!("did you mean `{s}`?"));
        } else {
            d = d.with_help(format!("declare it with `type {name} {{ ... }}`"));
        }
        self.diags.push(d);
        Type::Error
    }
}

fn scalar(name: &str) -> Option<Type> {
    Some(match name {
        "String" => Type::String,
        "Int" => Type::Int,
        "Float" => Type::Float,
        "Bool" => Type::Bool,
        "Time" => Type::Time,
        "Duration" => Type::Duration,
        "Url" => Type::Url,
        "Secret" => Type::Secret,
        "Bytes" => Type::Bytes,
        "Json" => Type::Json,
        "File" => Type::File,
        _ => return None,
    })
}
