//! Types as the checker sees them, and the rules relating them: display,
//! assignability (with the implicit conversions of LANGUAGE.md §4) and the
//! join of two branch types.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    String,
    Int,
    Float,
    Bool,
    Time,
    Duration,
    Url,
    Secret,
    Bytes,
    Json,
    /// The type of the `null` literal; fits any `T?` and `Json`.
    Null,
    List(Box<Type>),
    Optional(Box<Type>),
    Map(Box<Type>),
    /// A literal union `"a" | "b"` (one member: a literal type).
    Lits(BTreeSet<String>),
    /// An inline record, structural.
    Record(Arc<Record>),
    /// A declared record type, nominal; fields in the checker's type table.
    Named(Arc<str>),
    /// `Response<T>` of the http module.
    Response(Box<Type>),
    /// A file handed to a files trigger or returned by `file.*`.
    File,
    /// A type parameter in a stdlib signature.
    Param(Arc<str>),
    /// A lambda (only as a method argument).
    Lambda,
    /// The poisoned type of an expression that already has a diagnostic:
    /// fits everything, so one mistake reports once.
    Error,
}

/// Fields of a record, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub fields: Vec<RecordField>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordField {
    pub name: String,
    pub ty: Type,
}

impl Record {
    pub fn field(&self, name: &str) -> Option<&Type> {
        self.fields.iter().find(|f| f.name == name).map(|f| &f.ty)
    }
}

/// Declared record types by name: what `Type::Named` refers to.
pub type TypeTable = BTreeMap<String, Arc<Record>>;

impl Type {
    pub fn list(t: Type) -> Type {
        Type::List(Box::new(t))
    }

    pub fn optional(t: Type) -> Type {
        match t {
            Type::Optional(_) | Type::Null | Type::Json | Type::Error => t,
            other => Type::Optional(Box::new(other)),
        }
    }

    pub fn map(t: Type) -> Type {
        Type::Map(Box::new(t))
    }

    pub fn record(fields: Vec<(String, Type)>) -> Type {
        Type::Record(Arc::new(Record {
            fields: fields
                .into_iter()
                .map(|(name, ty)| RecordField { name, ty })
                .collect(),
        }))
    }

    pub fn lit(s: &str) -> Type {
        Type::Lits(std::iter::once(s.to_string()).collect())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Type::Error)
    }

    /// The fields of the built-in record types (`Response<T>`, `File`), in
    /// the order hover and completion show them; `None` for other types.
    pub fn builtin_fields(&self) -> Option<Vec<(&'static str, Type)>> {
        match self {
            Type::Response(body) => Some(vec![
                ("status", Type::Int),
                ("body", (**body).clone()),
                ("text", Type::String),
                ("bytes", Type::Bytes),
                ("headers", Type::map(Type::String)),
            ]),
            Type::File => Some(vec![
                ("path", Type::String),
                ("name", Type::String),
                ("size", Type::Int),
                ("modified", Type::Time),
                ("text", Type::String),
                ("bytes", Type::Bytes),
            ]),
            _ => None,
        }
    }

    /// `T?` → `T`; other types unchanged.
    pub fn unwrap_optional(&self) -> &Type {
        match self {
            Type::Optional(t) => t,
            t => t,
        }
    }

    pub fn is_optional(&self) -> bool {
        matches!(self, Type::Optional(_) | Type::Null)
    }

    /// Does the type hold a `Secret` anywhere (so that storing it in a
    /// record or list would leak it)?
    pub fn contains_secret(&self) -> bool {
        match self {
            Type::Secret => true,
            Type::List(t) | Type::Optional(t) | Type::Map(t) => t.contains_secret(),
            Type::Record(r) => r.fields.iter().any(|f| f.ty.contains_secret()),
            _ => false,
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Float)
    }

    pub fn is_stringy(&self) -> bool {
        matches!(self, Type::String | Type::Lits(_) | Type::Url)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::String => f.write_str("String"),
            Type::Int => f.write_str("Int"),
            Type::Float => f.write_str("Float"),
            Type::Bool => f.write_str("Bool"),
            Type::Time => f.write_str("Time"),
            Type::Duration => f.write_str("Duration"),
            Type::Url => f.write_str("Url"),
            Type::Secret => f.write_str("Secret"),
            Type::Bytes => f.write_str("Bytes"),
            Type::Json => f.write_str("Json"),
            Type::Null => f.write_str("null"),
            Type::List(t) => write!(f, "[{t}]"),
            Type::Optional(t) => match **t {
                Type::Lits(_) => write!(f, "({t})?"),
                _ => write!(f, "{t}?"),
            },
            Type::Map(t) => write!(f, "Map<{t}>"),
            Type::Lits(lits) => {
                let parts: Vec<String> = lits.iter().map(|l| format!("{l:?}")).collect();
                f.write_str(&parts.join(" | "))
            }
            Type::Record(r) => {
                let parts: Vec<String> = r
                    .fields
                    .iter()
                    .map(|fl| format!("{}: {}", fl.name, fl.ty))
                    .collect();
                write!(f, "{{ {} }}", parts.join(", "))
            }
            Type::Named(n) => f.write_str(n),
            Type::Response(t) => write!(f, "Response<{t}>"),
            Type::File => f.write_str("File"),
            Type::Param(p) => f.write_str(p),
            Type::Lambda => f.write_str("a lambda"),
            Type::Error => f.write_str("{unknown}"),
        }
    }
}

