//! File-name patterns (`*.csv`, `order-[0-9].csv`, `stock.{csv,txt}`,
//! `**/*.csv`), compiled to a small automaton and matched in one pass.
//!
//! The runtime's own matcher instead of globset: globset compiles patterns
//! with a regex engine, which was 12 s of CPU in every cold build
//! (docs/performance.md, issue #17), for patterns this small. The syntax is
//! the one globset accepted with `literal_separator` and backslash escapes
//! (docs/language.md):
//!
//! * `*` any run of characters and `?` any one character, never `/`;
//! * `[a-z0-9_]` a class, `[!...]` or `[^...]` its complement (never `/`);
//!   a `]` right after `[` or `[!` is a member;
//! * `{csv,txt}` alternatives, which may nest (`{a,{b,c}}`);
//! * `**` as a whole path component: `**/x` is `x` in any folder below,
//!   `x/**` everything below `x`, `x/**/y` `y` in `x` or any folder below
//!   it; `**` alone matches everything; elsewhere `**` is `*`;
//! * `\c` the character `c` itself.
//!
//! Matching simulates the automaton on a set of states (Thompson's
//! construction), so a pattern of `m` parts checks a name of `n`
//! characters in O(m·n) steps whatever the pattern: no backtracking, no
//! blow-up on `*a*a*a*b` against a long name.

/// One instruction of the automaton.
#[derive(Clone, Debug)]
enum Inst {
    /// This character.
    Char(char),
    /// Any character but `/`.
    AnyButSlash,
    /// Any character, `/` included (inside `**`).
    Any,
    /// A class: members as inclusive ranges; `negated` for `[!...]`.
    /// Never `/`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// Continue at both (no character consumed).
    Split(usize, usize),
    /// Continue there (no character consumed).
    Jump(usize),
    /// The whole name matched.
    Match,
}

/// A compiled pattern.
#[derive(Clone, Debug)]
pub struct Glob {
    insts: Vec<Inst>,
}

/// A pattern's parts, before compilation.
#[derive(Debug)]
enum Part {
    Char(char),
    AnyButSlash,
    /// `*`
    Star,
    /// `**/` as a whole component: any number of folders (with the `/`
    /// after each).
    Folders,
    /// `**` alone or at the end after a `/`: anything, `/` included.
    Everything,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Alternatives(Vec<Vec<Part>>),
}

