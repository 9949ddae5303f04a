//! Constraints compiled against a [`Vocabulary`]: literals parsed once, names interned, and a
//! three-valued evaluation over a property set.

use crate::ast::{Expr, Hint, Op, Part, Value};
use crate::value::{KeyId, List, PropValue, Props, Sym, Vocabulary, parse_version};
use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::str::FromStr;

/// Three-valued truth: a comparison on a missing property is undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truth {
    True,
    False,
    Undefined,
}

impl Truth {
    pub fn as_str(self) -> &'static str {
        match self {
            Truth::True => "true",
            Truth::False => "false",
            Truth::Undefined => "undefined",
        }
    }
}

/// One literal, read every way a comparison may need it.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    parts: Vec<Part>,
    /// The text, when the literal has no wildcard.
    exact: Option<Box<str>>,
    /// The same, interned: equality with a string property is an integer comparison.
    pub(crate) sym: Option<Sym>,
    pub(crate) num: Option<Decimal>,
    boolean: Option<bool>,
    version: Option<semver::Version>,
    time: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone)]
pub(crate) enum Literal {
    Scalar(Scalar),
    List(Vec<Scalar>),
}

#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    pub(crate) key: KeyId,
    pub(crate) hint: Option<Hint>,
    pub(crate) op: Op,
    pub(crate) literal: Literal,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    True,
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Present(KeyId),
    Compare(Box<Comparison>),
}

/// A constraint ready to evaluate.
#[derive(Debug, Clone)]
pub struct Compiled {
    root: Node,
}

fn parse_time(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text.trim()).ok()
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    let text = text.trim();
    Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text)).ok()
}

fn scalar(parts: &[Part], vocab: &mut Vocabulary) -> Scalar {
    let exact = match parts {
        [] => Some("".into()),
        [Part::Text(t)] => Some(t.as_str().into()),
        _ => None,
    };
    let text = exact.as_deref();
    Scalar {
        parts: parts.to_vec(),
        num: text.and_then(parse_decimal),
        boolean: text.and_then(|t| match t.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }),
        version: text.and_then(parse_version),
        time: text.and_then(parse_time),
        sym: text.map(|t| vocab.intern_str(t)),
        exact,
    }
}

impl Compiled {
    /// Compiles `expr`, interning its property names in `vocab`.
    pub fn new(expr: &Expr, vocab: &mut Vocabulary) -> Self {
        Self { root: compile(expr, vocab) }
    }

    /// Evaluates against `props`. Names of missing properties that made a part undefined are
    /// pushed to `missing`.
    pub fn eval(&self, props: Props<'_>, vocab: &Vocabulary, missing: &mut Vec<KeyId>) -> Truth {
        eval(&self.root, props, vocab, missing)
    }

    pub(crate) fn root(&self) -> &Node {
        &self.root
    }

