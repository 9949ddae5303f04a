//! Property tests: printing and parsing agree, and no input makes the parser panic.

use agora_grammar::{Expr, Hint, Op, Part, Value, parse};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,6}(\\.[a-z0-9_@-]{1,6}){0,3}"
}

/// Text of a bare pattern piece: no characters that end or quote a value, no outer blanks.
fn piece() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._:/-]{1,8}"
}

/// A string value: a literal with any characters, or a wildcard pattern of safe pieces.
fn scalar() -> impl Strategy<Value = Vec<Part>> {
    prop_oneof![
        any::<String>().prop_map(|s| if s.is_empty() { vec![] } else { vec![Part::Text(s)] }),
        proptest::collection::vec(prop_oneof![piece().prop_map(Part::Text), Just(Part::Star)], 1..5)
            .prop_map(normal),
    ]
}

fn normal(parts: Vec<Part>) -> Vec<Part> {
    let mut out: Vec<Part> = Vec::new();
    for part in parts {
        match (out.last_mut(), part) {
            (Some(Part::Text(prev)), Part::Text(t)) => prev.push_str(&t),
            (Some(Part::Star), Part::Star) => {}
            (_, p) => out.push(p),
        }
    }
    out
}

fn leaf() -> impl Strategy<Value = Expr> {
    let op = prop_oneof![Just(Op::Eq), Just(Op::Lt), Just(Op::Le), Just(Op::Gt), Just(Op::Ge)];
    let hint =
        proptest::option::of(prop_oneof![Just(Hint::Version), Just(Hint::Decimal), Just(Hint::DateTime)]);
    let value = prop_oneof![
        scalar().prop_map(Value::Str),
        proptest::collection::vec(scalar(), 0..4).prop_map(Value::List),
    ];
    prop_oneof![
        Just(Expr::True),
        name().prop_map(Expr::Present),
        (name(), hint, op, value).prop_map(|(name, hint, op, value)| {
            // `(name=*)` reads as presence; keep the generated tree in that one spelling.
            if op == Op::Eq && value == Value::Str(vec![Part::Star]) {
                Expr::Present(name)
            } else {
                Expr::Compare { name, hint, op, value }
            }
        }),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..5).prop_map(Expr::And),
            proptest::collection::vec(inner.clone(), 1..5).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn print_then_parse_gives_the_same_tree(e in expr()) {
        let printed = e.to_string();
        let back = parse(&printed).map_err(|err| TestCaseError::fail(format!("{printed}: {err}")))?;
        prop_assert_eq!(back, e);
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _outcome = parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn the_parser_never_panics_on_near_miss_constraints(s in "[()&|!=<>*$vdt\\[\\],\" a-c0-9\\\\.]{0,64}") {
        if let Ok(e) = parse(&s) {
            prop_assert_eq!(parse(&e.to_string()).unwrap(), e);
        }
    }
}
