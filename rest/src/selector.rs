//! Label and field selectors, parsed and matched as k8s.io/apimachinery's `labels` and `fields` packages do.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// A selector that could not be parsed; the message is the one kube-apiserver would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(pub String);

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectorError {}

/// A parsed label selector (`labelSelector=` query parameter).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key (stably), as apimachinery does, so equal selectors compare equal.
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: LabelOp,
    /// Sorted and deduplicated, like the `sets.String` apimachinery builds them from.
    values: Vec<String>,
}

/// `=` and `==` are kept as one operator: they differ only in how apimachinery prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelOp {
    Exists,
    DoesNotExist,
    Equals,
    NotEquals,
    In,
    NotIn,
    GreaterThan,
    LessThan,
}

impl LabelSelector {
    /// Parses the query-parameter syntax; "" selects everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser { items: lex(s), pos: 0 }.parse().map_err(SelectorError)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// Whether `labels` satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Same, over a JSON `metadata.labels` object (absent/null = no labels).
    pub fn matches_json(&self, labels: Option<&Value>) -> bool {
        // Label values are always strings in a valid object; anything else cannot equal a selector value.
        let labels = labels.and_then(Value::as_object);
        self.matches_with(|key| labels.and_then(|l| l.get(key)).and_then(Value::as_str))
    }

    /// Whether the selector has no requirements (selects everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| r.matches(get(&r.key)))
    }
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match (self.op, value) {
            (LabelOp::Exists, v) => v.is_some(),
            (LabelOp::DoesNotExist, v) => v.is_none(),
            (LabelOp::Equals | LabelOp::In, Some(v)) => has(v),
            (LabelOp::NotEquals | LabelOp::NotIn, Some(v)) => !has(v),
            (LabelOp::NotEquals | LabelOp::NotIn, None) => true,
            (LabelOp::GreaterThan | LabelOp::LessThan, Some(v)) => {
                let (Ok(actual), [wanted]) = (v.parse::<i64>(), self.values.as_slice()) else { return false };
                let Ok(wanted) = wanted.parse::<i64>() else { return false };
                if self.op == LabelOp::GreaterThan { actual > wanted } else { actual < wanted }
            }
            (LabelOp::Equals | LabelOp::In | LabelOp::GreaterThan | LabelOp::LessThan, None) => false,
        }
    }
}

/// Renders the selector in the query-parameter syntax, as apimachinery's `String()`
/// does (`=` for equality, sets as `key in (a,b)`); it parses back to an equal selector.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let first = r.values.first().map_or("", String::as_str);
            match r.op {
                LabelOp::Exists => write!(f, "{}", r.key)?,
                LabelOp::DoesNotExist => write!(f, "!{}", r.key)?,
                LabelOp::Equals => write!(f, "{}={first}", r.key)?,
                LabelOp::NotEquals => write!(f, "{}!={first}", r.key)?,
                LabelOp::GreaterThan => write!(f, "{}>{first}", r.key)?,
                LabelOp::LessThan => write!(f, "{}<{first}", r.key)?,
                LabelOp::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                LabelOp::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    OpenPar,
    ClosePar,
    Comma,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Gt,
    Lt,
    In,
    NotIn,
    Ident,
}

#[derive(Debug, Clone, Copy)]
struct Item<'a> {
    tok: Tok,
    lit: &'a str,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Tokenizes like apimachinery's byte-wise lexer; every delimiter is ASCII, so byte slicing stays on char boundaries.
fn lex(s: &str) -> Vec<Item<'_>> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut items = Vec::new();
    loop {
        while pos < b.len() && is_whitespace(b[pos]) {
            pos += 1;
        }
        // Go's lexer reads a NUL byte exactly like the end of the input.
        if pos >= b.len() || b[pos] == 0 {
            items.push(Item { tok: Tok::End, lit: "" });
            return items;
        }
        let start = pos;
        let tok = if is_special(b[pos]) {
            let (tok, len) = match (b[pos], b.get(pos + 1)) {
                (b'!', Some(b'=')) => (Tok::NotEquals, 2),
                (b'=', Some(b'=')) => (Tok::DoubleEquals, 2),
                (b'!', _) => (Tok::Not, 1),
                (b'=', _) => (Tok::Equals, 1),
                (b'(', _) => (Tok::OpenPar, 1),
                (b')', _) => (Tok::ClosePar, 1),
                (b',', _) => (Tok::Comma, 1),
                (b'>', _) => (Tok::Gt, 1),
                _ => (Tok::Lt, 1),
            };
            pos += len;
            tok
        } else {
            while pos < b.len() && b[pos] != 0 && !is_special(b[pos]) && !is_whitespace(b[pos]) {
                pos += 1;
            }
            match &s[start..pos] {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident,
            }
        };
        items.push(Item { tok, lit: &s[start..pos] });
        // Go consumes the NUL that ends an identifier, so lexing resumes after it.
        if tok == Tok::Ident && pos < b.len() && b[pos] == 0 {
            pos += 1;
        }
    }
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

