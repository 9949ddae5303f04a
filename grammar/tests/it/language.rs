use agora_grammar::{Expr, Op, Part, Value, parse};

#[test]
fn canonical_forms() {
    let cases = [
        ("()", "()"),
        ("  ( )  ", "()"),
        ("(a=1)", "(a=1)"),
        ("(a = 1)", "(a=1)"),
        ("(a>\"=x\")", "(a>\"=x\")"),
        ("(&(a=1)(b<2))", "(&(a=1)(b<2))"),
        ("(& (a=1)\n  (b<=2) )", "(&(a=1)(b<=2))"),
        ("(|(a>1)(b>=2))", "(|(a>1)(b>=2))"),
        ("(!(a=1))", "(!(a=1))"),
        ("(golem.inf.mem.gib=*)", "(golem.inf.mem.gib=*)"),
        ("(golem.runtime.name=wasm*)", "(golem.runtime.name=wasm*)"),
        ("(name=\"a)b\")", "(name=\"a)b\")"),
        ("(name=\"lit*eral\")", "(name=\"lit*eral\")"),
        ("(name=\"q\\\"uote\\\\\")", "(name=\"q\\\"uote\\\\\")"),
        ("(name=\"plain\")", "(name=plain)"),
        ("(name=)", "(name=\"\")"),
        ("(golem.runtime.version$v>=1.2.0)", "(golem.runtime.version$v>=1.2.0)"),
        ("(price$d<0.5)", "(price$d<0.5)"),
        ("(since$t>2026-01-01T00:00:00Z)", "(since$t>2026-01-01T00:00:00Z)"),
        ("(caps=[vpn, gpu])", "(caps=[vpn,gpu])"),
        ("(caps=[\"a,b\",c])", "(caps=[\"a,b\",c])"),
        ("(caps=[])", "(caps=[])"),
        ("(a=**x)", "(a=*x)"),
        ("(a=x )", "(a=x)"),
    ];
    for (input, canonical) in cases {
        let expr = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(expr.to_string(), canonical, "{input:?}");
        assert_eq!(parse(canonical).unwrap(), expr, "{canonical:?} reads back the same");
    }
}

#[test]
fn the_tree_is_typed() {
    assert_eq!(parse("(a=*)").unwrap(), Expr::Present("a".into()));
    assert_eq!(
        parse("(a=x*y)").unwrap(),
        Expr::Compare {
            name: "a".into(),
            hint: None,
            op: Op::Eq,
            value: Value::Str(vec![Part::Text("x".into()), Part::Star, Part::Text("y".into())]),
        }
    );
    // A quoted star is a literal, not a pattern and not presence.
    assert_eq!(
        parse("(a=\"*\")").unwrap(),
        Expr::Compare { name: "a".into(), hint: None, op: Op::Eq, value: Value::text("*") }
    );
}

#[test]
fn errors_say_where_what_was_expected_and_what_was_found() {
    let cases = [
        ("", 1, 1, "expected '(', found the end of the input"),
        ("(a=1", 1, 5, "found the end of the input"),
        ("(&(a=1)(golem.inf.mem.gib==8))", 1, 27, "expected ')', a list or a quoted value, found '='"),
        ("(a 1)", 1, 4, "found '1'"),
        ("(a=1))", 1, 6, "expected the end of the constraint, found ')'"),
        ("(&\n  (a=1)\n  (b~2))", 3, 5, "expected a comparison operator"),
        ("(a$x=1)", 1, 3, "found '$'"),
        ("(a=\"open)", 1, 4, "found '\"'"),
        ("(a=[1,2)", 1, 8, "expected ',' or ']', found ')'"),
        ("(!(a=1)(b=2))", 1, 8, "expected ')'"),
        ("x", 1, 1, "expected '(', found 'x'"),
    ];
    for (input, line, column, text) in cases {
        let err = parse(input).unwrap_err();
        assert_eq!((err.line, err.column), (line, column), "{input:?}: {err}");
        assert!(err.to_string().contains(text), "{input:?}: {err}");
    }
}

#[test]
fn hostile_input_is_bounded() {
    let deep = format!("{}(a=1){}", "(!".repeat(100), ")".repeat(100));
    let err = parse(&deep).unwrap_err();
    assert!(err.to_string().contains("nesting deeper than 64"), "{err}");
    let ok = format!("{}(a=1){}", "(!".repeat(60), ")".repeat(60));
    parse(&ok).unwrap();
    let long = format!("(a={})", "x".repeat(agora_grammar::MAX_LEN));
    assert!(parse(&long).unwrap_err().to_string().contains("longer than"));
    // Found by fuzzing: a vertical tab is not skipped like a blank, so it stays part of the
    // value, and the value still prints to a form that reads back the same.
    let tricky = parse("(c=\u{b}<2*A)").unwrap();
    assert_eq!(parse(&tricky.to_string()).unwrap(), tricky);
    // Parentheses inside quotes do not count towards nesting.
    parse(&format!("(a=\"{}\")", "(".repeat(500))).unwrap();
}
