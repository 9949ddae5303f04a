use alloy_primitives::U256;
use rust_decimal::Decimal;

/// Why an amount cannot be converted exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount {0} is negative")]
    Negative(Decimal),
    #[error("amount {amount} has more decimal places than the token's {decimals}")]
    TooPrecise { amount: Decimal, decimals: u32 },
    #[error("{0} token units do not fit in a decimal amount")]
    TooLarge(U256),
    #[error("a token with {0} decimals is not supported (at most 28)")]
    Decimals(u32),
}

/// The most decimal places a [`Decimal`] can hold.
const MAX_DECIMALS: u32 = 28;

/// `amount` tokens as a count of the token's smallest unit (`amount × 10^decimals`).
pub fn to_token_units(amount: Decimal, decimals: u32) -> Result<U256, AmountError> {
    if decimals > MAX_DECIMALS {
        return Err(AmountError::Decimals(decimals));
    }
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(AmountError::Negative(amount));
    }
    let amount_n = amount.normalize();
    if amount_n.scale() > decimals {
        return Err(AmountError::TooPrecise { amount, decimals });
    }
    // mantissa × 10^(decimals − scale) is exact: the mantissa is an integer below 2^96.
    let mantissa = U256::from(amount_n.mantissa().unsigned_abs());
    Ok(mantissa * U256::from(10u8).pow(U256::from(decimals - amount_n.scale())))
}

/// A count of the token's smallest unit as an amount of tokens.
pub fn from_token_units(units: U256, decimals: u32) -> Result<Decimal, AmountError> {
    if decimals > MAX_DECIMALS {
        return Err(AmountError::Decimals(decimals));
    }
    let mantissa: i128 = i128::try_from(units).map_err(|_| AmountError::TooLarge(units))?;
    Decimal::try_from_i128_with_scale(mantissa, decimals)
        .map(|d| d.normalize())
        .map_err(|_| AmountError::TooLarge(units))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn exact_amounts_round_trip() {
        for (amount, decimals, units) in [
            ("0", 18, "0"),
            ("1", 18, "1000000000000000000"),
            ("0.000000000000000001", 18, "1"),
            ("123.456", 6, "123456000"),
            ("79228162514.264337593543950335", 18, "79228162514264337593543950335"),
        ] {
            let u = to_token_units(d(amount), decimals).unwrap();
            assert_eq!(u.to_string(), units, "{amount}");
            assert_eq!(from_token_units(u, decimals).unwrap(), d(amount).normalize(), "{amount}");
        }
    }

    #[test]
    fn rounding_negative_and_oversized_amounts_are_refused() {
        assert_eq!(
            to_token_units(d("0.0000001"), 6),
            Err(AmountError::TooPrecise { amount: d("0.0000001"), decimals: 6 })
        );
        assert_eq!(to_token_units(d("-1"), 18), Err(AmountError::Negative(d("-1"))));
        assert_eq!(to_token_units(d("1"), 29), Err(AmountError::Decimals(29)));
        let huge = U256::MAX;
        assert_eq!(from_token_units(huge, 18), Err(AmountError::TooLarge(huge)));
        // Trailing zeros are not extra precision.
        assert_eq!(to_token_units(d("1.500000"), 1).unwrap(), U256::from(15u8));
    }
}
