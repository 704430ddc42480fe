//! The graph as an SVG drawing, laid out here: no Graphviz or script is
//! needed to show it, so every generated binary can serve it to its
//! executions page as a plain image.
//!
//! Layout: each flow is a box of its own, stacked top to bottom. Inside a
//! flow, nodes sit in rows (*layers*): a node is one row below the lowest
//! node with an edge into it. Edges go from a node to a later one in the
//! order the builder made them, except the edges back to a loop, which are
//! drawn as curves on the right. Connections are a row below the flows.
//! Text width is estimated from the number of characters (the drawing has
//! no font metrics), generously enough for a sans-serif font at 12 px.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{Cluster, Edge, Model, Node, Shape};

const CHAR_WIDTH: f64 = 7.0;
const LINE_HEIGHT: f64 = 16.0;
const PAD_X: f64 = 12.0;
const PAD_Y: f64 = 8.0;
const GAP_X: f64 = 24.0;
const GAP_Y: f64 = 36.0;
const MARGIN: f64 = 16.0;
const TITLE_HEIGHT: f64 = 28.0;
const MIN_NODE_WIDTH: f64 = 64.0;

/// Where a node is drawn.
#[derive(Debug, Clone, Copy)]
struct Place {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Place {
    fn center_x(&self) -> f64 {
        self.x + self.w / 2.0
    }
    fn bottom(&self) -> f64 {
        self.y + self.h
    }
    fn right(&self) -> f64 {
        self.x + self.w
    }
    fn middle_y(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// The drawing of `model`.
pub(super) fn render(model: &Model) -> String {
    let mut places: HashMap<&str, Place> = HashMap::new();
    let mut body = String::new();
    let mut y = MARGIN;
    let mut width: f64 = 0.0;
    for cluster in &model.clusters {
        let (w, h) = draw_cluster(cluster, MARGIN, y, &mut places, &mut body);
        width = width.max(w);
        y += h + MARGIN;
    }
    if !model.connections.is_empty() {
        let h = draw_row(&model.connections, MARGIN, y, &mut places, &mut body);
        width = width.max(row_width(&model.connections));
        y += h + MARGIN;
    }
    for link in &model.links {
        draw_link(link, &places, "dispatch", &mut body);
    }
    for edge in &model.uses {
        draw_link(edge, &places, "use", &mut body);
    }
    let width = width + 2.0 * MARGIN + 48.0;
    let title = format!("integration {}", model.name);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{y:.0}\" \
         viewBox=\"0 0 {width:.0} {y:.0}\" role=\"img\" aria-label=\"{t}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<title>{t}</title>\n{STYLE}{body}</svg>\n",
        t = escape(&title),
    )
}

const STYLE: &str = "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
<path d=\"M0,0 L10,5 L0,10 z\" fill=\"#475569\"/></marker></defs>\n\
<style>\
.flow{fill:#f8fafc;stroke:#cbd5e1}\
.node{stroke:#475569;stroke-width:1}\
.trigger{fill:#e0f2fe}.step{fill:#ffffff}.decision{fill:#fef3c7}.loop{fill:#ede9fe}\
.dispatch{fill:#f1f5f9}.respond{fill:#e3f2fd}.skip{fill:#f5f5f5}.fail{fill:#ffebee}\
.connection{fill:#f5f5f4}\
.edge{fill:none;stroke:#475569;marker-end:url(#arrow)}\
.link{fill:none;stroke:#64748b;stroke-dasharray:6 4;marker-end:url(#arrow)}\
.use{fill:none;stroke:#94a3b8;stroke-dasharray:2 3}\
.label{fill:#334155;font-size:11px}\
text{fill:#0f172a}\
</style>\n";

/// Draws one flow at (`x`, `y`); its width and height.
fn draw_cluster<'m>(
    cluster: &'m Cluster,
    x: f64,
    y: f64,
    places: &mut HashMap<&'m str, Place>,
    out: &mut String,
) -> (f64, f64) {
    let rows = layers(cluster);
    let inner_width = rows
        .iter()
        .map(|row| row_width(row))
        .fold(0.0, f64::max)
        .max(text_width(&cluster.title) + 40.0);
    let mut nodes = String::new();
    let mut row_y = y + TITLE_HEIGHT + PAD_Y;
    for row in &rows {
        let mut node_x = x + PAD_X + (inner_width - row_width(row)) / 2.0;
        let height = row.iter().map(|n| node_size(n).1).fold(0.0, f64::max);
        for node in row {
            let (w, h) = node_size(node);
            let place = Place {
                x: node_x,
                y: row_y + (height - h) / 2.0,
                w,
                h,
            };
            draw_node(node, place, &mut nodes);
            places.insert(node.id.as_str(), place);
            node_x += w + GAP_X;
        }
        row_y += height + GAP_Y;
    }
    let width = inner_width + 2.0 * PAD_X;
    let height = row_y - GAP_Y + PAD_Y - y;
    let _ = writeln!(
        out,
        "<g><rect class=\"flow\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{height:.1}\" rx=\"8\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\">flow {}</text>",
        x + PAD_X,
        y + 18.0,
        escape(&cluster.title)
    );
    out.push_str(&nodes);
    let order: HashMap<&str, usize> = cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    for edge in &cluster.edges {
        let forward = order.get(edge.to.as_str()) > order.get(edge.from.as_str());
        draw_edge(edge, places, forward, out);
    }
    out.push_str("</g>\n");
    (width, height)
}

/// The nodes of a flow in rows: each node one row below the lowest node
/// with a forward edge into it (see the module docs).
fn layers(cluster: &Cluster) -> Vec<Vec<&Node>> {
    let index: HashMap<&str, usize> = cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut layer = vec![0usize; cluster.nodes.len()];
    let mut forward: Vec<(usize, usize)> = cluster
        .edges
        .iter()
        .filter_map(|e| Some((*index.get(e.from.as_str())?, *index.get(e.to.as_str())?)))
        .filter(|(from, to)| to > from)
        .collect();
    // Forward edges only go to later nodes: relaxing them in the order of
    // their sources settles every layer in one pass.
    forward.sort_unstable();
    for (from, to) in forward {
        layer[to] = layer[to].max(layer[from] + 1);
    }
    let depth = layer.iter().copied().max().map_or(0, |d| d + 1);
    let mut rows: Vec<Vec<&Node>> = vec![Vec::new(); depth];
    for (node, l) in cluster.nodes.iter().zip(layer) {
        rows[l].push(node);
    }
    rows
}

fn draw_row<'m>(
    nodes: &'m [Node],
    x: f64,
    y: f64,
    places: &mut HashMap<&'m str, Place>,
    out: &mut String,
) -> f64 {
    let mut node_x = x;
    let height = nodes.iter().map(|n| node_size(n).1).fold(0.0, f64::max);
    for node in nodes {
        let (w, h) = node_size(node);
        let place = Place { x: node_x, y, w, h };
        draw_node(node, place, out);
        places.insert(node.id.as_str(), place);
        node_x += w + GAP_X;
    }
    height
}