impl Glob {
    /// Compiles `pattern`; the error says what is wrong with it, worded to
    /// follow "the pattern" (`has a `[` class that is never closed`).
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut parser = Parser {
            chars: &chars,
            at: 0,
        };
        let parts = parser.sequence(0)?;
        let mut glob = Glob { insts: Vec::new() };
        glob.emit_all(&parts);
        glob.insts.push(Inst::Match);
        Ok(glob)
    }

    /// Whether the whole of `name` matches.
    pub fn is_match(&self, name: &str) -> bool {
        let mut current = StateSet::new(self.insts.len());
        let mut next = StateSet::new(self.insts.len());
        self.add(&mut current, 0);
        for c in name.chars() {
            if current.list.is_empty() {
                return false;
            }
            next.clear();
            for &pc in &current.list {
                let consumed = match &self.insts[pc] {
                    Inst::Char(want) => *want == c,
                    Inst::AnyButSlash => c != '/',
                    Inst::Any => true,
                    Inst::Class { negated, ranges } => {
                        c != '/' && ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                    }
                    Inst::Split(..) | Inst::Jump(_) | Inst::Match => false,
                };
                if consumed {
                    self.add(&mut next, pc + 1);
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        current
            .list
            .iter()
            .any(|&pc| matches!(self.insts[pc], Inst::Match))
    }

    /// Adds `pc` and every state reachable from it without a character
    /// (with a stack of its own: a long chain of `{,}` cannot overflow the
    /// thread's).
    fn add(&self, set: &mut StateSet, pc: usize) {
        let mut pending = vec![pc];
        while let Some(pc) = pending.pop() {
            if !set.insert(pc) {
                continue;
            }
            match self.insts[pc] {
                Inst::Split(a, b) => pending.extend([b, a]),
                Inst::Jump(to) => pending.push(to),
                _ => {}
            }
        }
    }

    fn emit_all(&mut self, parts: &[Part]) {
        for part in parts {
            self.emit(part);
        }
    }

    fn emit(&mut self, part: &Part) {
        match part {
            Part::Char(c) => self.insts.push(Inst::Char(*c)),
            Part::AnyButSlash => self.insts.push(Inst::AnyButSlash),
            Part::Class { negated, ranges } => self.insts.push(Inst::Class {
                negated: *negated,
                ranges: ranges.clone(),
            }),
            Part::Star => self.repeat(Inst::AnyButSlash),
            Part::Everything => self.repeat(Inst::Any),
            Part::Folders => self.optional_folders(),
            Part::Alternatives(options) => self.alternatives(options),
        }
    }

    /// `inst*`: L: split(L+1, end); inst; jump L.
    fn repeat(&mut self, inst: Inst) {
        let split = self.placeholder();
        self.insts.push(inst);
        self.insts.push(Inst::Jump(split));
        let end = self.insts.len();
        self.insts[split] = Inst::Split(split + 1, end);
    }

    /// `(.*/)?`: nothing, or any characters ending with `/`.
    fn optional_folders(&mut self) {
        let split = self.placeholder();
        self.repeat(Inst::Any);
        self.insts.push(Inst::Char('/'));
        let end = self.insts.len();
        self.insts[split] = Inst::Split(split + 1, end);
    }

    /// `{a,b,c}`: a chain of splits, each option jumping to the end.
    fn alternatives(&mut self, options: &[Vec<Part>]) {
        let mut jumps = Vec::new();
        for (i, option) in options.iter().enumerate() {
            let last = i + 1 == options.len();
            let split = (!last).then(|| self.placeholder());
            self.emit_all(option);
            if let Some(split) = split {
                jumps.push(self.placeholder());
                let next_option = self.insts.len();
                self.insts[split] = Inst::Split(split + 1, next_option);
            }
        }
        let end = self.insts.len();
        for jump in jumps {
            self.insts[jump] = Inst::Jump(end);
        }
    }

    /// A slot filled in once its targets are known.
    fn placeholder(&mut self) -> usize {
        self.insts.push(Inst::Match);
        self.insts.len() - 1
    }
}

/// A set of automaton states, in the order they were added.
struct StateSet {
    list: Vec<usize>,
    member: Vec<bool>,
}

impl StateSet {
    fn new(size: usize) -> StateSet {
        StateSet {
            list: Vec::with_capacity(size),
            member: vec![false; size],
        }
    }

    fn insert(&mut self, pc: usize) -> bool {
        if self.member[pc] {
            return false;
        }
        self.member[pc] = true;
        self.list.push(pc);
        true
    }

    fn clear(&mut self) {
        for &pc in &self.list {
            self.member[pc] = false;
        }
        self.list.clear();
    }
}

/// How deep `{` may nest (the parser recurses once per level).
const MAX_NESTING: usize = 32;

struct Parser<'a> {
    chars: &'a [char],
    at: usize,
}

impl Parser<'_> {
    /// Parts up to the end, or (inside `{}`, `depth` > 0) up to the `,` or
    /// `}` that ends this option.
    fn sequence(&mut self, depth: usize) -> Result<Vec<Part>, String> {
        let mut parts = Vec::new();
        while let Some(&c) = self.chars.get(self.at) {
            match c {
                ',' | '}' if depth > 0 => break,
                '\\' => {
                    let escaped = self
                        .chars
                        .get(self.at + 1)
                        .ok_or("ends with a `\\` that escapes nothing")?;
                    parts.push(Part::Char(*escaped));
                    self.at += 2;
                }
                '?' => {
                    parts.push(Part::AnyButSlash);
                    self.at += 1;
                }
                '*' => parts.push(self.stars()),
                '[' => parts.push(self.class()?),
                '{' if depth >= MAX_NESTING => {
                    return Err(format!("nests `{{` deeper than {MAX_NESTING}"))
                }
                '{' => parts.push(self.alternatives(depth)?),
                c => {
                    parts.push(Part::Char(c));
                    self.at += 1;
                }
            }
        }
        Ok(parts)
    }

    /// `*`, or `**` (a whole path component or not).
    fn stars(&mut self) -> Part {
        let start = self.at;
        if self.chars.get(start + 1) != Some(&'*') {
            self.at += 1;
            return Part::Star;
        }
        self.at += 2;
        let before = start.checked_sub(1).map(|i| self.chars[i]);
        let after = self.chars.get(self.at).copied();
        match (before, after) {
            (None, None) => Part::Everything,
            // The `/` before is a character of its own: `x/**` is `x/`
            // and anything, `x/**/y` is `x/`, any folders, then `y`.
            (None | Some('/'), Some('/')) => {
                self.at += 1;
                Part::Folders
            }
            (Some('/'), None) => Part::Everything,
            _ => Part::Star,
        }
    }

    /// `[...]`, `[!...]` or `[^...]`.
    fn class(&mut self) -> Result<Part, String> {
        self.at += 1;
        let negated = matches!(self.chars.get(self.at), Some('!' | '^'));
        if negated {
            self.at += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = *self
                .chars
                .get(self.at)
                .ok_or("has a `[` class that is never closed")?;
            if c == ']' && !first {
                self.at += 1;
                break;
            }
            first = false;
            let lo = if c == '\\' {
                self.at += 1;
                *self
                    .chars
                    .get(self.at)
                    .ok_or("has a `[` class that is never closed")?
            } else {
                c
            };
            self.at += 1;
            let is_range = self.chars.get(self.at) == Some(&'-')
                && self.chars.get(self.at + 1).is_some_and(|&c| c != ']');
            if is_range {
                let hi = self.chars[self.at + 1];
                self.at += 2;
                if hi < lo {
                    return Err(format!("has a reversed class range `{lo}-{hi}`"));
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(Part::Class { negated, ranges })
    }

    /// `{a,b}`: options separated by `,`.
    fn alternatives(&mut self, depth: usize) -> Result<Part, String> {
        self.at += 1;
        let mut options = Vec::new();
        loop {
            options.push(self.sequence(depth + 1)?);
            match self.chars.get(self.at) {
                Some(',') => self.at += 1,
                Some('}') => {
                    self.at += 1;
                    return Ok(Part::Alternatives(options));
                }
                _ => return Err("has a `{` that is never closed".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn matches(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).unwrap().is_match(name)
    }

    #[test]
    fn stars_and_question_marks_stay_within_a_folder() {
        assert!(matches("*.xml", "orders.xml"));
        assert!(matches("*.xml", ".xml"));
        assert!(!matches("*.xml", "orders.xml.tmp"));
        assert!(!matches("*.csv", "a/b.csv"));
        assert!(matches("order-?.csv", "order-1.csv"));
        assert!(!matches("order-?.csv", "order-12.csv"));
        assert!(!matches("a?b", "a/b"));
        assert!(matches("*", "anything"));
        assert!(matches("*", ""));
        assert!(!matches("a*b", "ac"));
        assert!(matches("a*b*c", "a-b-b-c"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
        assert!(matches("é*ü", "éxyzü"));
    }

    #[test]
    fn classes() {
        assert!(matches("order-[0-9].csv", "order-7.csv"));
        assert!(!matches("order-[0-9].csv", "order-x.csv"));
        assert!(matches("[!.]*", "a.txt"));
        assert!(!matches("[!.]*", ".hidden"));
        assert!(matches("[^.]*", "a"));
        assert!(matches("[]x]*", "]a"));
        assert!(matches("[]x]*", "xa"));
        assert!(!matches("[]x]*", "a"));
        assert!(matches("[a-cx-z_]", "y"));
        assert!(matches("[a-cx-z_]", "_"));
        assert!(!matches("[a-cx-z_]", "m"));
        assert!(matches("[a-]", "-"), "a `-` before `]` is a member");
        assert!(!matches("[!a]", "/"), "a class never matches `/`");
        assert!(matches("[\\]]", "]"));
    }

    #[test]
    fn alternatives_and_escapes() {
        assert!(matches("stock.{csv,txt}", "stock.txt"));
        assert!(matches("stock.{csv,txt}", "stock.csv"));
        assert!(!matches("stock.{csv,txt}", "stock.xml"));
        assert!(matches("{a,{b,c}}x", "cx"));
        assert!(matches("{a,}x", "x"), "an empty option");
        assert!(matches("{*.csv,data-?}", "data-1"));
        assert!(matches("a\\[b", "a[b"));
        assert!(matches("a\\*", "a*"));
        assert!(!matches("a\\*", "ab"));
        assert!(
            matches("a,b}", "a,b}"),
            "a comma or a closing brace outside braces is plain"
        );
    }

    #[test]
    fn double_stars_cross_folders_as_whole_components() {
        assert!(matches("**/*.csv", "a.csv"));
        assert!(matches("**/*.csv", "x/y/a.csv"));
        assert!(!matches("**/*.csv", "x/a.txt"));
        assert!(matches("in/**", "in/a/b"));
        assert!(!matches("in/**", "in"));
        assert!(matches("in/**/*.csv", "in/a.csv"));
        assert!(matches("in/**/*.csv", "in/x/y/a.csv"));
        assert!(!matches("in/**/*.csv", "in.csv"));
        assert!(matches("**", "a/b/c"));
        assert!(matches("a**b", "axyb"), "elsewhere `**` is `*`");
        assert!(!matches("a**b", "a/b"));
    }

    #[test]
    fn long_names_against_many_stars_stay_linear() {
        let long = "a".repeat(5_000);
        assert!(!matches("*a*a*a*a*a*a*a*a*b", &long));
        assert!(matches("*a*a*a*a*a*a*a*a*", &long));
        let nested = format!("{}x{}", "{a,".repeat(30), "}".repeat(30));
        assert!(matches(&nested, "x"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        for (bad, why) in [
            ("order-[0-9.csv", "never closed"),
            ("stock.{csv,txt", "never closed"),
            ("{a,{b,c}", "never closed"),
            ("a\\", "escapes nothing"),
            ("[z-a]", "reversed"),
        ] {
            let e = Glob::new(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let deep = Glob::new(&"{".repeat(10_000)).unwrap_err();
        assert!(deep.contains("deeper than 32"), "{deep}");
    }
}
