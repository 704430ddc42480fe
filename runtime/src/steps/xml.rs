//! `xml.encode` / `xml.decode` (LANGUAGE.md §8).
//!
//! Decoding reads the whole document into a small tree of [`Element`]s
//! (local name, attributes, child elements, text) with quick-xml's pull
//! parser, then walks that tree along the `as:` [`Schema`]:
//!
//! - the root element is the value of type `T`; its name is not checked;
//! - a record field is the attribute of the field's wire name (`@rename`),
//!   else the child elements of that name; a field whose wire name is
//!   `#text` takes the element's own text (`<price currency="EUR">9.5</price>`);
//! - a list field takes either the repeated elements of its name
//!   (`<line/><line/>` for `line: [Line]`) or one element of its name whose
//!   children are the items (`<lines><line/><line/></lines>`); one element
//!   counts as such a wrapper when it has child elements and none of them is
//!   a field of the item type (or the item is not a record), or when it is
//!   empty (`<lines/>` is an empty list). No element at all is an empty list;
//! - text is converted to the field's type as CSV cells are
//!   ([`Schema::decode_text_cells`]): `Int`, `Float`, `Bool`, `Duration`,
//!   `Time`, ... parse from the text (trimmed, except for `String` and
//!   `Secret`; `Bytes` ignores the line breaks of wrapped base64; a `Time`
//!   may also be an `xs:date` or an `xs:dateTime` without offset, taken as
//!   UTC);
//! - an optional field may be absent, and an empty element (no attributes,
//!   no children, blank text) is `null` for it;
//! - `as: Json` gives a generic value: a text-only element is its text, any
//!   other element an object of its attributes and children by name, with
//!   repeated names as lists and non-blank text under `#text`.
//!
//! Names are matched without their namespace prefix (`<ns:order>` is
//! `order`, `xsi:type` is `type`) and `xmlns` declarations are not fields.
//! Entities: the five predefined ones and character references; a DTD is
//! skipped and its entities are not expanded (an unknown `&name;` is an
//! error). Errors name the element path with 1-based indices of list items
//! (`/order/lines/line[2]/qty: expected Int, got "abc"`, attributes as
//! `/order/@id`), or for malformed XML the line and column.
//!
//! Encoding writes elements only: one per object field (in the object's key
//! order), a list as repeated elements named after the field, scalars as
//! escaped text, `null` fields omitted.

use std::borrow::Cow;
use std::sync::Arc;

use quick_xml::escape::{partial_escape, resolve_predefined_entity};
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};

use crate::core::error::RunError;
use crate::core::ops::{display, format_time};
use crate::core::schema::{describe_value, lookup_type, FieldSchema, Schema};
use crate::engine::ctx::Args;

/// Deepest element nesting accepted (decoding and encoding recurse).
const MAX_DEPTH: usize = 256;

/// `xml.encode(value, root:)`: `value` as the content of the `root` element.
pub(super) fn encode(args: &Args) -> Result<Value, RunError> {
    let root = match args.param(1, "root") {
        Value::Null => "root",
        v => v
            .as_str()
            .ok_or_else(|| RunError::new("xml.encode: `root` must be a String"))?,
    };
    let mut out = String::new();
    let mut path = String::new();
    write_element(&mut out, root, args.param(0, "value"), &mut path, 0)
        .map_err(|e| RunError::new(format!("xml.encode: {e}")))?;
    Ok(Value::String(out))
}

fn write_element(
    out: &mut String,
    name: &str,
    value: &Value,
    path: &mut String,
    depth: usize,
) -> Result<(), String> {
    let len = path.len();
    path.push('/');
    path.push_str(name);
    if !is_xml_name(name) {
        return Err(format!("{path}: {name:?} is not a valid XML element name"));
    }
    if depth > MAX_DEPTH {
        return Err(format!("{path}: nested more than {MAX_DEPTH} levels deep"));
    }
    match value {
        Value::Object(fields) if fields.values().any(|v| !v.is_null()) => {
            open_tag(out, name);
            for (key, v) in fields {
                match v {
                    Value::Null => {}
                    Value::Array(items) => {
                        for item in items {
                            write_element(out, key, item, path, depth + 1)?;
                        }
                    }
                    _ => write_element(out, key, v, path, depth + 1)?,
                }
            }
            close_tag(out, name);
        }
        Value::Array(items) if !items.is_empty() => {
            // Only a root value or a list inside a list: its items are `<item>`s.
            open_tag(out, name);
            for item in items {
                write_element(out, "item", item, path, depth + 1)?;
            }
            close_tag(out, name);
        }
        Value::Null | Value::Object(_) | Value::Array(_) => empty_tag(out, name),
        _ => {
            let text = display(value);
            if text.is_empty() {
                empty_tag(out, name);
            } else {
                open_tag(out, name);
                push_text(out, &text, path)?;
                close_tag(out, name);
            }
        }
    }
    path.truncate(len);
    Ok(())
}

