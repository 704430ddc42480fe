//! The standard library's signatures, read from the `stdlib/*.flow` files
//! embedded in the flowc binary (so `flowc` works from any directory).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::syntax::ast::{self, ParamDefault};

use super::resolve::{resolve_type, TypeNames};
use super::types::Type;

/// The embedded signature files: (file name, source).
pub const FILES: &[(&str, &str)] = &[
    ("amqp.flow", include_str!("../../stdlib/amqp.flow")),
    ("base64.flow", include_str!("../../stdlib/base64.flow")),
    ("crypto.flow", include_str!("../../stdlib/crypto.flow")),
    ("csv.flow", include_str!("../../stdlib/csv.flow")),
    ("email.flow", include_str!("../../stdlib/email.flow")),
    ("file.flow", include_str!("../../stdlib/file.flow")),
    ("http.flow", include_str!("../../stdlib/http.flow")),
    ("json.flow", include_str!("../../stdlib/json.flow")),
    ("kafka.flow", include_str!("../../stdlib/kafka.flow")),
    ("mqtt.flow", include_str!("../../stdlib/mqtt.flow")),
    ("nats.flow", include_str!("../../stdlib/nats.flow")),
    ("pdf.flow", include_str!("../../stdlib/pdf.flow")),
    ("redis.flow", include_str!("../../stdlib/redis.flow")),
    ("sns.flow", include_str!("../../stdlib/sns.flow")),
    ("sql.flow", include_str!("../../stdlib/sql.flow")),
    ("sqs.flow", include_str!("../../stdlib/sqs.flow")),
    ("state.flow", include_str!("../../stdlib/state.flow")),
    ("time.flow", include_str!("../../stdlib/time.flow")),
    ("xml.flow", include_str!("../../stdlib/xml.flow")),
];

#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    pub doc: Option<String>,
    pub functions: BTreeMap<String, Arc<FnSig>>,
}

#[derive(Debug, Clone)]
pub struct FnSig {
    pub module: String,
    pub name: String,
    pub doc: Option<String>,
    /// Callable only as a `step`.
    pub effectful: bool,
    pub params: Vec<ParamSig>,
    pub ret: Type,
    pub decl: ast::FnDecl,
}

impl FnSig {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }

    pub fn param(&self, name: &str) -> Option<&ParamSig> {
        self.params.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct ParamSig {
    pub name: String,
    pub ty: Type,
    /// The parameter takes a type (`as: T`), not a value.
    pub takes_type: bool,
    pub has_default: bool,
    /// For a type parameter with a default (`as: T = Json`): that type.
    pub default_type: Option<Type>,
}

#[derive(Debug)]
pub struct Stdlib {
    pub modules: BTreeMap<String, Module>,
}

impl Stdlib {
    /// The embedded stdlib, parsed once. A signature file that does not
    /// parse is a bug of flowc, caught by the stdlib tests.
    pub fn get() -> &'static Stdlib {
        static STDLIB: OnceLock<Stdlib> = OnceLock::new();
        STDLIB.get_or_init(|| Stdlib::load(FILES))
    }

    pub fn load(files: &[(&str, &str)]) -> Stdlib {
        let mut modules = BTreeMap::new();
        for (_, source) in files {
            let Ok(decl) = crate::syntax::parse_module(source) else {
                continue;
            };
            let module = lower_module(&decl);
            modules.insert(module.name.clone(), module);
        }
        Stdlib { modules }
    }

    pub fn function(&self, module: &str, name: &str) -> Option<&FnSig> {
        self.modules.get(module)?.functions.get(name).map(|f| &**f)
    }
}

fn lower_module(decl: &ast::ModuleDecl) -> Module {
    let mut functions = BTreeMap::new();
    for f in &decl.functions {
        let names = TypeNames {
            type_params: f.type_params.iter().map(|p| p.name.clone()).collect(),
            ..TypeNames::default()
        };
        let mut sink = Vec::new();
        let params = f
            .params
            .iter()
            .map(|p| {
                let ty = resolve_type(&p.ty, &names, &mut sink);
                let takes_type = matches!(ty, Type::Param(_));
                let default_type = match &p.default {
                    Some(ParamDefault::Type(t)) => Some(resolve_type(t, &names, &mut sink)),
                    _ => None,
                };
                ParamSig {
                    name: p.name.name.clone(),
                    ty,
                    takes_type,
                    has_default: p.default.is_some(),
                    default_type,
                }
            })
            .collect();
        let ret = resolve_type(&f.ret, &names, &mut sink);
        functions.insert(
            f.name.name.clone(),
            Arc::new(FnSig {
                module: decl.name.name.clone(),
                name: f.name.name.clone(),
                doc: f.doc.clone(),
                effectful: f.effectful,
                params,
                ret,
                decl: f.clone(),
            }),
        );
    }
    Module {
        name: decl.name.name.clone(),
        doc: decl.doc.clone(),
        functions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signature_file_parses_and_resolves() {
        for (file, source) in FILES {
            let decl = crate::syntax::parse_module(source)
                .unwrap_or_else(|d| panic!("{file} does not parse: {d:?}"));
            let names_ok = decl.functions.iter().all(|f| f.doc.is_some());
            assert!(names_ok, "{file}: every function needs a doc comment");
            assert!(
                decl.functions.iter().all(|f| !f.examples.is_empty()),
                "{file}: every function needs an example"
            );
        }
        let std = Stdlib::get();
        assert_eq!(std.modules.len(), FILES.len());
        let post = std.function("http", "post").expect("http.post");
        assert!(post.effectful);
        assert!(post.param("as").is_some_and(|p| p.takes_type));
    }
}
