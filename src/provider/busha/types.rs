//! Busha's wire types, parsed at the edge into typed values.
//!
//! Rules every type here follows (`busha-api.md` §2.0 and §6):
//! - money and rates are JSON strings parsed into `Decimal`; a JSON number is refused;
//! - timestamps are RFC 3339 with any fractional precision and any offset, kept in UTC;
//! - every enum has an `Other(String)` catch-all, because Busha adds values;
//! - unknown fields are ignored; fields the spec does not require are `Option`s;
//! - ids are opaque strings.
//!
//! Requests are here too, serialised with decimals as strings.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::money::Currency;

/// Declares a string enum with an `Other(String)` catch-all: `as_str`, `Display`,
/// `From<&str>` and string serde. Unknown wire values land in `Other` and survive a
/// round trip unchanged.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this client does not know yet, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The value as Busha spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Other(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $wire => Self::$variant, )+
                    other => Self::Other(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(Self::from(value.as_ref()))
            }
        }
    };
}

string_enum! {
    /// A transfer's status (`TransferStatus`). See [`TransferStatus::settlement`].
    pub enum TransferStatus {
        Pending = "pending",
        Processing = "processing",
        Cancelled = "cancelled",
        FundsConverted = "funds_converted",
        FundsReceived = "funds_received",
        OutgoingPaymentSent = "outgoing_payment_sent",
        FundsDelivered = "funds_delivered",
        FundsNotDelivered = "funds_not_delivered",
        FundsRefunded = "funds_refunded",
        ReverseFundConversion = "reverse_fund_conversion",
    }
}

/// Where a transfer stands, for a worker deciding whether to keep polling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Not final: keep polling. Includes every status we do not recognise.
    InFlight,
    /// Final, and the money arrived where the quote said.
    Succeeded,
    /// Final, and it did not (`cancelled`, `funds_not_delivered`, `funds_refunded`).
    Failed,
}

impl TransferStatus {
    /// Classifies the status. `has_external_payout` is whether the quote pays out of
    /// Busha (bank, mobile money, address …; see [`PaymentType::is_external`]): then
    /// `funds_converted` is only a waypoint on the way to `funds_delivered`.
    pub fn settlement(&self, has_external_payout: bool) -> Settlement {
        match self {
            Self::FundsDelivered => Settlement::Succeeded,
            Self::FundsConverted if !has_external_payout => Settlement::Succeeded,
            Self::Cancelled | Self::FundsNotDelivered | Self::FundsRefunded => Settlement::Failed,
            _ => Settlement::InFlight,
        }
    }

    /// Final success or final failure. Needs the payout kind for the same reason as
    /// [`Self::settlement`]: `funds_converted` is final only without an external payout.
    pub fn is_final(&self, has_external_payout: bool) -> bool {
        self.settlement(has_external_payout) != Settlement::InFlight
    }

    pub fn is_success(&self, has_external_payout: bool) -> bool {
        self.settlement(has_external_payout) == Settlement::Succeeded
    }

    /// Final failure; does not depend on the payout.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::Cancelled | Self::FundsNotDelivered | Self::FundsRefunded
        )
    }
}

string_enum! {
    /// A quote's status. `accepted` once a transfer was made from it.
    pub enum QuoteStatus {
        Pending = "pending",
        Accepted = "accepted",
        Expired = "expired",
    }
}

string_enum! {
    pub enum RateSide {
        Buy = "buy",
        Sell = "sell",
    }
}

string_enum! {
    pub enum RateType {
        Fixed = "FIXED",
        Floating = "FLOATING",
    }
}

string_enum! {
    pub enum FeeType {
        Fixed = "FIXED",
        Percentage = "PERCENTAGE",
        Tiered = "TIERED",
    }
}

string_enum! {
    /// `pay_in.type` / `pay_out.type`: the union of `PayInObj` and `PayOutObj` values.
    pub enum PaymentType {
        Address = "address",
        BankTransfer = "bank_transfer",
        MobileMoney = "mobile_money",
        Paybill = "paybill",
        Till = "till",
        Balance = "balance",
        Savings = "savings",
        DirectDebit = "direct_debit",
        Sweep = "sweep",
        TemporaryBankAccount = "temporary_bank_account",
    }
}

impl PaymentType {
    /// Whether a payout of this type leaves the customer's Busha balances. Unknown types
    /// count as external, so that `funds_converted` is never mistaken for final.
    pub fn is_external(&self) -> bool {
        !matches!(self, Self::Balance | Self::Savings)
    }
}

string_enum! {
    pub enum TwoStepType {
        Authenticator = "authenticator",
    }
}

string_enum! {
    pub enum RecipientCategory {
        Bank = "bank",
        MobileMoney = "mobile_money",
        Crypto = "crypto",
    }
}

string_enum! {
    /// A recipient's `type` (2025-07-11 names). Legacy `{currency}_bank_transfer` types are
    /// read as `{currency}_bank`, e.g. `ngn_bank_transfer` as [`RecipientType::NgnBank`].
    pub enum RecipientType {
        NgnBank = "ngn_bank",
        KesBank = "kes_bank",
        UsdBank = "usd_bank",
        GbpBank = "gbp_bank",
        MpesaMobileMoney = "mpesa_mobile_money",
        MtnMobileMoney = "mtn_mobile_money",
        BusinessMobileMoney = "business_mobile_money",
        Crypto = "crypto",
        Paybill = "paybill",
        Till = "till",
    }
}

string_enum! {
    pub enum EntityType {
        Personal = "personal",
        Business = "business",
    }
}

string_enum! {
    /// The channel of a name enquiry.
    pub enum Channel {
        MobileMoney = "mobile_money",
        BankTransfer = "bank_transfer",
        PayBill = "pay_bill",
        Till = "till",
    }
}

