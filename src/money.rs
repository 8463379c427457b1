//! Exact money: currencies with their precision, and amounts that respect it.
//!
//! Invariant 8: amounts are `rust_decimal::Decimal` in memory and decimal strings on the
//! wire. Nothing here does IO.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An upper-case currency code such as `NGN` or `USDT` (1–10 ASCII letters or digits).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

pub mod catalogue;

pub use catalogue::{CurrencyInfo, KNOWN_CURRENCIES};

/// Precision assumed for a currency we have no entry for.
pub const DEFAULT_PRECISION: u32 = 8;

/// What [`parse_amount`] accepts, for messages.
pub const PLAIN_DECIMAL_RULE: &str = "write digits with an optional fraction, such as \"1500\" or \"1500.25\" (no sign, exponent, `_`, spaces, or a bare leading or trailing point)";

/// The largest amount [`parse_amount`] accepts, before a currency's precision.
pub const LARGEST_AMOUNT: &str = "999999999999999";

/// Most digits an amount may have before the decimal point (below 10^15).
pub const MAX_INTEGER_DIGITS: usize = 15;
/// Most digits an amount may have after the decimal point (a currency's precision
/// narrows this further).
pub const MAX_FRACTION_DIGITS: usize = 18;

/// Why a currency code or an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not a currency code (expected 1–10 upper-case letters or digits)")]
    BadCurrency(String),
    #[error("`{0}` is not a decimal amount")]
    NotADecimal(String),
    /// Not the plain-decimal grammar of [`parse_amount`]; the message says what is wrong.
    #[error("{0:?} is not a plain decimal: {why}", why = not_plain_why(.0))]
    NotPlain(String),
    #[error(
        "{0:?} is too large (the largest is {LARGEST_AMOUNT}, with at most {MAX_FRACTION_DIGITS} decimal places)"
    )]
    TooLarge(String),
    #[error("{0:?} has more than {MAX_FRACTION_DIGITS} decimal places")]
    TooManyPlaces(String),
    #[error("{0:?} has too many digits to hold exactly (at most 28 in all)")]
    TooManyDigits(String),
    #[error("amount must be positive, got {0}")]
    NotPositive(Decimal),
    #[error("{amount} has more than {precision} decimal places allowed for {currency}")]
    TooPrecise {
        amount: Decimal,
        currency: Currency,
        precision: u32,
    },
}

impl Currency {
    /// Parses a code, accepting lower case input.
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        let ok = !upper.is_empty()
            && upper.len() <= 10
            && upper
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(upper))
        } else {
            Err(MoneyError::BadCurrency(code.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What we know of this currency, if anything.
    pub fn info(&self) -> Option<&'static CurrencyInfo> {
        KNOWN_CURRENCIES.iter().find(|c| c.code == self.0)
    }

    /// Decimal places allowed for amounts in this currency.
    pub fn precision(&self) -> u32 {
        self.info().map_or(DEFAULT_PRECISION, |c| c.precision)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.0
    }
}

/// A positive amount in a currency, within that currency's precision.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Checks that `amount` is positive and fits the currency's precision.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive(amount));
        }
        check_precision(amount, &currency)?;
        Ok(Self {
            amount: amount.normalize(),
            currency,
        })
    }

    /// Parses a decimal string such as `"150000.50"`.
    /// The grammar is [`parse_amount`]'s.
    pub fn parse(amount: &str, currency: Currency) -> Result<Self, MoneyError> {
        Self::new(parse_amount(amount)?, currency)
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> &Currency {
        &self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// The one parser of amounts a person writes: job files and trigger bodies. Accepts
/// only plain decimals, `DIGITS` or `DIGITS.DIGITS` (`^[0-9]+(\.[0-9]+)?$`), with at
/// most [`MAX_INTEGER_DIGITS`] digits before the point and [`MAX_FRACTION_DIGITS`]
/// after, so that every accepted text is exact in a `Decimal`. Refuses what a
/// general number parser would take: `1e6`, `1_0000`, `+10000`, `-5`, ` 5`, `.5`, `5.`.
/// The sign of the value (zero allowed) and the currency's precision are the caller's.
pub fn parse_amount(text: &str) -> Result<Decimal, MoneyError> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(MoneyError::NotPlain(text.to_string()));
    }
    if int.trim_start_matches('0').len() > MAX_INTEGER_DIGITS {
        return Err(MoneyError::TooLarge(text.to_string()));
    }
    if frac.is_some_and(|f| f.len() > MAX_FRACTION_DIGITS) {
        return Err(MoneyError::TooManyPlaces(text.to_string()));
    }
    Decimal::from_str_exact(text).map_err(|_| MoneyError::TooManyDigits(text.to_string()))
}