/// Is a value of type `from` accepted where `to` is expected? Implements the
/// implicit conversions of LANGUAGE.md §4: any value to `Json` (except a
/// `Secret`, which the caller reports as a leak), `T` to `T?`, `Int` to
/// `Float`, `String` to `Secret` and `Url`.
pub fn assignable(from: &Type, to: &Type, table: &TypeTable) -> bool {
    use Type::*;
    match (from, to) {
        (Error, _) | (_, Error) => true,
        (_, Json) => true,
        (Null, Optional(_)) => true,
        (Optional(f), Optional(t)) => assignable(f, t, table),
        (f, Optional(t)) => assignable(f, t, table),
        (Int, Float) => true,
        (String | Lits(_), Secret | Url | String) => true,
        (Url, String | Secret) => true,
        (Lits(a), Lits(b)) => a.is_subset(b),
        (List(a), List(b)) | (Map(a), Map(b)) | (Response(a), Response(b)) => {
            assignable(a, b, table)
        }
        (Record(r), Named(n)) => table
            .get(&**n)
            .is_some_and(|decl| record_fits(r, decl, table)),
        (Named(n), Record(r)) => table
            .get(&**n)
            .is_some_and(|decl| record_fits(decl, r, table)),
        (Record(a), Record(b)) => record_fits(a, b, table),
        (a, b) => a == b,
    }
}

/// Structural check: every field of `to` is present in `from` with a
/// fitting type, or optional in `to`; `from` has no extra fields.
fn record_fits(from: &Record, to: &Record, table: &TypeTable) -> bool {
    let all_present = to.fields.iter().all(|tf| match from.field(&tf.name) {
        Some(ft) => assignable(ft, &tf.ty, table),
        None => tf.ty.is_optional() || tf.ty == Type::Json,
    });
    let no_extra = from.fields.iter().all(|ff| to.field(&ff.name).is_some());
    all_present && no_extra
}

/// The type of a value that may come from either of two branches (if/else,
/// match arms, list elements), or `None` when they have nothing in common.
pub fn join(a: &Type, b: &Type, table: &TypeTable) -> Option<Type> {
    use Type::*;
    match (a, b) {
        (Error, t) | (t, Error) => Some(t.clone()),
        (Null, t) | (t, Null) => Some(Type::optional(t.clone())),
        (Optional(x), y) | (y, Optional(x)) => join(x, y, table).map(Type::optional),
        (Lits(x), Lits(y)) => Some(Lits(x.union(y).cloned().collect())),
        (Lits(_), String) | (String, Lits(_)) => Some(String),
        (Int, Float) | (Float, Int) => Some(Float),
        (List(x), List(y)) => join(x, y, table).map(Type::list),
        (Map(x), Map(y)) => join(x, y, table).map(Type::map),
        (x, y) if assignable(x, y, table) => Some(y.clone()),
        (x, y) if assignable(y, x, table) => Some(x.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TypeTable {
        let mut t = TypeTable::new();
        t.insert(
            "Update".into(),
            Arc::new(Record {
                fields: vec![
                    RecordField {
                        name: "item".into(),
                        ty: Type::String,
                    },
                    RecordField {
                        name: "note".into(),
                        ty: Type::optional(Type::String),
                    },
                ],
            }),
        );
        t
    }

    #[test]
    fn implicit_conversions_go_one_way() {
        let t = table();
        assert!(assignable(&Type::Int, &Type::Float, &t));
        assert!(!assignable(&Type::Float, &Type::Int, &t));
        assert!(assignable(&Type::String, &Type::Secret, &t));
        assert!(!assignable(&Type::Secret, &Type::String, &t));
        assert!(assignable(&Type::Int, &Type::optional(Type::Int), &t));
        assert!(!assignable(&Type::optional(Type::Int), &Type::Int, &t));
        assert!(assignable(&Type::list(Type::Int), &Type::Json, &t));
        assert!(!assignable(&Type::Json, &Type::Int, &t));
    }

    #[test]
    fn record_literal_fits_named_type_field_by_field() {
        let t = table();
        let lit = Type::record(vec![("item".into(), Type::String)]);
        assert!(assignable(&lit, &Type::Named("Update".into()), &t));
        let extra = Type::record(vec![
            ("item".into(), Type::String),
            ("qty".into(), Type::Int),
        ]);
        assert!(!assignable(&extra, &Type::Named("Update".into()), &t));
    }

    #[test]
    fn join_widens() {
        let t = table();
        assert_eq!(join(&Type::Int, &Type::Float, &t), Some(Type::Float));
        assert_eq!(
            join(&Type::Null, &Type::Int, &t),
            Some(Type::optional(Type::Int))
        );
        assert_eq!(join(&Type::Bool, &Type::Int, &t), None);
        assert_eq!(
            join(&Type::lit("a"), &Type::lit("b"), &t).map(|t| t.to_string()),
            Some("\"a\" | \"b\"".to_string())
        );
    }
}