string_enum! {
    pub enum BalanceType {
        Fiat = "fiat",
        Crypto = "crypto",
    }
}

string_enum! {
    pub enum PairType {
        Crypto = "crypto",
        Fiat = "fiat",
        Stablecoin = "stablecoin",
    }
}

string_enum! {
    pub enum TransferCategory {
        Deposit = "deposit",
        Withdrawal = "withdrawal",
        Conversion = "conversion",
        Buy = "buy",
        Sell = "sell",
        Send = "send",
        Exchange = "exchange",
    }
}

string_enum! {
    pub enum TransferStage {
        Deposit = "deposit",
        Conversion = "conversion",
        Withdrawal = "withdrawal",
    }
}

/// A bank account number. `Debug` masks all but the last four digits, because account
/// numbers must not reach logs (`design.md` invariant 7); read it with `as_str`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountNumber(String);

impl AccountNumber {
    pub fn new(number: impl Into<String>) -> Self {
        Self(number.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `******6789`: the last four characters, the rest starred.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        let shown = chars.len().saturating_sub(4);
        chars
            .iter()
            .enumerate()
            .map(|(i, c)| if i < shown { '*' } else { *c })
            .collect()
    }
}

impl fmt::Debug for AccountNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountNumber({})", self.masked())
    }
}

// ---------------------------------------------------------------------------------------
// Serde helpers: strict decimals, RFC 3339 timestamps, Go's `null` slices.

/// Decimals use `rust_decimal::serde::str`, which takes a JSON string only: a JSON number
/// may already have been through an f64 on Busha's side or ours.
/// RFC 3339 with any fractional precision and any offset, converted to UTC.
pub(crate) mod rfc3339 {
    use super::*;

    pub fn parse<E: serde::de::Error>(s: &str) -> Result<DateTime<Utc>, E> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| E::custom(format_args!("`{s}` is not an RFC 3339 timestamp: {e}")))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        parse(&String::deserialize(d)?)
    }

    /// `null`, `""` and a missing field (with `#[serde(default)]`) are all `None`.
    pub mod opt {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(s) if !s.is_empty() => parse(&s).map(Some),
                _ => Ok(None),
            }
        }
    }
}

/// A required array that Go may send as `null` (a nil slice): `null` is empty.
fn nullable_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------
// Responses.

/// An amount in a currency (`AmountWithCurrency`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Amount {
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub amount: Decimal,
    pub currency: Currency,
}

/// An amount with its fiat equivalent (`AmountWithCurrencyAndFiat`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AmountWithFiat {
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub amount: Decimal,
    pub currency: Currency,
    #[serde(default)]
    pub fiat: Option<Amount>,
}

/// One currency balance (`Balance`). Budget against `available.amount`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Balance {
    pub id: String,
    pub user_id: String,
    pub profile_id: String,
    pub currency: Currency,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: BalanceType,
    pub available: AmountWithFiat,
    pub pending: AmountWithFiat,
    pub savings: AmountWithFiat,
    pub investments: AmountWithFiat,
    pub total: AmountWithFiat,
}

/// A bank and its Busha bank code (`Bank`). Use these codes, not NIBSS codes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Bank {
    pub name: String,
    pub code: String,
    pub currency: Currency,
}

/// A minimum or maximum trade amount (`AmountWithCounter`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AmountWithCounter {
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub amount: Decimal,
    pub currency: Currency,
    #[serde(default)]
    pub counter: Option<Amount>,
}

/// A trading pair with indicative prices (`Pairs`). Reserves nothing.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Pair {
    pub id: String,
    pub base: Currency,
    pub base_currency_name: String,
    pub counter: Currency,
    pub counter_currency_name: String,
    #[serde(rename = "type")]
    pub kind: PairType,
    pub is_buy_supported: bool,
    pub is_sell_supported: bool,
    pub buy_price: Amount,
    pub sell_price: Amount,
    #[serde(default)]
    pub min_buy_amount: Option<AmountWithCounter>,
    #[serde(default)]
    pub min_sell_amount: Option<AmountWithCounter>,
    #[serde(default)]
    pub max_buy_amount: Option<AmountWithCounter>,
    #[serde(default)]
    pub max_sell_amount: Option<AmountWithCounter>,
}

/// A quote's or transfer's rate (`QuoteRate`). Busha marks every field optional; a rate
/// without `rate` is useless to a rate guard, so that one is required here.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct QuoteRate {
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub rate: Decimal,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub rate_explained: Option<String>,
    #[serde(default)]
    pub source_currency: Option<Currency>,
    #[serde(default)]
    pub target_currency: Option<Currency>,
    #[serde(default)]
    pub side: Option<RateSide>,
    #[serde(default, rename = "type")]
    pub kind: Option<RateType>,
}

/// One fee on a quote or transfer (`Fee`). The fees are the authority on cost.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Fee {
    pub name: String,
    pub amount: Amount,
    #[serde(rename = "type")]
    pub kind: FeeType,
    #[serde(default)]
    pub converted_amount: Option<Amount>,
}

/// A 2FA step that a quote requires (`TwoStep`). A worker cannot complete it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TwoStep {
    #[serde(rename = "type")]
    pub kind: TwoStepType,
    pub message: String,
    pub resend_allowed: bool,
}

