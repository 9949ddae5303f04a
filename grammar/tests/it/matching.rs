//! Evaluation and matching, table-driven: every rule of the language, and Golem's examples.

use agora_grammar::{Offers, Outcome, Side, Truth, Vocabulary, flatten, match_pair, parse};
use serde_json::{Value, json};

/// Evaluates `constraint` on `props`: the truth, and the missing names when undefined.
fn eval(props: &Value, constraint: &str) -> (Truth, Vec<String>) {
    let mut vocab = Vocabulary::default();
    let offer = Side::parse(&mut vocab, props, "()").unwrap();
    let demand = Side::parse(&mut vocab, &json!({}), constraint).unwrap();
    let report = match_pair(&vocab, &demand, &offer);
    (report.demand_side, report.undefined_demand_side)
}

fn provider() -> Value {
    json!({
        "golem": {
            "inf": {"mem": {"gib": 8}, "cpu": {"threads": 4, "architecture": "x86_64"}, "storage.gib": 50.5},
            "runtime": {"name": "wasmtime", "version": "1.2.3", "capabilities": ["vpn", "gpu"]},
            "com": {"payment": {"platform": {"erc20-holesky-tglm": {"address": "0xabc"}}}},
        },
        "golem.node.id.name": "provider-one",
        "golem.node.debug.subnet": "public",
        "agora.available.since": "2026-11-01T10:00:00Z",
        "agora.price.text": "0.25",
        "agora.flags.gpu": true,
        "agora.ports": [80, 443],
        "agora.valueless": null,
        "agora.tagged": {"@tag": "top", "child": 1},
        "agora.paren": "a)b*c",
    })
}

#[test]
fn every_rule_evaluates_as_written() {
    use Truth::{False as F, True as T};
    let cases: &[(&str, Truth)] = &[
        // empty, and, or, not
        ("()", T),
        ("(&(golem.inf.mem.gib=8)(golem.inf.cpu.threads=4))", T),
        ("(&(golem.inf.mem.gib=8)(golem.inf.cpu.threads=5))", F),
        ("(|(golem.inf.mem.gib=1)(golem.inf.cpu.threads=4))", T),
        ("(|(golem.inf.mem.gib=1)(golem.inf.cpu.threads=5))", F),
        ("(!(golem.inf.mem.gib=1))", T),
        ("(!(golem.inf.mem.gib=8))", F),
        // numbers, exactly, as decimals; flat and nested forms agree
        ("(golem.inf.mem.gib>=8)", T),
        ("(golem.inf.mem.gib>8)", F),
        ("(golem.inf.mem.gib<8.0000000001)", T),
        ("(golem.inf.mem.gib=8.000)", T),
        ("(golem.inf.storage.gib>50.4)", T),
        ("(golem.inf.storage.gib<=50.5)", T),
        ("(golem.inf.mem.gib=eight)", F),
        // strings: wildcards for =, lexicographic for < and >
        ("(golem.runtime.name=wasmtime)", T),
        ("(golem.runtime.name=wasm*)", T),
        ("(golem.runtime.name=*time)", T),
        ("(golem.runtime.name=w*s*e)", T),
        ("(golem.runtime.name=docker)", F),
        ("(golem.runtime.name=\"wasm*\")", F),
        ("(golem.node.id.name<provider-two)", T),
        ("(golem.node.id.name>provider-two)", F),
        ("(agora.paren=\"a)b*c\")", T),
        ("(agora.paren=a*)", T),
        // bools: = only
        ("(agora.flags.gpu=true)", T),
        ("(agora.flags.gpu=TRUE)", T),
        ("(agora.flags.gpu=false)", F),
        ("(agora.flags.gpu>false)", F),
        // lists: = with a scalar is contains, with a list the same set
        ("(golem.runtime.capabilities=vpn)", T),
        ("(golem.runtime.capabilities=gp*)", T),
        ("(golem.runtime.capabilities=tpu)", F),
        ("(golem.runtime.capabilities=[gpu,vpn])", T),
        ("(golem.runtime.capabilities=[vpn])", F),
        ("(golem.runtime.capabilities=[vpn,gpu,tpu])", F),
        ("(agora.ports=443)", T),
        ("(agora.ports=[443,80])", T),
        ("(agora.ports>1)", F),
        ("(golem.inf.mem.gib=[8])", F),
        // type hints: $v versions, $d decimals, $t date-times on string properties
        ("(golem.runtime.version$v>=1.2.0)", T),
        ("(golem.runtime.version$v>1.10.0)", F),
        ("(golem.runtime.version>1.10.0)", T),
        ("(golem.runtime.version$v>=1.2)", T),
        ("(golem.runtime.version$v<2)", T),
        ("(golem.runtime.version$v=banana)", F),
        ("(agora.price.text$d<0.3)", T),
        ("(agora.price.text$d=0.250)", T),
        ("(agora.available.since$t<2026-11-02T00:00:00Z)", T),
        ("(agora.available.since$t>2026-11-01T10:00:00+01:00)", T),
        ("(agora.available.since$t>yesterday)", F),
        // presence, null, @tag
        ("(golem.inf.mem.gib=*)", T),
        ("(agora.valueless=*)", T),
        ("(agora.valueless=1)", F),
        ("(agora.tagged=top)", T),
        ("(agora.tagged.child=1)", T),
        ("(golem.com.payment.platform.erc20-holesky-tglm.address=*)", T),
    ];
    for (constraint, expected) in cases {
        let (truth, _) = eval(&provider(), constraint);
        assert_eq!(truth, *expected, "{constraint}");
    }
}