/// In plain words, what keeps `text` from being a plain decimal.
pub fn not_plain_why(text: &str) -> String {
    let trimmed = text.trim();
    let why = if text.is_empty() {
        "it is empty"
    } else if trimmed != text {
        "remove the spaces around the number"
    } else if text.contains(char::is_whitespace) {
        "remove the spaces inside the number"
    } else if text.starts_with('+') {
        "remove the leading `+` (amounts have no sign)"
    } else if text.starts_with('-') {
        "amounts have no sign"
    } else if text.contains(['e', 'E']) && text.bytes().any(|b| b.is_ascii_digit()) {
        "write the number out in full, without an exponent (\"1e3\" is \"1000\")"
    } else if text.contains('_') || text.contains(',') {
        "remove the digit separators (`_` or `,`)"
    } else if text.starts_with('.') {
        "put a digit before the point (\"0.5\", not \".5\")"
    } else if text.ends_with('.') {
        "put a digit after the point, or drop it (\"250000\", not \"250000.\")"
    } else {
        return PLAIN_DECIMAL_RULE.to_string();
    };
    format!("{why}; {PLAIN_DECIMAL_RULE}")
}

/// Fails if `amount` carries more decimal places than `currency` allows.
pub fn check_precision(amount: Decimal, currency: &Currency) -> Result<(), MoneyError> {
    let precision = currency.precision();
    if amount.normalize().scale() > precision {
        return Err(MoneyError::TooPrecise {
            amount,
            currency: currency.clone(),
            precision,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::dec;

    #[test]
    fn only_plain_decimals_are_amounts() {
        assert_eq!(parse_amount("250000"), Ok(dec!(250000)));
        assert_eq!(parse_amount("250000.50"), Ok(dec!(250000.50)));
        assert_eq!(parse_amount("0.000001"), Ok(dec!(0.000001)));
        assert_eq!(parse_amount("0"), Ok(dec!(0)));
        for bad in [
            "1e6", "1E6", "1_0000", "+10000", "-5", " 5", "5 ", "1 000", ".5", "5.", "", ".",
            "1.2.3", "0x10", "NaN", "inf", "١٢", "5,00",
        ] {
            assert_eq!(
                parse_amount(bad),
                Err(MoneyError::NotPlain(bad.to_string())),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_amount("1000000000000000"),
            Err(MoneyError::TooLarge(_))
        ));
        assert_eq!(parse_amount("999999999999999"), Ok(dec!(999999999999999)));
        assert!(matches!(
            parse_amount("1.0000000000000000001"),
            Err(MoneyError::TooManyPlaces(_))
        ));
        let msg = parse_amount("1e6").unwrap_err().to_string();
        assert!(msg.contains("\"1e6\" is not a plain decimal"), "{msg}");
    }

    #[test]
    fn currency_codes_are_normalised_and_checked() {
        assert_eq!(Currency::new("usdt").unwrap().as_str(), "USDT");
        assert!(Currency::new("").is_err());
        assert!(Currency::new("N G N").is_err());
        assert!(Currency::new("ABCDEFGHIJK").is_err());
    }

    #[test]
    fn money_refuses_non_positive_and_over_precise_amounts() {
        let ngn = Currency::new("NGN").unwrap();
        assert!(Money::new(dec!(100.25), ngn.clone()).is_ok());
        assert_eq!(
            Money::new(dec!(100.250), ngn.clone()).unwrap().amount(),
            dec!(100.25)
        );
        assert!(matches!(
            Money::new(dec!(100.255), ngn.clone()),
            Err(MoneyError::TooPrecise { precision: 2, .. })
        ));
        assert!(matches!(
            Money::new(dec!(0), ngn.clone()),
            Err(MoneyError::NotPositive(_))
        ));
        assert!(matches!(
            Money::parse("-5", ngn.clone()),
            Err(MoneyError::NotPlain(_))
        ));
        assert!(matches!(
            Money::parse("1e5x", ngn),
            Err(MoneyError::NotPlain(_))
        ));
        let usdt = Currency::new("USDT").unwrap();
        assert!(Money::parse("0.000001", usdt.clone()).is_ok());
        assert!(Money::parse("0.0000001", usdt).is_err());
    }
}
