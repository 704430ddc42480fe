//! Pest errors as diagnostics (E0001, E0006).
//!
//! Every grammar rule has human words in [`words`], an exhaustive `match`
//! without a `_` arm (as Tera v1's `renamed_rules`), so a new rule without a
//! name does not compile. Rules are *expectations* ("a statement", "`}`"),
//! *continuations* (operators, `else`, `retry`, ... which could always
//! follow what came before and are only listed when nothing else is
//! expected), or internal (no words).

use pest::error::{Error, ErrorVariant, InputLocation};

use super::ast::Span;
use super::parser::Rule;
use crate::diagnostics::{Code, Diagnostic};

/// What a rule means to someone reading an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Words {
    /// Something that is expected here.
    Expect(&'static str),
    /// Something that could also have continued the previous construct.
    Continue(&'static str),
    /// Internal, or covered by a sibling's words.
    None,
}

const STATEMENT_HELP: &str = "a statement starts with `let`, `step`, `if`, `match`, `for`, \
     `dispatch`, `skip`, `fail` or `respond`";

/// Keywords people bind values to (`let type = ...`) and then read.
const VALUE_KEYWORDS: &[&str] = &[
    "type",
    "match",
    "for",
    "in",
    "flow",
    "test",
    "step",
    "skip",
    "fail",
    "respond",
    "dispatch",
    "let",
    "if",
    "else",
    "as",
    "integration",
];

const DURATION_HELP: &str =
    "a duration is a whole number with a unit: `500ms`, `30s`, `2m`, `1h` or `1d`";

/// Which entry point failed: decides the help for an error at the very
/// first token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entry {
    Program,
    Module,
}

pub(super) fn to_diagnostic(error: &Error<Rule>, source: &str, entry: Entry) -> Diagnostic {
    let pos = match error.location {
        InputLocation::Pos(pos) => pos,
        InputLocation::Span((start, _)) => start,
    }
    .min(source.len());
    let found = found_at(source, pos);
    let (positives, negatives) = match &error.variant {
        ErrorVariant::ParsingError {
            positives,
            negatives,
        } => (positives.as_slice(), negatives.as_slice()),
        ErrorVariant::CustomError { message } => {
            // Pest's own limits ("stack limit reached", "call limit
            // reached"): the input nests too deeply to parse.
            return Diagnostic::new(
                Code::Syntax,
                found.span,
                format!("cannot parse this: {message}"),
            )
            .with_label("nested too deeply")
            .with_help("split deeply nested expressions with `let` bindings");
        }
    };

    if pos == first_token(source) {
        let (what, help) = match entry {
            Entry::Program => (
                "`integration NAME`",
                "a .flow file starts with `integration NAME`",
            ),
            Entry::Module => (
                "`module NAME`",
                "a stdlib signature file starts with `module NAME`",
            ),
        };
        if pos < source.len() || entry == Entry::Module {
            return Diagnostic::new(
                Code::MissingIntegration,
                found.span,
                format!("expected {what}, found {}", found.text),
            )
            .with_label(format!("expected {what}"))
            .with_help(help);
        }
    }

    if positives.contains(&Rule::quote) && positives.contains(&Rule::string_text) {
        if let Some(start) = unterminated_string(source) {
            return Diagnostic::new(
                Code::Syntax,
                Span::new(start, start + 1),
                "unterminated string",
            )
            .with_label("this string is never closed")
            .with_help("end it with `\"`; a `\"` inside a string is written `\\\"`");
        }
    }

    let expected = describe(positives);
    if positives.iter().all(|r| matches!(r, Rule::call_chain)) && !positives.is_empty() {
        if let Some(word) = statement_word(source, pos) {
            let text = source.get(word.start..word.end).unwrap_or_default();
            return Diagnostic::new(
                Code::Syntax,
                word,
                format!("expected a statement, found `{text}`"),
            )
            .with_label("not a statement")
            .with_help(statement_help(text));
        }
    }

    let mut message = match (&expected, negatives.is_empty()) {
        (Some(list), _) => format!("expected {list}, found {}", found.text),
        (None, false) => format!("unexpected {}", describe(negatives).unwrap_or_default()),
        (None, true) => format!("unexpected {}", found.text),
    };
    if message.ends_with(' ') {
        message = format!("unexpected {}", found.text);
    }
    let label = match &expected {
        Some(list) if list.len() <= 40 => format!("expected {list}"),
        _ => format!("unexpected {}", found.text),
    };
    let mut diagnostic = Diagnostic::new(Code::Syntax, found.span, message).with_label(label);
    if let Some(help) = help_for(positives, source, pos) {
        diagnostic = diagnostic.with_help(help);
    }
    if positives.contains(&Rule::rparen) || starts_statement(source, pos) {
        if let Some(open) = unclosed_paren(source, pos) {
            diagnostic = diagnostic
                .with_secondary(Span::new(open, open + 1), "this `(` is not closed")
                .with_help("add the missing `)` at the end of the call");
        }
    }
    if pos >= source.trim_end().len() && positives.contains(&Rule::rbrace) {
        if let Some(open) = unclosed_brace(source) {
            diagnostic = diagnostic
                .with_secondary(
                    Span::new(open, open + 1),
                    "this `{` is probably never closed",
                )
                .with_help("add the missing `}` where that block ends");
        }
    }
    diagnostic
}

