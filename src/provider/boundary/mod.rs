//! The provider interface in domain types: what the pipeline may ask of any payments
//! provider, and what each provider can promise ([`Capabilities`]).
//!
//! Each provider implements [`PaymentsProvider`] in its own module (`busha`; `baanx`
//! to follow), converting its wire types to these and back there. No wire type crosses
//! this boundary, and the pipeline branches on capabilities, never on a provider's name.
//! Checks that compare an answer with what was asked work on these types.

mod resources;
mod status;

pub use resources::*;
pub use status::{Settlement, TransferStatus};

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;

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
