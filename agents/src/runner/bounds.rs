//! What a replica may cost and what its invoice may ask, from numbers a provider wrote: its
//! offer's prices, threads and fuel limit. Every figure is checked, so no offer can overflow a
//! job's arithmetic or make a cost negative.

use rust_decimal::Decimal;
use serde_json::Value;
use std::time::Duration;

/// The most a replica of a job of `timeout` may cost at a proposal's linear prices: every second
/// until its commit deadline, on every CPU thread offered, all the fuel its limit allows, plus
/// the start price. Why the proposal cannot be bounded, when it cannot: a priced counter the
/// requestor cannot bound, or a number out of range.
pub(crate) fn worst_cost(properties: &Value, timeout: Duration) -> Result<Decimal, String> {
    let flat = agora_grammar::flatten(properties).map_err(|e| format!("its properties: {e}"))?;
    let pricing = crate::LinearPricing::from_properties(&flat).map_err(|e| format!("its pricing: {e}"))?;
    let threads = agora_agreement::cpu_threads(&flat)
        .map_err(|expected| format!("{} is not {expected}", agora_agreement::keys::CPU_THREADS))?;
    let fuel = agora_agreement::fuel_limit(&flat)
        .map_err(|expected| format!("{} is not {expected}", agora_agreement::keys::FUEL_LIMIT))?;
    // A run may last until its commit deadline, 2T after it starts.
    let secs = Decimal::from(timeout.as_secs()) * Decimal::TWO;
    bounded_cost(&pricing, secs, threads, fuel)
}

/// The most an invoice of `agreement` may ask for a run the requestor saw take `wall`, from its
/// `exec` to its last result: every second of it, on every thread offered, all the fuel the limit
/// allows, and the start price; never more than the replica's worst case reserved at selection.
pub(crate) fn justified(
    agreement: &agora_agreement::Agreement,
    wall: Duration,
    worst: Decimal,
) -> Result<Decimal, String> {
    let pricing = agreement.pricing().map_err(|e| e.to_string())?;
    let threads = agreement.cpu_threads().map_err(|e| e.to_string())?;
    let fuel = agreement.fuel_limit().map_err(|e| e.to_string())?;
    // Whole milliseconds, rounded up: the provider's clock saw the run inside this span.
    let millis = i64::try_from(wall.as_millis()).unwrap_or(i64::MAX - 1) + 1;
    let secs = Decimal::new(millis, 3);
    Ok(bounded_cost(&pricing, secs, threads, fuel)?.min(worst))
}

/// Why the usage a debit note of `agreement` reports cannot be, for a run the requestor sent
/// `seen` ago: a counter above what that span allows (its duration, its CPU time on the offered
/// threads, the fuel limit), or a value that is not a number ≥ 0. `None` when it can be.
pub(crate) fn usage_problem(
    agreement: &agora_agreement::Agreement,
    usage: &Value,
    seen: Duration,
) -> Option<String> {
    let vector = match agreement.usage_vector() {
        Ok(vector) => vector,
        Err(e) => return Some(e.to_string()),
    };
    let values = usage.as_array().filter(|v| v.len() == vector.len());
    let Some(values) = values else {
        return Some(format!("its usage {usage} is not one number per counter of {vector:?}"));
    };
    let threads = agreement.cpu_threads().unwrap_or(Decimal::ONE);
    let fuel = agreement.fuel_limit().ok().flatten();
    // Whole milliseconds, rounded up, as for invoices.
    let millis = i64::try_from(seen.as_millis()).unwrap_or(i64::MAX - 1) + 1;
    let secs = Decimal::new(millis, 3);
    for (counter, value) in vector.iter().zip(values) {
        let Some(used) = agora_agreement::json_decimal(value).filter(|u| !u.is_sign_negative()) else {
            return Some(format!("it reports {counter} as {value}, not a number ≥ 0"));
        };
        let bound = match counter.as_str() {
            "golem.usage.duration_sec" => Some(secs),
            "golem.usage.cpu_sec" => secs.checked_mul(threads),
            "agora.usage.fuel" => fuel.map(Decimal::from),
            _ => None,
        };
        if let Some(bound) = bound.filter(|b| used > *b) {
            return Some(format!(
                "it reports {counter} {}, but the run the requestor sent {} s ago allows at most {}",
                used.normalize(),
                secs.normalize(),
                bound.normalize()
            ));
        }
    }
    None
}

