//! The provider interface in domain types: what the pipeline may ask of any payments
//! provider, and what each provider can promise ([`Capabilities`]).
//!
//! Each provider implements [`PaymentsProvider`] in its own module (`busha`; `baanx`
//! to follow), converting its wire types to these and back there. No wire type crosses
//! this boundary, and the pipeline branches on capabilities, never on a provider's name.
//! Checks that compare an answer with what was asked work on these types.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;

use super::{AccessToken, Called, ProviderError, SendCheck};
use crate::money::Currency;

macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

typed_id!(
    /// A saved recipient (payee) at the provider.
    RecipientId
);
typed_id!(
    /// A quote at the provider.
    QuoteId
);
typed_id!(
    /// A transfer at the provider.
    TransferId
);

/// What a provider can promise; the pipeline decides from these alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// A binding quote (a rate and fees fixed until it expires), or only a
    /// non-binding pre-flight.
    pub quote: QuoteKind,
    /// Whether a transfer gets an id that can be followed to a final status.
    pub transfer_ids: bool,
    /// How the outcome of an earlier attempt whose answer was lost is found out.
    pub reconciliation: Reconciliation,
}

/// Whether a provider's price holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteKind {
    Binding,
    NonBinding,
}

/// How an earlier attempt's outcome is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciliation {
    /// By our own reference (quotes) and the quote a transfer was made from.
    ByReference,
    /// From evidence only (balance and history), having no reference to look up.
    ByEvidence,
}

/// Where a transfer stands, as stored in the runs table's `transfer_status` column.
/// The text codes are the stored values; a status this build does not know is kept
/// verbatim as [`TransferStatus::Unrecognised`] and counts as in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransferStatus {
    Pending,
    Processing,
    FundsReceived,
    FundsConverted,
    OutgoingPaymentSent,
    FundsDelivered,
    FundsNotDelivered,
    FundsRefunded,
    ReverseFundConversion,
    Cancelled,
    /// A status this build does not know, kept verbatim.
    Unrecognised(String),
}

impl TransferStatus {
    const KNOWN: [(TransferStatus, &'static str); 10] = [
        (Self::Pending, "pending"),
        (Self::Processing, "processing"),
        (Self::FundsReceived, "funds_received"),
        (Self::FundsConverted, "funds_converted"),
        (Self::OutgoingPaymentSent, "outgoing_payment_sent"),
        (Self::FundsDelivered, "funds_delivered"),
        (Self::FundsNotDelivered, "funds_not_delivered"),
        (Self::FundsRefunded, "funds_refunded"),
        (Self::ReverseFundConversion, "reverse_fund_conversion"),
        (Self::Cancelled, "cancelled"),
    ];

    /// The stored code.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Unrecognised(s) => s,
            known => Self::KNOWN
                .iter()
                .find(|(k, _)| k == known)
                .map_or("", |(_, code)| code),
        }
    }

    /// Parses a stored code; one this build does not know is kept as
    /// [`TransferStatus::Unrecognised`], so that it is shown, never lost.
    pub fn parse(code: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(_, c)| *c == code)
            .map_or_else(|| Self::Unrecognised(code.to_string()), |(k, _)| k.clone())
    }
}

impl fmt::Display for TransferStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status reads as its stored code (`run.transfer_status.as_deref()` is the code).
impl std::ops::Deref for TransferStatus {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for TransferStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TransferStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Ok(Self::parse(&code))
    }
}

/// Whether a transfer's status is final, as its provider defines finality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Not final: keep following it (every unrecognised status too).
    InFlight,
    /// Final, and the money arrived where the quote said.
    Succeeded,
    /// Final, and it did not.
    Failed,
}

/// An amount in a currency, as a provider answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sum {
    pub amount: Decimal,
    pub currency: Currency,
}

/// The available balance of one currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balance {
    pub currency: Currency,
    pub available: Decimal,
}