fn open_tag(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
}

fn close_tag(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn empty_tag(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
    out.push_str("/>");
}

/// Escapes `&`, `<`, `>`; keeps a carriage return as `&#13;` (a parser would
/// turn a raw one into a line feed); refuses characters XML 1.0 cannot carry.
fn push_text(out: &mut String, text: &str, path: &str) -> Result<(), String> {
    if let Some(c) = text
        .chars()
        .find(|&c| c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(format!(
            "{path}: the character U+{:04X} cannot appear in XML",
            u32::from(c)
        ));
    }
    let escaped = partial_escape(text);
    if escaped.contains('\r') {
        out.push_str(&escaped.replace('\r', "&#13;"));
    } else {
        out.push_str(&escaped);
    }
    Ok(())
}

/// An XML 1.0 name (letters, digits, `_`, `-`, `.`, `:`; not starting with a
/// digit, `-` or `.`).
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// `xml.decode(text, as: T)`.
pub(super) fn decode(args: &Args) -> Result<Value, RunError> {
    let text = args
        .param(0, "text")
        .as_str()
        .ok_or_else(|| RunError::new("xml.decode: `text` must be a String"))?;
    let root = parse(text).map_err(|e| RunError::new(format!("xml.decode: {e}")))?;
    let mut path = format!("/{}", root.name);
    let schema = args.as_schema.as_ref().unwrap_or(&Schema::Json);
    decode_element(schema, &root, &mut path, 0)
        .map_err(|e| RunError::new(format!("xml.decode: {e}")))
}

/// One element: local name, attributes (local names, `xmlns` left out),
/// child elements and the concatenated text directly inside it.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    /// No attributes, no children, blank text: `<note/>`, `<note> </note>`.
    fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.children.is_empty() && self.text.trim().is_empty()
    }

    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a whole document into its root [`Element`].
fn parse(text: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let pos = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
                return Err(malformed(text, pos, &e.to_string()));
            }
        };
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed(
                        text,
                        at,
                        &format!("elements nested more than {MAX_DEPTH} levels deep"),
                    ));
                }
                if stack.is_empty() && root.is_some() {
                    return Err(malformed(text, at, "a second root element"));
                }
                stack.push(element(&start, text, at)?);
            }
            Event::Empty(start) => {
                let el = element(&start, text, at)?;
                attach(el, &mut stack, &mut root).map_err(|e| malformed(text, at, e))?;
            }
            Event::End(_) => {
                // quick-xml checks that end tags match their start tags.
                if let Some(el) = stack.pop() {
                    attach(el, &mut stack, &mut root).map_err(|e| malformed(text, at, e))?;
                }
            }
            Event::Text(t) => {
                let s = t
                    .xml10_content()
                    .map_err(|e| malformed(text, at, &e.to_string()))?;
                add_text(&mut stack, &s).map_err(|e| malformed(text, at, e))?;
            }
            Event::CData(c) => {
                let s = c
                    .xml10_content()
                    .map_err(|e| malformed(text, at, &e.to_string()))?;
                add_text(&mut stack, &s).map_err(|e| malformed(text, at, e))?;
            }
            Event::GeneralRef(r) => {
                let resolved: Cow<'_, str> = match r.resolve_char_ref() {
                    Ok(Some(c)) => Cow::Owned(c.to_string()),
                    Ok(None) => {
                        let name = r
                            .decode()
                            .map_err(|e| malformed(text, at, &e.to_string()))?;
                        match resolve_predefined_entity(&name) {
                            Some(s) => Cow::Borrowed(s),
                            None => {
                                return Err(malformed(
                                    text,
                                    at,
                                    &format!("unknown entity `&{name};`"),
                                ))
                            }
                        }
                    }
                    Err(e) => return Err(malformed(text, at, &e.to_string())),
                };
                add_text(&mut stack, &resolved).map_err(|e| malformed(text, at, e))?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(malformed(
            text,
            text.len(),
            &format!("the document ends inside <{}>", open.name),
        ));
    }
    root.ok_or_else(|| malformed(text, text.len(), "no root element"))
}

/// The element of a start tag that begins at byte `at` of `text`.
fn element(start: &BytesStart<'_>, text: &str, at: usize) -> Result<Element, String> {
    let name = utf8(start.local_name().into_inner()).map_err(|e| malformed(text, at, e))?;
    let mut attributes = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| {
            // Attribute errors count from the byte after `<`.
            let (pos, what) = attr_error(&e);
            malformed(text, at.saturating_add(1).saturating_add(pos), &what)
        })?;
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let key = utf8(attr.key.local_name().into_inner()).map_err(|e| malformed(text, at, e))?;
        let value = attr
            .unescape_value()
            .map_err(|e| malformed(text, at, &format!("attribute `{key}`: {e}")))?;
        attributes.push((key, value.into_owned()));
    }
    Ok(Element {
        name,
        attributes,
        ..Element::default()
    })
}

