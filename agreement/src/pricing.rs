//! Golem's linear pricing, as offers state it and agreements carry it.

use agora_grammar::Properties;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;

pub const MODEL: &str = "golem.com.pricing.model";
pub const COEFFS: &str = "golem.com.pricing.model.linear.coeffs";
pub const USAGE_VECTOR: &str = "golem.com.usage.vector";

/// What is wrong with an offer's pricing, or with a usage to price.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("property '{0}' is missing")]
    Missing(&'static str),
    #[error("pricing model '{0}' is not supported (only 'linear')")]
    Model(String),
    #[error("property '{name}' must be {expected}")]
    Type { name: &'static str, expected: &'static str },
    #[error(
        "{coeffs} coefficients for {counters} usage counters; expected one per counter plus a fixed price"
    )]
    Length { coeffs: usize, counters: usize },
    #[error("price {0} is negative")]
    Negative(Decimal),
    #[error("usage has {got} values, the offer prices {expected} counters")]
    Usage { got: usize, expected: usize },
    #[error("the cost does not fit in a decimal")]
    Overflow,
}

/// Golem's linear pricing: `cost = Σ coeff[i] × usage[i] + fixed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearPricing {
    /// Usage counter names, e.g. `golem.usage.duration_sec`.
    pub usage_vector: Vec<String>,
    /// One price per usage counter, in tokens per unit.
    pub coeffs: Vec<Decimal>,
    /// The price of starting at all.
    pub fixed: Decimal,
}

/// A JSON number as a decimal, through its text (0.1 stays 0.1, not the nearest binary float);
/// `None` for anything else, or a number a decimal cannot hold. How every number a peer writes
/// into terms or usage is read.
pub fn json_decimal(v: &Value) -> Option<Decimal> {
    let Value::Number(n) = v else { return None };
    let text = n.to_string();
    Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).ok()
}

impl LinearPricing {
    /// Reads the pricing of flat offer properties.
    pub fn from_properties(props: &Properties) -> Result<Self, PricingError> {
        let model = props.get(MODEL).ok_or(PricingError::Missing(MODEL))?;
        match model.as_str() {
            Some("linear") => {}
            Some(other) => return Err(PricingError::Model(other.to_string())),
            None => {
                return Err(PricingError::Type { name: MODEL, expected: "a string" });
            }
        }
        let names = props.get(USAGE_VECTOR).ok_or(PricingError::Missing(USAGE_VECTOR))?;
        let usage_vector = names
            .as_array()
            .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
            .ok_or(PricingError::Type { name: USAGE_VECTOR, expected: "a list of strings" })?;
        let coeffs = props.get(COEFFS).ok_or(PricingError::Missing(COEFFS))?;
        let mut coeffs = coeffs
            .as_array()
            .and_then(|a| a.iter().map(json_decimal).collect::<Option<Vec<_>>>())
            .ok_or(PricingError::Type { name: COEFFS, expected: "a list of numbers" })?;
        if coeffs.len() != usage_vector.len() + 1 {
            return Err(PricingError::Length { coeffs: coeffs.len(), counters: usage_vector.len() });
        }
        if let Some(negative) = coeffs.iter().find(|c| c.is_sign_negative() && !c.is_zero()) {
            return Err(PricingError::Negative(*negative));
        }
        // The length check above guarantees a last element.
        let fixed = coeffs.pop().expect("fixed price");
        Ok(Self { usage_vector, coeffs, fixed })
    }

    /// The pricing as offer properties.
    pub fn to_properties(&self) -> Value {
        let coeffs: Vec<Value> = self.coeffs.iter().chain([&self.fixed]).map(|d| number(*d)).collect();
        json!({ MODEL: "linear", USAGE_VECTOR: self.usage_vector, COEFFS: coeffs })
    }

    /// The cost of `usage`, one value per counter of the usage vector.
    pub fn cost(&self, usage: &[Decimal]) -> Result<Decimal, PricingError> {
        if usage.len() != self.coeffs.len() {
            return Err(PricingError::Usage { got: usage.len(), expected: self.coeffs.len() });
        }
        self.coeffs.iter().zip(usage).try_fold(self.fixed, |sum, (c, u)| {
            c.checked_mul(*u).and_then(|p| sum.checked_add(p)).ok_or(PricingError::Overflow)
        })
    }
}

fn number(d: Decimal) -> Value {
    // A Decimal prints as a plain decimal literal, which is always valid JSON.
    serde_json::from_str(&d.normalize().to_string()).expect("decimal literal is a JSON number")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(v: Value) -> Properties {
        agora_grammar::flatten(&v).unwrap()
    }

    fn golem_offer() -> Properties {
        props(json!({
            "golem.com.pricing.model": "linear",
            "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
            "golem.com.pricing.model.linear.coeffs": [0.1, 0.02, 1.0],
        }))
    }

    #[test]
    fn costs_are_exact_decimals_in_usage_vector_order() {
        let p = LinearPricing::from_properties(&golem_offer()).unwrap();
        assert_eq!(p.usage_vector, ["golem.usage.cpu_sec", "golem.usage.duration_sec"]);
        // 3 × 0.1 + 10 × 0.02 + 1 = 1.5 exactly (0.1 × 3 is not 0.30000000000000004 here).
        let cost = p.cost(&[Decimal::from(3), Decimal::from(10)]).unwrap();
        assert_eq!(cost, Decimal::from_str("1.5").unwrap());
        assert_eq!(p.cost(&[Decimal::ZERO, Decimal::ZERO]).unwrap(), Decimal::ONE);
    }

    #[test]
    fn pricing_round_trips_through_properties() {
        let p = LinearPricing::from_properties(&golem_offer()).unwrap();
        let again = LinearPricing::from_properties(&props(p.to_properties())).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn bad_pricing_names_what_is_wrong() {
        let mut bad = golem_offer();
        bad.insert(COEFFS.into(), json!([0.1, 1.0]));
        assert_eq!(
            LinearPricing::from_properties(&bad),
            Err(PricingError::Length { coeffs: 2, counters: 2 })
        );
        bad.insert(COEFFS.into(), json!([0.1, -0.5, 1.0]));
        assert!(matches!(LinearPricing::from_properties(&bad), Err(PricingError::Negative(_))));
        bad.insert(COEFFS.into(), json!(["free", 0, 1]));
        assert!(matches!(LinearPricing::from_properties(&bad), Err(PricingError::Type { name: COEFFS, .. })));
        bad.insert(MODEL.into(), json!("auction"));
        assert_eq!(LinearPricing::from_properties(&bad), Err(PricingError::Model("auction".into())));
        assert_eq!(LinearPricing::from_properties(&Properties::new()), Err(PricingError::Missing(MODEL)));
        let p = LinearPricing::from_properties(&golem_offer()).unwrap();
        assert_eq!(p.cost(&[Decimal::ONE]), Err(PricingError::Usage { got: 1, expected: 2 }));
    }
}