/// The provider's reference price for a pair, for the rate guard and the balance check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferencePrice {
    pub price: Decimal,
    /// Whether the source currency is the pair's base (the `sell` price applies).
    pub source_is_base: bool,
}

/// A non-binding pre-flight, for a provider without binding quotes: what the balance
/// and fees looked like, valid for a time-to-live of our own. Never a rate lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreFlight {
    pub available: Decimal,
    pub fee_estimate: Option<Decimal>,
    pub valid_until: DateTime<Utc>,
}

/// Which side of a quote is fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixedSide {
    Source(Decimal),
    Target(Decimal),
}

/// A quote to lock, paid out to a saved bank recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteRequest {
    pub source_currency: Currency,
    pub target_currency: Currency,
    pub amount: FixedSide,
    /// Our own reference, echoed on the quote; how it is found again.
    pub reference: String,
    pub recipient_id: RecipientId,
}

/// Where a quote stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuoteState {
    /// Usable for a transfer until it expires.
    Open,
    /// A transfer was made from it.
    Used,
    /// Anything else (expired, or a state this build does not know), verbatim.
    Closed(String),
}

impl QuoteState {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Open => "pending",
            Self::Used => "accepted",
            Self::Closed(s) => s,
        }
    }
}

/// Which way a quote's rate is quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateSide {
    /// The pair's price with the target as its base: target per source is `1 / rate`.
    Buy,
    /// Target per source is the rate.
    Sell,
}

/// A quote's rate as the provider answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rate {
    pub rate: Decimal,
    pub side: Option<RateSide>,
    pub source_currency: Option<Currency>,
    pub target_currency: Option<Currency>,
}

/// One fee of a quote, with its conversion if the provider gave one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fee {
    pub amount: Sum,
    pub converted_amount: Option<Sum>,
}

/// Where a quote or transfer pays out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayOut {
    /// A bank transfer to a saved recipient (the only payout the pipeline asks for).
    pub bank_transfer: bool,
    /// The payout's kind as the provider names it, for messages.
    pub kind: String,
    pub recipient_id: Option<String>,
}

/// A quote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    pub id: QuoteId,
    pub reference: String,
    pub state: QuoteState,
    pub source_currency: Currency,
    pub target_currency: Currency,
    pub source_amount: Decimal,
    pub target_amount: Decimal,
    pub rate: Rate,
    pub fees: Vec<Fee>,
    pub pay_out: Option<PayOut>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The quote needs a second factor: a person must act, the worker must not transfer.
    pub needs_second_factor: bool,
}

/// A transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub quote_id: QuoteId,
    pub source_currency: Currency,
    pub target_currency: Currency,
    pub source_amount: Decimal,
    pub target_amount: Decimal,
    pub pay_out: Option<PayOut>,
    pub status: TransferStatus,
    /// The status classified by the provider's own rules of finality.
    pub settlement: Settlement,
    pub created_at: DateTime<Utc>,
}

/// A saved recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub id: RecipientId,
    pub active: bool,
    pub currency: Option<Currency>,
    pub bank_code: Option<String>,
    /// In full: mask it ([`crate::runs::mask_account`]) before it is shown or logged.
    pub account_number: Option<String>,
    pub holder_name: Option<String>,
}

/// Which saved recipients to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientQuery {
    pub currency: Currency,
    /// Filter by this account number (a provider may ignore it: filter again).
    pub account_number: Option<String>,
}

/// A bank account to check by name enquiry, or to save as a recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankAccount {
    pub currency: Currency,
    pub bank_code: String,
    pub account_number: String,
}

/// What a name enquiry found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedAccount {
    pub holder_name: String,
    pub bank_name: Option<String>,
}

/// A list item that could not be read, with what identifies it, so that a search can
/// tell whether it could be the item it looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub id: Option<String>,
    pub quote_id: Option<String>,
    pub reference: Option<String>,
    /// In full, for comparison only; never shown (`shown` masks it).
    pub account_number: Option<String>,
    /// The item and why it could not be read, for messages (account numbers masked).
    pub shown: String,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// One page of a list; `next_cursor` is `None` on the last page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
    pub skipped: Vec<Unreadable>,
}