/// Does a statement keyword begin the line of `pos` (`skip "x"` after a
/// call left open)?
fn starts_statement(source: &str, pos: usize) -> bool {
    let before = source.get(..pos).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = source.get(line_start..).unwrap_or_default().trim_start();
    let word = line
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default();
    STATEMENT_KEYWORDS.contains(&word)
}

/// The innermost `(` still open at `pos`, when it is on an earlier line
/// (an error on the same line is plain to see without it).
fn unclosed_paren(source: &str, pos: usize) -> Option<usize> {
    let before = source.get(..pos)?;
    let mut open: Vec<usize> = Vec::new();
    let mut in_string = false;
    let mut chars = before.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (in_string, c) {
            (true, '\\') => {
                chars.next();
            }
            (_, '"') => in_string = !in_string,
            (false, '/') if chars.peek().is_some_and(|(_, c)| *c == '/') => {
                while chars.next_if(|(_, c)| *c != '\n').is_some() {}
            }
            (false, '(') => open.push(i),
            (false, ')') => {
                open.pop();
            }
            _ => {}
        }
    }
    let last = *open.last()?;
    before.get(last..)?.contains('\n').then_some(last)
}

/// For a file that ends inside a block: the `{` most likely left open. A
/// `}` whose line is indented differently from the line of the `{` it
/// closes suggests that an inner block was not closed, as in
///
/// ```text
/// flow f {
///   if x {
///     skip "y"
///                // `}` missing here
/// }              // closes `if x {`, not the flow
/// ```
///
/// so the first such `{` is the answer; otherwise the innermost `{` still
/// open at the end. Strings (with their `${...}`) and comments are skipped.
fn unclosed_brace(source: &str) -> Option<usize> {
    let indent = |pos: usize| {
        let start = source
            .get(..pos)
            .and_then(|b| b.rfind('\n'))
            .map_or(0, |i| i + 1);
        source
            .get(start..)
            .map_or(0, |line| line.len() - line.trim_start().len())
    };
    let mut open: Vec<usize> = Vec::new();
    let mut misclosed: Option<usize> = None;
    let mut in_string = false;
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (in_string, c) {
            (true, '\\') => {
                chars.next();
            }
            (_, '"') => in_string = !in_string,
            (false, '/') if chars.peek().is_some_and(|(_, c)| *c == '/') => {
                while chars.next_if(|(_, c)| *c != '\n').is_some() {}
            }
            (false, '{') => open.push(i),
            (false, '}') => {
                if let Some(start) = open.pop() {
                    if misclosed.is_none() && indent(start) != indent(i) {
                        misclosed = Some(start);
                    }
                }
            }
            _ => {}
        }
    }
    if open.is_empty() {
        return None;
    }
    misclosed.or(open.last().copied())
}