/// Where in the tag an attribute error is, and what it is (quick-xml's
/// message without its `position N:` prefix).
fn attr_error(e: &AttrError) -> (usize, String) {
    let pos = match *e {
        AttrError::ExpectedEq(p)
        | AttrError::ExpectedValue(p)
        | AttrError::UnquotedValue(p)
        | AttrError::ExpectedQuote(p, _)
        | AttrError::Duplicated(p, _) => p,
    };
    let what = match e {
        AttrError::Duplicated(..) => "duplicated attribute".to_string(),
        other => {
            let message = other.to_string();
            match message.split_once(": ") {
                Some((_, rest)) => rest.to_string(),
                None => message,
            }
        }
    };
    (pos, what)
}

fn utf8(bytes: &[u8]) -> Result<String, &'static str> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| "a name that is not UTF-8")
}

fn attach(
    el: Element,
    stack: &mut [Element],
    root: &mut Option<Element>,
) -> Result<(), &'static str> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_some() => return Err("a second root element"),
        None => *root = Some(el),
    }
    Ok(())
}

fn add_text(stack: &mut [Element], s: &str) -> Result<(), &'static str> {
    match stack.last_mut() {
        Some(el) => el.text.push_str(s),
        None if s.trim().is_empty() => {}
        None => return Err("text outside the root element"),
    }
    Ok(())
}

/// `malformed XML at line L, column C: what`, from a byte offset.
fn malformed(text: &str, pos: usize, what: &str) -> String {
    let pos = pos.min(text.len());
    let before = text.as_bytes().get(..pos).unwrap_or_default();
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
        .chars()
        .count()
        + 1;
    format!("malformed XML at line {line}, column {column}: {what}")
}

/// A named type's definition; other schemas as they are.
fn resolve(schema: &Schema) -> Result<Cow<'_, Schema>, String> {
    let mut current: Cow<'_, Schema> = Cow::Borrowed(schema);
    for _ in 0..MAX_DEPTH {
        let Schema::Ref(name) = &*current else {
            return Ok(current);
        };
        let found: Arc<Schema> =
            lookup_type(name).ok_or_else(|| format!("{name} is a type unknown to this binary"))?;
        current = Cow::Owned((*found).clone());
    }
    Err("a type that refers to itself".into())
}

fn decode_element(
    schema: &Schema,
    el: &Element,
    path: &mut String,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("{path}: nested more than {MAX_DEPTH} levels deep"));
    }
    let resolved = resolve(schema).map_err(|e| format!("{path}: {e}"))?;
    match &*resolved {
        Schema::Json => Ok(generic(el)),
        Schema::Optional(_) if el.is_empty() => Ok(Value::Null),
        Schema::Optional(inner) => decode_element(inner, el, path, depth + 1),
        Schema::Record(fields) => {
            let mut out = Map::new();
            for field in fields {
                let v = decode_field(field, el, path, depth)?;
                out.insert(field.name.to_string(), v);
            }
            Ok(Value::Object(out))
        }
        Schema::List(item) => decode_items(item, &el.children, path, depth),
        Schema::Map(inner) => {
            let mut out = Map::new();
            for (name, value) in &el.attributes {
                let len = path.len();
                path.push_str("/@");
                path.push_str(name);
                let v = decode_text(inner, value, path)?;
                path.truncate(len);
                out.insert(name.clone(), v);
            }
            for child in &el.children {
                let len = path.len();
                path.push('/');
                path.push_str(&child.name);
                if out.contains_key(&child.name) {
                    return Err(format!("{path}: repeated, expected one entry of a Map"));
                }
                let v = decode_element(inner, child, path, depth + 1)?;
                path.truncate(len);
                out.insert(child.name.clone(), v);
            }
            Ok(Value::Object(out))
        }
        scalar => {
            if !el.children.is_empty() {
                return Err(format!(
                    "{path}: expected {}, got an element with child elements",
                    schema.describe()
                ));
            }
            decode_text(scalar, &el.text, path)
        }
    }
}

