//! The typed syntax tree of a constraint, and its canonical printer.

use std::fmt;

/// A semantic reading of a string property, from the `$v`, `$d` or `$t` hint after a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hint {
    /// `$v`: a semantic version.
    Version,
    /// `$d`: a decimal number.
    Decimal,
    /// `$t`: an RFC 3339 date-time.
    DateTime,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One piece of a value as written: literal text, or (unquoted only) a `*` wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    Text(String),
    Star,
}

/// A value as written: a string (possibly a wildcard pattern) or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// The parts of a string value; a quoted value is one [`Part::Text`].
    Str(Vec<Part>),
    List(Vec<Vec<Part>>),
}

/// A constraint expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `()`: always true.
    True,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `(name=*)`: the property is present.
    Present(String),
    Compare {
        name: String,
        hint: Option<Hint>,
        op: Op,
        value: Value,
    },
}

impl Value {
    /// A string value with no wildcard.
    pub fn text(s: impl Into<String>) -> Self {
        Value::Str(normalise(vec![Part::Text(s.into())]))
    }
}

/// Joins adjacent text, drops empty text and repeated stars: one spelling per meaning.
pub(crate) fn normalise(parts: Vec<Part>) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::with_capacity(parts.len());
    for part in parts {
        match (out.last_mut(), part) {
            (_, Part::Text(t)) if t.is_empty() => {}
            (Some(Part::Text(prev)), Part::Text(t)) => prev.push_str(&t),
            (Some(Part::Star), Part::Star) => {}
            (_, part) => out.push(part),
        }
    }
    out
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        })
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hint::Version => "$v",
            Hint::Decimal => "$d",
            Hint::DateTime => "$t",
        })
    }
}

/// Characters that cannot stand in a bare value; `in_list` adds the list separators and blanks.
fn needs_quotes(text: &str, in_list: bool) -> bool {
    text.is_empty()
        || text.trim() != text
        // After an operator these would read as part of it: `(a>==)` is `>=` then `=`?
        || text.starts_with(['=', '<', '>'])
        || text.chars().any(|c| {
            matches!(c, '(' | ')' | '"' | '\\' | '[' | '*')
                || (in_list && (matches!(c, ',' | ']') || c.is_whitespace()))
        })
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

fn write_parts(f: &mut fmt::Formatter<'_>, parts: &[Part], in_list: bool) -> fmt::Result {
    match parts {
        [] => write_quoted(f, ""),
        [Part::Text(t)] if needs_quotes(t, in_list) => write_quoted(f, t),
        parts => {
            for part in parts {
                match part {
                    Part::Star => f.write_str("*")?,
                    Part::Text(t) => f.write_str(t)?,
                }
            }
            Ok(())
        }
    }
}

impl fmt::Display for Expr {
    /// The canonical form: no whitespace, values bare where that reads the same, quoted otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::True => f.write_str("()"),
            Expr::And(items) | Expr::Or(items) => {
                f.write_str(if matches!(self, Expr::And(_)) { "(&" } else { "(|" })?;
                for item in items {
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
            Expr::Not(inner) => write!(f, "(!{inner})"),
            Expr::Present(name) => write!(f, "({name}=*)"),
            Expr::Compare { name, hint, op, value } => {
                write!(f, "({name}")?;
                if let Some(hint) = hint {
                    write!(f, "{hint}")?;
                }
                write!(f, "{op}")?;
                match value {
                    Value::Str(parts) => write_parts(f, parts, false)?,
                    Value::List(items) => {
                        f.write_str("[")?;
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                f.write_str(",")?;
                            }
                            write_parts(f, item, true)?;
                        }
                        f.write_str("]")?;
                    }
                }
                f.write_str(")")
            }
        }
    }
}