#[test]
fn missing_properties_are_undefined_and_three_valued_logic_holds() {
    use Truth::{False as F, True as T, Undefined as U};
    let cases: &[(&str, Truth, &[&str])] = &[
        ("(golem.inf.gpu.model=rtx)", U, &["golem.inf.gpu.model"]),
        ("(golem.inf.gpu.model=*)", F, &[]),
        ("(!(golem.inf.gpu.model=rtx))", U, &["golem.inf.gpu.model"]),
        ("(&(golem.inf.mem.gib=8)(missing.a=1))", U, &["missing.a"]),
        ("(&(golem.inf.mem.gib=9)(missing.a=1))", F, &[]),
        ("(|(golem.inf.mem.gib=8)(missing.a=1))", T, &[]),
        ("(|(golem.inf.mem.gib=9)(missing.a=1)(missing.b=2))", U, &["missing.a", "missing.b"]),
        ("(|(golem.inf.mem.gib=9)(!(missing.a=*)))", T, &[]),
    ];
    for (constraint, expected, missing) in cases {
        let (truth, names) = eval(&provider(), constraint);
        assert_eq!(truth, *expected, "{constraint}");
        assert_eq!(names, *missing, "{constraint}");
    }
}

#[test]
fn or_with_presence_across_two_payment_platforms() {
    // Golem's example: accept a provider that takes either of two payment platforms.
    let demand = "(|(golem.com.payment.platform.erc20-polygon-glm.address=*)\
                    (golem.com.payment.platform.erc20-holesky-tglm.address=*))";
    assert_eq!(eval(&provider(), demand).0, Truth::True);
    let other = json!({"golem.com.payment.platform.zksync-mainnet-glm.address": "0x1"});
    assert_eq!(eval(&other, demand).0, Truth::False);
}

