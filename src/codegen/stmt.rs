//! Statements → Rust statements inside a flow's `async move` block.
//!
//! A flow body returns `Result<Outcome, RunError>`. The body of a
//! `for ... parallel N` loop runs as a future per item that returns
//! `Result<Option<Outcome>, RunError>` instead (`None`: go on), so `skip`
//! there says `Some(..)` and the loop ends the run after it; `self.parallel`
//! counts the enclosing parallel loops to pick the right form.

use crate::syntax::ast::{Arg, ArgValue, Block, Expr, ExprKind, StepStmt, Stmt, StmtKind, StrPart};

/// `max_pages:` of `http.pages` when not written (LANGUAGE.md §13).
const DEFAULT_MAX_PAGES: usize = 1000;

use super::expr::{local, patterns_cond};
use super::{lit, names_read, reads, vec_of, Gen};
use crate::syntax::visit::for_each_expr;

/// Whether every path through `block` ends in `return` (`respond`, `skip`,
/// `fail`) as rustc sees it: code after it would be unreachable. A `match`
/// is generated as an `if` chain without `else`, which rustc never counts.
pub fn always_returns(block: &Block) -> bool {
    block.stmts.iter().any(|stmt| match &stmt.kind {
        StmtKind::Skip(_) | StmtKind::Fail(_) | StmtKind::Respond { .. } => true,
        StmtKind::If {
            branches,
            otherwise: Some(otherwise),
        } => branches.iter().all(|(_, b)| always_returns(b)) && always_returns(otherwise),
        _ => false,
    })
}

