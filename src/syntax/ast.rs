//! The abstract syntax tree of a `.flow` file.
//!
//! Terms: a *declaration* is a top-level item (config block, type, flow,
//! test). Every node carries a [`Span`]: byte offsets into the source, so
//! diagnostics can always point back at the exact text. The tree is plain
//! data; no pest types leak out of `syntax::lower`.
//!
//! Doc comments (`/// ...`) are attached to the declarations they precede as
//! `doc: Option<String>` (lines joined with `\n`, leading `/// ` removed).

use std::fmt;

/// Re-exported so the tree's users keep naming `ast::Span`; it lives in
/// [`crate::span`], below both `syntax` and `diagnostics`.
pub use crate::span::Span;

/// A name as written, with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

// ---------------------------------------------------------------- file

/// One `.flow` file: an integration and its declarations, in source order.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub doc: Option<String>,
    pub integration: Ident,
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Config(ConfigBlock),
    Type(TypeDecl),
    Connection(ConnectionDecl),
    Flow(FlowDecl),
    Test(TestDecl),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Config(c) => c.span,
            Item::Type(t) => t.span,
            Item::Connection(c) => c.span,
            Item::Flow(f) => f.span,
            Item::Test(t) => t.span,
        }
    }
}

// ---------------------------------------------------------------- connections

/// `connection NAME { ... }` (LANGUAGE.md §12): an outside system named
/// once, with how to authenticate to it and how fast it may be called. The
/// options are validated by the checker (`check::connection`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionDecl {
    pub doc: Option<String>,
    pub name: Ident,
    pub options: Vec<OptionEntry>,
    pub span: Span,
}

// ---------------------------------------------------------------- config

/// `config { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigBlock {
    pub entries: Vec<ConfigEntry>,
    pub span: Span,
}

/// `name: Type [= default] [env "NAME"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub doc: Option<String>,
    pub name: Ident,
    pub ty: TypeExpr,
    pub default: Option<Expr>,
    pub env: Option<StrLit>,
    pub span: Span,
}

// ---------------------------------------------------------------- types

/// `type Name { fields }` or `type Name = TypeExpr`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeDecl {
    pub doc: Option<String>,
    pub name: Ident,
    pub body: TypeDeclBody,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeDeclBody {
    Record(Vec<Field>),
    Alias(TypeExpr),
}

/// A record field: `[@rename("wire")] name: Type`.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub doc: Option<String>,
    pub rename: Option<StrLit>,
    pub name: Ident,
    pub ty: TypeExpr,
    pub span: Span,
}

impl Field {
    /// The name the field has on the wire (JSON key).
    pub fn wire_name(&self) -> &str {
        self.rename
            .as_ref()
            .map_or(self.name.name.as_str(), |r| r.value.as_str())
    }
}

/// A type as written in source.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    pub kind: TypeExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeExprKind {
    /// `String`, `Order`, `Map<Int>`, `Response<T>`: a name with optional
    /// type arguments.
    Named { name: Ident, args: Vec<TypeExpr> },
    /// `[T]`
    List(Box<TypeExpr>),
    /// `T?`
    Optional(Box<TypeExpr>),
    /// `"a" | "b"`
    LitUnion(Vec<StrLit>),
    /// `{ id: Int, name: String }`
    Record(Vec<Field>),
}

// ---------------------------------------------------------------- flows

/// `flow name { trigger ...; statements; [on failure { ... }] }`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowDecl {
    pub doc: Option<String>,
    pub name: Ident,
    /// All triggers written (the checker requires exactly one).
    pub triggers: Vec<Trigger>,
    pub body: Block,
    pub on_failure: Option<Block>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// `{ name: expr, ... }` after the trigger's arguments.
    pub options: Vec<OptionEntry>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TriggerKind {
    /// `webhook POST "/path"`
    Webhook { method: Ident, path: StrLit },
    /// `sync GET "/customers/{id}" [timeout 5s]`
    Sync {
        method: Ident,
        path: StrLit,
        timeout: Option<DurationLit>,
    },
    /// `schedule "cron" [tz "Zone"]`
    Cron { expr: StrLit, tz: Option<StrLit> },
    /// `schedule every 5m`
    Every { period: DurationLit },
    /// `files "glob" every 1m`
    Files { glob: StrLit, every: DurationLit },
    /// `email "INBOX" every 1m`: a mailbox polled over IMAP.
    Email { mailbox: StrLit, every: DurationLit },
    /// `subscribe nats "subject"`
    Subscribe { broker: Ident, topic: StrLit },
    /// `deploy`
    Deploy,
    /// `remove`: runs when the integration is retired (`BINARY undeploy`).
    Remove,
    /// `dispatch (input: Type)`
    Dispatch { param: Ident, ty: TypeExpr },
}

