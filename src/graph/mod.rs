//! `flowc graph`: a picture of what an integration does, as Mermaid (which
//! GitHub renders in Markdown as is), Graphviz DOT, or an SVG drawing of
//! our own (`svg.rs`: what the executions page of every binary shows).
//!
//! Terms: each flow is a *cluster* (a Mermaid `subgraph`) whose first node
//! is its trigger. Statements that shape the run become nodes: steps,
//! `if` conditions and `match` scrutinees (decisions, their edges labelled
//! `yes`/`no` or with the arm's patterns), `for` loops (an `each` edge into
//! the body, the body's ends back to the loop, a `done` edge out),
//! `dispatch` (plus a dashed edge to the dispatched flow's trigger) and the
//! ends `respond`, `skip` and `fail`. `let` bindings and expressions are
//! left out. `on failure` is a second entry node of its flow. Connections
//! are nodes outside the flows (`c<n>`), with a dotted edge from each step
//! that goes `via:` them.
//!
//! The graph is built from the tree and the source text (for the words of
//! conditions and arguments) into a small model, then rendered; node ids
//! are `f<flow>n<node>`, alphanumeric as Mermaid wants them.

use crate::syntax::ast::*;
use crate::syntax::visit::Visitor;

mod svg;

/// Longest text taken from the source for one label.
const MAX_TEXT: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mermaid,
    Dot,
    Svg,
}

/// The graph of a parsed file in the given format.
pub fn render(file: &File, source: &str, format: Format) -> String {
    let model = build(file, source);
    match format {
        Format::Mermaid => mermaid(&model),
        Format::Dot => dot(&model),
        Format::Svg => svg::render(&model),
    }
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Trigger,
    Step,
    Decision,
    Loop,
    Dispatch,
    Respond,
    Skip,
    Fail,
    Connection,
}

#[derive(Debug)]
struct Node {
    id: String,
    /// Lines of the label.
    label: Vec<String>,
    shape: Shape,
}

#[derive(Debug)]
struct Edge {
    from: String,
    to: String,
    label: Option<String>,
}

#[derive(Debug)]
struct Cluster {
    id: String,
    title: String,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
}

#[derive(Debug)]
struct Model {
    name: String,
    clusters: Vec<Cluster>,
    /// Dispatch edges between clusters, drawn dashed.
    links: Vec<Edge>,
    /// `connection` declarations, outside the flows.
    connections: Vec<Node>,
    /// Steps to the connections they go `via:`, drawn dotted.
    uses: Vec<Edge>,
}

/// Where the run goes on from: nodes whose outgoing edge to the next
/// statement is still to be drawn, with that edge's label.
type Exits = Vec<(String, Option<String>)>;

struct Builder<'a> {
    src: &'a str,
    /// The source's comments, left out of labels.
    comments: &'a [crate::fmt::Comment],
    prefix: String,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    /// (dispatch node, flow name)
    dispatches: Vec<(String, String)>,
    /// (step node, connection name)
    vias: Vec<(String, String)>,
    /// The exits of the statements visited so far in the current block.
    exits: Exits,
}

fn build(file: &File, source: &str) -> Model {
    let flows: Vec<&FlowDecl> = file
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Flow(flow) => Some(flow),
            _ => None,
        })
        .collect();
    let trigger_id = |name: &str| {
        flows
            .iter()
            .position(|f| f.name.name == name)
            .map(|i| format!("f{i}n0"))
    };
    let declared: Vec<&ConnectionDecl> = file
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Connection(c) => Some(c),
            _ => None,
        })
        .collect();
    let connection_id = |name: &str| {
        declared
            .iter()
            .position(|c| c.name.name == name)
            .map(|i| format!("c{i}"))
    };
    let connections = declared
        .iter()
        .enumerate()
        .map(|(i, c)| Node {
            id: format!("c{i}"),
            label: connection_label(c, source),
            shape: Shape::Connection,
        })
        .collect();
    let comments = crate::fmt::comments(source);
    let mut clusters = Vec::new();
    let mut links = Vec::new();
    let mut uses = Vec::new();
    for (i, flow) in flows.iter().enumerate() {
        let mut builder = Builder {
            src: source,
            comments: &comments,
            prefix: format!("f{i}"),
            nodes: Vec::new(),
            edges: Vec::new(),
            dispatches: Vec::new(),
            vias: Vec::new(),
            exits: Vec::new(),
        };
        builder.flow(flow);
        for (from, target) in &builder.dispatches {
            if let Some(to) = trigger_id(target) {
                links.push(Edge {
                    from: from.clone(),
                    to,
                    label: None,
                });
            }
        }
        for (from, connection) in &builder.vias {
            if let Some(to) = connection_id(connection) {
                uses.push(Edge {
                    from: from.clone(),
                    to,
                    label: None,
                });
            }
        }
        clusters.push(Cluster {
            id: builder.prefix,
            title: flow.name.name.clone(),
            nodes: builder.nodes,
            edges: builder.edges,
        });
    }
    Model {
        name: file.integration.name.clone(),
        clusters,
        links,
        connections,
        uses,
    }
}

