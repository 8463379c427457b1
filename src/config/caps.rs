//! `daily_caps` in `[[grants]]`: a rolling 24-hour cap per source currency over every
//! run on the grant, whatever its job. Written as decimal strings:
//! `daily_caps = { USDT = "5000", NGN = "7500000" }`.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};

/// A grant's caps by source currency. Empty: the grant has none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DailyCaps(BTreeMap<Currency, Decimal>);

impl DailyCaps {
    /// The cap on amounts in `currency`, if the grant has one.
    pub fn get(&self, currency: &Currency) -> Option<Decimal> {
        self.0.get(currency).copied()
    }

    /// Caps from typed values (tests, tools); `Money` guarantees each is positive.
    pub fn from_caps(caps: impl IntoIterator<Item = Money>) -> Self {
        Self(
            caps.into_iter()
                .map(|m| (m.currency().clone(), m.amount()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn cap(code: &str, text: &str) -> Result<(Currency, Decimal), String> {
    let currency = Currency::new(code).map_err(|e| format!("daily_caps: {e}"))?;
    let amount =
        crate::money::parse_amount(text).map_err(|e| format!("daily_caps.{currency}: {e}"))?;
    let money =
        Money::new(amount, currency.clone()).map_err(|e| format!("daily_caps.{currency}: {e}"))?;
    Ok((currency, money.amount()))
}

impl<'de> Deserialize<'de> for DailyCaps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Caps;
        impl<'de> Visitor<'de> for Caps {
            type Value = DailyCaps;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of currency = \"decimal\", e.g. { USDT = \"5000\" }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DailyCaps, A::Error> {
                let mut caps = BTreeMap::new();
                while let Some((code, text)) = map.next_entry::<String, String>()? {
                    let (currency, amount) = cap(&code, &text).map_err(de::Error::custom)?;
                    if caps.insert(currency.clone(), amount).is_some() {
                        return Err(de::Error::custom(format!(
                            "daily_caps.{currency} is given twice"
                        )));
                    }
                }
                Ok(DailyCaps(caps))
            }
        }
        d.deserialize_map(Caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_positive_decimals_within_precision_are_caps() {
        assert_eq!(cap("usdt", "5000").unwrap().1, Decimal::from(5000));
        assert_eq!(cap("NGN", "1250.50").unwrap().0.as_str(), "NGN");
        for bad in ["1e6", "+5", "-5", "0", "5.", ".5", "1_000", " 5", "", "abc"] {
            assert!(cap("USDT", bad).is_err(), "{bad:?} was accepted");
        }
        assert!(
            cap("USDT", "1.123456789")
                .unwrap_err()
                .contains("decimal places")
        );
        assert!(cap("US-DT", "5").unwrap_err().contains("currency code"));
    }
}
