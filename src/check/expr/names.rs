//! Names in expressions: locals, the ambient values (`trigger`, `env`,
//! `error`, `config`) and why an unknown name is not visible; binding a
//! new name.

use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::{self, Expr, ExprKind};

use super::AMBIENT;
use crate::check::scope::BindingKind;
use crate::check::suggest::did_you_mean;
use crate::check::types::Type;
use crate::check::Checker;

impl Checker<'_> {
    pub(super) fn name(&mut self, name: &ast::Ident) -> Type {
        if let Some(t) = self.scopes.use_name(&name.name) {
            return t;
        }
        match name.name.as_str() {
            "trigger" => match &self.flow {
                Some(f) => f.trigger_type.clone(),
                None => {
                    self.error(Diagnostic::new(
                        Code::UnknownName,
                        name.span,
                        "`trigger` is only available inside a flow",
                    ));
                    Type::Error
                }
            },
            "env" => Type::record(vec![("version".into(), Type::String)]),
            "error" => {
                if self.flow.as_ref().is_some_and(|f| f.in_on_failure) {
                    Type::record(vec![
                        ("message".into(), Type::String),
                        ("step".into(), Type::optional(Type::String)),
                        ("execution_id".into(), Type::String),
                    ])
                } else {
                    self.error(
                        Diagnostic::new(
                            Code::ErrorOutsideFailure,
                            name.span,
                            "`error` is only available inside `on failure { ... }`",
                        )
                        .with_label("no run has failed here")
                        .with_help(
                            "add `on failure { ... }` at the end of the flow to handle failed runs",
                        ),
                    );
                    Type::Error
                }
            }
            "config" => {
                self.error(
                    Diagnostic::new(
                        Code::ConfigNotValue,
                        name.span,
                        "`config` is not a value by itself",
                    )
                    .with_label("needs an entry name, `config.NAME`")
                    .with_help("name an entry, e.g. `config.erp_url`"),
                );
                Type::Error
            }
            n if self.std.modules.contains_key(n) => {
                self.error(
                    Diagnostic::new(
                        Code::NotCallable,
                        name.span,
                        format!("`{n}` is a stdlib module, not a value"),
                    )
                    .with_label("a module")
                    .with_help(format!(
                        "call one of its functions, e.g. `{n}.{}(...)`",
                        self.first_fn(n)
                    )),
                );
                Type::Error
            }
            n if self.program.flows.contains_key(n) => {
                self.error(
                    Diagnostic::new(
                        Code::UnknownName,
                        name.span,
                        format!("flow `{n}` is not a value"),
                    )
                    .with_help(format!(
                        "use `endpoint({n})` for its URL, or `dispatch {n}(...)` to start it"
                    )),
                );
                Type::Error
            }
            n => {
                let mut candidates = self.scopes.visible();
                candidates.extend(AMBIENT.iter().map(|s| s.to_string()));
                let mut d =
                    Diagnostic::new(Code::UnknownName, name.span, format!("unknown name `{n}`"))
                        .with_label("not defined here");
                if let Some((span, label, help)) = self.binding_elsewhere(name) {
                    d = d.with_secondary(span, label).with_help(help);
                } else if let Some(s) = did_you_mean(n, candidates.iter().map(String::as_str)) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.error(d);
                Type::Error
            }
        }
    }

    /// For a name the flow binds, but not where it is used: where it is
    /// bound, a label for that place, and why it is not visible.
    fn binding_elsewhere(&self, name: &ast::Ident) -> Option<(ast::Span, &'static str, String)> {
        let flow = self.flow.as_ref()?;
        let b = flow.bindings.iter().find(|b| b.name == name.name)?;
        let n = &name.name;
        Some(if flow.in_on_failure && !b.in_on_failure {
            (
                b.span,
                "defined in the flow's body",
                "`on failure` cannot see the body's `let`s and steps; `error.step` and `error.message` say what failed".to_string(),
            )
        } else if b.span.start > name.span.start {
            (
                b.span,
                "defined here, after its use",
                format!("move this use below the definition of `{n}`"),
            )
        } else if b.kind == BindingKind::LoopVar {
            (
                b.span,
                "the loop variable of this `for`",
                format!("`{n}` exists only inside its loop"),
            )
        } else {
            (
                b.span,
                "defined here, inside a block",
                format!("`{n}` exists only inside the block that defines it"),
            )
        })
    }

    fn first_fn(&self, module: &str) -> String {
        self.std
            .modules
            .get(module)
            .and_then(|m| m.functions.keys().next().cloned())
            .unwrap_or_default()
    }

    /// Is `e` the bare name of something other than a local (`config`,
    /// a stdlib module)?
    pub(super) fn is_global(&self, e: &Expr, global: &str) -> bool {
        matches!(&e.kind, ExprKind::Name(n) if n.name == global && self.scopes.find(global).is_none())
    }

    /// Binds a name, reporting a clash with a visible binding.
    pub(in crate::check) fn bind_checked(
        &mut self,
        name: &ast::Ident,
        ty: Type,
        kind: BindingKind,
    ) {
        if let Some(prev) = self.scopes.find(&name.name) {
            let prev_span = prev.span;
            self.error(
                Diagnostic::new(
                    Code::DuplicateBinding,
                    name.span,
                    format!("`{name}` is already defined"),
                )
                .with_label("defined again here")
                .with_secondary(prev_span, "first defined here")
                .with_help("choose another name: a name is bound once in a flow"),
            );
        } else if AMBIENT.contains(&name.name.as_str()) {
            // Not bound: later uses keep meaning the built-in.
            self.error(
                Diagnostic::new(
                    Code::DuplicateBinding,
                    name.span,
                    format!("`{name}` would hide the built-in `{name}`"),
                )
                .with_label(format!("`{name}` is built in"))
                .with_help(format!("choose another name, such as `{name}_value`")),
            );
            return;
        }
        self.scopes.bind(&name.name, ty, name.span, kind);
    }
}
