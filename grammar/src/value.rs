//! Typed property values, interned property names, and property sets flattened once.

use crate::Properties;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;

/// An interned property name.
pub type KeyId = u32;

/// Property names seen by one matcher, each given a small integer once.
#[derive(Debug, Default, Clone)]
pub struct Vocabulary {
    ids: HashMap<Box<str>, KeyId>,
    names: Vec<Box<str>>,
}

impl Vocabulary {
    pub fn intern(&mut self, name: &str) -> KeyId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = KeyId::try_from(self.names.len()).expect("fewer than 2^32 property names");
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    pub fn get(&self, name: &str) -> Option<KeyId> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: KeyId) -> &str {
        &self.names[id as usize]
    }
}

/// A list property: all items of one type.
#[derive(Debug, Clone, PartialEq)]
pub enum List {
    Bool(Vec<bool>),
    Num(Vec<Decimal>),
    Str(Vec<Box<str>>),
}

/// A property value, typed once when the property set is built.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    /// Present, with no value.
    Null,
    Bool(bool),
    Num(Decimal),
    /// A JSON number too large or too small for an exact decimal: compares as false.
    BadNum,
    Str(Box<str>),
    List(List),
}

pub(crate) fn json_decimal(n: &serde_json::Number) -> Option<Decimal> {
    let text = n.to_string();
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

impl PropValue {
    fn from_json(value: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        match value {
            J::Null => Self::Null,
            J::Bool(b) => Self::Bool(*b),
            J::Number(n) => json_decimal(n).map_or(Self::BadNum, Self::Num),
            J::String(s) => Self::Str(s.as_str().into()),
            J::Array(items) => Self::List(match items.first() {
                Some(J::Bool(_)) => List::Bool(items.iter().filter_map(J::as_bool).collect()),
                Some(J::Number(_)) => List::Num(
                    items
                        .iter()
                        .filter_map(|i| i.as_number().and_then(json_decimal))
                        .collect(),
                ),
                _ => List::Str(items.iter().filter_map(J::as_str).map(Into::into).collect()),
            }),
            // `flatten` never leaves an object as a value.
            J::Object(_) => Self::Null,
        }
    }
}

/// Flat, typed properties keyed by interned name, sorted for binary search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PropertySet {
    values: Vec<(KeyId, PropValue)>,
}

impl PropertySet {
    /// Types and interns flat properties (see [`crate::flatten`]).
    pub fn new(vocab: &mut Vocabulary, props: &Properties) -> Self {
        let mut values: Vec<(KeyId, PropValue)> = props
            .iter()
            .map(|(k, v)| (vocab.intern(k), PropValue::from_json(v)))
            .collect();
        values.sort_unstable_by_key(|(k, _)| *k);
        Self { values }
    }

    pub fn get(&self, key: KeyId) -> Option<&PropValue> {
        self.values
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| &self.values[i].1)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}
