//! Text to [`Expr`], with errors a person can act on, and bounds that hostile input cannot pass.

use crate::ast::{Expr, Hint, Op, Part, Value, normalise};
use pest::Parser;
use pest::iterators::Pair;

#[derive(pest_derive::Parser)]
#[grammar = "constraints.pest"]
struct ConstraintParser;

/// The whitespace the grammar skips between tokens (`ws`); a bare value is trimmed of exactly
/// these, so the printer and the parser agree on what a value is.
const BLANKS: [char; 4] = [' ', '\t', '\r', '\n'];

/// The longest constraint accepted, in bytes.
pub const MAX_LEN: usize = 64 * 1024;
/// The deepest nesting of parentheses accepted.
pub const MAX_DEPTH: usize = 64;

/// Why a constraint does not parse: where, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ParseError {
    fn at(input: &str, offset: usize, message: String) -> Self {
        let before = &input[..offset.min(input.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self { line, column, message }
    }
}

fn describe(rule: &Rule) -> &'static str {
    match rule {
        Rule::constraint | Rule::filter | Rule::open => "'('",
        Rule::close => "')'",
        Rule::comma => "','",
        Rule::list_end => "']'",
        Rule::comparison | Rule::name => "a property name",
        Rule::operator => "a comparison operator",
        Rule::type_hint => "a type hint ($v, $d or $t)",
        Rule::quoted | Rule::quoted_inner | Rule::escape => "a quoted value",
        Rule::list => "a list",
        Rule::bare | Rule::bare_item => "a value",
        Rule::and | Rule::or | Rule::not => "'&', '|' or '!'",
        Rule::empty => "')'",
        Rule::EOI => "the end of the constraint",
        Rule::ws | Rule::body | Rule::value | Rule::item => "more input",
    }
}

fn found(input: &str, offset: usize) -> String {
    match input[offset.min(input.len())..].chars().next() {
        Some(c) if c.is_control() || c.is_whitespace() => format!("{c:?}"),
        Some(c) => format!("'{c}'"),
        None => "the end of the input".into(),
    }
}

/// Checks size and nesting before the recursive parser sees the input.
fn check_bounds(input: &str) -> Result<(), ParseError> {
    if input.len() > MAX_LEN {
        return Err(ParseError::at(input, MAX_LEN, format!("constraint is longer than {MAX_LEN} bytes")));
    }
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for (offset, byte) in input.bytes().enumerate() {
        match (quoted, escaped, byte) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') | (false, _, b'"') => quoted = !quoted,
            (false, _, b'(') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::at(
                        input,
                        offset,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
            }
            (false, _, b')') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a constraint.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    check_bounds(input)?;
    let mut pairs = ConstraintParser::parse(Rule::constraint, input).map_err(|e| {
        let offset = match e.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((s, _)) => s,
        };
        let expected = match &e.variant {
            pest::error::ErrorVariant::ParsingError { positives, .. } => {
                let mut names: Vec<&str> = positives.iter().map(describe).collect();
                names.sort_unstable();
                names.dedup();
                match names.as_slice() {
                    [] => "valid input".to_string(),
                    [one] => (*one).to_string(),
                    [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
                }
            }
            pest::error::ErrorVariant::CustomError { message } => message.clone(),
        };
        ParseError::at(input, offset, format!("expected {expected}, found {}", found(input, offset)))
    })?;
    // The grammar's top rule always holds exactly one filter.
    let top = pairs.next().expect("constraint pair");
    let filter = top.into_inner().next().expect("filter pair");
    Ok(build_filter(filter))
}

fn build_filter(pair: Pair<'_, Rule>) -> Expr {
    // filter = open body close: the one pair that is not a parenthesis is the body.
    let body =
        pair.into_inner().find(|p| !matches!(p.as_rule(), Rule::open | Rule::close)).expect("filter body");
    match body.as_rule() {
        Rule::empty => Expr::True,
        Rule::and => Expr::And(body.into_inner().map(build_filter).collect()),
        Rule::or => Expr::Or(body.into_inner().map(build_filter).collect()),
        Rule::not => Expr::Not(Box::new(build_filter(body.into_inner().next().expect("not operand")))),
        Rule::comparison => build_comparison(body),
        other => unreachable!("a filter body is never {other:?}"),
    }
}

fn build_comparison(pair: Pair<'_, Rule>) -> Expr {
    let mut name = String::new();
    let (mut hint, mut op, mut value) = (None, Op::Eq, Value::Str(Vec::new()));
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::name => name = part.as_str().to_string(),
            Rule::type_hint => {
                hint = Some(match part.as_str() {
                    "$v" => Hint::Version,
                    "$d" => Hint::Decimal,
                    _ => Hint::DateTime,
                })
            }
            Rule::operator => {
                op = match part.as_str() {
                    "<=" => Op::Le,
                    ">=" => Op::Ge,
                    "<" => Op::Lt,
                    ">" => Op::Gt,
                    _ => Op::Eq,
                }
            }
            Rule::quoted => value = Value::Str(normalise(vec![Part::Text(unquote(part))])),
            Rule::bare => value = Value::Str(pattern(part.as_str().trim_matches(BLANKS))),
            Rule::list => {
                value = Value::List(
                    part.into_inner()
                        .filter(|item| matches!(item.as_rule(), Rule::quoted | Rule::bare_item))
                        .map(|item| match item.as_rule() {
                            Rule::quoted => normalise(vec![Part::Text(unquote(item))]),
                            _ => pattern(item.as_str()),
                        })
                        .collect(),
                )
            }
            other => unreachable!("a comparison never holds {other:?}"),
        }
    }
    if op == Op::Eq && value == Value::Str(vec![Part::Star]) {
        return Expr::Present(name);
    }
    Expr::Compare { name, hint, op, value }
}

fn unquote(pair: Pair<'_, Rule>) -> String {
    let inner = pair.into_inner().next().map_or("", |p| p.as_str());
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            // The grammar allows only \" and \\ here.
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// A bare value: `*` is a wildcard.
fn pattern(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    for (i, piece) in text.split('*').enumerate() {
        if i > 0 {
            parts.push(Part::Star);
        }
        parts.push(Part::Text(piece.to_string()));
    }
    normalise(parts)
}