/// What `pricing` gives at most for a run of `secs` seconds on `threads` threads that may burn
/// `fuel`: every counter at its bound, and the start price. A priced counter without a bound
/// makes it unbounded, and that is the reason given.
pub(crate) fn bounded_cost(
    pricing: &crate::LinearPricing,
    secs: Decimal,
    threads: Decimal,
    fuel: Option<u64>,
) -> Result<Decimal, String> {
    let usage = pricing
        .usage_vector
        .iter()
        .zip(&pricing.coeffs)
        .map(|(counter, price)| {
            let bound = match counter.as_str() {
                "golem.usage.duration_sec" => Some(secs),
                "golem.usage.cpu_sec" => secs.checked_mul(threads),
                "agora.usage.fuel" => fuel.map(Decimal::from),
                _ => None,
            };
            // A counter the runner cannot bound is priced at its worst only when it is free.
            match bound {
                _ if price.is_zero() => Ok(Decimal::ZERO),
                Some(bound) => Ok(bound),
                None => Err(format!("it prices {counter}, which the requestor cannot bound")),
            }
        })
        .collect::<Result<Vec<Decimal>, String>>()?;
    pricing.cost(&usage).map_err(|e| format!("its worst case: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn offer(threads: Value, fuel: Value, coeffs: Value) -> Value {
        json!({
            "golem.com.pricing.model": "linear",
            "golem.com.usage.vector": ["golem.usage.duration_sec", "golem.usage.cpu_sec", "agora.usage.fuel"],
            "golem.com.pricing.model.linear.coeffs": coeffs,
            "golem.inf.cpu.threads": threads,
            "agora.limits.fuel": fuel,
        })
    }

    #[test]
    fn threads_out_of_range_are_named_rather_than_priced() {
        let coeffs = json!([0.0001, 0.0002, 0, 0.001]);
        for threads in [json!(1e28), json!(-4), json!(0), json!(0.5), json!("8"), json!(null)] {
            let why = worst_cost(&offer(threads.clone(), json!(0), coeffs.clone()), Duration::from_secs(30))
                .expect_err(&threads.to_string());
            assert!(why.contains("golem.inf.cpu.threads"), "{threads}: {why}");
        }
        // 60 s × 0.0001 + 60 s × 2 threads × 0.0002 + 0.001
        let cost = worst_cost(&offer(json!(2), json!(0), coeffs), Duration::from_secs(30)).unwrap();
        assert_eq!(cost, Decimal::new(31, 3));
    }

    /// A JSON number of any size, sign and form, or something that is not a number at all.
    fn any_number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(json!("NaN"), Value::Number)),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-40i32..40, 1u32..9)
                .prop_map(|(e, m)| serde_json::from_str(&format!("{m}e{e}")).unwrap_or(json!(0))),
            prop::sample::select(vec![
                json!("inf"),
                json!("-inf"),
                json!("NaN"),
                json!(null),
                json!([1]),
                json!(1e308)
            ]),
        ]
    }

    proptest! {
        /// Every number the agents and payments read of an agreement's terms, and of the usage a
        /// debit note reports, whatever a peer wrote there: nothing panics, no duration is longer
        /// than the terms' bound, no cost is negative, and no invoice bound passes the worst case.
        #[test]
        fn no_number_in_the_terms_or_a_usage_panics_or_escapes_its_bounds(
            threads in any_number(), fuel in any_number(), c0 in any_number(), fixed in any_number(),
            interval in any_number(), accept in any_number(), payment in any_number(),
            u0 in any_number(), u1 in any_number(), u2 in any_number(),
            wall_ms in any::<u64>(), worst in any::<u64>(),
        ) {
            let mut offer = offer(threads, fuel, json!([c0, 0.0002, 0, fixed]));
            offer[agora_agreement::keys::DEBIT_NOTE_INTERVAL] = interval;
            let demand = json!({
                agora_agreement::keys::DEBIT_NOTE_ACCEPT_TIMEOUT: accept,
                agora_agreement::keys::PAYMENT_TIMEOUT: payment,
                agora_agreement::keys::CHOSEN_PLATFORM: "erc20-dev-tglm",
            });
            let a = agora_agreement::fixtures::agreement(demand, offer);
            let longest = Duration::from_secs(u64::from(u32::MAX));
            for read in [a.debit_note_interval(), a.debit_note_accept_timeout(), a.payment_timeout()] {
                if let Ok(Some(d)) = read {
                    prop_assert!(d <= longest);
                }
            }
            let _platform = a.payment_platform();
            let worst = Decimal::from(worst);
            if let Ok(bound) = justified(&a, Duration::from_millis(wall_ms), worst) {
                prop_assert!(bound >= Decimal::ZERO && bound <= worst);
            }
            let usage = json!([u0, u1, u2]);
            if let Ok(Some(cost)) = agora_payment::usage_cost(&a, &usage) {
                prop_assert!(cost >= Decimal::ZERO);
            }
            let _judged = usage_problem(&a, &usage, Duration::from_millis(wall_ms));
        }

        #[test]
        fn no_number_in_an_offer_panics_or_prices_below_zero(
            threads in any_number(), fuel in any_number(),
            c0 in any_number(), c1 in any_number(), c2 in any_number(), fixed in any_number(),
            timeout in 0u64..=crate::job::MAX_TIMEOUT, wall_ms in any::<u64>(),
        ) {
            let properties = offer(threads, fuel, json!([c0, c1, c2, fixed]));
            if let Ok(worst) = worst_cost(&properties, Duration::from_secs(timeout)) {
                prop_assert!(worst >= Decimal::ZERO);
                let flat = agora_grammar::flatten(&properties).unwrap();
                let pricing = crate::LinearPricing::from_properties(&flat).unwrap();
                let threads = agora_agreement::cpu_threads(&flat).unwrap();
                let fuel = agora_agreement::fuel_limit(&flat).unwrap();
                let secs = Decimal::new(i64::try_from(wall_ms / 1000).unwrap_or(i64::MAX), 0);
                if let Ok(bound) = bounded_cost(&pricing, secs, threads, fuel) {
                    prop_assert!(bound >= Decimal::ZERO);
                }
            }
        }
    }
}
