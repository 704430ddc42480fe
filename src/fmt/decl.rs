//! The file and its declarations: `integration`, config, types, flows with
//! their triggers, tests. Top-level items are separated by one blank line;
//! config entries, type fields and options are one per line, without
//! commas.

use super::printer::Printer;
use crate::syntax::ast::*;

impl Printer<'_> {
    pub(super) fn file(&mut self, file: &File) {
        // The `integration` keyword, for the comments above it.
        let name_start = file.integration.span.start;
        let keyword = self
            .src
            .get(..name_start)
            .and_then(|before| before.rfind("integration"))
            .unwrap_or(name_start);
        self.line(keyword, false);
        self.write("integration ");
        self.write(&file.integration.name);
        self.done(file.integration.span.end);
        for item in &file.items {
            self.line(item.span().start, true);
            match item {
                Item::Config(config) => self.config(config),
                Item::Type(decl) => self.type_decl(decl),
                Item::Connection(decl) => self.connection(decl),
                Item::Flow(flow) => self.flow(flow),
                Item::Test(test) => self.test(test),
            }
            self.done(item.span().end);
        }
    }

    /// `{`, then one line per entry printed by `entry`, then `}` at the
    /// source offset `close`; `{}` when there is nothing inside.
    fn entries<T>(
        &mut self,
        items: &[T],
        span: impl Fn(&T) -> Span,
        open: usize,
        close: usize,
        mut entry: impl FnMut(&mut Self, &T),
    ) {
        if items.is_empty() && !self.has_comments(Span::new(open, close)) {
            self.write("{}");
            self.done(close + 1);
            return;
        }
        self.open("{", open);
        for item in items {
            let span = span(item);
            self.line(span.start, false);
            entry(self, item);
            self.done(span.end);
        }
        self.close(close, "}");
    }

    fn config(&mut self, config: &ConfigBlock) {
        self.write("config ");
        let open = self.skip_trivia(config.span.start + "config".len());
        let close = config.span.end.saturating_sub(1);
        self.entries(
            &config.entries,
            |e| e.span,
            open,
            close,
            |p, entry| {
                p.write(&format!("{}: ", entry.name.name));
                let default = entry.default.as_ref().and_then(|d| p.flat_expr(d));
                let env = entry.env.as_ref().map(|e| format!(" env {}", p.str_lit(e)));
                let trail = default.as_ref().map_or(0, |d| d.chars().count() + 3)
                    + env.as_ref().map_or(0, |e| e.chars().count());
                p.type_expr(&entry.ty, trail);
                if let Some(default) = &entry.default {
                    p.write(" = ");
                    p.expr(default, env.as_ref().map_or(0, |e| e.chars().count()));
                }
                if let Some(env) = env {
                    p.write(&env);
                }
            },
        );
    }

    fn type_decl(&mut self, decl: &TypeDecl) {
        self.write(&format!("type {} ", decl.name.name));
        match &decl.body {
            TypeDeclBody::Record(fields) => {
                let open = self.skip_trivia(decl.name.span.end);
                let close = decl.span.end.saturating_sub(1);
                self.fields(fields, open, close);
            }
            TypeDeclBody::Alias(ty) => {
                self.write("= ");
                self.type_expr(ty, 0);
            }
        }
    }

    fn flow(&mut self, flow: &FlowDecl) {
        self.write(&format!("flow {} ", flow.name.name));
        let open = self.skip_trivia(flow.name.span.end);
        self.open("{", open);
        for trigger in &flow.triggers {
            self.line(trigger.span.start, false);
            self.trigger(trigger);
            self.done(trigger.span.end);
        }
        for stmt in &flow.body.stmts {
            self.line(stmt.span.start, false);
            self.stmt(stmt);
        }
        if let Some(on_failure) = &flow.on_failure {
            self.line(on_failure.span.start, false);
            self.write("on failure ");
            self.block(on_failure, false, 0);
        }
        self.close(flow.span.end.saturating_sub(1), "}");
    }

    fn trigger(&mut self, trigger: &Trigger) {
        let head = match &trigger.kind {
            TriggerKind::Webhook { method, path } => {
                format!("webhook {} {}", method.name, self.str_lit(path))
            }
            TriggerKind::Sync {
                method,
                path,
                timeout,
            } => {
                let mut head = format!("sync {} {}", method.name, self.str_lit(path));
                if let Some(timeout) = timeout {
                    head.push_str(&format!(" timeout {}", self.number_at(timeout.span.start)));
                }
                head
            }
            TriggerKind::Cron { expr, tz } => {
                let mut head = format!("schedule {}", self.str_lit(expr));
                if let Some(tz) = tz {
                    head.push_str(&format!(" tz {}", self.str_lit(tz)));
                }
                head
            }
            TriggerKind::Every { period } => {
                format!("schedule every {}", self.number_at(period.span.start))
            }
            TriggerKind::Files { glob, every } => format!(
                "files {} every {}",
                self.str_lit(glob),
                self.number_at(every.span.start)
            ),
            TriggerKind::Email { mailbox, every } => format!(
                "email {} every {}",
                self.str_lit(mailbox),
                self.number_at(every.span.start)
            ),
            TriggerKind::Subscribe { broker, topic } => {
                format!("subscribe {} {}", broker.name, self.str_lit(topic))
            }
            TriggerKind::Deploy => "deploy".to_string(),
            TriggerKind::Remove => "remove".to_string(),
            TriggerKind::Dispatch { param, ty } => {
                let ty = self.flat_type(ty).unwrap_or_default();
                format!("dispatch ({}: {ty})", param.name)
            }
        };
        self.write("trigger ");
        self.write(&head);
        if trigger.options.is_empty() {
            return;
        }
        self.write(" ");
        let close = trigger.span.end.saturating_sub(1);
        let open = self.first_brace(trigger.span.start).unwrap_or(close);
        self.entries(&trigger.options, |o| o.span, open, close, Self::option);
    }

    fn connection(&mut self, decl: &ConnectionDecl) {
        self.write(&format!("connection {} ", decl.name.name));
        let open = self.skip_trivia(decl.name.span.end);
        let close = decl.span.end.saturating_sub(1);
        self.entries(&decl.options, |o| o.span, open, close, Self::option);
    }

    /// `name: value` of trigger options, connections and test config.
    fn option(&mut self, option: &OptionEntry) {
        self.write(&format!("{}: ", option.name.name));
        match &option.value {
            ArgValue::Expr(e) => self.expr(e, 0),
            ArgValue::Type(t) => self.type_expr(t, 0),
        }
    }

    fn test(&mut self, test: &TestDecl) {
        self.write(&format!("test {} ", self.str_lit(&test.name)));
        let open = self.skip_trivia(test.name.span.end);
        let close = test.span.end.saturating_sub(1);
        self.entries(&test.stmts, |s| s.span, open, close, Self::test_stmt);
    }

    fn test_stmt(&mut self, s: &TestStmt) {
        match &s.kind {
            TestStmtKind::Config(options) => {
                self.write("config ");
                let open = self.skip_trivia(s.span.start + "config".len());
                let close = s.span.end.saturating_sub(1);
                self.entries(options, |o| o.span, open, close, Self::option);
            }
            TestStmtKind::Instance { name, file } => {
                self.write(&format!("instance {}", self.str_lit(name)));
                if let Some(file) = file {
                    self.write(&format!(" from {}", self.str_lit(file)));
                }
            }
            TestStmtKind::MockHttp {
                method,
                url,
                status,
                body,
            } => {
                self.write(&format!("mock http {} ", method.name));
                self.expr(url, 4);
                self.write(" => ");
                self.expr(status, usize::from(body.is_some()));
                if let Some(body) = body {
                    self.write(", ");
                    self.expr(body, 0);
                }
            }
            TestStmtKind::Run { flow, input } => {
                self.write(&format!("run {} with ", flow.name));
                self.expr(input, 0);
            }
            TestStmtKind::ExpectHttp {
                method,
                url,
                json,
                headers,
            } => {
                self.write(&format!("expect http {} ", method.name));
                self.expr(url, 0);
                if let Some(json) = json {
                    self.write(" with json ");
                    self.expr(json, 0);
                }
                if let Some(headers) = headers {
                    self.write(" with headers ");
                    self.expr(headers, 0);
                }
            }
            TestStmtKind::ExpectStatus(status) => {
                self.write(&format!("expect status {}", status.name));
            }
            TestStmtKind::ExpectResponse { status, body } => {
                self.write("expect response ");
                self.expr(status, usize::from(body.is_some()));
                if let Some(body) = body {
                    self.write(", ");
                    self.expr(body, 0);
                }
            }
        }
    }
}
