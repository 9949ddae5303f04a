use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Flat properties: dotted names to values, in name order.
pub type Properties = BTreeMap<String, Value>;

/// What is wrong with a properties object, naming the property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("properties must be a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error("property '{0}' is given twice (once nested, once dotted, or twice dotted)")]
    Duplicate(String),
    #[error("property name '{0}' has an empty part; names are dot-separated words")]
    EmptyName(String),
    #[error(
        "property '{name}' is a list of mixed types ({first} and {other}); list items must share one type"
    )]
    MixedList { name: String, first: &'static str, other: &'static str },
    #[error("property '{0}' is a list holding a list or an object; items must be strings, numbers or bools")]
    NestedList(String),
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Flattens nested and dotted properties into one map of dotted names.
///
/// `null` is kept: it is a property that is present with no value. Lists must hold items of one
/// scalar type.
pub fn flatten(properties: &Value) -> Result<Properties, Error> {
    let Value::Object(map) = properties else {
        return Err(Error::NotAnObject(kind(properties)));
    };
    let mut out = Properties::new();
    walk("", map, &mut out)?;
    Ok(out)
}

fn walk(prefix: &str, map: &Map<String, Value>, out: &mut Properties) -> Result<(), Error> {
    for (key, value) in map {
        let name = if key == "@tag" {
            if prefix.is_empty() {
                return Err(Error::EmptyName(key.clone()));
            }
            prefix.to_string()
        } else {
            let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            if name.split('.').any(str::is_empty) {
                return Err(Error::EmptyName(name));
            }
            name
        };
        match value {
            Value::Object(inner) if key != "@tag" => walk(&name, inner, out)?,
            Value::Object(_) => return Err(Error::NestedList(name)),
            Value::Array(items) => {
                check_list(&name, items)?;
                insert(out, name, value.clone())?;
            }
            scalar => insert(out, name, scalar.clone())?,
        }
    }
    Ok(())
}

fn check_list(name: &str, items: &[Value]) -> Result<(), Error> {
    let mut first: Option<&'static str> = None;
    for item in items {
        if matches!(item, Value::Array(_) | Value::Object(_)) {
            return Err(Error::NestedList(name.to_string()));
        }
        match first {
            None => first = Some(kind(item)),
            Some(f) if f != kind(item) => {
                return Err(Error::MixedList { name: name.to_string(), first: f, other: kind(item) });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn insert(out: &mut Properties, name: String, value: Value) -> Result<(), Error> {
    if out.contains_key(&name) {
        return Err(Error::Duplicate(name));
    }
    out.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_dotted_and_mixed_forms_flatten_alike() {
        let nested = json!({"golem": {"inf": {"mem": {"gib": 8}}, "runtime": {"name": "docker"}}});
        let dotted = json!({"golem.inf.mem.gib": 8, "golem.runtime.name": "docker"});
        let mixed = json!({"golem.inf": {"mem.gib": 8}, "golem": {"runtime.name": "docker"}});
        let a = flatten(&nested).unwrap();
        assert_eq!(a, flatten(&dotted).unwrap());
        assert_eq!(a, flatten(&mixed).unwrap());
        assert_eq!(a.keys().collect::<Vec<_>>(), ["golem.inf.mem.gib", "golem.runtime.name"]);
    }

    #[test]
    fn a_tag_gives_a_node_with_children_its_own_value() {
        let props = json!({"golem": {"srv": {"caps": {"@tag": "multi", "count": 2}}}});
        let flat = flatten(&props).unwrap();
        assert_eq!(flat["golem.srv.caps"], "multi");
        assert_eq!(flat["golem.srv.caps.count"], 2);
    }

    #[test]
    fn null_lists_and_scalars_are_kept() {
        let flat = flatten(&json!({"a": null, "b": [1, 2.5], "c": ["x", "y"], "d": true, "e": []})).unwrap();
        assert_eq!(flat["a"], Value::Null);
        assert_eq!(flat["b"], json!([1, 2.5]));
        assert_eq!(flat.len(), 5);
    }

    #[test]
    fn bad_properties_name_the_property() {
        let cases = [
            (json!([1]), Error::NotAnObject("list")),
            (json!({"a.b": 1, "a": {"b": 2}}), Error::Duplicate("a.b".into())),
            (json!({"a..b": 1}), Error::EmptyName("a..b".into())),
            (json!({"x": {"": 1}}), Error::EmptyName("x.".into())),
            (
                json!({"l": [1, "two"]}),
                Error::MixedList { name: "l".into(), first: "number", other: "string" },
            ),
            (json!({"l": [[1]]}), Error::NestedList("l".into())),
            (json!({"@tag": 1}), Error::EmptyName("@tag".into())),
        ];
        for (input, expected) in cases {
            assert_eq!(flatten(&input).unwrap_err(), expected, "{input}");
        }
    }
}
