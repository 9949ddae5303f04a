//! Matching demands with offers, both ways, one pair at a time or over many offers at once.

use crate::ast::Expr;
use crate::columns::{Bits, Column, Table, truths};
use crate::eval::{Compiled, Truth};
use crate::value::{KeyId, List, PropValue, PropertySet, Props, Sym, Vocabulary, typed};
use crate::{ParseError, Properties};
use std::collections::HashMap;

/// The outcome of matching one demand with one offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Match,
    NoMatch,
    Undefined,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Match => "match",
            Outcome::NoMatch => "no-match",
            Outcome::Undefined => "undefined",
        }
    }
}

/// Both sides of a match and, where one is undefined, the properties it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchReport {
    pub result: Outcome,
    /// The demand's constraints on the offer's properties.
    pub demand_side: Truth,
    /// The offer's constraints on the demand's properties.
    pub offer_side: Truth,
    /// Offer properties the demand tested but the offer lacks.
    pub undefined_demand_side: Vec<String>,
    /// Demand properties the offer tested but the demand lacks.
    pub undefined_offer_side: Vec<String>,
}

/// An offer or a demand, ready to match: properties typed once, constraints compiled once.
#[derive(Debug, Clone)]
pub struct Side {
    pub properties: PropertySet,
    pub constraints: Compiled,
}

impl Side {
    pub fn new(vocab: &mut Vocabulary, properties: &Properties, constraints: &Expr) -> Self {
        Self {
            properties: PropertySet::new(vocab, properties),
            constraints: Compiled::new(constraints, vocab),
        }
    }

    /// Parses `constraints` and flattens `properties` in one step.
    pub fn parse(
        vocab: &mut Vocabulary,
        properties: &serde_json::Value,
        constraints: &str,
    ) -> Result<Self, SideError> {
        let flat = crate::flatten(properties)?;
        let expr = crate::parse(constraints)?;
        Ok(Self::new(vocab, &flat, &expr))
    }
}