/// The thing at the error position, for "found ..." and the label's span.
struct Found {
    text: String,
    span: Span,
}

fn found_at(source: &str, pos: usize) -> Found {
    let rest = source.get(pos..).unwrap_or_default();
    let Some(first) = rest.chars().next() else {
        // Point just after the last token: a span at the very end of the
        // source would be drawn on no line.
        let end = source.trim_end().len();
        return Found {
            text: "end of file".into(),
            span: Span::new(end, end),
        };
    };
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let is_operator = |c: char| "&|=<>!?.:-+*/%".contains(c);
    let len = if is_word(first) {
        rest.find(|c: char| !is_word(c)).unwrap_or(rest.len())
    } else if is_operator(first) {
        // `&&`, `=>`, `?.`, ...: up to two operator characters.
        rest.chars()
            .take(2)
            .take_while(|c| is_operator(*c))
            .map(char::len_utf8)
            .sum()
    } else {
        first.len_utf8()
    };
    let token = rest.get(..len).unwrap_or_default();
    let text = match first {
        '"' => "a string".to_string(),
        '\n' | '\r' => "end of line".to_string(),
        c if c.is_whitespace() => "whitespace".to_string(),
        _ => format!("`{token}`"),
    };
    Found {
        text,
        span: Span::new(pos, pos + len),
    }
}

/// Offset of the first token: after leading whitespace and comments.
fn first_token(source: &str) -> usize {
    let mut pos = 0;
    loop {
        let rest = source.get(pos..).unwrap_or_default();
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if trimmed.starts_with("//") {
            pos += trimmed.find('\n').unwrap_or(trimmed.len());
        } else {
            return pos;
        }
    }
}

/// For `lett x = 1` (error after a lone word at the start of a statement):
/// the span of that word, so the error can say "expected a statement".
fn statement_word(source: &str, pos: usize) -> Option<Span> {
    let before = source.get(..pos)?.trim_end();
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    if start == before.len() {
        return None;
    }
    // `a.b` without a call is not a mistyped statement keyword.
    if before.get(..start)?.trim_end().ends_with(['.', '?']) {
        return None;
    }
    Some(Span::new(start, before.len()))
}

fn help_for(positives: &[Rule], source: &str, pos: usize) -> Option<String> {
    let rest = source.get(pos..).unwrap_or_default();
    if positives == [Rule::rbrace] && after_on_failure(source, pos) {
        return Some("`on failure { ... }` must be the last part of a flow".into());
    }
    if rest.starts_with(';') {
        return Some("there are no semicolons in .flow: remove the `;`".into());
    }
    if let Some(help) = common_slip(positives, rest) {
        return Some(help);
    }
    for (symbol, word) in [("&&", "and"), ("||", "or"), ("!", "not")] {
        if rest.starts_with(symbol) && !rest.starts_with("!=") {
            return Some(format!("write `{word}` instead of `{symbol}`"));
        }
    }
    if positives.contains(&Rule::stmt)
        && !positives.contains(&Rule::comma)
        && rest.starts_with(['{', '(', '[', '"'])
    {
        return Some(STATEMENT_HELP.into());
    }
    let word_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let word = rest.get(..word_len).unwrap_or_default();
    if word.starts_with(|c: char| c.is_ascii_digit())
        && word.contains(|c: char| c.is_ascii_alphabetic())
    {
        return Some(DURATION_HELP.into());
    }
    if rest.starts_with("=>") && positives.contains(&Rule::stmt) {
        return Some(
            "a lambda `x => ...` can only be the argument of a list method, such as \
             `.map(x => x.sku)`"
                .into(),
        );
    }
    let wants_value = positives.contains(&Rule::expr) || positives.contains(&Rule::primary);
    if wants_value && VALUE_KEYWORDS.contains(&word) {
        return Some(format!(
            "`{word}` is a keyword, so it cannot name a value; rename what you bound to it, \
             e.g. `{word}_`"
        ));
    }
    if positives.contains(&Rule::trigger_kind) {
        return Some("for example `trigger webhook POST \"/orders\"`".into());
    }
    if positives.contains(&Rule::duration) || positives.contains(&Rule::every_schedule) {
        return Some(DURATION_HELP.into());
    }
    None
}

