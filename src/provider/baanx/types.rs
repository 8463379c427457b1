//! Baanx wire types, parsed at the edge: decimals from strings, lowercase currency
//! codes into our [`Currency`], both estimation shapes. Requests serialise to Baanx's
//! exact field names (`recipientAddrss` included).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};

use crate::money::Currency;

/// Which Baanx backend a grant lives in; sent as `x-us-env` on every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    International,
    Us,
}

impl Region {
    pub fn us_env(self) -> &'static str {
        match self {
            Region::Us => "true",
            Region::International => "false",
        }
    }
}

fn currency<'de, D: Deserializer<'de>>(d: D) -> Result<Currency, D::Error> {
    let code = String::deserialize(d)?;
    Currency::new(&code).map_err(serde::de::Error::custom)
}

fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map_err(|_| serde::de::Error::custom(format!("not a decimal string: {text:?}")))
}

fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("not a decimal string: {t:?}"))),
    }
}

/// An internal (custodial) wallet: one per (network, currency).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalWallet {
    pub id: String,
    #[serde(deserialize_with = "decimal")]
    pub balance: Decimal,
    #[serde(deserialize_with = "currency")]
    pub currency: Currency,
    pub address: String,
    #[serde(default)]
    pub address_memo: Option<String>,
    #[serde(default)]
    pub address_id: Option<String>,
}

/// A credit or reward wallet. One that does not exist yet (Baanx's 404) reads as a
/// zero balance with no id.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlatformWallet {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(deserialize_with = "decimal")]
    pub balance: Decimal,
    #[serde(deserialize_with = "currency")]
    pub currency: Currency,
    /// Absent means not withdrawable.
    #[serde(default)]
    pub is_withdrawable: bool,
}

/// A self-custody wallet registered with Baanx.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ExternalWallet {
    pub address: String,
    #[serde(deserialize_with = "currency")]
    pub currency: Currency,
    pub network: String,
    #[serde(deserialize_with = "decimal")]
    pub balance: Decimal,
    #[serde(deserialize_with = "decimal")]
    pub allowance: Decimal,
}

/// A whitelisted withdrawal address.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhitelistEntry {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub beneficiary_first_name: Option<String>,
    #[serde(default)]
    pub beneficiary_last_name: Option<String>,
    pub wallet_address: String,
    #[serde(default)]
    pub wallet_memo: Option<String>,
    #[serde(deserialize_with = "currency")]
    pub currency: Currency,
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A whitelist entry to create.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewWhitelistEntry {
    /// Lowercase on the wire.
    pub currency: String,
    pub name: String,
    pub beneficiary_first_name: String,
    pub beneficiary_last_name: String,
    pub wallet_address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet_memo: Option<String>,
}

/// `POST /v1/wallet/internal/withdraw`. Memo keys are left out when absent: Baanx
/// refuses `null` ones.
#[derive(Clone, Debug, Serialize)]
pub struct InternalWithdrawal {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// Baanx's wire name really is `recipientAddrss`.
    #[serde(rename = "recipientAddrss")]
    pub recipient_address: String,
    #[serde(rename = "recipientMemo", skip_serializing_if = "Option::is_none")]
    pub recipient_memo: Option<String>,
    #[serde(rename = "sourceAddress")]
    pub source_address: String,
    #[serde(rename = "sourceMemo", skip_serializing_if = "Option::is_none")]
    pub source_memo: Option<String>,
    /// Lowercase on the wire.
    pub currency: String,
}

/// A credit or reward withdrawal's answer: the on-chain hash.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainWithdrawal {
    pub tx_hash: String,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub confirmed: Option<bool>,
}

/// A fee estimate, from either shape Baanx has used (`{wei, eth, usdc}` or
/// `{gas, fee, ...}`).
#[derive(Clone, Debug, PartialEq)]
pub struct Estimation {
    /// Gas in wei.
    pub gas_wei: Decimal,
    /// The fee in ETH.
    pub fee_eth: Decimal,
    /// The fee in USDC, when Baanx converted it.
    pub fee_usdc: Option<Decimal>,
}

