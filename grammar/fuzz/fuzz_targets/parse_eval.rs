//! Parser and evaluator under libFuzzer. The input is a constraint, optionally followed by a NUL
//! byte and a JSON properties object. Checked on every input: nothing panics; a constraint that
//! parses prints to a canonical form that parses back to the same tree; evaluation and matching
//! both ways complete, and an offer always matches itself symmetrically.
#![no_main]

use agora_grammar::{Side, Vocabulary, match_pair, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (constraint, properties) = match text.split_once('\0') {
        Some((c, p)) => (c.to_string(), p.to_string()),
        None => (text.to_string(), String::new()),
    };
    let Ok(expr) = parse(&constraint) else { return };
    let printed = expr.to_string();
    let again = parse(&printed).unwrap_or_else(|e| panic!("canonical form {printed:?} does not parse: {e}"));
    assert_eq!(again, expr, "canonical form {printed:?} reads back differently");

    let props = serde_json::from_str::<serde_json::Value>(&properties).unwrap_or_else(|_| {
        serde_json::json!({"a": 1, "b": "x*y", "c": [1, 2], "d": true, "e": null, "f": {"@tag": "t", "g": 2.5}})
    });
    let mut vocab = Vocabulary::default();
    let Ok(offer) = Side::parse(&mut vocab, &props, &printed) else { return };
    let Ok(demand) = Side::parse(&mut vocab, &props, &constraint) else { return };
    let one = match_pair(&vocab, &demand, &offer);
    let other = match_pair(&vocab, &offer, &demand);
    // The same constraint on the same properties, whichever side holds it.
    assert_eq!(one.demand_side, other.offer_side);
    assert_eq!(one.result, other.result);
});