/// Where a payout lands, as Busha resolved it (`RecipientDetails`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct RecipientDetails {
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default)]
    pub bank_name: Option<String>,
    #[serde(default)]
    pub account_number: Option<AccountNumber>,
    #[serde(default)]
    pub bank_code: Option<String>,
    #[serde(default)]
    pub country_code: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub iban: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// A quote's or transfer's `pay_in` / `pay_out` (`PaymentObj`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PaymentObj {
    #[serde(rename = "type")]
    pub kind: PaymentType,
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default)]
    pub recipient_details: Option<RecipientDetails>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub memo: Option<String>,
    #[serde(default)]
    pub narration: Option<String>,
    #[serde(default)]
    pub profile_id: Option<String>,
    /// The NIP session id for a bank payout.
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub blockchain_hash: Option<String>,
    #[serde(default)]
    pub blockchain_url: Option<String>,
    #[serde(default)]
    pub from_address: Option<String>,
    #[serde(default, with = "rfc3339::opt")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A locked quote (`Quote`). `POST /v1/quotes` commits to its rate until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Quote {
    pub id: String,
    pub profile_id: String,
    pub source_currency: Currency,
    pub target_currency: Currency,
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub source_amount: Decimal,
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub target_amount: Decimal,
    pub rate: QuoteRate,
    #[serde(deserialize_with = "nullable_vec")]
    pub fees: Vec<Fee>,
    /// Our reference if we sent one, else the quote id.
    pub reference: String,
    pub status: QuoteStatus,
    #[serde(default)]
    pub pay_in: Option<PaymentObj>,
    #[serde(default)]
    pub pay_out: Option<PaymentObj>,
    /// Optional in the spec; 30 minutes after creation in every example.
    #[serde(default, with = "rfc3339::opt")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Present when the quote needs 2FA: a human must act, the worker must not transfer.
    #[serde(default)]
    pub two_step: Option<TwoStep>,
    #[serde(default)]
    pub quote_rate: Option<QuoteRate>,
}

impl Quote {
    /// Whether the payout leaves Busha; see [`TransferStatus::settlement`].
    pub fn has_external_payout(&self) -> bool {
        self.pay_out.as_ref().is_some_and(|p| p.kind.is_external())
    }
}

/// One step of a transfer's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TimelineEvent {
    pub step: i64,
    pub done: bool,
    /// Timeline statuses add `failed` and `completed` to the transfer statuses.
    pub status: String,
    pub title: String,
    pub description: String,
    #[serde(default, with = "rfc3339::opt")]
    pub timestamp: Option<DateTime<Utc>>,
}

/// A transfer's progress (`TransferTimeline`); may be empty.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Timeline {
    pub total_steps: i64,
    pub current_step: i64,
    pub transfer_status: String,
    #[serde(deserialize_with = "nullable_vec")]
    pub events: Vec<TimelineEvent>,
}

/// A transfer made from a quote (`Transfer`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub quote_id: String,
    pub profile_id: String,
    pub description: String,
    pub sub_description: String,
    pub source_currency: Currency,
    pub target_currency: Currency,
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub source_amount: Decimal,
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub target_amount: Decimal,
    pub rate: QuoteRate,
    #[serde(deserialize_with = "nullable_vec")]
    pub fees: Vec<Fee>,
    pub status: TransferStatus,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub stages: Vec<TransferStage>,
    #[serde(default)]
    pub category: Option<TransferCategory>,
    #[serde(default)]
    pub trade: Option<String>,
    #[serde(default)]
    pub pay_in: Option<PaymentObj>,
    #[serde(default)]
    pub pay_out: Option<PaymentObj>,
    #[serde(default)]
    pub timeline: Option<Timeline>,
    #[serde(default, with = "rfc3339::opt")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl Transfer {
    /// Whether the payout leaves Busha; see [`TransferStatus::settlement`].
    pub fn has_external_payout(&self) -> bool {
        self.pay_out.as_ref().is_some_and(|p| p.kind.is_external())
    }

    /// This transfer's status, classified with its own payout kind.
    pub fn settlement(&self) -> Settlement {
        self.status.settlement(self.has_external_payout())
    }
}

/// The result of a name enquiry (`ResolveBankAccountResp`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ResolvedBankAccount {
    #[serde(rename = "currency_id")]
    pub currency: Currency,
    #[serde(rename = "country_id")]
    pub country: String,
    pub channel: Channel,
    pub account_number: AccountNumber,
    pub account_name: String,
    #[serde(default)]
    pub bank_code: Option<String>,
    #[serde(default)]
    pub bank_name: Option<String>,
}

/// Which of Busha's two recipient shapes a recipient came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientShape {
    /// `X-BU-Version: 2025-07-11`: flat fields and a `category`.
    Flat,
    /// `X-BU-Version: 2025-06-01` (deprecated): details in `fields: [{name, value}]`.
    Legacy,
}

/// A saved payout destination, normalised from either wire shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub id: String,
    pub shape: RecipientShape,
    pub active: bool,
    /// The wire's `type`. Legacy `ngn_bank_transfer` is read as `ngn_bank`, and so on.
    pub kind: RecipientType,
    /// Only the flat shape has one.
    pub category: Option<RecipientCategory>,
    /// `currency` (flat) or `currency_id` (legacy).
    pub currency: Option<Currency>,
    /// `country_code` (flat) or `country_id` (legacy).
    pub country_code: Option<String>,
    pub account_number: Option<AccountNumber>,
    pub account_name: Option<String>,
    pub bank_code: Option<String>,
    pub bank_name: Option<String>,
    /// `entity_type` (flat) or `legal_entity_type` (legacy).
    pub entity_type: Option<EntityType>,
    pub phone_number: Option<String>,
    pub network: Option<String>,
    pub address: Option<String>,
    pub memo: Option<String>,
    pub profile_id: Option<String>,
    pub owned_by_customer: Option<bool>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The union of both recipient shapes, as it comes off the wire.