impl Gen<'_> {
    pub fn block(&mut self, block: &Block) -> String {
        let mark = self.locals.len();
        self.depth += 1;
        let mut out = String::new();
        for stmt in &block.stmts {
            out.push_str(&self.stmt(stmt));
            out.push('\n');
        }
        self.depth -= 1;
        self.locals.truncate(mark);
        self.owned_steps.retain(|&i| i < mark);
        out
    }

    fn stmt(&mut self, stmt: &Stmt) -> String {
        match &stmt.kind {
            StmtKind::Let { name, value } => {
                // A place (`trigger.body.updates`, `config.x`, a field of
                // another local) is bound by reference: runs never change
                // their values, so copying one would only cost a clone and
                // a drop. Uses of the local clone or borrow it as before
                // (`v.clone()` of a `&Value` clones the value).
                let v = match self.place(value) {
                    Some(place) => place,
                    None => self.expr(value),
                };
                self.locals.push(name.name.clone());
                format!("let {} = {v};", self.binding(&name.name))
            }
            StmtKind::Step(step) => self.step(step),
            StmtKind::If {
                branches,
                otherwise,
            } => {
                let mut out = String::new();
                for (i, (cond, body)) in branches.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" else ");
                    }
                    let c = self.borrowed(cond);
                    let b = self.block(body);
                    out.push_str(&format!("if ops::truthy({c}) {{\n{b}}}"));
                }
                if let Some(o) = otherwise {
                    let b = self.block(o);
                    out.push_str(&format!(" else {{\n{b}}}"));
                }
                out
            }
            StmtKind::Match { scrutinee, arms } => {
                let s = self.expr(scrutinee);
                let mut out = format!("{{ let scrutinee = {s};\n");
                for (i, arm) in arms.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" else ");
                    }
                    let cond = patterns_cond(&arm.patterns);
                    let b = self.block(&arm.body);
                    out.push_str(&format!("if {cond} {{\n{b}}}"));
                }
                out.push_str("\n}");
                out
            }
            StmtKind::For {
                var,
                iter,
                parallel,
                body,
            } => match parallel {
                _ if crate::check::is_pages_call(iter) => self.pages_for(&var.name, iter, body),
                _ if crate::check::csv_stream_call(iter).is_some() => {
                    self.csv_stream_for(&var.name, iter, body)
                }
                Some(limit) => self.parallel_for(&var.name, iter, limit, body),
                None => {
                    let items = self.borrowed(iter);
                    self.locals.push(var.name.clone());
                    let b = self.block(body);
                    self.locals.pop();
                    let var = self.binding(&var.name);
                    // Steps in the body (they use `cx`) are told the
                    // index, which makes their journal keys distinct.
                    if reads(&b, "cx") {
                        format!(
                            "for (index, {var}) in ops::iter({items})?.into_iter().enumerate() {{\nlet cx = cx.with_index(index);\n{b}}}",
                        )
                    } else {
                        format!("for {var} in ops::iter({items})? {{\n{b}}}")
                    }
                }
            },
            StmtKind::Dispatch { flow, arg } => {
                let v = self.expr(arg);
                format!("cx.dispatch({}, {v}).await?;", lit(&flow.name))
            }
            StmtKind::Skip(reason) => {
                let r = self.reason(reason);
                self.end(&format!("Outcome::Skipped({r})"))
            }
            StmtKind::Fail(reason) => {
                // `RunError::fail` takes a `&str` as well as a `String`.
                let r = match &reason.kind {
                    ExprKind::Str(parts) => match parts.as_slice() {
                        [StrPart::Lit(text)] => lit(text),
                        _ => self.reason(reason),
                    },
                    _ => self.reason(reason),
                };
                format!("return Err(RunError::fail({r}));")
            }
            StmtKind::Respond {
                status,
                body,
                headers,
            } => {
                // A literal status is checked (100..=599) before run time.
                let s = match status.kind {
                    ExprKind::Int(code) if (100..=599).contains(&code) => code.to_string(),
                    _ => format!("ops::status({})?", self.borrowed(status)),
                };
                // A typed body answers in wire names, like a `json:` body.
                let b = match body {
                    Some(b) => match self.wire_schema(b) {
                        Some(schema) => format!("{schema}.encode(&{})", self.expr(b)),
                        None => match self.movable(b, status, headers.as_ref()) {
                            Some(moved) => moved,
                            None => self.expr(b),
                        },
                    },
                    None => "Value::Null".to_string(),
                };
                let h = match headers.as_ref().map(|h| &h.kind) {
                    Some(ExprKind::Record(entries)) => {
                        let items: Vec<String> = entries
                            .iter()
                            .map(|e| {
                                format!(
                                    "({}.to_string(), {})",
                                    lit(e.key.name()),
                                    self.expr(&e.value)
                                )
                            })
                            .collect();
                        vec_of(&items)
                    }
                    _ => "Vec::new()".into(),
                };
                self.end(&format!(
                    "Outcome::Respond {{ status: {s}, body: {b}, headers: {h} }}"
                ))
            }
            // The checker rejects expression statements; nothing to run.
            StmtKind::Expr(_) => String::new(),
        }
    }

    /// The body of a `respond` moved out of a step's output instead of
    /// copied (`respond 200, sent.body`, the usual end of a sync flow: the
    /// copy of a large upstream answer would cost as much as reading it).
    /// Only where nothing can use the output afterwards or meanwhile: in
    /// the flow's own body (not a loop, branch or parallel item, which may
    /// go on or borrow it), with a literal status and no headers, which
    /// are evaluated after the body and might read the output.
    fn movable(&self, body: &Expr, status: &Expr, headers: Option<&Expr>) -> Option<String> {
        if self.depth != 1 || self.parallel > 0 || headers.is_some() {
            return None;
        }
        if !matches!(status.kind, ExprKind::Int(code) if (100..=599).contains(&code)) {
            return None;
        }
        let mut path = Vec::new();
        let mut e = body;
        while let ExprKind::Field { target, name, .. } = &e.kind {
            if self.is_file_content(target, &name.name) {
                return None;
            }
            path.push(lit(&name.name));
            e = target;
        }
        let ExprKind::Name(root) = &e.kind else {
            return None;
        };
        let index = self.locals.iter().rposition(|l| *l == root.name)?;
        if !self.owned_steps.contains(&index) {
            return None;
        }
        let output = local(&root.name);
        if path.is_empty() {
            return Some(output);
        }
        path.reverse();
        Some(format!("ops::take({output}, &[{}])", path.join(", ")))
    }

    /// A `skip` or `fail` reason as a `String`: a string expression's text
    /// directly, any other value as `ops::display` shows it.
    fn reason(&mut self, reason: &Expr) -> String {
        match &reason.kind {
            ExprKind::Str(parts) => self.text(parts),
            _ => format!("ops::display({})", self.borrowed(reason)),
        }
    }

    /// The Rust variable of a binding, `_v_...` when nothing reads it.
    fn binding(&self, name: &str) -> String {
        if self.is_read(name) {
            local(name)
        } else {
            format!("_{}", local(name))
        }
    }

    /// `return` of a run's outcome, in the form the enclosing body needs.
    fn end(&self, outcome: &str) -> String {
        if self.parallel > 0 {
            format!("return Ok(Some({outcome}));")
        } else {
            format!("return Ok({outcome});")
        }
    }

    fn step(&mut self, step: &StepStmt) -> String {
        let ExprKind::Call { callee, args } = &step.call.kind else {
            return String::new();
        };
        let ExprKind::Field { target, name, .. } = &callee.kind else {
            return String::new();
        };
        let ExprKind::Name(module) = &target.kind else {
            return String::new();
        };
        let call_args = self.args(&module.name, &name.name, args);
        let mut opts = String::new();
        if let Some(r) = &step.retry {
            if let ExprKind::Int(n) = r.kind {
                opts.push_str(&format!("retry: {n}, "));
            }
        }
        if let Some((min, max)) = &step.backoff {
            opts.push_str(&format!(
                "backoff_min: Duration::from_millis({}), backoff_max: Duration::from_millis({}), ",
                min.millis, max.millis
            ));
        }
        if let Some(t) = &step.timeout {
            opts.push_str(&format!(
                "timeout: Some(Duration::from_millis({})), ",
                t.millis
            ));
        }
        let opts = if opts.is_empty() {
            "StepOptions::default()".to_string()
        } else {
            format!("StepOptions {{ {opts}..StepOptions::default() }}")
        };
        self.locals.push(step.name.name.clone());
        if self.depth == 1 && self.parallel == 0 {
            self.owned_steps.push(self.locals.len() - 1);
        }
        let call = format!(
            "cx.step({}, {opts}, {}, {call_args}).await?;",
            lit(&step.name.name),
            lit(&format!("{}.{}", module.name, name.name)),
        );
        if self.is_read(&step.name.name) {
            format!("let {} = {call}", local(&step.name.name))
        } else {
            call
        }
    }

    /// `for page in http.pages(URL, ..., next: p => ..., max_pages: N)`:
    /// each page is the step `page[i]` (an `http.get`), then the body runs
    /// with `i` in its steps' identities, then `next` gives the following
    /// page's URL (`null`: done). A resumed run finds the pages it fetched
    /// in its journal.
    fn pages_for(&mut self, var: &str, iter: &Expr, body: &Block) -> String {
        let ExprKind::Call { args, .. } = &iter.kind else {
            return String::new();
        };
        let named = |a: &&Arg, n: &str| a.name.as_ref().is_some_and(|x| x.name == n);
        let url = args
            .iter()
            .find(|a| a.name.is_none() || named(a, "url"))
            .and_then(|a| match &a.value {
                ArgValue::Expr(e) => Some(self.expr(e)),
                ArgValue::Type(_) => None,
            })
            .unwrap_or_else(|| "Value::Null".into());
        let request: Vec<Arg> = args
            .iter()
            .filter(|a| {
                !(a.name.is_none() || named(a, "url") || named(a, "next") || named(a, "max_pages"))
            })
            .cloned()
            .collect();
        let call_args = self.args("http", "get", &request);
        let max_pages = match args
            .iter()
            .find(|a| named(a, "max_pages"))
            .map(|a| &a.value)
        {
            Some(ArgValue::Expr(e)) => format!("ops::limit({})?", self.borrowed(e)),
            _ => DEFAULT_MAX_PAGES.to_string(),
        };
        self.locals.push(var.to_string());
        let next = match args.iter().find(|a| named(a, "next")).map(|a| &a.value) {
            Some(ArgValue::Expr(Expr {
                kind: ExprKind::Lambda { params, body },
                ..
            })) => {
                let param = params.first().map_or("_".to_string(), |p| p.name.clone());
                self.push_local(&param);
                let value = self.expr(body);
                self.pop_local(&param);
                if self.is_read(&param) {
                    format!("{{ let {} = &page_value; {value} }}", local(&param))
                } else {
                    value
                }
            }
            _ => "Value::Null".into(),
        };
        let b = self.block(body);
        self.locals.pop();
        let page_cx = if reads(&b, "cx") {
            "let cx = cx.with_index(page_index);"
        } else {
            ""
        };
        format!(
            "{{ let mut page_url: Value = {url}; let mut page_index = 0usize; let max_pages: usize = {max_pages};
            while !page_url.is_null() && page_index < max_pages {{
                let page_value = cx.with_index(page_index).step({name}, StepOptions::default(), \"http.get\", {call_args}.set_arg(0, page_url.clone())).await?;
                let next_url = ops::next_page(&page_url, {next})?;
                {{ let {v} = page_value; {page_cx} {b} }}
                page_url = next_url;
                page_index += 1;
            }} }}",
            v = self.binding(var),
            name = lit(var),
        )
    }

    /// `for row in csv.rows(file, as: T)` / `for rows in csv.chunks(file,
    /// size: N, as: T)`: the runtime's `CsvRows` reads the file a block at
    /// a time while the body runs per row or chunk, with the loop index in
    /// its steps' identities as in any loop.
    fn csv_stream_for(&mut self, var: &str, iter: &Expr, body: &Block) -> String {
        let ExprKind::Call { callee, args } = &iter.kind else {
            return String::new();
        };
        let function = match &callee.kind {
            ExprKind::Field { name, .. } if name.name == "chunks" => "chunks",
            _ => "rows",
        };
        let named = |n: &str| {
            args.iter()
                .find(|a| a.name.as_ref().is_some_and(|x| x.name == n))
                .map(|a| &a.value)
        };
        let mut positional = args.iter().filter(|a| a.name.is_none()).map(|a| &a.value);
        let file = named("file").or_else(|| positional.next());
        let size = named("size").or_else(|| positional.next());
        let expr = |gen: &mut Self, v: Option<&ArgValue>| match v {
            Some(ArgValue::Expr(e)) => gen.expr(e),
            _ => "Value::Null".to_string(),
        };
        let mut open = format!("Args::new().arg({})", expr(self, file));
        for option in ["delimiter", "auth"] {
            if let Some(v) = named(option) {
                open.push_str(&format!(".kw({}, {})", lit(option), expr(self, Some(v))));
            }
        }
        if let Some(ArgValue::Type(te)) = named("as") {
            open.push_str(&format!(".decode_as({})", self.types.schema(te)));
        }
        let next = match function {
            "chunks" => format!("rows.next_chunk(&{}).await?", expr(self, size)),
            _ => "rows.next_row().await?".to_string(),
        };
        self.locals.push(var.to_string());
        let b = self.block(body);
        self.locals.pop();
        let row_cx = if reads(&b, "cx") {
            "let cx = cx.with_index(row_index);"
        } else {
            ""
        };
        format!(
            "{{ let mut rows = flow_runtime::steps::CsvRows::open(\"csv.{function}\", {open}).await?;
            let mut row_index = 0usize;
            while let Some(row_value) = {next} {{
                {{ let {v} = row_value; {row_cx} {b} }}
                row_index += 1;
            }} }}",
            v = self.binding(var),
        )
    }

    /// `for x in xs parallel N { ... }`: each item's body runs as its own
    /// future (with its own loop index in step identities), at most N at a
    /// time; the first `skip` or failure ends the run.
    fn parallel_for(
        &mut self,
        var: &str,
        iter: &crate::syntax::ast::Expr,
        limit: &crate::syntax::ast::Expr,
        body: &Block,
    ) -> String {
        let items = self.borrowed(iter);
        let limit = self.borrowed(limit);
        // Locals visible in the body are cloned into the closure (shadowed
        // in a block, so the originals stay usable after the loop), then
        // into each item's future.
        let read_in_body = names_read(|visit| for_each_expr(body, visit));
        let clones: String = self
            .locals
            .iter()
            .filter(|l| read_in_body.contains(*l))
            .map(|l| format!("let {0} = {0}.clone();", local(l)))
            .collect();
        self.locals.push(var.to_string());
        self.parallel += 1;
        let b = self.block(body);
        self.parallel -= 1;
        self.locals.pop();
        let go_on = if always_returns(body) { "" } else { "Ok(None)" };
        let end = if self.parallel > 0 {
            "return Ok(Some(outcome));"
        } else {
            "return Ok(outcome);"
        };
        // Steps in the body (they use `cx`) are told the item's index.
        let (index, outer_cx, item_cx) = if reads(&b, "cx") {
            (
                "index",
                "let cx = cx.clone();",
                "let cx = cx.with_index(index);",
            )
        } else {
            ("_index", "", "")
        };
        format!(
            "let outcome = {{ let items = ops::iter({items})?; let limit = ops::limit({limit})?;
            {outer_cx} {clones}
            parallel(items, limit, move |{index}, {v}| {{
                {item_cx} {clones}
                async move {{
                    {b}
                    {go_on}
                }}
            }}).await? }};
            if let Some(outcome) = outcome {{ {end} }}",
            v = self.binding(var),
        )
    }
}