    /// Every property name the constraint tests.
    pub(crate) fn keys(&self) -> Vec<KeyId> {
        fn walk(node: &Node, keys: &mut Vec<KeyId>) {
            match node {
                Node::True => {}
                Node::And(items) | Node::Or(items) => items.iter().for_each(|i| walk(i, keys)),
                Node::Not(inner) => walk(inner, keys),
                Node::Present(key) => keys.push(*key),
                Node::Compare(c) => keys.push(c.key),
            }
        }
        let mut keys = Vec::new();
        walk(&self.root, &mut keys);
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The equality tests on a name at the top of the constraint (alone or in a top-level `&`)
    /// whose literal is exact text: every match must have that value.
    pub(crate) fn required_equalities(&self) -> Vec<(KeyId, Sym)> {
        let top: &[Node] = match &self.root {
            Node::And(items) => items,
            other => std::slice::from_ref(other),
        };
        top.iter()
            .filter_map(|node| match node {
                Node::Compare(c) if c.op == Op::Eq && c.hint.is_none() => match &c.literal {
                    Literal::Scalar(Scalar { sym: Some(sym), .. }) => Some((c.key, *sym)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }
}

fn compile(expr: &Expr, vocab: &mut Vocabulary) -> Node {
    match expr {
        Expr::True => Node::True,
        Expr::And(items) => Node::And(items.iter().map(|e| compile(e, vocab)).collect()),
        Expr::Or(items) => Node::Or(items.iter().map(|e| compile(e, vocab)).collect()),
        Expr::Not(inner) => Node::Not(Box::new(compile(inner, vocab))),
        Expr::Present(name) => Node::Present(vocab.intern(name)),
        Expr::Compare { name, hint, op, value } => Node::Compare(Box::new(Comparison {
            key: vocab.intern(name),
            hint: *hint,
            op: *op,
            literal: match value {
                Value::Str(parts) => Literal::Scalar(scalar(parts, vocab)),
                Value::List(items) => Literal::List(items.iter().map(|p| scalar(p, vocab)).collect()),
            },
        })),
    }
}

fn eval(node: &Node, props: Props<'_>, vocab: &Vocabulary, missing: &mut Vec<KeyId>) -> Truth {
    match node {
        Node::True => Truth::True,
        Node::And(items) => {
            let mut result = Truth::True;
            for item in items {
                match eval(item, props, vocab, missing) {
                    Truth::False => return Truth::False,
                    Truth::Undefined => result = Truth::Undefined,
                    Truth::True => {}
                }
            }
            result
        }
        Node::Or(items) => {
            let mut result = Truth::False;
            for item in items {
                match eval(item, props, vocab, missing) {
                    Truth::True => return Truth::True,
                    Truth::Undefined => result = Truth::Undefined,
                    Truth::False => {}
                }
            }
            result
        }
        Node::Not(inner) => match eval(inner, props, vocab, missing) {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Undefined => Truth::Undefined,
        },
        Node::Present(key) => {
            if props.get(*key).is_some() {
                Truth::True
            } else {
                Truth::False
            }
        }
        Node::Compare(c) => match props.get(c.key) {
            None => {
                missing.push(c.key);
                Truth::Undefined
            }
            Some(value) => {
                if compare(value, c, vocab) {
                    Truth::True
                } else {
                    Truth::False
                }
            }
        },
    }
}

fn ordered(ord: Option<Ordering>, op: Op) -> bool {
    let Some(ord) = ord else { return false };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    }
}

/// `*` matches any run of characters, everything else itself. `parts` alternate between text and
/// stars (see [`crate::ast::normalise`]), so after the fixed head and tail, taking each middle
/// piece at its leftmost place is enough: linear in the text, whatever the pattern.
pub(crate) fn wildcard_match(parts: &[Part], text: &str) -> bool {
    let mut rest = text;
    let mut from = 0;
    let mut to = parts.len();
    if let Some(Part::Text(head)) = parts.first() {
        match rest.strip_prefix(head.as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
        from = 1;
    }
    if from == to {
        return rest.is_empty();
    }
    if let Some(Part::Text(tail)) = parts.last() {
        match rest.strip_suffix(tail.as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
        to -= 1;
    }
    for part in &parts[from..to] {
        if let Part::Text(piece) = part {
            match rest.find(piece.as_str()) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
    }
    true
}

pub(crate) fn compare(value: &PropValue, c: &Comparison, vocab: &Vocabulary) -> bool {
    let literal = match &c.literal {
        Literal::Scalar(s) => s,
        Literal::List(items) => {
            return c.op == Op::Eq && c.hint.is_none() && same_set(value, items, vocab);
        }
    };
    if let Some(hint) = c.hint {
        let cmp = match (hint, value) {
            (Hint::Version, PropValue::Str(s)) => {
                vocab.version(*s).zip(literal.version.as_ref()).map(|(a, b)| a.cmp(b))
            }
            (Hint::Decimal, PropValue::Str(s)) => {
                parse_decimal(vocab.text(*s)).zip(literal.num).map(|(a, b)| a.cmp(&b))
            }
            (Hint::Decimal, PropValue::Num(n)) => literal.num.map(|b| n.cmp(&b)),
            (Hint::DateTime, PropValue::Str(s)) => {
                parse_time(vocab.text(*s)).zip(literal.time).map(|(a, b)| a.cmp(&b))
            }
            _ => None,
        };
        return ordered(cmp, c.op);
    }
    match value {
        PropValue::Null | PropValue::BadNum => false,
        PropValue::Bool(b) => c.op == Op::Eq && literal.boolean == Some(*b),
        PropValue::Num(n) => ordered(literal.num.map(|l| n.cmp(&l)), c.op),
        PropValue::Str(s) => match c.op {
            Op::Eq => str_matches(*s, literal, vocab),
            op => ordered(literal.exact.as_deref().map(|l| vocab.text(*s).cmp(l)), op),
        },
        PropValue::List(list) => c.op == Op::Eq && list_contains(list, literal, vocab),
    }
}

fn item_matches_bool(b: bool, literal: &Scalar) -> bool {
    literal.boolean == Some(b)
}

fn item_matches_num(n: &Decimal, literal: &Scalar) -> bool {
    literal.num.as_ref() == Some(n)
}

/// An exact literal compares symbols; only a pattern needs the text.
fn str_matches(s: Sym, literal: &Scalar, vocab: &Vocabulary) -> bool {
    match literal.sym {
        Some(sym) => sym == s,
        None => wildcard_match(&literal.parts, vocab.text(s)),
    }
}

fn list_contains(list: &List, literal: &Scalar, vocab: &Vocabulary) -> bool {
    match list {
        List::Bool(items) => items.iter().any(|b| item_matches_bool(*b, literal)),
        List::Num(items) => items.iter().any(|n| item_matches_num(n, literal)),
        List::Str(items) => items.iter().any(|s| str_matches(*s, literal, vocab)),
    }
}

/// `(name=[a,b])` on a list property: the same set, order and repeats aside.
fn same_set(value: &PropValue, literals: &[Scalar], vocab: &Vocabulary) -> bool {
    fn both_ways<T>(items: &[T], literals: &[Scalar], matches: impl Fn(&T, &Scalar) -> bool) -> bool {
        items.iter().all(|i| literals.iter().any(|l| matches(i, l)))
            && literals.iter().all(|l| items.iter().any(|i| matches(i, l)))
    }
    let PropValue::List(list) = value else {
        return false;
    };
    match &**list {
        List::Bool(items) => both_ways(items, literals, |b, l| item_matches_bool(*b, l)),
        List::Num(items) => both_ways(items, literals, item_matches_num),
        List::Str(items) => both_ways(items, literals, |s, l| str_matches(*s, l, vocab)),
    }
}