impl TriggerKind {
    /// The keyword that names this kind in source.
    pub fn keyword(&self) -> &'static str {
        match self {
            TriggerKind::Webhook { .. } => "webhook",
            TriggerKind::Sync { .. } => "sync",
            TriggerKind::Cron { .. } | TriggerKind::Every { .. } => "schedule",
            TriggerKind::Files { .. } => "files",
            TriggerKind::Email { .. } => "email",
            TriggerKind::Subscribe { .. } => "subscribe",
            TriggerKind::Deploy => "deploy",
            TriggerKind::Remove => "remove",
            TriggerKind::Dispatch { .. } => "dispatch",
        }
    }
}

/// `name: value` inside an options block (trigger options, test config).
/// The trigger option `body:` takes a type (`body: InventoryEvent`), like
/// the call argument `as:`; every other option takes an expression.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionEntry {
    pub name: Ident,
    pub value: ArgValue,
    pub span: Span,
}

/// A duration literal such as `500ms` or `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationLit {
    pub millis: u64,
    pub span: Span,
}

/// A string literal without interpolation (paths, cron expressions, env
/// names). The value has its escapes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrLit {
    pub value: String,
    pub span: Span,
}

// ---------------------------------------------------------------- statements

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    /// `let name = expr`
    Let { name: Ident, value: Expr },
    /// `step name = call [retry N] [backoff MIN..MAX] [timeout D]`
    Step(StepStmt),
    /// `if c { } else if c { } else { }`
    If {
        branches: Vec<(Expr, Block)>,
        otherwise: Option<Block>,
    },
    /// `match e { pat => stmt | { block } }`
    Match { scrutinee: Expr, arms: Vec<StmtArm> },
    /// `for x in list [parallel N] { }`
    For {
        var: Ident,
        iter: Expr,
        parallel: Option<Expr>,
        body: Block,
    },
    /// `dispatch flow(expr)`
    Dispatch { flow: Ident, arg: Expr },
    /// `skip "reason"`
    Skip(Expr),
    /// `fail "reason"`
    Fail(Expr),
    /// `respond status, body [headers { ... }]`
    Respond {
        status: Expr,
        body: Option<Expr>,
        headers: Option<Expr>,
    },
    /// A call used as a statement without `step` (always an error for
    /// effectful calls, and useless for pure ones; kept so the checker can
    /// say so precisely).
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepStmt {
    pub name: Ident,
    pub call: Expr,
    pub retry: Option<Expr>,
    pub backoff: Option<(DurationLit, DurationLit)>,
    pub timeout: Option<DurationLit>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StmtArm {
    pub patterns: Vec<Pattern>,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub kind: PatternKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PatternKind {
    Wildcard,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

// ---------------------------------------------------------------- expressions

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Duration(u64),
    /// A string literal, possibly with `${...}` interpolations.
    Str(Vec<StrPart>),
    List(Vec<Expr>),
    Record(Vec<RecordEntry>),
    /// A bare name: a local, loop variable, step, `config`, `trigger`,
    /// `error`, `env`, a stdlib module, or a flow (in `endpoint(flow)`).
    Name(Ident),
    /// `target.name` or, with `optional`, `target?.name`.
    Field {
        target: Box<Expr>,
        name: Ident,
        optional: bool,
    },
    /// `target[index]`
    Index {
        target: Box<Expr>,
        index: Box<Expr>,
    },
    /// `callee(args)`: the callee is a `Name` (`endpoint(x)`), or a `Field`
    /// (`http.post(...)` module function, or `list.map(...)` method).
    Call {
        callee: Box<Expr>,
        args: Vec<Arg>,
    },
    /// `x => body` or `(a, b) => body`; only valid as a method argument.
    Lambda {
        params: Vec<Ident>,
        body: Box<Expr>,
    },
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `expr as Type`
    As {
        expr: Box<Expr>,
        ty: TypeExpr,
    },
    /// `if c { e } else if c { e } else { e }` as an expression.
    If {
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// `match e { pat => expr, ... }` as an expression.
    Match {
        scrutinee: Box<Expr>,
        arms: Vec<ExprArm>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum StrPart {
    Lit(String),
    Interp(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordEntry {
    pub key: RecordKey,
    pub value: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecordKey {
    Ident(Ident),
    Str(StrLit),
}

impl RecordKey {
    pub fn name(&self) -> &str {
        match self {
            RecordKey::Ident(i) => &i.name,
            RecordKey::Str(s) => &s.value,
        }
    }

    pub fn span(&self) -> Span {
        match self {
            RecordKey::Ident(i) => i.span,
            RecordKey::Str(s) => s.span,
        }
    }
}

/// A call argument: positional (`name: None`) or named (`json: x`).
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: ArgValue,
    pub span: Span,
}

/// Most arguments are expressions; `as:` takes a type.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    Expr(Expr),
    Type(TypeExpr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExprArm {
    pub patterns: Vec<Pattern>,
    pub body: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    /// `a ?? b`
    Coalesce,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Coalesce => "??",
        }
    }
}

// ---------------------------------------------------------------- tests

/// `test "name" { ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct TestDecl {
    pub name: StrLit,
    pub stmts: Vec<TestStmt>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestStmt {
    pub kind: TestStmtKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TestStmtKind {
    /// `config { name: value ... }`: config values for this test.
    Config(Vec<OptionEntry>),
    /// `instance "NAME" [from "PATH.toml"]`: the test runs as instance
    /// NAME, with the config values of the TOML file (relative to the
    /// `.flow` file's folder) under its own `config { ... }`.
    Instance { name: StrLit, file: Option<StrLit> },
    /// `mock http METHOD url => status[, body]`
    MockHttp {
        method: Ident,
        url: Expr,
        status: Expr,
        body: Option<Expr>,
    },
    /// `run flow with expr`
    Run { flow: Ident, input: Expr },
    /// `expect http METHOD url [with json expr] [with headers expr]`
    ExpectHttp {
        method: Ident,
        url: Expr,
        json: Option<Expr>,
        headers: Option<Expr>,
    },
    /// `expect status succeeded|failed|skipped`
    ExpectStatus(Ident),
    /// `expect response STATUS[, body]` (sync flows)
    ExpectResponse { status: Expr, body: Option<Expr> },
}

// ---------------------------------------------------------------- stdlib signatures

/// A stdlib signature file: `module http` followed by function declarations.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleDecl {
    pub doc: Option<String>,
    pub name: Ident,
    pub types: Vec<TypeDecl>,
    pub functions: Vec<FnDecl>,
    pub span: Span,
}

/// `[step] fn name<T>(params) -> Type` followed by `example` lines.
#[derive(Debug, Clone, PartialEq)]
pub struct FnDecl {
    pub doc: Option<String>,
    /// Declared with `step fn`: callable only as a step.
    pub effectful: bool,
    pub name: Ident,
    pub type_params: Vec<Ident>,
    pub params: Vec<Param>,
    pub ret: TypeExpr,
    pub examples: Vec<FnExample>,
    pub span: Span,
}

/// `name: Type [= default]`. A parameter whose type is a bare type
/// parameter (`as: T`) receives a type, not a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub ty: TypeExpr,
    pub default: Option<ParamDefault>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParamDefault {
    Expr(Expr),
    Type(TypeExpr),
}

/// `example CALL => EXPECTED`: run as a test for pure functions, checked for
/// all.
#[derive(Debug, Clone, PartialEq)]
pub struct FnExample {
    pub call: Expr,
    pub expected: Expr,
    pub span: Span,
}
