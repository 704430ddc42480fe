//! Lowering of stdlib signature files: `module NAME`, types and `fn`
//! declarations with their examples.

use pest::iterators::Pair;

use super::{inner, span_of, unexpected, Lowerer};
use crate::diagnostics::{Code, Diagnostic};
use crate::syntax::ast::*;
use crate::syntax::parser::Rule;

impl Lowerer<'_> {
    pub(in crate::syntax) fn lower_module_program(&self, pair: Pair<'_, Rule>) -> ModuleDecl {
        self.lower_module_file(inner(pair).required())
    }

    pub(super) fn lower_module_file(&self, pair: Pair<'_, Rule>) -> ModuleDecl {
        let span = Span::new(0, self.source.len());
        let mut walk = inner(pair);
        let header = walk.required();
        let doc = self.doc_above(header.as_span().start());
        let name = self.lower_ident(inner(header).required());
        let mut types = Vec::new();
        let mut functions = Vec::new();
        for decl in walk {
            match decl.as_rule() {
                Rule::type_decl => types.push(self.lower_type_decl(decl)),
                Rule::fn_decl => functions.push(self.lower_fn_decl(decl)),
                rule => unexpected(rule),
            }
        }
        ModuleDecl {
            doc,
            name,
            types,
            functions,
            span,
        }
    }

    pub(super) fn lower_fn_decl(&self, pair: Pair<'_, Rule>) -> FnDecl {
        let span = span_of(&pair);
        let doc = self.doc_above(span.start);
        let mut walk = inner(pair);
        let effectful = walk.next_if(Rule::step_marker).is_some();
        let name = self.lower_ident(walk.required());
        let type_params: Vec<Ident> = walk
            .next_if(Rule::type_params)
            .map(|t| inner(t).map(|n| self.lower_type_name(n)).collect())
            .unwrap_or_default();
        let params = inner(walk.required())
            .map(|p| self.lower_param(p, &type_params))
            .collect();
        let ret = self.lower_type_expr(walk.required());
        let examples = walk.map(|e| self.lower_example(e)).collect();
        FnDecl {
            doc,
            effectful,
            name,
            type_params,
            params,
            ret,
            examples,
            span,
        }
    }

    pub(super) fn lower_param(&self, pair: Pair<'_, Rule>, type_params: &[Ident]) -> Param {
        let span = span_of(&pair);
        let mut walk = inner(pair);
        let name = self.lower_ident(walk.required());
        let ty = self.lower_type_expr(walk.required());
        let takes_type = match &ty.kind {
            TypeExprKind::Named { name, args } => {
                args.is_empty() && type_params.iter().any(|t| t.name == name.name)
            }
            _ => false,
        };
        let default = walk.try_next().map(|d| match (d.as_rule(), takes_type) {
            (Rule::expr, false) => ParamDefault::Expr(self.lower_expr(d)),
            (Rule::type_expr, true) => ParamDefault::Type(self.lower_type_expr(d)),
            (Rule::expr, true) => {
                self.error(
                    Diagnostic::new(Code::Syntax, span_of(&d), "expected a type")
                        .with_label("the default of a type parameter is a type")
                        .with_help("write a type such as `Json`"),
                );
                ParamDefault::Expr(self.lower_expr(d))
            }
            (Rule::type_expr, false) => {
                self.error(
                    Diagnostic::new(Code::Syntax, span_of(&d), "expected an expression")
                        .with_label("a type, but this parameter takes a value"),
                );
                ParamDefault::Type(self.lower_type_expr(d))
            }
            (rule, _) => unexpected(rule),
        });
        Param {
            name,
            ty,
            default,
            span,
        }
    }

    pub(super) fn lower_example(&self, pair: Pair<'_, Rule>) -> FnExample {
        let span = span_of(&pair);
        let mut walk = inner(pair);
        let call = self.lower_expr(walk.required());
        let expected = self.lower_expr(walk.required());
        FnExample {
            call,
            expected,
            span,
        }
    }
}