/// `connection crm` and how it authenticates, with its limit:
/// `oauth2 client_credentials · 10 per 1s`.
fn connection_label(c: &ConnectionDecl, source: &str) -> Vec<String> {
    let mut how = Vec::new();
    for option in &c.options {
        let ArgValue::Expr(value) = &option.value else {
            continue;
        };
        match option.name.name.as_str() {
            "oauth2" => how.push(format!(
                "oauth2 {}",
                source
                    .get(value.span.start..value.span.end)
                    .unwrap_or_default()
            )),
            "bearer" | "basic" | "api_key" => how.push(option.name.name.clone()),
            "limit" => {
                if let ExprKind::Record(entries) = &value.kind {
                    let field = |name: &str| {
                        entries
                            .iter()
                            .find(|e| e.key.name() == name)
                            .and_then(|e| source.get(e.value.span.start..e.value.span.end))
                            .unwrap_or("?")
                    };
                    how.push(format!("{} per {}", field("requests"), field("per")));
                }
            }
            _ => {}
        }
    }
    let mut label = vec![format!("connection {}", c.name.name)];
    if !how.is_empty() {
        label.push(shorten(&how.join(" · ")));
    }
    label
}

impl Builder<'_> {
    fn node(&mut self, shape: Shape, label: Vec<String>) -> String {
        let id = format!("{}n{}", self.prefix, self.nodes.len());
        self.nodes.push(Node {
            id: id.clone(),
            label,
            shape,
        });
        id
    }

    fn connect(&mut self, exits: Exits, to: &str) {
        for (from, label) in exits {
            self.edges.push(Edge {
                from,
                to: to.to_string(),
                label,
            });
        }
    }

    /// The source text of `span` on one line, without comments, shortened.
    fn text(&self, span: Span) -> String {
        let mut text = String::new();
        let mut at = span.start;
        let first = self.comments.partition_point(|c| c.start < span.start);
        for c in self
            .comments
            .iter()
            .skip(first)
            .take_while(|c| c.start < span.end)
        {
            text.push_str(self.src.get(at..c.start).unwrap_or_default());
            text.push(' ');
            at = c.end;
        }
        text.push_str(self.src.get(at..span.end).unwrap_or_default());
        let mut words = String::new();
        for word in text.split_whitespace() {
            if !words.is_empty() {
                words.push(' ');
            }
            words.push_str(word);
        }
        shorten(&words)
    }

    /// A reason or status: a plain string literal without its quotes.
    fn value_text(&self, e: &Expr) -> String {
        match &e.kind {
            ExprKind::Str(parts) => match parts.as_slice() {
                [] => String::new(),
                [StrPart::Lit(text)] => shorten(text),
                _ => self.text(e.span),
            },
            _ => self.text(e.span),
        }
    }

    fn flow(&mut self, flow: &FlowDecl) {
        let mut label = vec![match flow.triggers.first() {
            Some(trigger) => self.trigger_label(trigger),
            None => "no trigger".to_string(),
        }];
        if let Some(doc) = flow.doc.as_deref().and_then(|d| d.lines().next()) {
            label.push(shorten(doc));
        }
        let trigger = self.node(Shape::Trigger, label);
        self.block_from(&flow.body, vec![(trigger, None)]);
        if let Some(on_failure) = &flow.on_failure {
            let entry = self.node(Shape::Trigger, vec!["on failure".to_string()]);
            self.block_from(on_failure, vec![(entry, None)]);
        }
    }

    fn trigger_label(&self, trigger: &Trigger) -> String {
        let duration = |d: &DurationLit| self.text(d.span);
        match &trigger.kind {
            TriggerKind::Webhook { method, path } => {
                format!("webhook {} {}", method.name, path.value)
            }
            TriggerKind::Sync {
                method,
                path,
                timeout,
            } => match timeout {
                Some(t) => format!(
                    "sync {} {} timeout {}",
                    method.name,
                    path.value,
                    duration(t)
                ),
                None => format!("sync {} {}", method.name, path.value),
            },
            TriggerKind::Cron { expr, tz } => match tz {
                Some(tz) => format!("schedule {} tz {}", expr.value, tz.value),
                None => format!("schedule {}", expr.value),
            },
            TriggerKind::Every { period } => format!("schedule every {}", duration(period)),
            TriggerKind::Files { glob, every } => {
                format!("files {} every {}", glob.value, duration(every))
            }
            TriggerKind::Email { mailbox, every } => {
                format!("email {} every {}", mailbox.value, duration(every))
            }
            TriggerKind::Subscribe { broker, topic } => {
                format!("subscribe {} {}", broker.name, topic.value)
            }
            TriggerKind::Deploy => "deploy".to_string(),
            TriggerKind::Remove => "remove".to_string(),
            TriggerKind::Dispatch { param, ty } => {
                format!("dispatch ({}: {})", param.name, self.text(ty.span))
            }
        }
    }

    /// Walks `block` entered through `entry`; returns where the run leaves it.
    fn block_from(&mut self, block: &Block, entry: Exits) -> Exits {
        self.exits = entry;
        self.visit_block(block);
        std::mem::take(&mut self.exits)
    }

    fn stmt(&mut self, s: &Stmt, exits: Exits) -> Exits {
        match &s.kind {
            StmtKind::Let { .. } | StmtKind::Expr(_) => exits,
            StmtKind::Step(step) => {
                let callee = match &step.call.kind {
                    ExprKind::Call { callee, .. } => self.text(callee.span),
                    _ => self.text(step.call.span),
                };
                let id = self.node(
                    Shape::Step,
                    vec![format!("step {}: {callee}", step.name.name)],
                );
                if let ExprKind::Call { args, .. } = &step.call.kind {
                    let via = args.iter().find_map(|a| match (&a.name, &a.value) {
                        (Some(n), ArgValue::Expr(v)) if n.name == "via" => match &v.kind {
                            ExprKind::Name(c) => Some(c.name.clone()),
                            _ => None,
                        },
                        _ => None,
                    });
                    if let Some(connection) = via {
                        self.vias.push((id.clone(), connection));
                    }
                }
                self.connect(exits, &id);
                vec![(id, None)]
            }
            StmtKind::If {
                branches,
                otherwise,
            } => {
                let mut out = Vec::new();
                let mut incoming = exits;
                for (i, (cond, body)) in branches.iter().enumerate() {
                    let keyword = if i == 0 { "if" } else { "else if" };
                    let label = format!("{keyword} {}", self.text(cond.span));
                    let id = self.node(Shape::Decision, vec![label]);
                    self.connect(incoming, &id);
                    out.extend(self.block_from(body, vec![(id.clone(), Some("yes".into()))]));
                    incoming = vec![(id, Some("no".into()))];
                }
                match otherwise {
                    Some(body) => out.extend(self.block_from(body, incoming)),
                    None => out.extend(incoming),
                }
                out
            }
            StmtKind::Match { scrutinee, arms } => {
                let label = format!("match {}", self.text(scrutinee.span));
                let id = self.node(Shape::Decision, vec![label]);
                self.connect(exits, &id);
                let mut out = Vec::new();
                for arm in arms {
                    let patterns = arm
                        .patterns
                        .iter()
                        .map(|p| match &p.kind {
                            PatternKind::Str(value) => shorten(value),
                            _ => self.text(p.span),
                        })
                        .collect::<Vec<_>>()
                        .join(" | ");
                    out.extend(self.block_from(&arm.body, vec![(id.clone(), Some(patterns))]));
                }
                out
            }
            StmtKind::For {
                var,
                iter,
                parallel,
                body,
            } => {
                let mut label = format!("for {} in {}", var.name, self.text(iter.span));
                if let Some(parallel) = parallel {
                    label.push_str(&format!(" parallel {}", self.text(parallel.span)));
                }
                let id = self.node(Shape::Loop, vec![label]);
                self.connect(exits, &id);
                let body_exits = self.block_from(body, vec![(id.clone(), Some("each".into()))]);
                self.connect(body_exits, &id);
                vec![(id, Some("done".into()))]
            }
            StmtKind::Dispatch { flow, .. } => {
                let id = self.node(Shape::Dispatch, vec![format!("dispatch {}", flow.name)]);
                self.connect(exits, &id);
                self.dispatches.push((id.clone(), flow.name.clone()));
                vec![(id, None)]
            }
            StmtKind::Skip(reason) => self.end(Shape::Skip, "skip", reason, exits),
            StmtKind::Fail(reason) => self.end(Shape::Fail, "fail", reason, exits),
            StmtKind::Respond { status, .. } => self.end(Shape::Respond, "respond", status, exits),
        }
    }

    fn end(&mut self, shape: Shape, word: &str, value: &Expr, exits: Exits) -> Exits {
        let label = format!("{word} {}", self.value_text(value));
        let label = match shape {
            Shape::Respond => label,
            _ => label.replacen(' ', ": ", 1),
        };
        let id = self.node(shape, vec![label.trim_end().to_string()]);
        self.connect(exits, &id);
        Vec::new()
    }
}