struct Parser<'a> {
    items: Vec<Item<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    /// The next token where a key or value is expected: `in`/`notin` are plain identifiers there.
    fn peek(&self) -> (Tok, &'a str) {
        let item = self.items[self.pos.min(self.items.len() - 1)];
        match item.tok {
            Tok::In | Tok::NotIn => (Tok::Ident, item.lit),
            tok => (tok, item.lit),
        }
    }

    fn next(&mut self) -> (Tok, &'a str) {
        let next = self.peek();
        self.pos += 1;
        next
    }

    /// The next token where an operator is expected, keeping `in`/`notin` as keywords.
    fn next_operator(&mut self) -> (Tok, &'a str) {
        let item = self.items[self.pos.min(self.items.len() - 1)];
        self.pos += 1;
        (item.tok, item.lit)
    }

    fn parse(mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                (Tok::Ident | Tok::Not, _) => {
                    let r = self.parse_requirement().map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    match self.next() {
                        (Tok::End, _) => return Ok(requirements),
                        (Tok::Comma, _) => match self.peek() {
                            (Tok::Ident | Tok::Not, _) => {}
                            (_, lit) => return Err(format!("found '{lit}', expected: identifier after ','")),
                        },
                        (_, lit) => return Err(format!("found '{lit}', expected: ',' or 'end of string'")),
                    }
                }
                (Tok::End, _) => return Ok(requirements),
                (_, lit) => return Err(format!("found '{lit}', expected: !, identifier, or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (mut tok, mut key) = self.next();
        let negated = tok == Tok::Not;
        if negated {
            (tok, key) = self.next();
        }
        if tok != Tok::Ident {
            return Err(format!("found '{key}', expected: identifier"));
        }
        validate_key(key)?;
        // A `!key` followed by anything else is left for the caller to reject as a missing ','.
        if negated {
            return new_requirement(key, LabelOp::DoesNotExist, Vec::new());
        }
        if matches!(self.peek().0, Tok::End | Tok::Comma) {
            return new_requirement(key, LabelOp::Exists, Vec::new());
        }
        let op = match self.next_operator() {
            (Tok::In, _) => LabelOp::In,
            (Tok::NotIn, _) => LabelOp::NotIn,
            (Tok::Equals | Tok::DoubleEquals, _) => LabelOp::Equals,
            (Tok::NotEquals, _) => LabelOp::NotEquals,
            (Tok::Gt, _) => LabelOp::GreaterThan,
            (Tok::Lt, _) => LabelOp::LessThan,
            (_, lit) => return Err(format!("found '{lit}', expected: {BINARY_OPERATORS}")),
        };
        let mut values = match op {
            LabelOp::In | LabelOp::NotIn => self.parse_values()?,
            _ => vec![self.parse_exact_value()?],
        };
        values.sort();
        values.dedup();
        new_requirement(key, op, values)
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.next();
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        match self.peek() {
            (Tok::Ident | Tok::Comma, _) => {
                let values = self.parse_identifiers_list()?;
                // The list only returns once it has seen the ')'.
                self.next();
                Ok(values)
            }
            // apimachinery reads `()` as the set holding just the empty value, not as an error.
            (Tok::ClosePar, _) => {
                self.next();
                Ok(vec![String::new()])
            }
            (_, lit) => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    /// Parses `a, b, c` up to (not including) the `)`; empty entries (`(,a)`, `(a,,b)`, `(a,)`) mean "".
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        loop {
            match self.next() {
                (Tok::Ident, lit) => {
                    values.push(lit.to_owned());
                    match self.peek() {
                        (Tok::Comma, _) => {}
                        (Tok::ClosePar, _) => return Ok(values),
                        (_, lit) => return Err(format!("found '{lit}', expected: ',' or ')'")),
                    }
                }
                (Tok::Comma, _) => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.peek().0 {
                        Tok::ClosePar => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Tok::Comma => {
                            self.next();
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                (_, lit) => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<String, String> {
        if matches!(self.peek().0, Tok::End | Tok::Comma) {
            return Ok(String::new());
        }
        match self.next() {
            (Tok::Ident, lit) => Ok(lit.to_owned()),
            (_, lit) => Err(format!("found '{lit}', expected: identifier")),
        }
    }
}

const NOT_AN_INTEGER: &str = "for 'Gt', 'Lt' operators, the value must be an integer";

/// Validates the values the way `labels.NewRequirement` does, aggregating every problem.
fn new_requirement(key: &str, op: LabelOp, values: Vec<String>) -> Result<Requirement, String> {
    let mut errs = Vec::new();
    if matches!(op, LabelOp::GreaterThan | LabelOp::LessThan) {
        for (i, v) in values.iter().enumerate() {
            if v.parse::<i64>().is_err() {
                errs.push(invalid(&format!("values[{i}]"), v, NOT_AN_INTEGER));
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        let problems = super::validation::label_value(v);
        if !problems.is_empty() {
            errs.push(invalid(&format!("values[{i}][{key}]"), v, &problems.join("; ")));
        }
    }
    aggregate(errs)?;
    Ok(Requirement { key: key.to_owned(), op, values })
}

fn validate_key(key: &str) -> Result<(), String> {
    let problems = super::validation::qualified_name(key);
    // apimachinery prints a nil field path ("<nil>") here; "key" is what NewRequirement itself would say.
    if problems.is_empty() { Ok(()) } else { Err(invalid("key", key, &problems.join("; "))) }
}

/// Formats a `field.Invalid` error.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value:?}: {detail}")
}

/// Formats errors like `utilerrors.Aggregate`: one alone, several deduplicated in brackets.
fn aggregate(errs: Vec<String>) -> Result<(), String> {
    let mut unique: Vec<String> = Vec::new();
    for e in errs {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    match unique.len() {
        0 => Ok(()),
        1 => Err(unique.remove(0)),
        _ => Err(format!("[{}]", unique.join(", "))),
    }
}

/// A parsed field selector (`fieldSelector=`), limited to the fields a resource supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    /// In the order of their sorted source text, as apimachinery keeps them.
    terms: Vec<FieldTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    /// `=`/`==` when true, `!=` when false.
    equals: bool,
    value: String,
}

impl FieldSelector {
    /// Parses `a=b,c!=d` (`=`, `==`, `!=`); fields outside `supported` give `field label not supported: <field>`.
    pub fn parse(s: &str, supported: &[&str]) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(SelectorError(format!("invalid selector: '{s}'; can't understand '{part}'")));
            };
            let value = unescape_value(rhs)?;
            terms.push(FieldTerm { field: field.to_owned(), equals: op != "!=", value });
        }
        // Like kube-apiserver, every term is parsed before the resource's field-label conversion sees any.
        if let Some(t) = terms.iter().find(|t| !supported.contains(&t.field.as_str())) {
            return Err(SelectorError(format!("field label not supported: {}", t.field)));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether the object's field values satisfy every term; `value_of(field)` returns the value ("" when absent).
    pub fn matches(&self, value_of: impl Fn(&str) -> String) -> bool {
        self.terms.iter().all(|t| (value_of(&t.field) == t.value) == t.equals)
    }

    /// The value a `=`/`==` term requires for `field`, if any; other terms must still be checked with `matches`.
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| t.equals && t.field == field).map(|t| t.value.as_str())
    }

    /// Whether the selector has no terms (selects everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Renders the selector as `field=value,field!=value` with `\\`, `,` and `=`
/// escaped in values; it parses back to the same terms.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}{}", t.field, if t.equals { "=" } else { "!=" })?;
            for c in t.value.chars() {
                if matches!(c, '\\' | ',' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Splits on commas not escaped by a backslash, keeping the escapes for `unescape_value`.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits at the first operator: the field name cannot be escaped, so `!=` and `==` win over `=` only where they start.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    term.char_indices().find_map(|(i, _)| {
        ["!=", "==", "="]
            .into_iter()
            .find(|op| term[i..].starts_with(op))
            .map(|op| (&term[..i], op, &term[i + op.len()..]))
    })
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError(format!("invalid field selector: invalid escape sequence: \\{c}")));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune's code point here (e.g. 61); the character itself is more useful.
            ',' | '=' => {
                return Err(SelectorError(format!("invalid field selector: unescaped character in value: {c}")));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError("invalid field selector: invalid escape sequence: \\".to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(parsed) => panic!("{s:?} should not parse, got {parsed:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_err(s: &str, needles: &[&str]) {
        let e = err(s);
        for needle in needles {
            assert!(e.contains(needle), "error for {s:?} should contain {needle:?}: {e}");
        }
    }

    #[test]
    fn empty_selects_everything() {
        for s in ["", "   ", "\t\r\n"] {
            let parsed = sel(s);
            assert!(parsed.is_empty());
            assert!(parsed.matches(&labels(&[])));
            assert!(parsed.matches(&labels(&[("a", "b")])));
            assert!(parsed.matches_json(None));
        }
        assert_eq!(sel(""), LabelSelector::default());
        assert!(!sel("a").is_empty());
    }

    #[test]
    fn exists_and_does_not_exist() {
        let exists = sel("a");
        assert!(exists.matches(&labels(&[("a", "")])));
        assert!(exists.matches(&labels(&[("a", "x")])));
        assert!(!exists.matches(&labels(&[("b", "x")])));
        let absent = sel("!a");
        assert!(!absent.matches(&labels(&[("a", "")])));
        assert!(absent.matches(&labels(&[("b", "x")])));
        assert!(absent.matches(&labels(&[])));
        assert_eq!(sel("! a"), absent);
    }

    #[test]
    fn equality_operators() {
        assert_eq!(sel("a=b"), sel("a==b"));
        for s in ["a=b", "a==b"] {
            let parsed = sel(s);
            assert!(parsed.matches(&labels(&[("a", "b")])));
            assert!(!parsed.matches(&labels(&[("a", "c")])));
            assert!(!parsed.matches(&labels(&[])));
        }
        let ne = sel("a!=b");
        assert!(!ne.matches(&labels(&[("a", "b")])));
        assert!(ne.matches(&labels(&[("a", "c")])));
        assert!(ne.matches(&labels(&[])), "!= matches when the key is absent");
    }

    #[test]
    fn empty_exact_value() {
        for s in ["a=", "a==", "a=,b"] {
            let parsed = sel(s);
            assert!(parsed.matches(&labels(&[("a", ""), ("b", "")])), "{s}");
            assert!(!parsed.matches(&labels(&[("a", "x"), ("b", "")])), "{s}");
            assert!(!parsed.matches(&labels(&[("b", "")])), "{s}");
        }
        assert!(sel("a!=").matches(&labels(&[("a", "x")])));
        assert!(!sel("a!=").matches(&labels(&[("a", "")])));
    }

    #[test]
    fn set_operators() {
        let set_in = sel("env in (prod, staging)");
        assert!(set_in.matches(&labels(&[("env", "prod")])));
        assert!(set_in.matches(&labels(&[("env", "staging")])));
        assert!(!set_in.matches(&labels(&[("env", "dev")])));
        assert!(!set_in.matches(&labels(&[])));
        let not_in = sel("env notin (prod,staging)");
        assert!(!not_in.matches(&labels(&[("env", "prod")])));
        assert!(not_in.matches(&labels(&[("env", "dev")])));
        assert!(not_in.matches(&labels(&[])), "notin matches when the key is absent");
        assert_eq!(sel("a in (y,x,x)"), sel("a in (x, y)"));
    }

    #[test]
    fn empty_values_in_sets() {
        // apimachinery turns `()` and empty list entries into the empty value.
        for s in ["a in ()", "a in (,)", "a in ( )"] {
            let parsed = sel(s);
            assert!(parsed.matches(&labels(&[("a", "")])), "{s}");
            assert!(!parsed.matches(&labels(&[("a", "x")])), "{s}");
            assert!(!parsed.matches(&labels(&[])), "{s}");
        }
        for s in ["a in (,x)", "a in (x,)", "a in (x,,y)", "a in (x,,,y)"] {
            let parsed = sel(s);
            assert!(parsed.matches(&labels(&[("a", "")])), "{s}");
            assert!(parsed.matches(&labels(&[("a", "x")])), "{s}");
            assert!(!parsed.matches(&labels(&[("a", "z")])), "{s}");
        }
        assert!(sel("a in (x,,y)").matches(&labels(&[("a", "y")])));
        assert!(sel("a notin ()").matches(&labels(&[("a", "x")])));
        assert!(!sel("a notin ()").matches(&labels(&[("a", "")])));
    }

    #[test]
    fn greater_and_less_than() {
        let gt = sel("n>5");
        assert!(gt.matches(&labels(&[("n", "6")])));
        assert!(!gt.matches(&labels(&[("n", "5")])));
        assert!(!gt.matches(&labels(&[("n", "x")])), "a non-integer label never matches");
        assert!(!gt.matches(&labels(&[("n", "99999999999999999999")])), "out of i64 range");
        assert!(!gt.matches(&labels(&[])), "gt requires the key");
        let lt = sel("n < 5");
        assert!(lt.matches(&labels(&[("n", "4")])));
        assert!(lt.matches(&labels(&[("n", "-4")])));
        assert!(lt.matches(&labels(&[("n", "+4")])), "Go's ParseInt accepts a sign");
        assert!(!lt.matches(&labels(&[("n", "007")])));
        assert!(!lt.matches(&labels(&[("n", "5")])));
        assert!(!lt.matches(&labels(&[])));
        assert!(sel("n>007").matches(&labels(&[("n", "8")])));
    }

    #[test]
    fn whitespace_around_tokens() {
        let spaced = sel("  a = b ,\tc\tin\t( x , y ) ,\n! d , e != f , g notin(z)  ");
        assert_eq!(spaced, sel("a=b,c in (x,y),!d,e!=f,g notin (z)"));
        assert!(spaced.matches(&labels(&[("a", "b"), ("c", "y"), ("e", "g")])));
        assert!(!spaced.matches(&labels(&[("a", "b"), ("c", "y"), ("d", "")])));
    }

    #[test]
    fn keywords_as_keys_and_values() {
        let parsed = sel("in in (in, notin), notin=in");
        assert!(parsed.matches(&labels(&[("in", "notin"), ("notin", "in")])));
        assert!(!parsed.matches(&labels(&[("in", "x"), ("notin", "in")])));
        assert!(sel("in").matches(&labels(&[("in", "")])));
        assert!(sel("!notin").matches(&labels(&[])));
    }

    #[test]
    fn conjunction_is_order_independent() {
        assert_eq!(sel("b=1,a=2"), sel("a=2,b=1"));
        let parsed = sel("app=web,tier!=db,!legacy");
        assert!(parsed.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!parsed.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!parsed.matches(&labels(&[("app", "web"), ("legacy", "true")])));
        assert!(!parsed.matches(&labels(&[("tier", "fe")])));
    }

    #[test]
    fn prefixed_keys() {
        let parsed = sel("app.kubernetes.io/name=sks,example.com/My_Key.x-1");
        assert!(parsed.matches(&labels(&[("app.kubernetes.io/name", "sks"), ("example.com/My_Key.x-1", "")])));
        assert!(!parsed.matches(&labels(&[("name", "sks"), ("example.com/My_Key.x-1", "")])));
        sel(&format!("{}/{}", "a".repeat(253), "b".repeat(63)));
        sel(&format!("a={}", "v".repeat(63)));
    }

    #[test]
    fn nul_ends_the_input_like_go() {
        assert_eq!(sel("a=b\0"), sel("a=b"));
        assert_eq!(sel("\0garbage"), LabelSelector::default());
    }

    #[test]
    fn matches_json_labels() {
        let parsed = sel("app=web,!gone");
        assert!(parsed.matches_json(Some(&json!({"app": "web"}))));
        assert!(!parsed.matches_json(Some(&json!({"app": "db"}))));
        assert!(!parsed.matches_json(Some(&json!({"app": "web", "gone": "x"}))));
        assert!(!parsed.matches_json(None));
        assert!(!parsed.matches_json(Some(&Value::Null)));
        assert!(sel("!app").matches_json(None));
        assert!(sel("!app").matches_json(Some(&Value::Null)));
        assert!(sel("app!=x").matches_json(Some(&json!({}))));
        assert!(!sel("n").matches_json(Some(&json!({"n": 1}))), "non-string values are not labels");
    }

    #[test]
    fn invalid_keys() {
        assert_err(
            "a$b=c",
            &["unable to parse requirement: ", "key: Invalid value: \"a$b\"", "name part must consist of"],
        );
        assert_err("-a", &["\"-a\"", "must start and end with an alphanumeric character"]);
        assert_err(&"k".repeat(64), &["name part must be no more than 63 characters"]);
        assert_err("Example.com/a", &["\"Example.com/a\"", "prefix part a lowercase RFC 1123 subdomain"]);
        assert_err("a..b/c", &["prefix part a lowercase RFC 1123 subdomain"]);
        assert_err(&format!("{}/a", "p".repeat(254)), &["prefix part must be no more than 253 characters"]);
        assert_err("/a", &["\"/a\"", "prefix part must be non-empty"]);
        assert_err("a/", &["name part must be non-empty; name part must consist"]);
        assert_err("a/b/c", &["\"a/b/c\"", "a qualified name must consist of", "'example.com/MyName'"]);
        assert_err("é=1", &["\"é\"", "name part must consist"]);
        assert_err("!a$", &["\"a$\""]);
    }

    #[test]
    fn invalid_values() {
        assert_err(
            "app=a$b",
            &["unable to parse requirement: values[0][app]: Invalid value: \"a$b\": a valid label must be"],
        );
        assert_err("app=-x", &["\"-x\"", "must start and end with an alphanumeric character"]);
        assert_err(&format!("a={}", "v".repeat(64)), &["values[0][a]", "must be no more than 63 characters"]);
        // Set values are sorted before validation, so indexes refer to the sorted set.
        assert_err("a in (ok, -bad)", &["values[0][a]: Invalid value: \"-bad\""]);
        assert_err("a notin (x, y_)", &["values[1][a]: Invalid value: \"y_\""]);
        let both = err("a in (-x, -y)");
        assert!(both.starts_with("unable to parse requirement: [values[0][a]"), "{both}");
        assert!(both.contains("values[1][a]: Invalid value: \"-y\""), "{both}");
        assert_err("a=é", &["\"é\""]);
    }

    #[test]
    fn invalid_integer_comparisons() {
        assert_err("n>x", &["values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"]);
        assert_err("n<", &["\"\": for 'Gt', 'Lt' operators, the value must be an integer"]);
        assert_err("n<-1", &["values[0][n]: Invalid value: \"-1\""]);
        assert_err("n>99999999999999999999", &["\"99999999999999999999\"", "must be an integer"]);
        assert_err("n>=1", &["found '=', expected: identifier"]);
    }

    #[test]
    fn invalid_syntax() {
        assert_err("a b", &["unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"]);
        assert_err("a!b", &["found '!', expected: in, notin"]);
        assert_err("a in x", &["found 'x' expected: '('"]);
        assert_err("a in", &["found '' expected: '('"]);
        assert_err("a in (x", &["found '', expected: ',' or ')'"]);
        assert_err("a in (x y)", &["found 'y', expected: ',' or ')'"]);
        assert_err("a in (=)", &["found '=', expected: ',', ')' or identifier"]);
        assert_err("a in (x,=)", &["found '=', expected: ',', or identifier"]);
        assert_err("a=(b)", &["found '(', expected: identifier"]);
        assert_err("a!==b", &["found '=', expected: identifier"]);
        assert_err("a=b c", &["found 'c', expected: ',' or 'end of string'"]);
        assert_err("a in (x) y", &["found 'y', expected: ',' or 'end of string'"]);
        assert_err("a=b,", &["found '', expected: identifier after ','"]);
        assert_err("a,,b", &["found ',', expected: identifier after ','"]);
        assert_err(",a", &["found ',', expected: !, identifier, or 'end of string'"]);
        assert_err("=a", &["found '=', expected: !, identifier, or 'end of string'"]);
        assert_err("(a)", &["found '(', expected: !, identifier"]);
        assert_err("!a=b", &["found '=', expected: ',' or 'end of string'"]);
        assert_err("!", &["unable to parse requirement: found '', expected: identifier"]);
        assert_err("!!a", &["found '!', expected: identifier"]);
        assert_err("!=a", &["found '!=', expected: !, identifier"]);
        assert!(!err("a b").starts_with("unable to parse requirement: unable"));
    }

    fn fields(s: &str) -> FieldSelector {
        FieldSelector::parse(s, &["metadata.name", "metadata.namespace", "spec.x"])
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn field_err(s: &str) -> String {
        FieldSelector::parse(s, &["metadata.name", "metadata.namespace"]).unwrap_err().to_string()
    }

    fn object(name: &str) -> impl Fn(&str) -> String + '_ {
        move |f| if f == "metadata.name" { name.to_owned() } else { String::new() }
    }

    #[test]
    fn field_empty_selects_everything() {
        for s in ["", ",", ",,"] {
            let parsed = fields(s);
            assert!(parsed.is_empty());
            assert!(parsed.matches(object("x")));
            assert_eq!(parsed.exact("metadata.name"), None);
        }
        assert_eq!(fields(""), FieldSelector::default());
    }

    #[test]
    fn field_operators() {
        for s in ["metadata.name=foo", "metadata.name==foo"] {
            let parsed = fields(s);
            assert!(!parsed.is_empty());
            assert!(parsed.matches(object("foo")));
            assert!(!parsed.matches(object("bar")));
        }
        let ne = fields("metadata.name!=foo");
        assert!(!ne.matches(object("foo")));
        assert!(ne.matches(object("bar")));
        let both = fields("metadata.name!=foo,metadata.namespace=");
        assert!(both.matches(object("bar")), "absent fields read as \"\"");
        assert!(!fields("metadata.namespace=ns").matches(object("bar")));
        assert!(fields("metadata.name=,").matches(object("")));
        assert_eq!(fields("metadata.name=a,metadata.namespace=b"), fields("metadata.namespace=b,metadata.name=a"));
    }

    #[test]
    fn field_unsupported() {
        assert_eq!(field_err("spec.x=1"), "field label not supported: spec.x");
        assert_eq!(field_err("metadata.name=a,spec.x!=1"), "field label not supported: spec.x");
        // Field names are not trimmed, exactly as in kube-apiserver.
        assert_eq!(field_err("metadata.name =a"), "field label not supported: metadata.name ");
        assert_eq!(field_err("=a"), "field label not supported: ");
        assert_eq!(
            FieldSelector::parse("metadata.name=a", &[]).unwrap_err(),
            SelectorError("field label not supported: metadata.name".into())
        );
    }

    #[test]
    fn field_escapes() {
        let parsed = fields(r"metadata.name=a\,b\=c\\d");
        assert_eq!(parsed.exact("metadata.name"), Some(r"a,b=c\d"));
        assert!(parsed.matches(object(r"a,b=c\d")));
        assert_eq!(fields(r"metadata.name=a\,b,metadata.namespace!=c").exact("metadata.name"), Some("a,b"));
        assert_eq!(fields("metadata.name=é").exact("metadata.name"), Some("é"));
    }

    #[test]
    fn field_invalid() {
        assert_eq!(field_err("metadata.name"), "invalid selector: 'metadata.name'; can't understand 'metadata.name'");
        assert_eq!(field_err("a=1,b"), "invalid selector: 'a=1,b'; can't understand 'b'");
        assert_eq!(field_err(r"metadata.name=a\x"), r"invalid field selector: invalid escape sequence: \x");
        assert_eq!(field_err(r"metadata.name=a\"), r"invalid field selector: invalid escape sequence: \");
        assert_eq!(field_err("metadata.name=a=b"), "invalid field selector: unescaped character in value: =");
        assert_eq!(field_err("metadata.name!==x"), "invalid field selector: unescaped character in value: =");
        // Every term is parsed before any field is checked against the supported ones.
        assert_eq!(field_err(r"spec.y=1,metadata.name=a\q"), r"invalid field selector: invalid escape sequence: \q");
    }

    #[test]
    fn field_exact() {
        let parsed = fields("metadata.name=foo,metadata.namespace!=bar");
        assert_eq!(parsed.exact("metadata.name"), Some("foo"));
        assert_eq!(parsed.exact("metadata.namespace"), None);
        assert_eq!(parsed.exact("spec.x"), None);
        assert_eq!(fields("metadata.name==").exact("metadata.name"), Some(""));
        assert_eq!(fields("spec.x==1").exact("spec.x"), Some("1"));
    }

    #[test]
    fn error_type() {
        let e = SelectorError("boom".into());
        assert_eq!(e.to_string(), "boom");
        let _: &dyn std::error::Error = &e;
    }
}
