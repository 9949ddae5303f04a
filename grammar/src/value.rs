//! Typed property values, interned property names, and property sets flattened once.

use crate::Properties;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;

/// An interned property name.
pub type KeyId = u32;
/// An interned string value.
pub type Sym = u32;

#[derive(Debug, Default, Clone)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, text: &str) -> (u32, bool) {
        if let Some(id) = self.ids.get(text) {
            return (*id, false);
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 interned strings");
        self.names.push(text.into());
        self.ids.insert(text.into(), id);
        (id, true)
    }
}

/// The names and string values seen by one matcher, each given a small integer once.
///
/// String values are interned too: an equality test is then an integer comparison, and the few
/// values most offers share ("wasmtime", "linear", "public") stay in cache. A string that reads as
/// a semantic version is parsed once, here, for `$v` comparisons. The vocabulary only grows; a
/// long-lived market rebuilds its [`crate::Offers`] now and then to shed what expired offers left.
#[derive(Debug, Default, Clone)]
pub struct Vocabulary {
    keys: Interner,
    strings: Interner,
    versions: Vec<Option<semver::Version>>,
}

impl Vocabulary {
    pub fn intern(&mut self, name: &str) -> KeyId {
        self.keys.intern(name).0
    }

    pub fn get(&self, name: &str) -> Option<KeyId> {
        self.keys.ids.get(name).copied()
    }

    pub fn name(&self, id: KeyId) -> &str {
        &self.keys.names[id as usize]
    }

    pub fn intern_str(&mut self, text: &str) -> Sym {
        let (id, new) = self.strings.intern(text);
        if new {
            let version =
                if text.starts_with(|c: char| c.is_ascii_digit()) { parse_version(text) } else { None };
            self.versions.push(version);
        }
        id
    }

    /// The text of an interned string value.
    pub fn text(&self, sym: Sym) -> &str {
        &self.strings.names[sym as usize]
    }

    /// How many string values are interned: every [`Sym`] is below it.
    pub(crate) fn strings_len(&self) -> usize {
        self.strings.names.len()
    }

    pub(crate) fn version(&self, sym: Sym) -> Option<&semver::Version> {
        self.versions[sym as usize].as_ref()
    }
}

/// A list property: all items of one type.
#[derive(Debug, Clone, PartialEq)]
pub enum List {
    Bool(Vec<bool>),
    Num(Vec<Decimal>),
    Str(Vec<Sym>),
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
    Str(Sym),
    /// Boxed: lists are rare, and a small value keeps property sets dense in cache.
    List(Box<List>),
}

pub(crate) fn json_decimal(n: &serde_json::Number) -> Option<Decimal> {
    let text = n.to_string();
    Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).ok()
}

impl PropValue {
    fn from_json(value: &serde_json::Value, vocab: &mut Vocabulary) -> Self {
        use serde_json::Value as J;
        match value {
            J::Null => Self::Null,
            J::Bool(b) => Self::Bool(*b),
            J::Number(n) => json_decimal(n).map_or(Self::BadNum, Self::Num),
            J::String(s) => Self::Str(vocab.intern_str(s)),
            J::Array(items) => Self::List(Box::new(match items.first() {
                Some(J::Bool(_)) => List::Bool(items.iter().filter_map(J::as_bool).collect()),
                Some(J::Number(_)) => {
                    List::Num(items.iter().filter_map(|i| i.as_number().and_then(json_decimal)).collect())
                }
                _ => List::Str(items.iter().filter_map(J::as_str).map(|s| vocab.intern_str(s)).collect()),
            })),
            // `flatten` never leaves an object as a value.
            J::Object(_) => Self::Null,
        }
    }
}

/// Types and interns flat properties, sorted by key.
pub(crate) fn typed(vocab: &mut Vocabulary, props: &Properties) -> Vec<(KeyId, PropValue)> {
    let mut values: Vec<(KeyId, PropValue)> =
        props.iter().map(|(k, v)| (vocab.intern(k), PropValue::from_json(v, vocab))).collect();
    values.sort_unstable_by_key(|(k, _)| *k);
    values
}

/// A read-only view of one property set: sorted keys beside their values, so a lookup's binary
/// search touches only the small key array.
#[derive(Debug, Clone, Copy)]
pub struct Props<'a> {
    keys: &'a [KeyId],
    values: &'a [PropValue],
}

impl<'a> Props<'a> {
    pub(crate) fn new(keys: &'a [KeyId], values: &'a [PropValue]) -> Self {
        Self { keys, values }
    }

    pub fn get(&self, key: KeyId) -> Option<&'a PropValue> {
        self.keys.binary_search(&key).ok().map(|i| &self.values[i])
    }
}

/// Flat, typed properties keyed by interned name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PropertySet {
    keys: Vec<KeyId>,
    values: Vec<PropValue>,
}

impl PropertySet {
    /// Types and interns flat properties (see [`crate::flatten`]).
    pub fn new(vocab: &mut Vocabulary, props: &Properties) -> Self {
        let (keys, values) = typed(vocab, props).into_iter().unzip();
        Self { keys, values }
    }

    pub fn view(&self) -> Props<'_> {
        Props::new(&self.keys, &self.values)
    }

    pub fn get(&self, key: KeyId) -> Option<&PropValue> {
        self.view().get(key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Reads a semantic version, accepting `1` and `1.2` as `1.0.0` and `1.2.0`.
pub(crate) fn parse_version(text: &str) -> Option<semver::Version> {
    let text = text.trim();
    semver::Version::parse(text).ok().or_else(|| {
        let parts = text.split('.').count();
        match parts {
            1 => semver::Version::parse(&format!("{text}.0.0")).ok(),
            2 => semver::Version::parse(&format!("{text}.0")).ok(),
            _ => None,
        }
    })
}