/// One record field of `el`: its attribute, its child elements or (`#text`)
/// the element's text.
fn decode_field(
    field: &FieldSchema,
    el: &Element,
    path: &mut String,
    depth: usize,
) -> Result<Value, String> {
    let name = field.wire_name;
    let len = path.len();
    if name == "#text" {
        path.push_str("/text()");
        let v = decode_text(&field.schema, &el.text, path)?;
        path.truncate(len);
        return Ok(v);
    }
    if let Some(value) = el.attribute(name) {
        path.push_str("/@");
        path.push_str(name);
        let v = decode_text(&field.schema, value, path)?;
        path.truncate(len);
        return Ok(v);
    }
    let matches: Vec<&Element> = el.children.iter().filter(|c| c.name == name).collect();
    path.push('/');
    path.push_str(name);
    let resolved = resolve(&field.schema).map_err(|e| format!("{path}: {e}"))?;
    let (optional, inner) = match &*resolved {
        Schema::Optional(inner) => (true, resolve(inner).map_err(|e| format!("{path}: {e}"))?),
        other => (false, Cow::Borrowed(other)),
    };
    let v = match (&*inner, matches.as_slice()) {
        (_, []) if optional => Value::Null,
        (Schema::Json, []) => Value::Null,
        (Schema::List(_), []) => Value::Array(Vec::new()),
        (_, []) => {
            return Err(format!(
                "{path}: missing element, expected {}",
                field.schema.describe()
            ))
        }
        (Schema::List(item), [one])
            if is_wrapper(one, item).map_err(|e| format!("{path}: {e}"))? =>
        {
            decode_items(item, &one.children, path, depth + 1)?
        }
        (Schema::List(item), _) => {
            path.truncate(len);
            decode_repeated(item, &matches, path, name, depth + 1)?
        }
        (_, [one]) => decode_element(&field.schema, one, path, depth + 1)?,
        (Schema::Json, many) => Value::Array(many.iter().map(|el| generic(el)).collect()),
        (_, many) => {
            return Err(format!(
                "{path}: expected one element ({}), got {}",
                field.schema.describe(),
                many.len()
            ))
        }
    };
    path.truncate(len);
    Ok(v)
}

/// Whether the only element of a list field's name wraps the items
/// (`<lines><line/></lines>`) rather than being the one item.
fn is_wrapper(el: &Element, item: &Schema) -> Result<bool, String> {
    if el.children.is_empty() {
        return Ok(el.is_empty());
    }
    Ok(match &*resolve(item)? {
        Schema::Record(fields) => !el
            .children
            .iter()
            .any(|c| fields.iter().any(|f| f.wire_name == c.name)),
        Schema::Optional(inner) => is_wrapper(el, inner)?,
        _ => true,
    })
}

/// The children of a wrapping element (or of a root decoded as a list) as
/// items: `/order/lines/line[2]`.
fn decode_items(
    item: &Schema,
    children: &[Element],
    path: &mut String,
    depth: usize,
) -> Result<Value, String> {
    let mut out = Vec::with_capacity(children.len());
    for (i, child) in children.iter().enumerate() {
        let len = path.len();
        path.push_str(&format!("/{}[{}]", child.name, i + 1));
        out.push(decode_element(item, child, path, depth + 1)?);
        path.truncate(len);
    }
    Ok(Value::Array(out))
}

/// Repeated elements of a list field's name: `/order/line[2]`.
fn decode_repeated(
    item: &Schema,
    elements: &[&Element],
    path: &mut String,
    name: &str,
    depth: usize,
) -> Result<Value, String> {
    let mut out = Vec::with_capacity(elements.len());
    for (i, el) in elements.iter().enumerate() {
        let len = path.len();
        path.push_str(&format!("/{name}[{}]", i + 1));
        out.push(decode_element(item, el, path, depth + 1)?);
        path.truncate(len);
    }
    Ok(Value::Array(out))
}

/// Text (of an element or an attribute) as a value of `schema`.
fn decode_text(schema: &Schema, text: &str, path: &str) -> Result<Value, String> {
    let resolved = resolve(schema).map_err(|e| format!("{path}: {e}"))?;
    let cell = match &*resolved {
        Schema::Json => return Ok(Value::String(text.to_string())),
        Schema::Optional(_) if text.trim().is_empty() => return Ok(Value::Null),
        Schema::Optional(inner) => return decode_text(inner, text, path),
        // An attribute for a list field: one item.
        Schema::List(item) => return Ok(Value::Array(vec![decode_text(item, text, path)?])),
        Schema::Record(_) | Schema::Map(_) => {
            return Err(format!(
                "{path}: expected {}, got text {}",
                schema.describe(),
                describe_value(&Value::String(text.to_string()))
            ))
        }
        Schema::String | Schema::Secret => text.to_string(),
        Schema::Bytes => text.split_whitespace().collect(),
        Schema::Time => xml_time(text.trim()),
        _ => text.trim().to_string(),
    };
    resolved
        .decode_text_cells(&Value::String(cell))
        .map_err(|e| format!("{path}: expected {}, got {}", e.expected, e.got))
}