/// The statements of a block are walked in order, each drawn from the
/// exits of the one before; statements with blocks walk them with
/// [`Builder::block_from`]. Expressions are not walked: they draw nothing.
impl<'ast> Visitor<'ast> for Builder<'_> {
    fn visit_stmt(&mut self, stmt: &'ast Stmt) {
        let exits = std::mem::take(&mut self.exits);
        self.exits = self.stmt(stmt, exits);
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_TEXT {
        return text.to_string();
    }
    let mut short: String = text.chars().take(MAX_TEXT - 1).collect();
    short.push('…');
    short
}

// ---------------------------------------------------------------- Mermaid

/// A label inside Mermaid's double quotes: `"` and the characters Mermaid
/// or GitHub's HTML labels would read as syntax become entity codes.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '|' => out.push_str("#124;"),
            '%' => out.push_str("#37;"),
            '`' => out.push_str("#96;"),
            _ => out.push(c),
        }
    }
    out
}

fn mermaid_label(lines: &[String]) -> String {
    let lines: Vec<String> = lines.iter().map(|l| mermaid_text(l)).collect();
    format!("\"{}\"", lines.join("<br/>"))
}

fn mermaid(model: &Model) -> String {
    let mut out = format!("%% integration {}\nflowchart TD\n", model.name);
    for cluster in &model.clusters {
        out.push_str(&format!(
            "  subgraph {} [{}]\n",
            cluster.id,
            mermaid_label(&[format!("flow {}", cluster.title)])
        ));
        for node in &cluster.nodes {
            let label = mermaid_label(&node.label);
            let shaped = match node.shape {
                Shape::Trigger => format!("([{label}])"),
                Shape::Step => format!("[{label}]"),
                Shape::Decision => format!("{{{label}}}"),
                Shape::Loop => format!("{{{{{label}}}}}"),
                Shape::Dispatch => format!("[/{label}/]"),
                Shape::Respond | Shape::Skip | Shape::Fail => format!("({label})"),
                Shape::Connection => format!("[({label})]"),
            };
            out.push_str(&format!("    {}{shaped}\n", node.id));
        }
        for edge in &cluster.edges {
            out.push_str(&format!("    {}\n", mermaid_edge(edge, "-->")));
        }
        out.push_str("  end\n");
    }
    for link in &model.links {
        out.push_str(&format!("  {}\n", mermaid_edge(link, "-.->")));
    }
    for node in &model.connections {
        out.push_str(&format!(
            "  {}[({})]\n",
            node.id,
            mermaid_label(&node.label)
        ));
    }
    for edge in &model.uses {
        out.push_str(&format!("  {}\n", mermaid_edge(edge, "-.-")));
    }
    let ends = |shape: Shape| {
        model
            .clusters
            .iter()
            .flat_map(|c| &c.nodes)
            .filter(|n| n.shape == shape)
            .map(|n| n.id.as_str())
            .collect::<Vec<_>>()
    };
    for (shape, class, style) in [
        (Shape::Respond, "respond", "fill:#e3f2fd,stroke:#1565c0"),
        (Shape::Skip, "skip", "fill:#f5f5f5,stroke:#757575"),
        (Shape::Fail, "fail", "fill:#ffebee,stroke:#c62828"),
    ] {
        let ids = ends(shape);
        if !ids.is_empty() {
            out.push_str(&format!("  classDef {class} {style}\n"));
            out.push_str(&format!("  class {} {class}\n", ids.join(",")));
        }
    }
    out
}