#[derive(Deserialize)]
struct RawRecipient {
    id: String,
    active: bool,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    category: Option<RecipientCategory>,
    #[serde(default)]
    currency: Option<Currency>,
    #[serde(default)]
    currency_id: Option<Currency>,
    #[serde(default)]
    country_code: Option<String>,
    #[serde(default)]
    country_id: Option<String>,
    #[serde(default)]
    account_number: Option<AccountNumber>,
    #[serde(default)]
    account_name: Option<String>,
    #[serde(default)]
    bank_code: Option<String>,
    #[serde(default)]
    bank_name: Option<String>,
    #[serde(default)]
    entity_type: Option<EntityType>,
    #[serde(default)]
    legal_entity_type: Option<EntityType>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    memo: Option<String>,
    #[serde(default)]
    profile_id: Option<String>,
    #[serde(default)]
    owned_by_customer: Option<bool>,
    #[serde(default, with = "rfc3339::opt")]
    created_at: Option<DateTime<Utc>>,
    #[serde(default, with = "rfc3339::opt")]
    updated_at: Option<DateTime<Utc>>,
    /// Only the legacy shape has these.
    #[serde(default)]
    fields: Option<Vec<RawField>>,
}

#[derive(Deserialize)]
struct RawField {
    name: String,
    #[serde(default)]
    value: Option<String>,
}

impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawRecipient::deserialize(deserializer)?;
        // The flat shape carries `category`; the legacy one carries `fields`. Top-level
        // values win; the legacy `fields` fill what the top level lacks.
        let shape = if raw.fields.is_some() && raw.category.is_none() {
            RecipientShape::Legacy
        } else {
            RecipientShape::Flat
        };
        let fields = raw.fields.unwrap_or_default();
        let field = |name: &str| {
            fields
                .iter()
                .find(|f| f.name == name)
                .and_then(|f| f.value.clone())
                .filter(|v| !v.is_empty())
        };
        // Legacy bank types are `{currency}_bank_transfer`; today's are `{currency}_bank`.
        let kind = match raw.kind.strip_suffix("_bank_transfer") {
            Some(currency) => RecipientType::from(format!("{currency}_bank").as_str()),
            None => RecipientType::from(raw.kind.as_str()),
        };
        let currency = match raw.currency.or(raw.currency_id) {
            Some(c) => Some(c),
            None => field("currency")
                .map(|c| Currency::new(&c))
                .transpose()
                .map_err(serde::de::Error::custom)?,
        };
        Ok(Recipient {
            id: raw.id,
            shape,
            active: raw.active,
            kind,
            category: raw.category,
            currency,
            country_code: raw.country_code.or(raw.country_id),
            account_number: raw
                .account_number
                .or_else(|| field("account_number").map(AccountNumber::new)),
            account_name: raw.account_name.or_else(|| field("account_name")),
            bank_code: raw.bank_code.or_else(|| field("bank_code")),
            bank_name: raw.bank_name.or_else(|| field("bank_name")),
            entity_type: raw.entity_type.or(raw.legal_entity_type),
            phone_number: raw.phone_number.or_else(|| field("phone_number")),
            network: raw.network.or_else(|| field("network")),
            address: raw.address.or_else(|| field("address")),
            memo: raw.memo.or_else(|| field("memo")),
            profile_id: raw.profile_id,
            owned_by_customer: raw.owned_by_customer,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Requests.

/// Sort order of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

impl SortOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

/// Cursor paging for a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub cursor: Option<String>,
    pub limit: Option<u32>,
    pub sort: Option<SortOrder>,
}

/// Filters for `GET /v1/recipients`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecipientFilter {
    pub currency: Option<Currency>,
    pub account_number: Option<AccountNumber>,
    pub kind: Option<RecipientType>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Filters for `GET /v1/transfers`. `quote_id` is the reconciliation hook after a
/// `POST /v1/transfers` whose outcome is unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferFilter {
    pub quote_id: Option<String>,
    /// Any of these statuses; empty means all.
    pub status: Vec<TransferStatus>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// A new recipient in the flat 2025-07-11 shape (`RecipientCreate-2025-07-11`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewRecipient {
    #[serde(rename = "type")]
    pub kind: RecipientType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    /// Busha's own bank code from `GET /v1/banks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_number: Option<AccountNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<EntityType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

impl NewRecipient {
    /// A recipient of `kind` with every other field empty.
    pub fn new(kind: RecipientType) -> Self {
        Self {
            kind,
            currency: None,
            country_code: None,
            bank_name: None,
            bank_code: None,
            account_number: None,
            account_name: None,
            entity_type: None,
            phone_number: None,
            network: None,
            address: None,
            memo: None,
        }
    }

    /// A Nigerian bank account: all four bank fields are required for `ngn_bank`.
    pub fn ngn_bank(
        bank_code: impl Into<String>,
        bank_name: impl Into<String>,
        account_number: AccountNumber,
        account_name: impl Into<String>,
    ) -> Self {
        Self {
            currency: Currency::new("NGN").ok(),
            country_code: Some("NG".into()),
            bank_code: Some(bank_code.into()),
            bank_name: Some(bank_name.into()),
            account_number: Some(account_number),
            account_name: Some(account_name.into()),
            ..Self::new(RecipientType::NgnBank)
        }
    }
}

/// A name enquiry (`ResolveBankAccountRequest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolveBankAccount {
    #[serde(rename = "currency_id")]
    pub currency: Currency,
    #[serde(rename = "country_id")]
    pub country: String,
    pub channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_code: Option<String>,
    pub account_number: AccountNumber,
}

/// Which side of a quote is fixed. Exactly one, by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteAmount {
    /// Spend exactly this much of the source currency.
    Source(Decimal),
    /// Deliver exactly this much of the target currency.
    Target(Decimal),
}

/// Where a quote pays out. Leaving it out means the balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PayOut {
    BankTransfer { recipient_id: String },
    Balance,
}