fn row_width(row: &[impl std::borrow::Borrow<Node>]) -> f64 {
    let widths: f64 = row.iter().map(|n| node_size(n.borrow()).0).sum();
    widths + GAP_X * row.len().saturating_sub(1) as f64
}

fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH
}

fn node_size(node: &Node) -> (f64, f64) {
    let text = node.label.iter().map(|l| text_width(l)).fold(0.0, f64::max);
    // Slanted and pointed shapes need room for their corners.
    let corners = match node.shape {
        Shape::Decision | Shape::Loop | Shape::Dispatch => 28.0,
        _ => 0.0,
    };
    let w = (text + 2.0 * PAD_X + corners).max(MIN_NODE_WIDTH);
    let h = node.label.len().max(1) as f64 * LINE_HEIGHT + 2.0 * PAD_Y;
    (w, h)
}

fn shape_class(shape: Shape) -> &'static str {
    match shape {
        Shape::Trigger => "trigger",
        Shape::Step => "step",
        Shape::Decision => "decision",
        Shape::Loop => "loop",
        Shape::Dispatch => "dispatch",
        Shape::Respond => "respond",
        Shape::Skip => "skip",
        Shape::Fail => "fail",
        Shape::Connection => "connection",
    }
}

fn draw_node(node: &Node, p: Place, out: &mut String) {
    let class = format!("node {}", shape_class(node.shape));
    let (x, y, w, h) = (p.x, p.y, p.w, p.h);
    let outline = match node.shape {
        Shape::Trigger | Shape::Respond | Shape::Skip | Shape::Fail => format!(
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{:.1}\"/>",
            h.min(24.0) / 2.0
        ),
        Shape::Decision | Shape::Loop => {
            let d = 14.0;
            format!(
                "<polygon class=\"{class}\" points=\"{:.1},{y:.1} {:.1},{y:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {x:.1},{:.1}\"/>",
                x + d,
                x + w - d,
                x + w,
                p.middle_y(),
                x + w - d,
                y + h,
                x + d,
                y + h,
                p.middle_y()
            )
        }
        Shape::Dispatch => {
            let d = 14.0;
            format!(
                "<polygon class=\"{class}\" points=\"{:.1},{y:.1} {:.1},{y:.1} {:.1},{:.1} {x:.1},{:.1}\"/>",
                x + d,
                x + w,
                x + w - d,
                y + h,
                y + h
            )
        }
        Shape::Step | Shape::Connection => format!(
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"3\"/>"
        ),
    };
    out.push_str(&outline);
    for (i, line) in node.label.iter().enumerate() {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            p.center_x(),
            y + PAD_Y + LINE_HEIGHT * (i as f64 + 0.75),
            escape(line)
        );
    }
    out.push('\n');
}

