//! Offers' values one property at a time, so that a demand is evaluated against every offer at
//! once.
//!
//! A [`Column`] holds one property of every offer: whether the offer has it, and its string symbol
//! or its number where it is one. A demand's constraint is evaluated over whole columns, 64 offers
//! to a word. Each comparison gives two sets: the offers where it is true and those where it is
//! false. It is undefined on the other live offers, which lack the property. `&`, `|` and `!`
//! combine these sets as three-valued logic combines truths.
//!
//! The fast paths compare symbols, and compare numbers as `f64` outside a margin around the
//! literal. The evaluator itself settles whatever they cannot settle exactly, so every offer gets
//! exactly the evaluator's answer: for a string (a pattern, a type hint, an ordering) once per
//! distinct value, and for a number inside that margin, a boolean, a list or a null once per
//! offer.

use crate::ast::{Hint, Op};
use crate::eval::{Comparison, Literal, Node, compare};
use crate::value::{KeyId, PropValue, Props, Sym, Vocabulary};
use rust_decimal::prelude::ToPrimitive;
use std::borrow::Cow;
use std::collections::HashMap;

const WORD: usize = 64;

/// A set of offers by position, one bit each. Positions past the end are not in the set.
///
/// Written here rather than taken from a bit-set crate: the scans build whole 64-bit words from a
/// column's values, and that is the only shape needed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    fn with_len(len: usize) -> Self {
        Self(vec![0; len.div_ceil(WORD)])
    }

    pub(crate) fn set(&mut self, at: usize, on: bool) {
        let (word, bit) = (at / WORD, at % WORD);
        if self.0.len() <= word {
            if !on {
                return;
            }
            self.0.resize(word + 1, 0);
        }
        if on {
            self.0[word] |= 1 << bit;
        } else {
            self.0[word] &= !(1 << bit);
        }
    }

    pub(crate) fn get(&self, at: usize) -> bool {
        self.word(at / WORD) >> (at % WORD) & 1 == 1
    }

    /// How many positions are in the set.
    pub(crate) fn count(&self) -> usize {
        self.0.iter().map(|word| word.count_ones() as usize).sum()
    }

    fn word(&self, at: usize) -> u64 {
        self.0.get(at).copied().unwrap_or(0)
    }

    fn and(&mut self, other: &Bits) {
        for (at, word) in self.0.iter_mut().enumerate() {
            *word &= other.word(at);
        }
    }

    fn or(&mut self, other: &Bits) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (word, theirs) in self.0.iter_mut().zip(&other.0) {
            *word |= theirs;
        }
    }

    fn and_not(&mut self, other: &Bits) {
        for (word, theirs) in self.0.iter_mut().zip(&other.0) {
            *word &= !theirs;
        }
    }

    /// The positions in the set, in increasing order.
    pub(crate) fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(at, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(at * WORD + bit)
            })
        })
    }
}

/// One property of every offer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Column {
    /// The live offers that have the property.
    present: Bits,
    /// Those whose value is a string, and its symbol (0 for the others).
    is_str: Bits,
    strs: Vec<Sym>,
    /// Those whose value is a number, and the number as `f64` (0 for the others).
    is_num: Bits,
    nums: Vec<f64>,
}

impl Column {
    /// Sets the value of offer `at`: `None` when the offer lacks the property or is removed.
    pub(crate) fn set(&mut self, at: usize, value: Option<&PropValue>) {
        if self.strs.len() <= at {
            self.strs.resize(at + 1, 0);
            self.nums.resize(at + 1, 0.0);
        }
        let (sym, num) = match value {
            Some(PropValue::Str(s)) => (Some(*s), None),
            Some(PropValue::Num(n)) => (None, n.to_f64()),
            _ => (None, None),
        };
        self.present.set(at, value.is_some());
        self.is_str.set(at, sym.is_some());
        self.strs[at] = sym.unwrap_or(0);
        self.is_num.set(at, num.is_some());
        self.nums[at] = num.unwrap_or(0.0);
    }
}

/// What a scan reads: the columns, the live offers, and each offer's own properties for what the
/// columns cannot settle.
pub(crate) struct Table<'a> {
    pub(crate) columns: &'a HashMap<KeyId, Column>,
    pub(crate) live: &'a Bits,
    pub(crate) props: &'a dyn Fn(usize) -> Props<'a>,
    pub(crate) vocab: &'a Vocabulary,
}

impl Table<'_> {
    /// The property's column, or one made for this scan when the set keeps none for it.
    fn column(&self, key: KeyId) -> Cow<'_, Column> {
        match self.columns.get(&key) {
            Some(column) => Cow::Borrowed(column),
            None => {
                let mut column = Column::default();
                for at in self.live.ones() {
                    column.set(at, (self.props)(at).get(key));
                }
                Cow::Owned(column)
            }
        }
    }
}