/// A call's answer, or the one provider error.
pub type Answer<'a, T> = BoxFuture<'a, Result<Called<T>, ProviderError>>;

/// The provider interface. Every call takes the customer's token; every call that
/// moves money takes the caller's [`SendCheck`], asked right before the request leaves.
pub trait PaymentsProvider: Send + Sync {
    /// What this provider can promise.
    fn capabilities(&self) -> Capabilities;
    /// The longest a call can take, pacing included; `None` when unbounded.
    fn longest_call(&self) -> Option<Duration>;
    /// The whole-call timeout of one request once sent.
    fn call_timeout(&self) -> Duration;

    /// The available balance of `currency` (`ErrorKind::NotFound` when there is none).
    fn balance<'a>(&'a self, t: &'a AccessToken, currency: &'a Currency) -> Answer<'a, Balance>;
    /// The reference price of the pair, if the provider trades it.
    fn reference_price<'a>(
        &'a self,
        t: &'a AccessToken,
        source: &'a Currency,
        target: &'a Currency,
    ) -> Answer<'a, Option<ReferencePrice>>;

    /// One page of recent quotes, newest first.
    fn quotes_page<'a>(
        &'a self,
        t: &'a AccessToken,
        cursor: Option<String>,
    ) -> Answer<'a, Page<Quote>>;
    fn get_quote<'a>(&'a self, t: &'a AccessToken, id: &'a QuoteId) -> Answer<'a, Quote>;
    /// Locks a quote (money movement: the provider says to treat it so).
    fn create_quote<'a>(
        &'a self,
        t: &'a AccessToken,
        ask: &'a QuoteRequest,
        check: &'a dyn SendCheck,
    ) -> Answer<'a, Quote>;

    /// One page of the transfers made from `quote` (a provider may ignore the filter).
    fn transfers_page<'a>(
        &'a self,
        t: &'a AccessToken,
        quote: &'a QuoteId,
        cursor: Option<String>,
    ) -> Answer<'a, Page<Transfer>>;
    fn get_transfer<'a>(&'a self, t: &'a AccessToken, id: &'a TransferId) -> Answer<'a, Transfer>;
    /// Initiates the transfer of a locked quote.
    fn create_transfer<'a>(
        &'a self,
        t: &'a AccessToken,
        quote: &'a QuoteId,
        check: &'a dyn SendCheck,
    ) -> Answer<'a, Transfer>;

    /// One page of saved recipients.
    fn recipients_page<'a>(
        &'a self,
        t: &'a AccessToken,
        query: &'a RecipientQuery,
        cursor: Option<String>,
    ) -> Answer<'a, Page<Recipient>>;
    fn get_recipient<'a>(
        &'a self,
        t: &'a AccessToken,
        id: &'a RecipientId,
    ) -> Answer<'a, Recipient>;
    /// Name enquiry: who holds this bank account.
    fn check_bank_account<'a>(
        &'a self,
        t: &'a AccessToken,
        account: &'a BankAccount,
    ) -> Answer<'a, CheckedAccount>;
    /// Saves a bank recipient held under `holder_name`.
    fn create_recipient<'a>(
        &'a self,
        t: &'a AccessToken,
        account: &'a BankAccount,
        checked: &'a CheckedAccount,
        check: &'a dyn SendCheck,
    ) -> Answer<'a, Recipient>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_status_round_trips_its_stored_code_and_keeps_unknown_ones() {
        for (status, code) in TransferStatus::KNOWN {
            assert_eq!(status.as_str(), code);
            assert_eq!(TransferStatus::parse(code), status);
        }
        let odd = TransferStatus::parse("held_for_review");
        assert_eq!(odd, TransferStatus::Unrecognised("held_for_review".into()));
        assert_eq!(odd.as_str(), "held_for_review");
    }
}
