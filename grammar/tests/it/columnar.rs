//! Property test: the columnar matcher gives the evaluator's answers, three-valued and both ways,
//! over random offers and demands, while offers come and go one at a time.

use agora_grammar::{Compiled, Expr, Hint, Offers, Op, Part, Side, Truth, Value, flatten, match_pair, parse};
use proptest::prelude::*;
use serde_json::{Map, json};

/// Few names, so that demands and offers meet on them often.
const OFFER_KEYS: &[&str] = &["a", "b", "c.d", "c.e"];
const DEMAND_KEYS: &[&str] = &["r.x", "r.y"];

/// Texts that read as numbers, versions, dates, booleans, and as nothing but text.
const TEXTS: &[&str] = &[
    "wasmtime",
    "docker",
    "wasm",
    "4",
    "4.0000000001",
    "4.00000000000000000001",
    "4.000003",
    "4.000005",
    "10",
    "-2.5",
    "1e3",
    "1.2.3",
    "2.0",
    "true",
    "false",
    "2026-01-01T00:00:00Z",
    "2025-06-30T12:00:00+02:00",
    "",
];

fn text() -> impl Strategy<Value = String> {
    proptest::sample::select(TEXTS).prop_map(str::to_string)
}

fn number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        (-3i64..12).prop_map(|n| json!(n)),
        (-40i64..48).prop_map(|n| json!(n as f64 / 4.0)),
        Just(json!(4.0000000001)),
        Just(json!(3.9999999999)),
        // Inside and outside the columns' margin around 4 (1e-6 of it).
        Just(json!(4.000003)),
        Just(json!(3.999995)),
        Just(json!(1e-20)),
        Just(json!(1e30)),
        Just(json!(u64::MAX)),
    ]
}

fn scalar_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        4 => text().prop_map(serde_json::Value::String),
        4 => number(),
        1 => any::<bool>().prop_map(serde_json::Value::Bool),
        1 => Just(serde_json::Value::Null),
    ]
}

fn value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        6 => scalar_value(),
        1 => proptest::collection::vec(text(), 0..3).prop_map(|items| json!(items)),
        1 => proptest::collection::vec(-3i64..12, 1..3).prop_map(|items| json!(items)),
        1 => proptest::collection::vec(any::<bool>(), 1..3).prop_map(|items| json!(items)),
    ]
}

fn properties(keys: &'static [&'static str]) -> impl Strategy<Value = serde_json::Value> {
    proptest::collection::vec(proptest::option::of(value()), keys.len()).prop_map(move |values| {
        let mut map = Map::new();
        for (key, value) in keys.iter().zip(values) {
            if let Some(value) = value {
                map.insert((*key).to_string(), value);
            }
        }
        serde_json::Value::Object(map)
    })
}

fn literal() -> impl Strategy<Value = Vec<Part>> {
    prop_oneof![
        6 => text().prop_map(|t| if t.is_empty() { vec![] } else { vec![Part::Text(t)] }),
        1 => (text(), any::<bool>()).prop_map(|(t, star_first)| {
            let t = if t.is_empty() { "w".to_string() } else { t[..1].to_string() };
            if star_first { vec![Part::Star, Part::Text(t)] } else { vec![Part::Text(t), Part::Star] }
        }),
    ]
}