/// The live offers where `node` is true, and those where it is false. It is undefined on the
/// others.
pub(crate) fn truths(node: &Node, table: &Table<'_>) -> (Bits, Bits) {
    match node {
        Node::True => (table.live.clone(), Bits::default()),
        Node::And(items) => {
            let (mut yes, mut no) = (table.live.clone(), Bits::default());
            for item in items {
                let (item_yes, item_no) = truths(item, table);
                yes.and(&item_yes);
                no.or(&item_no);
            }
            (yes, no)
        }
        Node::Or(items) => {
            let (mut yes, mut no) = (Bits::default(), table.live.clone());
            for item in items {
                let (item_yes, item_no) = truths(item, table);
                yes.or(&item_yes);
                no.and(&item_no);
            }
            (yes, no)
        }
        Node::Not(inner) => {
            let (yes, no) = truths(inner, table);
            (no, yes)
        }
        Node::Present(key) => {
            let yes = table.column(*key).present.clone();
            let mut no = table.live.clone();
            no.and_not(&yes);
            (yes, no)
        }
        Node::Compare(c) => compare_column(c, &table.column(c.key), table),
    }
}

/// Where the comparison is true and where false, among the offers that have its property.
fn compare_column(c: &Comparison, column: &Column, table: &Table<'_>) -> (Bits, Bits) {
    let mut yes = Bits::with_len(column.strs.len());
    // Offers with the property whose answer is not known yet.
    let mut open = column.present.clone();
    open.0.resize(yes.0.len(), 0);
    if let Some(sym) = exact_text(c) {
        for (at, chunk) in column.strs.chunks(WORD).enumerate() {
            let strings = column.is_str.word(at);
            yes.0[at] |= equal_mask(chunk, sym) & strings;
            open.0[at] &= !strings;
        }
    }
    if let Some(window) = Window::of(c) {
        for (at, chunk) in column.nums.chunks(WORD).enumerate() {
            let (below, above) = window.masks(chunk);
            let settled = (below | above) & column.is_num.word(at);
            yes.0[at] |= window.truth(below, above) & settled;
            open.0[at] &= !settled;
        }
    }
    let mut by_string: Vec<u8> = Vec::new();
    for at in open.ones() {
        let holds = if column.is_str.get(at) {
            // A string's answer depends on the string alone: ask once per distinct value.
            let sym = column.strs[at];
            if by_string.is_empty() {
                by_string = vec![UNKNOWN; table.vocab.strings_len()];
            }
            let known = &mut by_string[sym as usize];
            if *known == UNKNOWN {
                *known = if compare(&PropValue::Str(sym), c, table.vocab) { HOLDS } else { FAILS };
            }
            *known == HOLDS
        } else {
            (table.props)(at).get(c.key).is_some_and(|value| compare(value, c, table.vocab))
        };
        if holds {
            yes.set(at, true);
        }
    }
    let mut no = column.present.clone();
    no.and_not(&yes);
    (yes, no)
}

const UNKNOWN: u8 = 0;
const FAILS: u8 = 1;
const HOLDS: u8 = 2;

/// The symbol a string must be for `c` to hold, when `c` is a plain equality with exact text.
fn exact_text(c: &Comparison) -> Option<Sym> {
    match (&c.literal, c.op, c.hint) {
        (Literal::Scalar(scalar), Op::Eq, None) => scalar.sym,
        _ => None,
    }
}

fn equal_mask(chunk: &[Sym], sym: Sym) -> u64 {
    chunk.iter().enumerate().fold(0, |mask, (bit, s)| mask | u64::from(*s == sym) << bit)
}

/// A numeric comparison read as `f64`: numbers clearly below or above the literal are settled
/// here, and those within [`Window::MARGIN`] of it are left to the evaluator.
struct Window {
    at: f64,
    op: Op,
}

impl Window {
    /// Relative margin around the literal. `Decimal` to `f64` is within a few units in the last
    /// place (about 1e-15 relative), so an `f64` farther than this from the literal lies on the
    /// same side of it as the exact number does.
    const MARGIN: f64 = 1e-6;

    fn of(c: &Comparison) -> Option<Self> {
        match (&c.literal, c.hint) {
            (Literal::Scalar(scalar), None | Some(Hint::Decimal)) => {
                Some(Self { at: scalar.num?.to_f64()?, op: c.op })
            }
            _ => None,
        }
    }

    /// Which numbers of the chunk are clearly below, and which clearly above, the literal.
    fn masks(&self, chunk: &[f64]) -> (u64, u64) {
        let (mut below, mut above) = (0, 0);
        for (bit, &x) in chunk.iter().enumerate() {
            let margin = Self::MARGIN * x.abs().max(self.at.abs());
            below |= u64::from(x < self.at - margin) << bit;
            above |= u64::from(x > self.at + margin) << bit;
        }
        (below, above)
    }

    /// Where the comparison holds, among numbers clearly off the literal.
    fn truth(&self, below: u64, above: u64) -> u64 {
        match self.op {
            Op::Lt | Op::Le => below,
            Op::Gt | Op::Ge => above,
            Op::Eq => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_sets_combine_past_their_ends() {
        let mut a = Bits::default();
        a.set(3, true);
        a.set(130, true);
        a.set(200, false);
        assert_eq!(a.ones().collect::<Vec<_>>(), [3, 130]);
        let mut b = Bits::default();
        b.set(3, true);
        let mut both = a.clone();
        both.and(&b);
        assert_eq!(both.ones().collect::<Vec<_>>(), [3]);
        let mut either = b.clone();
        either.or(&a);
        assert_eq!(either.ones().collect::<Vec<_>>(), [3, 130]);
        a.and_not(&b);
        assert_eq!(a.ones().collect::<Vec<_>>(), [130]);
        assert!(!a.get(10_000));
        assert_eq!((a.count(), either.count()), (1, 2));
    }
}
