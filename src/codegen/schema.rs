//! Written types → Rust expressions that build `flow_runtime::Schema`s.
//!
//! Schemas are built from the AST's `TypeExpr` rather than the checker's
//! types because they need the wire names of `@rename`d fields. Named record
//! types become `Schema::Ref("Name")` (registered once at start-up, which
//! also allows recursive types); aliases are expanded in place.

use std::collections::BTreeMap;

use crate::syntax::ast::{Field, TypeDeclBody, TypeExpr, TypeExprKind};

use super::{lit, vec_of};

/// Declared types by name, for expanding aliases.
pub struct TypeDecls<'a> {
    pub decls: BTreeMap<&'a str, &'a TypeDeclBody>,
}

impl TypeDecls<'_> {
    /// A Rust expression of type `flow_runtime::Schema` for `te`.
    pub fn schema(&self, te: &TypeExpr) -> String {
        self.schema_depth(te, 0)
    }

    fn schema_depth(&self, te: &TypeExpr, depth: usize) -> String {
        // The checker rejects recursive aliases; the depth bound only keeps
        // a bug from turning into a stack overflow.
        if depth > 64 {
            return "Schema::Json".into();
        }
        match &te.kind {
            TypeExprKind::Named { name, args } => {
                let arg = |i: usize| {
                    args.get(i).map_or_else(
                        || "Schema::Json".to_string(),
                        |a| self.schema_depth(a, depth + 1),
                    )
                };
                match name.name.as_str() {
                    "String" => "Schema::String".into(),
                    "Int" => "Schema::Int".into(),
                    "Float" => "Schema::Float".into(),
                    "Bool" => "Schema::Bool".into(),
                    "Time" => "Schema::Time".into(),
                    "Duration" => "Schema::Duration".into(),
                    "Url" => "Schema::Url".into(),
                    "Secret" => "Schema::Secret".into(),
                    "Bytes" => "Schema::Bytes".into(),
                    "Json" | "File" | "Response" => "Schema::Json".into(),
                    "Map" => format!("Schema::map({})", arg(0)),
                    other => match self.decls.get(other) {
                        Some(TypeDeclBody::Alias(alias)) => self.schema_depth(alias, depth + 1),
                        _ => format!("Schema::Ref({})", lit(other)),
                    },
                }
            }
            TypeExprKind::List(t) => format!("Schema::list({})", self.schema_depth(t, depth + 1)),
            TypeExprKind::Optional(t) => {
                format!("Schema::optional({})", self.schema_depth(t, depth + 1))
            }
            TypeExprKind::LitUnion(lits) => {
                let items: Vec<String> = lits.iter().map(|l| lit(&l.value)).collect();
                format!("Schema::Literals({})", vec_of(&items))
            }
            TypeExprKind::Record(fields) => self.record(fields, depth),
        }
    }

    /// `Schema::Record(vec![FieldSchema::new("a", ...), ...])`.
    pub fn record(&self, fields: &[Field], depth: usize) -> String {
        let items: Vec<String> = fields
            .iter()
            .map(|f| {
                let schema = self.schema_depth(&f.ty, depth + 1);
                match &f.rename {
                    Some(wire) => format!(
                        "FieldSchema::renamed({}, {}, {schema})",
                        lit(&f.name.name),
                        lit(&wire.value)
                    ),
                    None => format!("FieldSchema::new({}, {schema})", lit(&f.name.name)),
                }
            })
            .collect();
        format!("Schema::Record({})", vec_of(&items))
    }
}