#[derive(Deserialize)]
struct EstimationWire {
    #[serde(default, deserialize_with = "opt_decimal")]
    gas: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    wei: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    fee: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    eth: Option<Decimal>,
    #[serde(default, deserialize_with = "opt_decimal")]
    usdc: Option<Decimal>,
}

impl<'de> Deserialize<'de> for Estimation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = EstimationWire::deserialize(d)?;
        let missing = |what: &str| serde::de::Error::custom(format!("estimation has no {what}"));
        Ok(Estimation {
            gas_wei: w.gas.or(w.wei).ok_or_else(|| missing("gas or wei"))?,
            fee_eth: w.fee.or(w.eth).ok_or_else(|| missing("fee or eth"))?,
            fee_usdc: w.usdc,
        })
    }
}

/// Debit or credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sign {
    Debit,
    Credit,
}

/// One wallet-history line. Baanx gives no id, status or hash.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HistoryItem {
    pub name: String,
    #[serde(deserialize_with = "decimal")]
    pub amount: Decimal,
    #[serde(deserialize_with = "currency")]
    pub currency: Currency,
    pub sign: Sign,
    pub date: DateTime<Utc>,
}

/// Which wallet's history.
#[derive(Clone, Debug)]
pub enum HistoryOf {
    Internal {
        wallet_id: String,
        currency: Currency,
    },
    Credit {
        wallet_id: String,
    },
    Reward {
        wallet_id: String,
    },
}

/// The `GET /v1/user` fields the worker uses.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub id: String,
    pub email: String,
    pub verification_state: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
}

/// A token answer. The tokens never show in `Debug`.
#[derive(Clone, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    /// Absent in some deployments; then assume 7 days (never hard-code it otherwise).
    #[serde(default)]
    pub refresh_token_expires_in: Option<i64>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"***")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"***")
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_estimation_shapes_parse_and_prefer_the_new_names() {
        let old: Estimation =
            serde_json::from_value(json!({"wei": "62", "eth": "0.000062", "usdc": "0.16"}))
                .unwrap();
        let new: Estimation = serde_json::from_value(
            json!({"gas": "7", "fee": "0.7", "wei": "62", "eth": "0.000062"}),
        )
        .unwrap();
        assert_eq!(old.gas_wei, Decimal::from(62));
        assert_eq!(old.fee_usdc, Some("0.16".parse().unwrap()));
        assert_eq!(new.gas_wei, Decimal::from(7));
        assert_eq!(new.fee_eth, "0.7".parse::<Decimal>().unwrap());
        assert!(serde_json::from_value::<Estimation>(json!({"usdc": "1"})).is_err());
    }

    #[test]
    fn a_withdrawal_carries_the_typo_and_leaves_absent_memos_out() {
        let w = InternalWithdrawal {
            amount: "25.50".parse().unwrap(),
            recipient_address: "0xabc".into(),
            recipient_memo: None,
            source_address: "0xdef".into(),
            source_memo: None,
            currency: "usdc".into(),
        };
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(
            v,
            json!({"amount": "25.50", "recipientAddrss": "0xabc", "sourceAddress": "0xdef", "currency": "usdc"})
        );
    }

    #[test]
    fn lowercase_codes_and_decimal_strings_parse_into_domain_types() {
        let w: InternalWallet = serde_json::from_value(json!({"id": "w", "balance": "125.50", "currency": "xrp", "address": "r1", "addressMemo": "78", "addressId": "a", "type": "INTERNAL"})).unwrap();
        assert_eq!(w.currency.as_str(), "XRP");
        assert_eq!(w.balance, "125.50".parse::<Decimal>().unwrap());
        assert!(
            serde_json::from_value::<InternalWallet>(
                json!({"id": "w", "balance": 1.5, "currency": "xrp", "address": "r"})
            )
            .is_err(),
            "floats are refused"
        );
        let t: TokenSet = serde_json::from_value(
            json!({"access_token": "secret-a", "expires_in": 21600, "refresh_token": "secret-r"}),
        )
        .unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(t.refresh_token_expires_in, None);
    }
}