/// An edge inside a flow: straight down to a later node, or a curve on
/// the right back to an earlier one (a loop's body going round).
fn draw_edge(edge: &Edge, places: &HashMap<&str, Place>, forward: bool, out: &mut String) {
    let (Some(from), Some(to)) = (places.get(edge.from.as_str()), places.get(edge.to.as_str()))
    else {
        return;
    };
    let (path, label_x, label_y) = if forward {
        let (x1, y1, x2, y2) = (from.center_x(), from.bottom(), to.center_x(), to.y);
        (
            format!("M{x1:.1},{y1:.1} L{x2:.1},{y2:.1}"),
            (x1 + x2) / 2.0 + 4.0,
            (y1 + y2) / 2.0,
        )
    } else if from.center_x() < to.center_x() {
        // Going round on the side the source is on crosses no sibling.
        let (x1, y1, x2, y2) = (from.x, from.middle_y(), to.x, to.middle_y());
        let bend = (x1.min(x2) - 40.0).max(2.0);
        (
            format!("M{x1:.1},{y1:.1} C{bend:.1},{y1:.1} {bend:.1},{y2:.1} {x2:.1},{y2:.1}"),
            bend + 8.0,
            (y1 + y2) / 2.0,
        )
    } else {
        let (x1, y1, x2, y2) = (from.right(), from.middle_y(), to.right(), to.middle_y());
        let bend = x1.max(x2) + 40.0;
        (
            format!("M{x1:.1},{y1:.1} C{bend:.1},{y1:.1} {bend:.1},{y2:.1} {x2:.1},{y2:.1}"),
            bend - 8.0,
            (y1 + y2) / 2.0,
        )
    };
    let _ = write!(out, "<path class=\"edge\" d=\"{path}\"/>");
    if let Some(label) = &edge.label {
        let _ = write!(
            out,
            "<text class=\"label\" x=\"{label_x:.1}\" y=\"{label_y:.1}\">{}</text>",
            escape(label)
        );
    }
    out.push('\n');
}

/// A dispatch to another flow (dashed, to its trigger) or a step's use of
/// a connection (dotted): curves on the left of the drawing.
fn draw_link(edge: &Edge, places: &HashMap<&str, Place>, kind: &str, out: &mut String) {
    let (Some(from), Some(to)) = (places.get(edge.from.as_str()), places.get(edge.to.as_str()))
    else {
        return;
    };
    if kind == "use" {
        // Connections are a row below the flows: straight down to them.
        let _ = writeln!(
            out,
            "<path class=\"use\" d=\"M{:.1},{:.1} L{:.1},{:.1}\"/>",
            from.center_x(),
            from.bottom(),
            to.center_x(),
            to.y
        );
        return;
    }
    let (x1, y1) = (from.x, from.middle_y());
    let (x2, y2) = (to.x, to.middle_y());
    let bend = (x1.min(x2) - 12.0).max(2.0);
    let _ = writeln!(
        out,
        "<path class=\"link\" d=\"M{x1:.1},{y1:.1} C{bend:.1},{y1:.1} {bend:.1},{y2:.1} {x2:.1},{y2:.1}\"/>"
    );
}

/// Text for SVG: the five characters XML gives meaning to.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawing_of(source: &str) -> String {
        let file = crate::syntax::parse_file(source).expect("parses");
        super::super::render(&file, source, super::super::Format::Svg)
    }

    #[test]
    fn every_example_is_drawn_with_every_node() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "flow") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let svg = drawing_of(&source);
            assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
            assert!(svg.ends_with("</svg>\n"));
            // Every node and edge of the model is in the drawing.
            let file = crate::syntax::parse_file(&source).unwrap();
            let model = super::super::build(&file, &source);
            let nodes: usize = model.clusters.iter().map(|c| c.nodes.len()).sum();
            let drawn = svg.matches("class=\"node ").count();
            assert_eq!(drawn, nodes + model.connections.len(), "{}", path.display());
            let edges: usize = model.clusters.iter().map(|c| c.edges.len()).sum();
            assert_eq!(
                svg.matches("class=\"edge\"").count(),
                edges,
                "{}",
                path.display()
            );
            for cluster in &model.clusters {
                assert!(svg.contains(&format!("flow {}<", escape(&cluster.title))));
            }
            // Balanced groups: each flow's `<g>` is closed.
            assert_eq!(svg.matches("<g>").count(), svg.matches("</g>").count());
        }
    }

    #[test]
    fn rows_follow_the_edges_and_loops_go_back() {
        let source = r#"integration t
flow f {
  trigger schedule every 1m
  for x in [1, 2] {
    step a = http.get("http://x.test/${x}")
  }
  step b = http.get("http://x.test/b")
}
"#;
        let file = crate::syntax::parse_file(source).unwrap();
        let model = super::super::build(&file, source);
        let rows = layers(&model.clusters[0]);
        let labels: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.iter().map(|n| n.label[0].as_str()).collect())
            .collect();
        // The body (`each`) and what follows the loop (`done`) both hang
        // from the loop, side by side.
        assert_eq!(
            labels,
            [
                vec!["schedule every 1m"],
                vec!["for x in [1, 2]"],
                vec!["step a: http.get", "step b: http.get"],
            ]
        );
        let svg = drawing_of(source);
        assert!(
            svg.contains(" C"),
            "the body's edge back to the loop is a curve"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"a < b && c > "d" 'e'"#),
            "a &lt; b &amp;&amp; c &gt; &quot;d&quot; &#39;e&#39;"
        );
    }
}