/// Why an offer or a demand cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SideError {
    #[error("properties: {0}")]
    Properties(#[from] crate::Error),
    #[error("constraints: {0}")]
    Constraints(#[from] ParseError),
}

fn outcome(demand_side: Truth, offer_side: Truth) -> Outcome {
    match (demand_side, offer_side) {
        (Truth::True, Truth::True) => Outcome::Match,
        (Truth::False, _) | (_, Truth::False) => Outcome::NoMatch,
        _ => Outcome::Undefined,
    }
}

fn names(vocab: &Vocabulary, mut keys: Vec<KeyId>) -> Vec<String> {
    keys.sort_unstable();
    keys.dedup();
    let mut names: Vec<String> = keys.into_iter().map(|k| vocab.name(k).to_string()).collect();
    names.sort();
    names
}

/// Matches one demand with one offer, both ways.
pub fn match_pair(vocab: &Vocabulary, demand: &Side, offer: &Side) -> MatchReport {
    let (mut missing_d, mut missing_o) = (Vec::new(), Vec::new());
    let demand_side = demand.constraints.eval(offer.properties.view(), vocab, &mut missing_d);
    let offer_side = offer.constraints.eval(demand.properties.view(), vocab, &mut missing_o);
    let keep = |t: Truth, m: Vec<KeyId>| {
        if t == Truth::Undefined { names(vocab, m) } else { Vec::new() }
    };
    MatchReport {
        result: outcome(demand_side, offer_side),
        demand_side,
        offer_side,
        undefined_demand_side: keep(demand_side, missing_d),
        undefined_offer_side: keep(offer_side, missing_o),
    }
}

/// Whether a pair matches, without collecting names: the hot path of [`Offers`].
fn is_match(
    vocab: &Vocabulary,
    demand: &Side,
    offer: Props<'_>,
    offer_constraints: &Compiled,
    scratch: &mut Vec<KeyId>,
) -> bool {
    scratch.clear();
    demand.constraints.eval(offer, vocab, scratch) == Truth::True
        && offer_constraints.eval(demand.properties.view(), vocab, scratch) == Truth::True
}

/// The properties offers are grouped by unless told otherwise: demands almost always name the
/// runtime they need.
pub const DEFAULT_INDEXED: &[&str] = &["golem.runtime.name"];

/// Many offers, for matching demands against all of them at once.
///
/// Three ways to match, each giving the same offers in push order:
/// - [`Offers::match_all`] scans columns: for every property a demand tests, the set keeps that
///   property of every offer in a column, so the demand is evaluated against all offers at once,
///   and the offers' own constraints only for those the demand accepts (once per distinct
///   constraint, since they are evaluated against the same demand). `columns.rs` has how.
/// - [`Offers::match_indexed`] groups offers by the string value of a few properties. A demand
///   that requires `(name=value)` at its top level can only match offers in that group, since any
///   other offer makes that part false or undefined; only those are evaluated.
/// - [`Offers::match_all_linear`] evaluates every offer, both ways.
///
/// Matching is bound by memory, not arithmetic, so the layout matters: every offer's keys and
/// values live in two shared arrays in push order (a scan walks memory forwards), and offers that
/// state the same constraints share one compiled copy, which stays in cache.
///
/// Offers are added with [`Offers::push`] and taken out with [`Offers::remove`], one at a time;
/// both update the columns and the index in place. A removed offer's properties stay in the
/// arrays until the set is built again.
#[derive(Debug, Clone)]
pub struct Offers {
    pub vocab: Vocabulary,
    keys: Vec<KeyId>,
    values: Vec<PropValue>,
    /// Per offer: where its properties start, how many, and its constraints.
    spans: Vec<Span>,
    /// The offers not removed.
    live: Bits,
    constraints: Vec<Compiled>,
    constraint_ids: HashMap<Expr, u32>,
    index: HashMap<KeyId, Group>,
    columns: HashMap<KeyId, Column>,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
    constraints: u32,
}

#[derive(Debug, Clone, Default)]
struct Group {
    by_value: HashMap<Sym, Vec<u32>>,
    /// Offers whose value is not a string (a number, say): always evaluated.
    untyped: Vec<u32>,
}

/// One offer's properties in the shared arrays. A free function, so that the index and columns
/// can be written while they are read.
fn span_props<'a>(keys: &'a [KeyId], values: &'a [PropValue], span: Span) -> Props<'a> {
    let range = span.start as usize..(span.start + span.len) as usize;
    Props::new(&keys[range.clone()], &values[range])
}

impl Group {
    /// Puts offer `handle` in (`add`), or takes it out of, the lists its value of the indexed
    /// property belongs to: one per string, or the untyped list. An offer without the property
    /// is in none.
    fn file(&mut self, value: Option<&PropValue>, handle: u32, add: bool) {
        let apply = |list: &mut Vec<u32>| {
            if add {
                list.push(handle);
            } else {
                list.retain(|h| *h != handle);
            }
        };
        match value.map(group_keys) {
            None => {}
            Some(None) => apply(&mut self.untyped),
            Some(Some(strings)) => {
                for string in strings {
                    apply(self.by_value.entry(string).or_default());
                }
            }
        }
    }
}

/// The strings an indexed value groups an offer under, or `None` for a value that is not text.
fn group_keys(value: &PropValue) -> Option<Vec<Sym>> {
    match value {
        PropValue::Str(s) => Some(vec![*s]),
        PropValue::List(list) => match &**list {
            List::Str(items) => {
                let mut items = items.clone();
                items.sort_unstable();
                items.dedup();
                Some(items)
            }
            _ => None,
        },
        _ => None,
    }
}

impl Offers {
    /// An empty set indexed on `indexed` property names.
    pub fn new(indexed: &[&str]) -> Self {
        let mut vocab = Vocabulary::default();
        let index = indexed.iter().map(|n| (vocab.intern(n), Group::default())).collect();
        Self {
            vocab,
            keys: Vec::new(),
            values: Vec::new(),
            spans: Vec::new(),
            live: Bits::default(),
            constraints: Vec::new(),
            constraint_ids: HashMap::new(),
            index,
            columns: HashMap::new(),
        }
    }

    /// Adds an offer; its position is its handle in match results.
    pub fn push(&mut self, properties: &Properties, constraints: &Expr) -> usize {
        let at = self.spans.len();
        let handle = u32::try_from(at).expect("fewer than 2^32 offers");
        let typed = typed(&mut self.vocab, properties);
        let constraints = match self.constraint_ids.get(constraints) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(self.constraints.len()).expect("fewer than 2^32 constraints");
                self.constraints.push(Compiled::new(constraints, &mut self.vocab));
                self.constraint_ids.insert(constraints.clone(), id);
                id
            }
        };
        let start = u32::try_from(self.keys.len()).expect("fewer than 2^32 properties in all");
        let len = u32::try_from(typed.len()).expect("fewer than 2^32 properties in an offer");
        for (key, value) in typed {
            self.keys.push(key);
            self.values.push(value);
        }
        self.spans.push(Span { start, len, constraints });
        self.live.set(at, true);
        // Field by field, so the index and columns can be written while the new properties are
        // read.
        let props = span_props(&self.keys, &self.values, self.spans[at]);
        for (key, group) in &mut self.index {
            group.file(props.get(*key), handle, true);
        }
        for (key, column) in &mut self.columns {
            column.set(at, props.get(*key));
        }
        at
    }

    /// Takes offer `at` out of every match from now on. False when there is no such offer, or it
    /// was removed already.
    pub fn remove(&mut self, at: usize) -> bool {
        if !self.live.get(at) {
            return false;
        }
        let handle = u32::try_from(at).expect("handles are below 2^32");
        let props = span_props(&self.keys, &self.values, self.spans[at]);
        for (key, group) in &mut self.index {
            group.file(props.get(*key), handle, false);
        }
        for column in self.columns.values_mut() {
            column.set(at, None);
        }
        self.live.set(at, false);
        true
    }

    fn props(&self, at: usize) -> Props<'_> {
        span_props(&self.keys, &self.values, self.spans[at])
    }

    /// How many offers are in the set (pushed and not removed).
    pub fn len(&self) -> usize {
        self.live.count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An offer's properties, to read a value of it.
    pub fn properties(&self, at: usize) -> Option<Props<'_>> {
        self.live.get(at).then(|| self.props(at))
    }

    /// Compiles a demand against this set's vocabulary, and keeps a column for every property it
    /// tests.
    pub fn demand(&mut self, properties: &Properties, constraints: &Expr) -> Side {
        let side = Side::new(&mut self.vocab, properties, constraints);
        self.keep_columns(&side.constraints);
        side
    }

    /// Keeps a column for every property `constraints` test, filled from the offers in the set and
    /// kept up to date from then on. [`Offers::match_all`] builds a missing column for one scan
    /// and drops it after.
    pub fn keep_columns(&mut self, constraints: &Compiled) {
        for key in constraints.keys() {
            if self.columns.contains_key(&key) {
                continue;
            }
            let mut column = Column::default();
            for at in self.live.ones() {
                column.set(at, self.props(at).get(key));
            }
            self.columns.insert(key, column);
        }
    }

    fn check(&self, demand: &Side, at: usize, scratch: &mut Vec<KeyId>) -> bool {
        let constraints = &self.constraints[self.spans[at].constraints as usize];
        is_match(&self.vocab, demand, self.props(at), constraints, scratch)
    }

    /// Where the demand's constraints are true and where false, from the columns.
    fn scan(&self, demand: &Side) -> (Bits, Bits) {
        let props = |at| self.props(at);
        let table = Table { columns: &self.columns, live: &self.live, props: &props, vocab: &self.vocab };
        truths(demand.constraints.root(), &table)
    }

    /// The offers that match `demand`, in push order, by scanning columns.
    pub fn match_all(&self, demand: &Side) -> Vec<usize> {
        let (accepted, _) = self.scan(demand);
        // The offers' side depends only on their constraints: evaluate each distinct one once.
        let mut offer_side: Vec<Option<bool>> = vec![None; self.constraints.len()];
        let mut scratch = Vec::new();
        accepted
            .ones()
            .filter(|&at| {
                let id = self.spans[at].constraints as usize;
                *offer_side[id].get_or_insert_with(|| {
                    scratch.clear();
                    self.constraints[id].eval(demand.properties.view(), &self.vocab, &mut scratch)
                        == Truth::True
                })
            })
            .collect()
    }

    /// The demand's constraints on every offer in the set, three-valued, as the columns find
    /// them: the same truths [`Compiled::eval`] gives one offer at a time.
    pub fn demand_sides(&self, demand: &Side) -> Vec<(usize, Truth)> {
        let (yes, no) = self.scan(demand);
        self.live
            .ones()
            .map(|at| {
                let truth = if yes.get(at) {
                    Truth::True
                } else if no.get(at) {
                    Truth::False
                } else {
                    Truth::Undefined
                };
                (at, truth)
            })
            .collect()
    }

    /// The same as [`Offers::match_all`], using the index where the demand allows.
    pub fn match_indexed(&self, demand: &Side) -> Vec<usize> {
        let mut best: Option<Vec<u32>> = None;
        for (key, sym) in demand.constraints.required_equalities() {
            let Some(group) = self.index.get(&key) else {
                continue;
            };
            let hits = group.by_value.get(&sym).map_or(0, Vec::len) + group.untyped.len();
            if best.as_ref().is_none_or(|b| hits < b.len()) {
                let mut candidates: Vec<u32> = group.by_value.get(&sym).cloned().unwrap_or_default();
                candidates.extend(&group.untyped);
                candidates.sort_unstable();
                best = Some(candidates);
            }
        }
        let mut scratch = Vec::new();
        match best {
            Some(candidates) => candidates
                .into_iter()
                .map(|i| i as usize)
                .filter(|&i| self.check(demand, i, &mut scratch))
                .collect(),
            None => self.match_all_linear(demand),
        }
    }

    /// The same as [`Offers::match_all`] by evaluating every offer both ways: the baseline the
    /// others are measured against, and their oracle in tests.
    pub fn match_all_linear(&self, demand: &Side) -> Vec<usize> {
        let mut scratch = Vec::new();
        self.live.ones().filter(|&i| self.check(demand, i, &mut scratch)).collect()
    }
}
