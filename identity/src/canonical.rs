use crate::Result;
use serde_json::Value;

/// The canonical JSON bytes of `value`: object keys sorted by their UTF-8 bytes, no whitespace,
/// strings and numbers as `serde_json` prints them. Two parties that hold the same value get the
/// same bytes, whatever order its fields were built or received in, so a signature over them can be
/// checked by anyone holding the value.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value)?;
    let mut out = Vec::with_capacity(256);
    write(&value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Value::Object(map) => {
            // Sorting here, rather than relying on the map's iteration order, keeps the form
            // canonical even when a dependency turns on serde_json's `preserve_order`.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write(item, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level_and_whitespace_dropped() {
        let a = json!({"b": 1, "a": {"z": [true, null, "x"], "y": 2.5}});
        let text = String::from_utf8(canonical_json(&a).unwrap()).unwrap();
        assert_eq!(text, r#"{"a":{"y":2.5,"z":[true,null,"x"]},"b":1}"#);
    }

    #[test]
    fn field_order_does_not_change_the_bytes() {
        let a: Value = serde_json::from_str(r#"{"x": 1, "y": "é\"q"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"y": "é\"q",   "x": 1}"#).unwrap();
        assert_eq!(canonical_json(&a).unwrap(), canonical_json(&b).unwrap());
    }
}