/// A quote to lock (`CreateQuoteRequest`). Checked by the client before sending: the
/// amount must be positive and within its currency's precision, and a reference must
/// be 12–64 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewQuote {
    pub source_currency: Currency,
    pub target_currency: Currency,
    pub amount: QuoteAmount,
    /// Our own reference, echoed on the quote; how we find it again after an unknown
    /// outcome.
    pub reference: Option<String>,
    pub pay_out: Option<PayOut>,
}

/// Reference length Busha accepts (`QuoteReference`).
pub const REFERENCE_LEN: std::ops::RangeInclusive<usize> = 12..=64;

impl NewQuote {
    /// Refuses what Busha would refuse, before anything is sent.
    pub(crate) fn check(&self) -> Result<(), String> {
        let (amount, currency) = match self.amount {
            QuoteAmount::Source(a) => (a, &self.source_currency),
            QuoteAmount::Target(a) => (a, &self.target_currency),
        };
        if amount <= Decimal::ZERO {
            return Err(format!("amount must be positive, got {amount}"));
        }
        crate::money::check_precision(amount, currency).map_err(|e| e.to_string())?;
        if let Some(reference) = &self.reference {
            let len = reference.chars().count();
            if !REFERENCE_LEN.contains(&len) {
                return Err(format!(
                    "reference must be {}–{} characters, got {len}",
                    REFERENCE_LEN.start(),
                    REFERENCE_LEN.end()
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn wire(&self) -> WireQuote<'_> {
        let (source_amount, target_amount) = match self.amount {
            QuoteAmount::Source(a) => (Some(a), None),
            QuoteAmount::Target(a) => (None, Some(a)),
        };
        WireQuote {
            source_currency: &self.source_currency,
            target_currency: &self.target_currency,
            source_amount,
            target_amount,
            reference: self.reference.as_deref(),
            pay_out: self.pay_out.as_ref(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct WireQuote<'a> {
    source_currency: &'a Currency,
    target_currency: &'a Currency,
    #[serde(
        serialize_with = "rust_decimal::serde::str_option::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    source_amount: Option<Decimal>,
    #[serde(
        serialize_with = "rust_decimal::serde::str_option::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    target_amount: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pay_out: Option<&'a PayOut>,
}

#[derive(Serialize)]
pub(crate) struct WireTransfer<'a> {
    pub quote_id: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;

    /// A decimal literal (this crate has no `dec!` macro).
    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The quote of `busha-api.md` §2.6, assembled from the spec's `Quote` schema.
    fn quote_json() -> serde_json::Value {
        json!({
            "id": "QUO_mprvCPMCfm3K2qSnzbWj7", "profile_id": "BUS_YOK8tp5Zga01qOKEsqp07",
            "source_currency": "USDT", "target_currency": "NGN",
            "source_amount": "100", "target_amount": "168876",
            "rate": { "product": "USDTNGN", "rate": "1690.76", "rate_explained": "1 USDT = 1690.76 NGN",
                      "side": "sell", "type": "FIXED", "source_currency": "USDT", "target_currency": "NGN" },
            "fees": [ { "name": "processing_fee", "type": "FIXED",
                        "amount": { "amount": "100", "currency": "NGN" },
                        "converted_amount": { "amount": "0.06", "currency": "USDT" } } ],
            "pay_out": { "type": "bank_transfer", "recipient_id": "677bbf9c7cf061f23784555a",
                         "recipient_details": { "account_name": "ADA LOVELACE", "bank_name": "UBA",
                                                "account_number": "2109328188", "bank_code": "033",
                                                "country_code": "NG", "currency": "NGN" },
                         "expires_at": null },
            "reference": "QUO_mprvCPMCfm3K2qSnzbWj7",
            "status": "pending",
            "expires_at": "2026-01-23T11:34:17.175170741Z",
            "created_at": "2026-01-23T11:04:17.175146315Z",
            "updated_at": "2025-02-20T06:57:05.059512+01:00",
            "two_step": { "type": "authenticator", "message": "Enter your 2FA code to continue",
                          "resend_allowed": false },
            "something_new": { "nested": [1, 2, 3] }
        })
    }

    fn transfer_json(status: &str, pay_out: &str) -> serde_json::Value {
        json!({
            "id": "TRF_JSaOYnl7Sla0", "quote_id": "QUO_mprvCPMCfm3K2qSnzbWj7",
            "profile_id": "BUS_YOK8tp5Zga01qOKEsqp07",
            "description": "Sold USDT", "sub_description": "For NGN", "category": "withdrawal",
            "stages": ["conversion", "withdrawal"], "trade": "sell",
            "source_currency": "USDT", "target_currency": "NGN",
            "source_amount": "100", "target_amount": "168876",
            "rate": { "rate": "1690.76", "side": "sell", "type": "FIXED" },
            "fees": null,
            "pay_in": { "type": "balance" },
            "pay_out": { "type": pay_out, "recipient_id": "677bbf9c7cf061f23784555a", "session_id": "999" },
            "status": status,
            "timeline": { "total_steps": 3, "current_step": 1, "transfer_status": "pending",
                          "events": [ { "step": 1, "done": true, "status": "pending",
                                        "title": "Transfer started", "description": "Transfer started",
                                        "timestamp": "2023-10-15T12:15:30Z" } ] },
            "expires_at": "2023-12-01T15:04:05Z",
            "created_at": "2023-10-15T12:15:30Z", "updated_at": "2023-10-15T12:20:45.5+00:00"
        })
    }

    #[test]
    fn quote_parses_decimals_timestamps_two_step_and_ignores_unknown_fields() {
        let q: Quote = parse(quote_json());
        assert_eq!(q.rate.rate, d("1690.76"));
        assert_eq!(q.rate.side, Some(RateSide::Sell));
        assert_eq!(q.rate.kind, Some(RateType::Fixed));
        assert_eq!(q.source_amount, d("100"));
        assert_eq!(q.target_amount, d("168876"));
        assert_eq!(q.fees.len(), 1);
        assert_eq!(q.fees[0].kind, FeeType::Fixed);
        assert_eq!(
            q.fees[0].converted_amount.as_ref().unwrap().amount,
            d("0.06")
        );
        assert_eq!(q.status, QuoteStatus::Pending);
        assert_eq!(q.reference, "QUO_mprvCPMCfm3K2qSnzbWj7");
        assert!(q.two_step.is_some());
        assert!(q.has_external_payout());
        let pay_out = q.pay_out.as_ref().unwrap();
        assert_eq!(pay_out.kind, PaymentType::BankTransfer);
        assert_eq!(pay_out.expires_at, None);
        let details = pay_out.recipient_details.as_ref().unwrap();
        assert_eq!(
            details.account_number.as_ref().unwrap().as_str(),
            "2109328188"
        );

        // Nanoseconds kept; +01:00 converted to UTC.
        let expires = q.expires_at.unwrap();
        assert_eq!(expires, utc("2026-01-23T11:34:17.175170741Z"));
        assert_eq!(expires.timestamp_subsec_nanos(), 175_170_741);
        assert_eq!(q.updated_at, utc("2025-02-20T05:57:05.059512Z"));
    }

    #[test]
    fn quote_optional_fields_may_be_missing_but_required_ones_may_not() {
        let mut value = quote_json();
        let obj = value.as_object_mut().unwrap();
        for optional in ["pay_out", "expires_at", "two_step"] {
            obj.remove(optional);
        }
        let q: Quote = parse(value.clone());
        assert_eq!(q.expires_at, None);
        assert!(q.two_step.is_none());
        assert!(!q.has_external_payout());

        value.as_object_mut().unwrap().remove("reference");
        assert!(serde_json::from_value::<Quote>(value).is_err());
    }

    #[test]
    fn an_amount_sent_as_a_json_number_is_refused() {
        let mut value = quote_json();
        value["source_amount"] = json!(100.1);
        let err = serde_json::from_value::<Quote>(value).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");

        let mut value = quote_json();
        value["rate"]["rate"] = json!(1690);
        assert!(serde_json::from_value::<Quote>(value).is_err());
    }

    #[test]
    fn a_timestamp_that_is_not_rfc3339_is_refused() {
        let mut value = quote_json();
        value["created_at"] = json!("23/01/2026 11:04");
        assert!(serde_json::from_value::<Quote>(value).is_err());
    }

    #[test]
    fn unknown_enum_values_are_kept_not_rejected() {
        let mut value = quote_json();
        value["status"] = json!("superseded");
        value["rate"]["type"] = json!("FLOATING_PLUS");
        value["fees"][0]["type"] = json!("VOLUME");
        value["pay_out"]["type"] = json!("carrier_pigeon");
        value["two_step"]["type"] = json!("sms");
        let q: Quote = parse(value);
        assert_eq!(q.status, QuoteStatus::Other("superseded".into()));
        assert_eq!(q.rate.kind, Some(RateType::Other("FLOATING_PLUS".into())));
        assert_eq!(q.fees[0].kind, FeeType::Other("VOLUME".into()));
        assert_eq!(q.two_step.unwrap().kind, TwoStepType::Other("sms".into()));
        // An unknown payout kind counts as external: `funds_converted` is not final.
        assert!(q.pay_out.unwrap().kind.is_external());

        let t: Transfer = parse(transfer_json("completed", "bank_transfer"));
        assert_eq!(t.status, TransferStatus::Other("completed".into()));
        assert_eq!(t.status.as_str(), "completed");
        assert_eq!(serde_json::to_value(&t.status).unwrap(), json!("completed"));
    }

    #[test]
    fn transfer_parses_with_null_fees_and_a_timeline() {
        let t: Transfer = parse(transfer_json("outgoing_payment_sent", "bank_transfer"));
        assert_eq!(t.status, TransferStatus::OutgoingPaymentSent);
        assert!(t.fees.is_empty());
        assert_eq!(
            t.stages,
            vec![TransferStage::Conversion, TransferStage::Withdrawal]
        );
        assert_eq!(t.category, Some(TransferCategory::Withdrawal));
        assert_eq!(t.timeline.as_ref().unwrap().events.len(), 1);
        assert_eq!(
            t.pay_out.as_ref().unwrap().session_id.as_deref(),
            Some("999")
        );
        assert_eq!(t.updated_at, utc("2023-10-15T12:20:45.500Z"));
        assert_eq!(t.settlement(), Settlement::InFlight);
    }

    #[test]
    fn transfer_status_finality_depends_on_the_payout() {
        use TransferStatus as S;
        for (status, external, expected) in [
            (S::FundsDelivered, true, Settlement::Succeeded),
            (S::FundsDelivered, false, Settlement::Succeeded),
            (S::FundsConverted, false, Settlement::Succeeded),
            (S::FundsConverted, true, Settlement::InFlight),
            (S::Cancelled, true, Settlement::Failed),
            (S::FundsNotDelivered, true, Settlement::Failed),
            (S::FundsRefunded, false, Settlement::Failed),
            (S::Pending, true, Settlement::InFlight),
            (S::Processing, false, Settlement::InFlight),
            (S::OutgoingPaymentSent, true, Settlement::InFlight),
            (S::FundsReceived, true, Settlement::InFlight),
            (S::ReverseFundConversion, true, Settlement::InFlight),
            (S::Other("completed".into()), true, Settlement::InFlight),
            (S::Other("failed".into()), false, Settlement::InFlight),
        ] {
            assert_eq!(
                status.settlement(external),
                expected,
                "{status} external={external}"
            );
            assert_eq!(
                status.is_final(external),
                expected != Settlement::InFlight,
                "{status}"
            );
            assert_eq!(
                status.is_success(external),
                expected == Settlement::Succeeded,
                "{status}"
            );
        }
        assert!(S::FundsRefunded.is_failure());
        assert!(!S::FundsConverted.is_failure());

        let to_balance: Transfer = parse(transfer_json("funds_converted", "balance"));
        assert_eq!(to_balance.settlement(), Settlement::Succeeded);
        let to_bank: Transfer = parse(transfer_json("funds_converted", "bank_transfer"));
        assert_eq!(to_bank.settlement(), Settlement::InFlight);
    }

    fn legacy_recipient() -> serde_json::Value {
        json!({
            "object": "recipient", "id": "8014c2ee-c70f-4c72-8d9f-c8b9d708a688",
            "user_id": "b8277d1c-1bde-46ef-92ce-ebb4752eede5",
            "profile_id": "b8277d1c-1bde-46ef-92ce-ebb4752eede5",
            "currency_id": "NGN", "country_id": "NG", "type": "ngn_bank_transfer",
            "legal_entity_type": "business", "owned_by_customer": true, "active": true,
            "created_at": "2024-05-16T13:06:31.409336+01:00",
            "updated_at": "2024-05-16T13:06:31.409336+01:00",
            "fields": [
                { "value": "Access Bank Nigeria", "display_name": "Bank Name", "name": "bank_name",
                  "is_copyable": false, "is_visible": true, "required": true },
                { "value": "0013246052", "display_name": "Account Number", "name": "account_number",
                  "is_copyable": false, "is_visible": true, "required": true },
                { "value": "000014", "display_name": "Bank Code", "name": "bank_code",
                  "is_copyable": false, "is_visible": false, "required": true },
                { "value": "John Doe", "display_name": "Account Name", "name": "account_name",
                  "is_copyable": false, "is_visible": true, "required": true }
            ]
        })
    }

    fn flat_recipient() -> serde_json::Value {
        json!({
            "id": "687560e1255ff9424db5e4c5", "profile_id": "aa909417-099c-429a-9d74-89e9b5e8891c",
            "account_name": "INU JOHN", "account_number": "2134211381", "active": true,
            "bank_code": "000004", "bank_name": "9 PAYMENT SOLUTIONS BANK", "category": "bank",
            "country_code": "NG", "currency": "NGN", "object": "recipients",
            "owned_by_customer": true, "type": "ngn_bank"
        })
    }

    #[test]
    fn flat_recipient_is_read_as_is() {
        let r: Recipient = parse(flat_recipient());
        assert_eq!(r.shape, RecipientShape::Flat);
        assert_eq!(r.id, "687560e1255ff9424db5e4c5");
        assert_eq!(r.kind, RecipientType::NgnBank);
        assert_eq!(r.category, Some(RecipientCategory::Bank));
        assert_eq!(r.currency.as_ref().map(Currency::as_str), Some("NGN"));
        assert_eq!(r.account_number.as_ref().unwrap().as_str(), "2134211381");
        assert_eq!(r.account_name.as_deref(), Some("INU JOHN"));
        assert_eq!(r.bank_code.as_deref(), Some("000004"));
        assert_eq!(r.bank_name.as_deref(), Some("9 PAYMENT SOLUTIONS BANK"));
        assert_eq!(r.country_code.as_deref(), Some("NG"));
        assert!(r.active);
    }

    #[test]
    fn legacy_recipient_is_normalised_from_its_fields() {
        let r: Recipient = parse(legacy_recipient());
        assert_eq!(r.shape, RecipientShape::Legacy);
        assert_eq!(r.kind, RecipientType::NgnBank);
        assert_eq!(r.category, None);
        assert_eq!(r.currency.as_ref().map(Currency::as_str), Some("NGN"));
        assert_eq!(r.country_code.as_deref(), Some("NG"));
        assert_eq!(r.account_number.as_ref().unwrap().as_str(), "0013246052");
        assert_eq!(r.account_name.as_deref(), Some("John Doe"));
        assert_eq!(r.bank_code.as_deref(), Some("000014"));
        assert_eq!(r.bank_name.as_deref(), Some("Access Bank Nigeria"));
        assert_eq!(r.entity_type, Some(EntityType::Business));
        assert_eq!(r.created_at, Some(utc("2024-05-16T12:06:31.409336Z")));
    }

    #[test]
    fn a_mixed_recipient_list_parses_both_shapes_and_unknown_values() {
        let mut kes = flat_recipient();
        kes["id"] = json!("68756bbc255ff9424db5e4e2");
        kes["type"] = json!("mpesa_mobile_money");
        kes["category"] = json!("mpesa_mobile_money");
        let list: Vec<Recipient> = parse(json!([flat_recipient(), legacy_recipient(), kes]));
        let shapes: Vec<_> = list.iter().map(|r| r.shape).collect();
        assert_eq!(
            shapes,
            [
                RecipientShape::Flat,
                RecipientShape::Legacy,
                RecipientShape::Flat
            ]
        );
        assert_eq!(list[2].kind, RecipientType::MpesaMobileMoney);
        let mut kes_legacy = legacy_recipient();
        kes_legacy["type"] = json!("kes_bank_transfer");
        assert_eq!(parse::<Recipient>(kes_legacy).kind, RecipientType::KesBank);
        assert_eq!(
            list[2].category,
            Some(RecipientCategory::Other("mpesa_mobile_money".into()))
        );
    }

    #[test]
    fn account_numbers_are_masked_in_debug() {
        let r: Recipient = parse(flat_recipient());
        let shown = format!("{r:?}");
        assert!(!shown.contains("2134211381"), "{shown}");
        assert!(shown.contains("******1381"), "{shown}");
    }

    #[test]
    fn balances_banks_pairs_and_name_enquiry_parse() {
        let b: Balance = parse(json!({
            "id": "550e8400-e29b-41d4-a716-446655440000", "user_id": "u", "profile_id": "p",
            "currency": "NGN", "name": "Naira", "type": "fiat",
            "available": { "amount": "100.55", "currency": "NGN", "fiat": { "amount": "100.55", "currency": "NGN" } },
            "pending": { "amount": "0", "currency": "NGN" },
            "savings": { "amount": "0", "currency": "NGN" },
            "investments": { "amount": "0", "currency": "NGN" },
            "total": { "amount": "100.55", "currency": "NGN" }
        }));
        assert_eq!(b.available.amount, d("100.55"));
        assert_eq!(b.kind, BalanceType::Fiat);

        let banks: Vec<Bank> =
            parse(json!([{ "name": "Wema Bank", "code": "000017", "currency": "NGN" }]));
        assert_eq!(banks[0].code, "000017");

        let pair: Pair = parse(json!({
            "id": "BTCNGN", "base": "BTC", "base_currency_name": "Bitcoin",
            "counter": "NGN", "counter_currency_name": "Naira", "type": "crypto",
            "is_buy_supported": true, "is_sell_supported": true,
            "buy_price": { "amount": "142541279.55", "currency": "NGN" },
            "sell_price": { "amount": "140000000", "currency": "NGN" },
            "min_buy_amount": { "amount": "0.0001", "currency": "BTC",
                                "counter": { "amount": "1000", "currency": "NGN" } }
        }));
        assert_eq!(pair.buy_price.amount, d("142541279.55"));
        assert_eq!(pair.min_buy_amount.unwrap().amount, d("0.0001"));

        let resolved: ResolvedBankAccount = parse(json!({
            "country_id": "NG", "currency_id": "NGN", "channel": "bank_transfer",
            "bank_code": "000013", "account_number": "0123456789",
            "account_name": "John Doe", "bank_name": "Trust Bank"
        }));
        assert_eq!(resolved.channel, Channel::BankTransfer);
        assert_eq!(resolved.account_name, "John Doe");
    }

    fn new_quote(amount: QuoteAmount, reference: Option<&str>) -> NewQuote {
        NewQuote {
            source_currency: Currency::new("USDT").unwrap(),
            target_currency: Currency::new("NGN").unwrap(),
            amount,
            reference: reference.map(str::to_string),
            pay_out: Some(PayOut::BankTransfer {
                recipient_id: "677bbf9c7cf061f23784555a".into(),
            }),
        }
    }

    #[test]
    fn new_quote_serialises_exactly_one_amount_as_a_string() {
        let q = new_quote(
            QuoteAmount::Source(d("100.123456")),
            Some("payroll-2026-03-w1"),
        );
        assert_eq!(q.check(), Ok(()));
        assert_eq!(
            serde_json::to_value(q.wire()).unwrap(),
            json!({
                "source_currency": "USDT", "target_currency": "NGN",
                "source_amount": "100.123456",
                "reference": "payroll-2026-03-w1",
                "pay_out": { "type": "bank_transfer", "recipient_id": "677bbf9c7cf061f23784555a" }
            })
        );
        let q = NewQuote {
            pay_out: Some(PayOut::Balance),
            ..new_quote(QuoteAmount::Target(d("150000.50")), None)
        };
        assert_eq!(
            serde_json::to_value(q.wire()).unwrap(),
            json!({
                "source_currency": "USDT", "target_currency": "NGN",
                "target_amount": "150000.50", "pay_out": { "type": "balance" }
            })
        );
    }

    #[test]
    fn new_quote_refuses_over_precise_amounts_against_the_fixed_side() {
        // USDT allows 6 places; NGN 2.
        let too_fine = new_quote(QuoteAmount::Source(d("1.0000001")), None);
        assert!(too_fine.check().unwrap_err().contains("decimal places"));
        let kobo_fraction = new_quote(QuoteAmount::Target(d("100.255")), None);
        assert!(kobo_fraction.check().is_err());
        assert!(
            new_quote(QuoteAmount::Target(d("100.250")), None)
                .check()
                .is_ok()
        );
        assert!(
            new_quote(QuoteAmount::Source(d("0")), None)
                .check()
                .is_err()
        );
        assert!(
            new_quote(QuoteAmount::Source(d("-1")), None)
                .check()
                .is_err()
        );
    }

    #[test]
    fn new_quote_refuses_a_reference_outside_12_to_64_characters() {
        let amount = QuoteAmount::Source(d("10"));
        assert!(new_quote(amount, Some("12345678901")).check().is_err());
        assert!(new_quote(amount, Some("123456789012")).check().is_ok());
        assert!(new_quote(amount, Some(&"x".repeat(64))).check().is_ok());
        assert!(new_quote(amount, Some(&"x".repeat(65))).check().is_err());
    }

    #[test]
    fn new_recipient_is_the_flat_shape() {
        let r = NewRecipient::ngn_bank(
            "000013",
            "GTBANK",
            AccountNumber::new("0123456789"),
            "ADA LOVELACE",
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({
                "type": "ngn_bank", "currency": "NGN", "country_code": "NG",
                "bank_name": "GTBANK", "bank_code": "000013",
                "account_number": "0123456789", "account_name": "ADA LOVELACE"
            })
        );
        let resolve = ResolveBankAccount {
            currency: Currency::new("NGN").unwrap(),
            country: "NG".into(),
            channel: Channel::BankTransfer,
            bank_code: Some("000013".into()),
            account_number: AccountNumber::new("0123456789"),
        };
        assert_eq!(
            serde_json::to_value(&resolve).unwrap(),
            json!({ "currency_id": "NGN", "country_id": "NG", "channel": "bank_transfer",
                    "bank_code": "000013", "account_number": "0123456789" })
        );
    }
}
