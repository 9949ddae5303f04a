//! The language of the market: the properties an offer or a demand states about itself, the
//! constraints each side sets on the other, and matching the two both ways.
//!
//! - [`flatten`]: properties may nest (`{"golem":{"inf":{"mem":{"gib":8}}}}`) or use dotted keys
//!   (`{"golem.inf.mem.gib":8}`), or mix the two; `"@tag"` gives a node a value while it also has
//!   children. Values are strings, numbers, bools, lists of one type, or `null`.
//! - [`parse`]: Golem's LDAP-style filters — `()`, `(&…)`, `(|…)`, `(!…)`, `(name=value)` with
//!   `<`, `<=`, `>`, `>=`, `(name=*)`, `*` wildcards, `$v`/`$d`/`$t` type hints — plus
//!   double-quoted values. Errors give line, column, what was expected and what was found. The
//!   printer ([`Expr`]'s `Display`) gives the canonical form.
//! - [`Compiled`] and [`PropertySet`]: names interned in a [`Vocabulary`], literals parsed once,
//!   three-valued evaluation ([`Truth`]).
//! - [`match_pair`] and [`Offers::match_all`]: both sides evaluated; many offers kept in columns,
//!   one per property a demand tests, so that a demand is evaluated against all of them at once.
//!
//! This crate is pure: no I/O, no async, no database.
//!
//! ```
//! use agora_grammar::{Outcome, Side, Vocabulary, match_pair};
//! use serde_json::json;
//! let mut vocab = Vocabulary::default();
//! let offer = Side::parse(&mut vocab, &json!({"golem": {"runtime": {"name": "wasmtime"}, "inf.mem.gib": 8}}), "()").unwrap();
//! let demand = Side::parse(&mut vocab, &json!({}), "(&(golem.runtime.name=wasm*)(golem.inf.mem.gib>=4))").unwrap();
//! assert_eq!(match_pair(&vocab, &demand, &offer).result, Outcome::Match);
//! ```

mod ast;
mod columns;
mod eval;
mod matcher;
mod parse;
mod properties;
mod value;

pub use ast::{Expr, Hint, Op, Part, Value};
pub use eval::{Compiled, Truth};
pub use matcher::{DEFAULT_INDEXED, MatchReport, Offers, Outcome, Side, SideError, match_pair};
pub use parse::{MAX_DEPTH, MAX_LEN, ParseError, parse};
pub use properties::{Error, Properties, flatten};
pub use value::{KeyId, List, PropValue, PropertySet, Props, Sym, Vocabulary};