fn mermaid_edge(edge: &Edge, arrow: &str) -> String {
    match &edge.label {
        Some(label) => format!(
            "{} {arrow}|\"{}\"| {}",
            edge.from,
            mermaid_text(label),
            edge.to
        ),
        None => format!("{} {arrow} {}", edge.from, edge.to),
    }
}

// ---------------------------------------------------------------- DOT

fn dot_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot_label(lines: &[String]) -> String {
    let lines: Vec<String> = lines.iter().map(|l| dot_text(l)).collect();
    format!("\"{}\"", lines.join("\\n"))
}

fn dot(model: &Model) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n  \
         edge [fontname=\"Helvetica\", fontsize=10];\n",
        dot_text(&model.name)
    );
    for cluster in &model.clusters {
        out.push_str(&format!(
            "  subgraph cluster_{} {{\n    label={};\n",
            cluster.id,
            dot_label(&[format!("flow {}", cluster.title)])
        ));
        for node in &cluster.nodes {
            let attrs = match node.shape {
                Shape::Trigger => "shape=box, style=\"rounded,bold\"",
                Shape::Step => "shape=box",
                Shape::Decision => "shape=diamond",
                Shape::Loop => "shape=hexagon",
                Shape::Dispatch => "shape=parallelogram",
                Shape::Respond => "shape=box, style=\"rounded,filled\", fillcolor=\"#e3f2fd\"",
                Shape::Skip => "shape=box, style=\"rounded,filled\", fillcolor=\"#f5f5f5\"",
                Shape::Fail => "shape=box, style=\"rounded,filled\", fillcolor=\"#ffebee\"",
                Shape::Connection => "shape=cylinder",
            };
            out.push_str(&format!(
                "    {} [label={}, {attrs}];\n",
                node.id,
                dot_label(&node.label)
            ));
        }
        for edge in &cluster.edges {
            out.push_str(&format!("    {}\n", dot_edge(edge, "")));
        }
        out.push_str("  }\n");
    }
    for link in &model.links {
        out.push_str(&format!("  {}\n", dot_edge(link, "style=dashed")));
    }
    for node in &model.connections {
        out.push_str(&format!(
            "  {} [label={}, shape=cylinder];\n",
            node.id,
            dot_label(&node.label)
        ));
    }
    for edge in &model.uses {
        out.push_str(&format!(
            "  {}\n",
            dot_edge(edge, "style=dotted, arrowhead=none")
        ));
    }
    out.push_str("}\n");
    out
}

fn dot_edge(edge: &Edge, style: &str) -> String {
    let mut attrs = Vec::new();
    if let Some(label) = &edge.label {
        attrs.push(format!("label={}", dot_label(std::slice::from_ref(label))));
    }
    if !style.is_empty() {
        attrs.push(style.to_string());
    }
    if attrs.is_empty() {
        format!("{} -> {};", edge.from, edge.to)
    } else {
        format!("{} -> {} [{}];", edge.from, edge.to, attrs.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mermaid_labels_escape_what_mermaid_reads_as_syntax() {
        assert_eq!(
            mermaid_text(r#"if a == "x" | b <c> #1 & 50%"#),
            "if a == #quot;x#quot; #124; b #lt;c#gt; #35;1 #amp; 50#37;"
        );
    }

    #[test]
    fn long_texts_are_shortened() {
        let long = "x".repeat(100);
        assert_eq!(shorten(&long).chars().count(), MAX_TEXT);
        assert!(shorten(&long).ends_with('…'));
    }
}
