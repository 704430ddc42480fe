//! Lexical scopes of a flow body: `let`s, steps, loop variables and lambda
//! parameters, with use tracking for the unused-binding warning.

use crate::syntax::ast::Span;

use super::types::Type;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    Let,
    Step,
    LoopVar,
    LambdaParam,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub name: String,
    pub ty: Type,
    pub span: Span,
    pub kind: BindingKind,
    pub used: bool,
}

#[derive(Debug, Default)]
pub struct Scopes {
    stack: Vec<Vec<Binding>>,
}

impl Scopes {
    pub fn push(&mut self) {
        self.stack.push(Vec::new());
    }

    /// Leaves the innermost scope, returning its bindings.
    pub fn pop(&mut self) -> Vec<Binding> {
        self.stack.pop().unwrap_or_default()
    }

    pub fn bind(&mut self, name: &str, ty: Type, span: Span, kind: BindingKind) {
        if self.stack.is_empty() {
            self.push();
        }
        if let Some(scope) = self.stack.last_mut() {
            scope.push(Binding {
                name: name.to_string(),
                ty,
                span,
                kind,
                used: false,
            });
        }
    }

    /// The visible binding of `name`, innermost first.
    pub fn find(&self, name: &str) -> Option<&Binding> {
        self.stack
            .iter()
            .rev()
            .flat_map(|s| s.iter().rev())
            .find(|b| b.name == name)
    }

    /// Looks up `name` and marks it used.
    pub fn use_name(&mut self, name: &str) -> Option<Type> {
        let b = self
            .stack
            .iter_mut()
            .rev()
            .flat_map(|s| s.iter_mut().rev())
            .find(|b| b.name == name)?;
        b.used = true;
        Some(b.ty.clone())
    }

    /// Every visible name, for suggestions.
    pub fn visible(&self) -> Vec<String> {
        self.stack
            .iter()
            .flat_map(|s| s.iter().map(|b| b.name.clone()))
            .collect()
    }
}