fn constraint(keys: &'static [&'static str]) -> impl Strategy<Value = Expr> {
    let name = proptest::sample::select(keys).prop_map(str::to_string);
    let op = prop_oneof![Just(Op::Eq), Just(Op::Lt), Just(Op::Le), Just(Op::Gt), Just(Op::Ge)];
    let hint = prop_oneof![
        6 => Just(None),
        1 => Just(Some(Hint::Version)),
        1 => Just(Some(Hint::Decimal)),
        1 => Just(Some(Hint::DateTime)),
    ];
    let value = prop_oneof![
        8 => literal().prop_map(Value::Str),
        1 => proptest::collection::vec(literal(), 1..3).prop_map(Value::List),
    ];
    let leaf = prop_oneof![
        1 => Just(Expr::True),
        2 => name.clone().prop_map(Expr::Present),
        8 => (name, hint, op, value).prop_map(|(name, hint, op, value)| Expr::Compare { name, hint, op, value }),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Expr::And),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

/// One change to the set: an offer added, or the offer at this place among the live ones removed.
#[derive(Debug, Clone)]
enum Step {
    Push(serde_json::Value, Expr),
    Remove(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (properties(OFFER_KEYS), constraint(DEMAND_KEYS)).prop_map(|(p, c)| Step::Push(p, c)),
        1 => any::<usize>().prop_map(Step::Remove),
    ]
}

/// The live offers' handles, in push order, with their constraints.
type Live = Vec<(usize, Expr)>;

fn apply(offers: &mut Offers, live: &mut Live, step: &Step) {
    match step {
        Step::Push(props, constraints) => {
            live.push((offers.push(&flatten(props).unwrap(), constraints), constraints.clone()));
        }
        Step::Remove(pick) => {
            if !live.is_empty() {
                let (at, _) = live.remove(pick % live.len());
                assert!(offers.remove(at), "a live offer is removed");
                assert!(!offers.remove(at), "and only once");
            }
        }
    }
}

/// Every way of matching agrees with the evaluator, one offer at a time.
fn check(offers: &Offers, demand: &Side, live: &Live) -> Result<(), TestCaseError> {
    let sides = offers.demand_sides(demand);
    prop_assert_eq!(
        sides.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
        live.iter().map(|(at, _)| *at).collect::<Vec<_>>()
    );
    let mut vocab = offers.vocab.clone();
    let mut expected = Vec::new();
    for (&(at, truth), (_, constraints)) in sides.iter().zip(live) {
        let props = offers.properties(at).expect("a live offer has properties");
        let exact = demand.constraints.eval(props, &offers.vocab, &mut Vec::new());
        prop_assert_eq!(truth, exact, "demand side of offer {}", at);
        let offer_side =
            Compiled::new(constraints, &mut vocab).eval(demand.properties.view(), &vocab, &mut Vec::new());
        if exact == Truth::True && offer_side == Truth::True {
            expected.push(at);
        }
    }
    prop_assert_eq!(&offers.match_all(demand), &expected);
    prop_assert_eq!(&offers.match_all_linear(demand), &expected);
    prop_assert_eq!(&offers.match_indexed(demand), &expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn columns_answer_as_the_evaluator_does_while_offers_come_and_go(
        before in proptest::collection::vec(step(), 0..40),
        demand_props in properties(DEMAND_KEYS),
        demand_constraints in constraint(OFFER_KEYS),
        other_constraints in constraint(OFFER_KEYS),
        after in proptest::collection::vec(step(), 0..40),
    ) {
        let demand_props = flatten(&demand_props).unwrap();
        let mut offers = Offers::new(&["a"]);
        let mut live = Live::new();
        for step in &before {
            apply(&mut offers, &mut live, step);
        }
        // The demand's columns are made from the offers there, then kept up to date; a second
        // demand adds its own and reads those the first left.
        let demand = offers.demand(&demand_props, &demand_constraints);
        check(&offers, &demand, &live)?;
        let other = offers.demand(&demand_props, &other_constraints);
        for step in &after {
            apply(&mut offers, &mut live, step);
            check(&offers, &demand, &live)?;
            check(&offers, &other, &live)?;
        }
        // A demand whose columns the set does not keep, scanned beside those it does.
        let mixed = Expr::And(vec![demand_constraints.clone(), Expr::Present("c.e".into())]);
        let unkept = Side::new(&mut offers.vocab, &demand_props, &mixed);
        check(&offers, &unkept, &live)?;
        // A demand the set keeps no columns for gets them for one scan.
        let mut bare_set = Offers::new(&["a"]);
        let mut bare_live = Live::new();
        for step in before.iter().chain(&after) {
            apply(&mut bare_set, &mut bare_live, step);
        }
        let bare = Side::new(&mut bare_set.vocab, &demand_props, &demand_constraints);
        check(&bare_set, &bare, &bare_live)?;
        for step in &before {
            apply(&mut bare_set, &mut bare_live, step);
            check(&bare_set, &bare, &bare_live)?;
        }
    }
}

#[test]
fn a_pair_and_the_set_agree_on_an_offer_whose_side_is_undefined() {
    let mut offers = Offers::new(&[]);
    let props = json!({"a": "wasmtime", "b": 4});
    let at = offers.push(&flatten(&props).unwrap(), &parse("(r.x=1)").unwrap());
    let demand = offers.demand(&flatten(&json!({})).unwrap(), &parse("(&(a=wasmtime)(b>=4))").unwrap());
    assert_eq!(offers.demand_sides(&demand), [(at, Truth::True)]);
    assert!(offers.match_all(&demand).is_empty(), "the offer's side is undefined: no match");
    let mut vocab = offers.vocab.clone();
    let offer = Side::parse(&mut vocab, &props, "(r.x=1)").unwrap();
    let pair = match_pair(&vocab, &demand, &offer);
    assert_eq!((pair.demand_side, pair.offer_side), (Truth::True, Truth::Undefined));
}