/// Statement keywords, for "did you mean" on a word that starts no
/// statement.
const STATEMENT_KEYWORDS: &[&str] = &[
    "let", "step", "if", "match", "for", "dispatch", "skip", "fail", "respond",
];

/// The help for a word where a statement should start: the keyword it
/// is a typo of, `else if` for `elif`, or the list of statements.
fn statement_help(word: &str) -> String {
    if matches!(word, "elif" | "elsif" | "elseif") {
        return "write `else if`".into();
    }
    let close = STATEMENT_KEYWORDS
        .iter()
        .filter(|k| k.len() > 2 && strsim::osa_distance(word, k) == 1)
        .min_by_key(|k| strsim::osa_distance(word, k));
    match close {
        Some(k) => format!("did you mean `{k}`?"),
        None => STATEMENT_HELP.into(),
    }
}

/// Habits from other languages: `=` for `==`, single quotes, `elif`,
/// lower-case type names.
fn common_slip(positives: &[Rule], rest: &str) -> Option<String> {
    let word_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let word = rest.get(..word_len).unwrap_or_default();
    let wants_block = positives.contains(&Rule::block) || positives.contains(&Rule::lbrace);
    if wants_block && rest.starts_with('=') && !rest.starts_with("==") && !rest.starts_with("=>") {
        return Some("compare with `==`; `=` only binds names in `let` and `step`".into());
    }
    if rest.starts_with('\'') {
        return Some("strings are written in double quotes: `\"...\"`".into());
    }
    if matches!(word, "elif" | "elsif" | "elseif") {
        return Some("write `else if`".into());
    }
    let wants_type = positives.contains(&Rule::type_expr) || positives.contains(&Rule::named_type);
    if wants_type && word.starts_with(|c: char| c.is_ascii_lowercase()) {
        let mut chars = word.chars();
        let capitalized: String = chars
            .next()
            .map(|c| c.to_ascii_uppercase())
            .into_iter()
            .chain(chars)
            .collect();
        return Some(format!(
            "type names start with an upper-case letter: `{capitalized}`"
        ));
    }
    None
}

/// Is `pos` right after the `on failure` block of a flow?
fn after_on_failure(source: &str, pos: usize) -> bool {
    let before = source.get(..pos).unwrap_or_default();
    let (Some(on), flow) = (before.rfind("on failure"), before.rfind("flow ")) else {
        return false;
    };
    flow.is_none_or(|flow| flow < on) && before.trim_end().ends_with('}')
}

/// Where the string left open at the end of the source starts, following
/// comments, escapes and nested `${...}` interpolations.
fn unterminated_string(source: &str) -> Option<usize> {
    // Innermost last: the start of each open string, and for each open
    // interpolation the brace depth inside it.
    let mut strings: Vec<usize> = Vec::new();
    let mut braces: Vec<usize> = Vec::new();
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let in_string = strings.len() > braces.len();
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    strings.pop();
                }
                '$' if chars.peek().is_some_and(|(_, c)| *c == '{') => {
                    chars.next();
                    braces.push(0);
                }
                _ => {}
            }
        } else {
            match c {
                '"' => strings.push(i),
                '/' if chars.peek().is_some_and(|(_, c)| *c == '/') => {
                    while chars.next_if(|(_, c)| *c != '\n').is_some() {}
                }
                '{' => {
                    if let Some(depth) = braces.last_mut() {
                        *depth += 1;
                    }
                }
                '}' => match braces.last_mut() {
                    Some(0) => {
                        braces.pop();
                    }
                    Some(depth) => *depth -= 1,
                    None => {}
                },
                _ => {}
            }
        }
    }
    (strings.len() > braces.len())
        .then(|| strings.last().copied())
        .flatten()
}