/// An `xs:dateTime` without an offset (`2024-03-05T10:00:00`) or an
/// `xs:date` (`2024-03-05`) as an RFC 3339 time in UTC; anything else as it
/// is (an RFC 3339 time passes, the rest fails to decode naming the text).
fn xml_time(text: &str) -> String {
    if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        return text.to_string();
    }
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        });
    match naive.map(|t| format_time(t.and_utc())) {
        Some(Value::String(t)) => t,
        _ => text.to_string(),
    }
}

/// `as: Json`: text-only elements are strings; other elements objects of
/// their attributes and children (repeated names as lists, non-blank text
/// under `#text`).
fn generic(el: &Element) -> Value {
    if el.attributes.is_empty() && el.children.is_empty() {
        return Value::String(el.text.clone());
    }
    let mut out = Map::new();
    let entries = el
        .attributes
        .iter()
        .map(|(k, v)| (k, Value::String(v.clone())))
        .chain(el.children.iter().map(|c| (&c.name, generic(c))));
    for (key, value) in entries {
        match out.get_mut(key) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                out.insert(key.clone(), value);
            }
        }
    }
    if !el.text.trim().is_empty() {
        out.insert("#text".into(), Value::String(el.text.clone()));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schema::register_types;
    use serde_json::json;

    fn decode_as(text: &str, schema: Schema) -> Result<Value, String> {
        decode(&Args::new().arg(json!(text)).decode_as(schema)).map_err(|e| e.message)
    }

    fn encode_as(value: Value, root: &str) -> Result<String, String> {
        encode(&Args::new().arg(value).kw("root", json!(root)))
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .map_err(|e| e.message)
    }

    fn line() -> Schema {
        Schema::Record(vec![
            FieldSchema::new("sku", Schema::String),
            FieldSchema::new("qty", Schema::Int),
        ])
    }

    fn order() -> Schema {
        Schema::Record(vec![
            FieldSchema::new("id", Schema::Int),
            FieldSchema::new("customer", Schema::String),
            FieldSchema::new("paid", Schema::Bool),
            FieldSchema::new("total", Schema::Float),
            FieldSchema::new("placed", Schema::Time),
            FieldSchema::new("note", Schema::optional(Schema::String)),
            FieldSchema::new("lines", Schema::list(line())),
        ])
    }

    #[test]
    fn decodes_a_typed_record_with_attributes_and_a_wrapped_list() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- an order -->
<order id="42">
  <customer>Ann &amp; Bob &#x263A;</customer>
  <paid> true </paid>
  <total>12.5</total>
  <placed>2024-03-05T10:00:00Z</placed>
  <lines>
    <line><sku><![CDATA[a<b>]]></sku><qty>2</qty></line>
    <line><sku>c</sku><qty> 3 </qty></line>
  </lines>
</order>"#;
        assert_eq!(
            decode_as(text, order()).unwrap(),
            json!({
                "id": 42, "customer": "Ann & Bob \u{263A}", "paid": true, "total": 12.5,
                "placed": "2024-03-05T10:00:00Z", "note": null,
                "lines": [{ "sku": "a<b>", "qty": 2 }, { "sku": "c", "qty": 3 }],
            })
        );
    }

    #[test]
    fn a_list_field_takes_repeated_elements_or_one_wrapper() {
        let schema = Schema::Record(vec![FieldSchema::new("line", Schema::list(line()))]);
        let repeated =
            "<o><line><sku>a</sku><qty>1</qty></line><x/><line><sku>b</sku><qty>2</qty></line></o>";
        let items = json!({ "line": [{ "sku": "a", "qty": 1 }, { "sku": "b", "qty": 2 }] });
        assert_eq!(decode_as(repeated, schema.clone()).unwrap(), items);
        // One element of the field's name that is itself an item.
        assert_eq!(
            decode_as(
                "<o><line><sku>a</sku><qty>1</qty></line></o>",
                schema.clone()
            )
            .unwrap(),
            json!({ "line": [{ "sku": "a", "qty": 1 }] })
        );
        let wrapped = "<o><line><item><sku>a</sku><qty>1</qty></item><item><sku>b</sku><qty>2</qty></item></line></o>";
        assert_eq!(decode_as(wrapped, schema.clone()).unwrap(), items);
        // Absent or empty: an empty list.
        assert_eq!(
            decode_as("<o/>", schema.clone()).unwrap(),
            json!({ "line": [] })
        );
        assert_eq!(
            decode_as("<o><line/></o>", schema).unwrap(),
            json!({ "line": [] })
        );
        // Scalar items, both shapes.
        let tags = Schema::Record(vec![FieldSchema::new("tag", Schema::list(Schema::Int))]);
        assert_eq!(
            decode_as("<t><tag>1</tag><tag>2</tag></t>", tags.clone()).unwrap(),
            json!({ "tag": [1, 2] })
        );
        assert_eq!(
            decode_as("<t><tag><i>1</i><i>2</i></tag></t>", tags.clone()).unwrap(),
            json!({ "tag": [1, 2] })
        );
        assert_eq!(
            decode_as("<t><tag>7</tag></t>", tags).unwrap(),
            json!({ "tag": [7] })
        );
    }

    #[test]
    fn errors_name_the_element_path() {
        let text = "<order id='1'><customer>c</customer><paid>true</paid><total>1</total>\
                    <placed>2024-01-01T00:00:00Z</placed>\
                    <lines><line><sku>a</sku><qty>1</qty></line><line><sku>b</sku><qty>abc</qty></line></lines></order>";
        assert_eq!(
            decode_as(text, order()).unwrap_err(),
            r#"xml.decode: /order/lines/line[2]/qty: expected Int, got "abc""#
        );
        let repeated = Schema::Record(vec![FieldSchema::new("line", Schema::list(line()))]);
        assert_eq!(
            decode_as(
                "<o><line><sku>a</sku><qty>1</qty></line><line><sku>b</sku></line></o>",
                repeated
            )
            .unwrap_err(),
            "xml.decode: /o/line[2]/qty: missing element, expected Int"
        );
        assert_eq!(
            decode_as("<order id='x'/>", order()).unwrap_err(),
            r#"xml.decode: /order/@id: expected Int, got "x""#
        );
        assert_eq!(
            decode_as("<order id='1'/>", order()).unwrap_err(),
            "xml.decode: /order/customer: missing element, expected String"
        );
        let one = Schema::Record(vec![FieldSchema::new("id", Schema::Int)]);
        assert_eq!(
            decode_as("<o><id>1</id><id>2</id></o>", one.clone()).unwrap_err(),
            "xml.decode: /o/id: expected one element (Int), got 2"
        );
        assert_eq!(
            decode_as("<o><id><n>1</n></id></o>", one).unwrap_err(),
            "xml.decode: /o/id: expected Int, got an element with child elements"
        );
        let nested = Schema::Record(vec![FieldSchema::new("line", line())]);
        assert_eq!(
            decode_as("<o line='x'/>", nested).unwrap_err(),
            r#"xml.decode: /o/@line: expected an object, got text "x""#
        );
        let flags = Schema::Record(vec![
            FieldSchema::new("on", Schema::Bool),
            FieldSchema::new("kind", Schema::Literals(vec!["a", "b"])),
        ]);
        assert_eq!(
            decode_as("<f><on>yes</on><kind>a</kind></f>", flags.clone()).unwrap_err(),
            r#"xml.decode: /f/on: expected Bool, got "yes""#
        );
        assert_eq!(
            decode_as("<f><on>false</on><kind>c</kind></f>", flags).unwrap_err(),
            r#"xml.decode: /f/kind: expected "a" | "b", got "c""#
        );
        let map = Schema::map(Schema::Int);
        assert_eq!(
            decode_as("<m><a>1</a><a>2</a></m>", map.clone()).unwrap_err(),
            "xml.decode: /m/a: repeated, expected one entry of a Map"
        );
        assert_eq!(
            decode_as("<m b='2'><a>1</a></m>", map).unwrap(),
            json!({ "a": 1, "b": 2 })
        );
        assert_eq!(
            decode_as("<x/>", Schema::Ref("XmlTestNoSuchType")).unwrap_err(),
            "xml.decode: /x: XmlTestNoSuchType is a type unknown to this binary"
        );
        assert_eq!(
            decode(&Args::new().arg(json!(5)).decode_as(Schema::Json))
                .unwrap_err()
                .message,
            "xml.decode: `text` must be a String"
        );
    }

    #[test]
    fn malformed_xml_names_line_and_column() {
        let cases = [
            ("<a>\n  <b></c>\n</a>", "line 2, column 6"),
            ("<a>\n<b>", "line 2, column 4: the document ends inside <b>"),
            ("<a/><b/>", "line 1, column 5: a second root element"),
            ("", "line 1, column 1: no root element"),
            ("  \n", "no root element"),
            ("<a>&nbsp;</a>", "line 1, column 4: unknown entity `&nbsp;`"),
            (
                "hello <a/>",
                "line 1, column 1: text outside the root element",
            ),
            (
                "<a x='1' x='2'/>",
                "line 1, column 10: duplicated attribute",
            ),
            (
                "<a>\n <b\n  c=>",
                "line 3, column 5: `=` must be followed by an attribute value",
            ),
            ("<a b='&bad;'/>", "line 1, column 1: attribute `b`: "),
            (
                "<a>\n<b>\n",
                "line 3, column 1: the document ends inside <b>",
            ),
        ];
        for (text, expected) in cases {
            let err = decode_as(text, Schema::Json).unwrap_err();
            assert!(
                err.starts_with("xml.decode: malformed XML at "),
                "{text:?}: {err}"
            );
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        let err = decode_as(&deep, Schema::Json).unwrap_err();
        assert!(err.contains("nested more than 256 levels"), "{err}");
    }

    #[test]
    fn optional_fields_renames_text_and_prefixes() {
        let schema = Schema::Record(vec![
            FieldSchema::renamed("item", "Item-Name", Schema::String),
            FieldSchema::new("note", Schema::optional(Schema::String)),
            FieldSchema::new("count", Schema::optional(Schema::Int)),
            FieldSchema::new("extra", Schema::Json),
            FieldSchema::new(
                "price",
                Schema::Record(vec![
                    FieldSchema::new("currency", Schema::String),
                    FieldSchema::renamed("amount", "#text", Schema::Float),
                ]),
            ),
            FieldSchema::new("wait", Schema::Duration),
            FieldSchema::new("data", Schema::Bytes),
            FieldSchema::new("day", Schema::Time),
            FieldSchema::new("at", Schema::Time),
            FieldSchema::new("zoned", Schema::Time),
            FieldSchema::new("any", Schema::Json),
        ]);
        let text = r#"<ns:doc xmlns:ns="urn:x" xmlns="urn:y"><ns:Item-Name> w </ns:Item-Name><count/>
            <price ns:currency="EUR">9.5</price><wait>1m</wait><data>aGVs
            bG8=</data><day>2024-03-05</day><at>2024-03-05T10:20:30.5</at>
            <zoned>2024-03-05T10:20:30+01:00</zoned><any>1</any><any><b>2</b></any></ns:doc>"#;
        assert_eq!(
            decode_as(text, schema).unwrap(),
            json!({
                "item": " w ", "note": null, "count": null, "extra": null,
                "price": { "currency": "EUR", "amount": 9.5 }, "wait": 60000, "data": "aGVsbG8=",
                "day": "2024-03-05T00:00:00Z", "at": "2024-03-05T10:20:30.500Z",
                "zoned": "2024-03-05T10:20:30+01:00", "any": ["1", { "b": "2" }],
            })
        );
        let when = Schema::Record(vec![FieldSchema::new("at", Schema::Time)]);
        assert_eq!(
            decode_as("<w><at>05/03/2024</at></w>", when).unwrap_err(),
            r#"xml.decode: /w/at: expected Time, got "05/03/2024""#
        );
    }

    #[test]
    fn nested_named_records_and_recursion() {
        register_types(&[
            (
                "XmlTestNode",
                Schema::Record(vec![
                    FieldSchema::new("name", Schema::String),
                    FieldSchema::new("child", Schema::list(Schema::Ref("XmlTestNode"))),
                ]),
            ),
            ("XmlTestLine", line()),
        ]);
        let tree = "<n><name>a</name><child><name>b</name></child><child><name>c</name>\
                    <child><name>d</name></child></child></n>";
        assert_eq!(
            decode_as(tree, Schema::Ref("XmlTestNode")).unwrap(),
            json!({ "name": "a", "child": [
                { "name": "b", "child": [] },
                { "name": "c", "child": [{ "name": "d", "child": [] }] },
            ] })
        );
        let bad =
            "<n><name>a</name><child><name>b</name><child><name><x/></name></child></child></n>";
        assert_eq!(
            decode_as(bad, Schema::Ref("XmlTestNode")).unwrap_err(),
            "xml.decode: /n/child[1]/child[1]/name: expected String, got an element with child elements"
        );
        let missing = "<n><name>a</name><child><name>b</name></child><child><child><name>c</name></child></child></n>";
        assert_eq!(
            decode_as(missing, Schema::Ref("XmlTestNode")).unwrap_err(),
            "xml.decode: /n/child[2]/name: missing element, expected String"
        );
        // A root decoded as a list: its children are the items.
        assert_eq!(
            decode_as(
                "<lines><line><sku>a</sku><qty>1</qty></line><line><sku>b</sku><qty>x</qty></line></lines>",
                Schema::list(Schema::Ref("XmlTestLine"))
            )
            .unwrap_err(),
            r#"xml.decode: /lines/line[2]/qty: expected Int, got "x""#
        );
        let holder = Schema::Record(vec![FieldSchema::new("l", Schema::Ref("XmlTestLine"))]);
        assert_eq!(
            decode_as("<h l='x'/>", holder).unwrap_err(),
            r#"xml.decode: /h/@l: expected XmlTestLine, got text "x""#
        );
    }

    #[test]
    fn json_gives_a_generic_value() {
        let text = r#"<order id="7"><line>a</line><line>b</line><empty/>
            <mixed n="1">text</mixed><x:deep><y>1</y></x:deep></order>"#;
        assert_eq!(
            decode_as(text, Schema::Json).unwrap(),
            json!({
                "id": "7", "line": ["a", "b"], "empty": "",
                "mixed": { "n": "1", "#text": "text" }, "deep": { "y": "1" },
            })
        );
        let three = "<o><a>1</a><a>2</a><a>3</a></o>";
        assert_eq!(
            decode_as(three, Schema::Json).unwrap(),
            json!({ "a": ["1", "2", "3"] })
        );
    }

    #[test]
    fn encodes_elements_escaped_without_nulls() {
        assert_eq!(
            encode_as(json!({ "id": 7 }), "order").unwrap(),
            "<order><id>7</id></order>"
        );
        assert_eq!(
            encode_as(
                json!({ "a": "x < y & \"z\"", "b": null, "c": [1, 2], "d": { "e": true, "f": 1.5 },
                        "g": "", "h": [], "i": {}, "j": [[1], null] }),
                "r"
            )
            .unwrap(),
            "<r><a>x &lt; y &amp; \"z\"</a><c>1</c><c>2</c><d><e>true</e><f>1.5</f></d>\
             <g/><i/><j><item>1</item></j><j/></r>"
        );
        assert_eq!(encode_as(json!("a\r\nb"), "t").unwrap(), "<t>a&#13;\nb</t>");
        assert_eq!(
            encode(&Args::new().arg(json!([1, 2]))).unwrap(),
            json!("<root><item>1</item><item>2</item></root>")
        );
        assert_eq!(
            encode_as(json!({ "a b": 1 }), "r").unwrap_err(),
            r#"xml.encode: /r/a b: "a b" is not a valid XML element name"#
        );
        assert_eq!(
            encode_as(json!({ "x": 1 }), "1r").unwrap_err(),
            r#"xml.encode: /1r: "1r" is not a valid XML element name"#
        );
        assert_eq!(
            encode_as(json!({ "x": { "y": "a\u{1}" } }), "r").unwrap_err(),
            "xml.encode: /r/x/y: the character U+0001 cannot appear in XML"
        );
        assert_eq!(
            encode(&Args::new().arg(json!(1)).kw("root", json!(2)))
                .unwrap_err()
                .message,
            "xml.encode: `root` must be a String"
        );
        let mut deep = json!(1);
        for _ in 0..300 {
            deep = json!({ "a": deep });
        }
        assert!(encode_as(deep, "r")
            .unwrap_err()
            .contains("nested more than"));
    }

    #[test]
    fn round_trips() {
        let value = json!({
            "id": 42, "customer": "Ann & <Bob>", "paid": false, "total": 3.25,
            "placed": "2024-03-05T10:00:00Z", "note": "multi\r\nline",
            "lines": [{ "sku": "a", "qty": 2 }, { "sku": "b", "qty": 3 }],
        });
        let text = encode_as(value.clone(), "order").unwrap();
        // Encoded lists are repeated elements named after the field.
        assert!(
            text.contains("<lines><qty>2</qty><sku>a</sku></lines><lines>"),
            "{text}"
        );
        assert_eq!(decode_as(&text, order()).unwrap(), value);
        let one = json!({ "id": 1, "customer": "c", "paid": true, "total": 1.0,
                          "placed": "2024-03-05T10:00:00Z", "note": null,
                          "lines": [{ "sku": "a", "qty": 2 }] });
        let text = encode_as(one.clone(), "order").unwrap();
        assert_eq!(decode_as(&text, order()).unwrap(), one);
        let generic = json!({ "a": "1", "b": ["x", "y"], "c": { "d": "" } });
        let text = encode_as(generic.clone(), "g").unwrap();
        assert_eq!(decode_as(&text, Schema::Json).unwrap(), generic);
    }

    #[test]
    fn a_megabyte_document_decodes() {
        let mut text = String::from("<?xml version=\"1.0\"?>\n<order><lines>\n");
        let mut n = 0;
        while text.len() < 1_100_000 {
            n += 1;
            text.push_str(&format!(
                "  <line><sku>sku-{n} &amp; more</sku><qty>{n}</qty></line>\n"
            ));
        }
        text.push_str("</lines></order>\n");
        let schema = Schema::Record(vec![FieldSchema::new("lines", Schema::list(line()))]);
        let started = std::time::Instant::now();
        let v = decode_as(&text, schema).unwrap();
        let lines = v["lines"].as_array().unwrap();
        assert_eq!(lines.len(), n);
        assert_eq!(
            lines[n - 1],
            json!({ "sku": format!("sku-{n} & more"), "qty": n })
        );
        assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
        let generic = decode_as(&text, Schema::Json).unwrap();
        assert_eq!(generic["lines"]["line"].as_array().unwrap().len(), n);
    }
}
