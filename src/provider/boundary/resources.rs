//! The resources of the provider boundary: balances, quotes, transfers, recipients
//! and list pages, as domain types (no provider's wire shape).

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::{QuoteId, RecipientId, Settlement, TransferId, TransferStatus};
use crate::money::Currency;

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