/// "a, b or c", from the words of `rules`; `None` when nothing is worth
/// saying. Descriptions ("a statement") come before tokens ("`}`").
fn describe(rules: &[Rule]) -> Option<String> {
    let mut expect: Vec<&str> = Vec::new();
    let mut cont: Vec<&str> = Vec::new();
    for rule in rules {
        match words(*rule) {
            Words::Expect(w) if !expect.contains(&w) => expect.push(w),
            Words::Continue(w) if !cont.contains(&w) => cont.push(w),
            _ => {}
        }
    }
    let mut list = if expect.is_empty() { cont } else { expect };
    list.sort_by_key(|w| w.starts_with('`'));
    match list.as_slice() {
        [] => None,
        [one] => Some((*one).to_string()),
        [init @ .., last] => Some(format!("{} or {last}", init.join(", "))),
    }
}

/// Human words for every rule. No `_` arm: a new rule must be named here.
fn words(rule: Rule) -> Words {
    use Words::{Continue, Expect, None};
    match rule {
        Rule::EOI => Continue("end of file"),
        Rule::WHITESPACE | Rule::COMMENT => None,
        // silent helpers
        Rule::ident_char
        | Rule::reserved
        | Rule::digits
        | Rule::type_atom
        | Rule::step_modifier
        | Rule::prefix
        | Rule::postfix
        | Rule::infix => None,

        // lexical
        Rule::ident | Rule::name => Expect("a name"),
        Rule::type_name => Expect("a type name"),
        Rule::float => Expect("a number"),
        Rule::duration => Expect("a duration such as `30s`"),
        Rule::int => Expect("an integer"),
        Rule::string => Expect("a string"),
        Rule::string_text | Rule::escape | Rule::interpolation => None,

        // keywords
        Rule::kw_integration => Expect("`integration`"),
        Rule::kw_config => Expect("`config`"),
        Rule::kw_type => Expect("`type`"),
        Rule::kw_flow => Expect("`flow`"),
        Rule::kw_test => Expect("`test`"),
        Rule::kw_trigger => Continue("`trigger`"),
        Rule::kw_let => Expect("`let`"),
        Rule::kw_step => Expect("`step`"),
        Rule::kw_if => Expect("`if`"),
        Rule::kw_else => Continue("`else`"),
        Rule::kw_match => Expect("`match`"),
        Rule::kw_for => Expect("`for`"),
        Rule::kw_in => Expect("`in`"),
        Rule::kw_dispatch => Expect("`dispatch`"),
        Rule::kw_skip => Expect("`skip`"),
        Rule::kw_fail => Expect("`fail`"),
        Rule::kw_respond => Expect("`respond`"),
        Rule::kw_true => Expect("`true`"),
        Rule::kw_false => Expect("`false`"),
        Rule::kw_null => Expect("`null`"),
        Rule::kw_and | Rule::kw_or => Continue("an operator"),
        Rule::kw_not => None,
        Rule::kw_as => Continue("`as`"),
        Rule::kw_parallel => Continue("`parallel`"),
        Rule::kw_headers => Continue("`headers`"),
        Rule::kw_retry => Continue("`retry`"),
        Rule::kw_backoff => Continue("`backoff`"),
        Rule::kw_timeout => Continue("`timeout`"),
        Rule::kw_on => Expect("`on failure`"),
        Rule::kw_failure => Expect("`failure`"),
        Rule::kw_env => Continue("`env`"),
        Rule::kw_body => Expect("`body`"),
        Rule::kw_rename => Expect("`rename`"),
        Rule::kw_webhook => Expect("`webhook`"),
        Rule::kw_sync => Expect("`sync`"),
        Rule::kw_schedule => Expect("`schedule`"),
        Rule::kw_every => Expect("`every`"),
        Rule::kw_tz => Continue("`tz`"),
        Rule::kw_files => Expect("`files`"),
        Rule::kw_email => Expect("`email`"),
        Rule::kw_subscribe => Expect("`subscribe`"),
        Rule::kw_deploy => Expect("`deploy`"),
        Rule::kw_remove => Expect("`remove`"),
        Rule::kw_mock => Expect("`mock`"),
        Rule::kw_http => Expect("`http`"),
        Rule::kw_run => Expect("`run`"),
        Rule::kw_with => Continue("`with`"),
        Rule::kw_expect => Expect("`expect`"),
        Rule::kw_json => Expect("`json`"),
        Rule::kw_status => Expect("`status`"),
        Rule::kw_response => Expect("`response`"),
        Rule::kw_module => Expect("`module`"),
        Rule::kw_fn => Expect("`fn`"),
        Rule::kw_example => Continue("`example`"),
        Rule::kw_connection => Expect("`connection`"),
        Rule::kw_instance => Expect("`instance`"),
        Rule::kw_from => Continue("`from`"),

        // punctuation
        Rule::lbrace => Expect("`{`"),
        Rule::rbrace => Expect("`}`"),
        Rule::lparen => Expect("`(`"),
        Rule::rparen => Expect("`)`"),
        Rule::lbracket => Expect("`[`"),
        Rule::rbracket => Expect("`]`"),
        Rule::rangle => Expect("`>`"),
        Rule::comma => Expect("`,`"),
        Rule::colon => Expect("`:`"),
        Rule::equals => Expect("`=`"),
        Rule::fat_arrow => Expect("`=>`"),
        Rule::thin_arrow => Expect("`->`"),
        Rule::dotdot => Expect("`..`"),
        Rule::pipe => Continue("`|`"),
        Rule::at => Expect("`@rename`"),
        Rule::quote => Expect("`\"`"),

        // file
        Rule::program | Rule::file => None,
        Rule::item => Expect("a declaration (`flow`, `type`, `config`, `connection` or `test`)"),
        Rule::integration_decl => Expect("`integration NAME`"),

        // config
        Rule::config_block => Expect("`config`"),
        Rule::config_entry => Expect("a config entry `name: Type`"),

        // connections
        Rule::connection_decl => Expect("`connection`"),

        // types
        Rule::type_decl => Expect("`type`"),
        Rule::type_fields => Expect("`{`"),
        Rule::field_decl => Expect("a field `name: Type`"),
        Rule::rename => Expect("`@rename(\"...\")`"),
        Rule::type_expr => Expect("a type"),
        Rule::optional_mark => Continue("`?`"),
        Rule::named_type => Expect("a type name"),
        Rule::type_args => Continue("`<`"),
        Rule::list_type => Expect("`[`"),
        Rule::record_type => Expect("`{`"),
        Rule::lit_union => Expect("a string"),
        Rule::paren_type => Expect("a type"),

        // flows and triggers
        Rule::flow_decl => Expect("`flow`"),
        Rule::on_failure => Expect("`on failure`"),
        Rule::trigger => Continue("`trigger`"),
        Rule::trigger_kind => Expect(
            "a trigger kind: `webhook`, `sync`, `schedule`, `files`, `subscribe`, `deploy` or \
             `dispatch`",
        ),
        Rule::http_method => Expect("an HTTP method such as `GET` or `POST`"),
        Rule::webhook_trigger => Expect("`webhook`"),
        Rule::sync_trigger => Expect("`sync`"),
        Rule::schedule_trigger => Expect("`schedule`"),
        Rule::every_schedule => Expect("`every`"),
        Rule::cron_schedule => Expect("a cron expression string"),
        Rule::files_trigger => Expect("`files`"),
        Rule::email_trigger => Expect("`email`"),
        Rule::subscribe_trigger => Expect("`subscribe`"),
        Rule::deploy_trigger => Expect("`deploy`"),
        Rule::remove_trigger => Expect("`remove`"),
        Rule::dispatch_trigger => Expect("`dispatch`"),
        Rule::options => Continue("`{`"),
        Rule::option_entry | Rule::type_option | Rule::value_option => {
            Expect("an option `name: value`")
        }

        // statements
        Rule::block => Expect("`{`"),
        Rule::stmt => Expect("a statement"),
        Rule::let_stmt => Expect("`let`"),
        Rule::step_stmt => Expect("`step`"),
        Rule::retry_modifier => Continue("`retry`"),
        Rule::backoff_modifier => Continue("`backoff`"),
        Rule::timeout_modifier => Continue("`timeout`"),
        Rule::if_stmt => Expect("`if`"),
        Rule::match_stmt => Expect("`match`"),
        Rule::stmt_arm | Rule::expr_arm => Expect("a match arm `pattern => ...`"),
        Rule::for_stmt => Expect("`for`"),
        Rule::parallel => Continue("`parallel`"),
        Rule::dispatch_stmt => Expect("`dispatch`"),
        Rule::skip_stmt => Expect("`skip`"),
        Rule::fail_stmt => Expect("`fail`"),
        Rule::respond_stmt => Expect("`respond`"),
        Rule::respond_headers => Continue("`headers`"),
        Rule::call_stmt => Expect("a call"),
        Rule::call_chain => Continue("`(`"),
        Rule::pattern | Rule::wildcard | Rule::pat_float | Rule::pat_int => {
            Expect("a pattern (a literal or `_`)")
        }

        // expressions
        Rule::expr | Rule::primary => Expect("an expression"),
        Rule::op_neg | Rule::op_not => None,
        Rule::op_or
        | Rule::op_and
        | Rule::op_eq
        | Rule::op_ne
        | Rule::op_le
        | Rule::op_lt
        | Rule::op_ge
        | Rule::op_gt
        | Rule::op_coalesce
        | Rule::op_add
        | Rule::op_sub
        | Rule::op_mul
        | Rule::op_div
        | Rule::op_rem => Continue("an operator"),
        Rule::as_cast => Continue("`as`"),
        Rule::field_access => Continue("`.`"),
        Rule::opt_field_access => Continue("`?.`"),
        Rule::index => Continue("`[`"),
        Rule::call_args => Continue("`(`"),
        Rule::arg | Rule::named_arg | Rule::lambda => Expect("an argument"),
        Rule::type_arg => Expect("`as: Type`"),
        Rule::paren => Expect("`(`"),
        Rule::list => Expect("`[`"),
        Rule::record => Expect("`{`"),
        Rule::record_entry => Expect("a record entry `name: value`"),
        Rule::if_expr => Expect("`if`"),
        Rule::match_expr => Expect("`match`"),

        // tests
        Rule::test_decl => Expect("`test`"),
        Rule::test_stmt => {
            Expect("a test statement (`config`, `instance`, `mock`, `run` or `expect`)")
        }
        Rule::test_config => Expect("`config`"),
        Rule::test_instance => Expect("`instance`"),
        Rule::mock_http => Expect("`mock`"),
        Rule::run_flow => Expect("`run`"),
        Rule::expect_http | Rule::expect_status | Rule::expect_response => Expect("`expect`"),
        Rule::expect_json => Continue("`with json`"),
        Rule::expect_headers => Continue("`with headers`"),

        // stdlib signature files
        Rule::module_program | Rule::module_file => None,
        Rule::module_header => Expect("`module NAME`"),
        Rule::fn_decl => Expect("a function (`fn` or `step fn`)"),
        Rule::step_marker => Expect("`step`"),
        Rule::type_params => Continue("`<`"),
        Rule::params => None,
        Rule::param => Expect("a parameter `name: Type`"),
        Rule::example => Continue("`example`"),

        // test entry points
        Rule::type_only | Rule::expr_only | Rule::stmt_only => None,
    }
}