#[test]
fn a_match_needs_both_sides_true_and_names_what_each_side_missed() {
    let mut vocab = Vocabulary::default();
    let offer = Side::parse(
        &mut vocab,
        &provider(),
        "(&(golem.srv.comp.expiration>0)(golem.node.debug.subnet=public))",
    )
    .unwrap();
    let mut check = |props: Value, constraint: &str| {
        let d = Side::parse(&mut vocab, &props, constraint).unwrap();
        match_pair(&vocab, &d, &offer)
    };
    let good =
        json!({"golem.srv.comp.expiration": 1_700_000_000_000_i64, "golem.node.debug.subnet": "public"});
    let r = check(good.clone(), "(golem.runtime.name=wasmtime)");
    assert_eq!((r.result, r.demand_side, r.offer_side), (Outcome::Match, Truth::True, Truth::True));

    let r = check(good.clone(), "(golem.runtime.name=docker)");
    assert_eq!((r.result, r.demand_side), (Outcome::NoMatch, Truth::False));

    let r = check(json!({"golem.node.debug.subnet": "public"}), "(golem.inf.gpu=*)");
    assert_eq!((r.result, r.demand_side, r.offer_side), (Outcome::NoMatch, Truth::False, Truth::Undefined));

    let r = check(json!({"golem.node.debug.subnet": "public"}), "(golem.inf.gpu.model=x)");
    assert_eq!(r.result, Outcome::Undefined);
    assert_eq!(r.undefined_demand_side, ["golem.inf.gpu.model"]);
    assert_eq!(r.undefined_offer_side, ["golem.srv.comp.expiration"]);
}

fn corpus() -> Vec<(Value, String)> {
    let runtimes = ["wasmtime", "docker", "vm", "wasmtime"];
    (0..400)
        .map(|i| {
            let props = json!({
                "golem.runtime.name": runtimes[i % 4],
                "golem.inf.mem.gib": (i % 16) as u64,
                "golem.inf.cpu.threads": (i % 8) as u64 + 1,
                "golem.runtime.capabilities": if i % 5 == 0 { json!(["vpn"]) } else { json!(["vpn", "gpu"]) },
                "golem.node.id.name": format!("p{i}"),
            });
            let constraints = if i % 7 == 0 { "(requestor.trusted=true)" } else { "()" };
            (props, constraints.to_string())
        })
        .collect()
}

#[test]
fn the_indexed_matcher_finds_exactly_what_the_plain_loop_finds() {
    let mut offers = Offers::new(agora_grammar::DEFAULT_INDEXED);
    for (props, constraints) in corpus() {
        offers.push(&flatten(&props).unwrap(), &parse(&constraints).unwrap());
    }
    // A runtime stated as a number is kept where the index cannot place it, and still found.
    offers.push(
        &flatten(&json!({"golem.runtime.name": 7, "golem.inf.mem.gib": 12})).unwrap(),
        &parse("()").unwrap(),
    );
    let demands = [
        "(&(golem.runtime.name=wasmtime)(golem.inf.mem.gib>=8))",
        "(&(golem.runtime.name=docker)(golem.runtime.capabilities=gpu)(golem.inf.cpu.threads>2))",
        "(golem.runtime.name=vm)",
        "(golem.runtime.name=7)",
        "(|(golem.runtime.name=vm)(golem.inf.mem.gib=3))",
        "(golem.runtime.name=wasm*)",
        "(&(golem.runtime.name=nothing)(golem.inf.mem.gib>=0))",
    ];
    for trusted in [json!({}), json!({"requestor.trusted": true})] {
        for constraint in demands {
            let demand = offers.demand(&flatten(&trusted).unwrap(), &parse(constraint).unwrap());
            let slow = offers.match_all_linear(&demand);
            assert_eq!(offers.match_indexed(&demand), slow, "{constraint} with {trusted}, indexed");
            assert_eq!(offers.match_all(&demand), slow, "{constraint} with {trusted}, columns");
        }
    }
    let demand = offers.demand(&Default::default(), &parse("(golem.runtime.name=wasmtime)").unwrap());
    let found = offers.match_all(&demand);
    // Half the corpus is wasmtime; every 7th offer needs a trusted requestor.
    assert_eq!(found.len(), (0..400).filter(|i| i % 4 % 3 == 0 && i % 7 != 0).count());
}
