//! The sandbox's in-memory world: OAuth clients, users and their balances, token
//! families, recipients, quotes, transfers, and the ledger of everything that happened.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::{Behaviour, OAuthClientConfig, RateLimits, TransferOutcome};
use super::faults::Fault;

/// Rows in insertion order with an id index. Rows are never removed, so the position
/// of a row is a stable cursor.
pub struct Table<T> {
    rows: Vec<T>,
    index: HashMap<String, usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Table<T> {
    pub fn insert(&mut self, id: String, row: T) -> usize {
        let pos = self.rows.len();
        self.rows.push(row);
        self.index.insert(id, pos);
        pos
    }
    pub fn get(&self, id: &str) -> Option<&T> {
        self.index.get(id).map(|&i| &self.rows[i])
    }
    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.index.get(id).map(|&i| &mut self.rows[i])
    }
    pub fn at(&self, pos: usize) -> &T {
        &self.rows[pos]
    }
    pub fn at_mut(&mut self, pos: usize) -> &mut T {
        &mut self.rows[pos]
    }
    /// Rows with their positions, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (usize, &T)> {
        self.rows.iter().enumerate()
    }
}

pub struct User {
    pub id: String,
    pub profile_id: String,
    pub name: String,
    pub password: String,
    pub balances: BTreeMap<String, BalanceRec>,
}

pub struct BalanceRec {
    pub id: String,
    pub available: Decimal,
    pub pending: Decimal,
}

pub struct AuthCode {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub challenge: String,
    pub nonce: Option<String>,
    pub issued_at: DateTime<Utc>,
    pub used: bool,
    /// The family the code was exchanged into, so that a replayed code can revoke it.
    pub family_id: Option<String>,
}

pub struct Family {
    pub user_id: String,
    pub scopes: Vec<String>,
    pub revoked: Option<String>,
}

pub struct RefreshRec {
    pub family_id: String,
    pub client_id: String,
    pub expires_at: DateTime<Utc>,
    /// Rotated: presenting it again is a replay and kills the family.
    pub used: bool,
}

pub struct AccessRec {
    pub family_id: Option<String>,
    pub revoked: bool,
}

#[derive(Clone)]
pub struct RecipientRec {
    pub id: String,
    pub user_id: String,
    pub profile_id: String,
    /// `ngn_bank` (flat) or `ngn_bank_transfer` (legacy).
    pub kind: String,
    pub currency: String,
    pub country_code: String,
    pub bank_name: String,
    pub bank_code: String,
    pub account_number: String,
    pub account_name: String,
    pub legal_entity_type: String,
    pub active: bool,
    /// Created through the legacy 2025-06-01 shape, and listed in it.
    pub legacy: bool,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct FeeRec {
    pub name: String,
    pub amount: Decimal,
    pub currency: String,
    pub converted_amount: Decimal,
    pub converted_currency: String,
}

#[derive(Clone)]
pub struct PayOutRec {
    pub kind: String,
    pub recipient_id: Option<String>,
}

#[derive(Clone)]
pub struct QuoteRec {
    pub id: String,
    pub user_id: String,
    pub profile_id: String,
    pub source_currency: String,
    pub target_currency: String,
    pub source_amount: Decimal,
    pub target_amount: Decimal,
    pub rate: Decimal,
    pub side: &'static str,
    pub product: String,
    pub fees: Vec<FeeRec>,
    pub pay_out: Option<PayOutRec>,
    pub reference: String,
    /// `pending`, `accepted` or `expired`.
    pub status: &'static str,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub two_step: bool,
}

impl QuoteRec {
    /// Brings `status` up to date with `now`.
    pub fn refresh_status(&mut self, now: DateTime<Utc>) {
        if self.status == "pending" && now >= self.expires_at {
            self.status = "expired";
            self.updated_at = self.expires_at;
        }
    }
}

#[derive(Clone)]
pub struct TransferRec {
    pub id: String,
    pub user_id: String,
    pub profile_id: String,
    pub quote_id: String,
    pub quote: QuoteRec,
    /// Status path this transfer will walk, one step per `transfer_step`.
    pub path: Vec<&'static str>,
    /// Index into `path` of the current status.
    pub step: usize,
    /// When each reached status was entered.
    pub events: Vec<(&'static str, DateTime<Utc>)>,
    pub created_at: DateTime<Utc>,
    pub settled_funds_returned: bool,
}

impl TransferRec {
    pub fn status(&self) -> &'static str {
        self.path[self.step]
    }
    pub fn is_final(&self) -> bool {
        self.step + 1 == self.path.len() && self.path.last() != Some(&"processing")
    }
}

/// One event the sandbox recorded, for asserting exactly-once from Busha's side.
pub type LedgerEntry = crate::sandbox::core::ledger::Entry<LedgerEvent>;

/// What happened. Amounts are exact decimals (strings in JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LedgerEvent {
    CodeIssued {
        client_id: String,
        user_id: String,
    },
    /// `grant` is `authorization_code`, `refresh_token` or `minted` (test shortcut).
    TokenIssued {
        client_id: String,
        user_id: String,
        family_id: String,
        grant: String,
    },
    RefreshReplayed {
        client_id: String,
        user_id: String,
        family_id: String,
    },
    FamilyRevoked {
        family_id: String,
        user_id: String,
        reason: String,
    },
    NameEnquiry {
        user_id: String,
        bank_code: String,
        account_number: String,
        resolved: bool,
    },
    RecipientCreated {
        user_id: String,
        recipient_id: String,
        account_number: String,
    },
    RecipientDeleted {
        user_id: String,
        recipient_id: String,
    },
    QuoteCreated {
        user_id: String,
        quote_id: String,
        reference: String,
        source_currency: String,
        source_amount: Decimal,
        target_currency: String,
        target_amount: Decimal,
        rate: Decimal,
        expires_at: DateTime<Utc>,
    },
    TransferCreated {
        user_id: String,
        transfer_id: String,
        quote_id: String,
        source_currency: String,
        source_amount: Decimal,
        target_currency: String,
        target_amount: Decimal,
        quote_expires_at: DateTime<Utc>,
        /// The quote had expired and the sandbox re-priced it (a switch).
        repriced: bool,
        /// Another transfer already existed for this quote (a switch).
        duplicate: bool,
    },
    TransferFinal {
        transfer_id: String,
        status: String,
    },
    ResponseDropped {
        endpoint: String,
        request_id: String,
    },
    /// A `rewrite` fault changed the answer after the request was handled.
    ResponseRewritten {
        endpoint: String,
        request_id: String,
        pointer: String,
    },
    /// An `ignore_filters` fault handled the request without its filters.
    FiltersIgnored {
        endpoint: String,
        request_id: String,
    },
}

pub use crate::sandbox::core::requests::RequestRecord;

/// A reference price for a pair such as `USDTNGN`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Price {
    pub base: String,
    pub counter: String,
    pub buy: Decimal,
    pub sell: Decimal,
}

#[derive(Default)]
pub struct State {
    pub clients: HashMap<String, OAuthClientConfig>,
    pub users: HashMap<String, User>,
    pub codes: HashMap<String, AuthCode>,
    pub families: HashMap<String, Family>,
    pub refresh_tokens: HashMap<String, RefreshRec>,
    pub access_tokens: HashMap<String, AccessRec>,
    pub recipients: Table<RecipientRec>,
    pub quotes: Table<QuoteRec>,
    pub transfers: Table<TransferRec>,
    /// Positions in `transfers` by quote id, for the `quote_id` lookups every
    /// reconciling client makes (a scan would make big runs quadratic).
    pub transfers_by_quote: HashMap<String, Vec<usize>>,
    /// Positions in `transfers` that have not reached a final status yet.
    pub in_flight: Vec<usize>,
    pub bank_accounts: HashMap<(String, String), String>,
    pub prices: BTreeMap<String, Price>,
    pub ledger: Vec<LedgerEntry>,
    pub requests: Vec<RequestRecord>,
    /// Accepted request times per (client, endpoint), for the rolling-minute limit.
    pub windows: crate::sandbox::core::rate::Windows,
    pub faults: Vec<Fault>,
    pub outcomes: VecDeque<TransferOutcome>,
    pub behaviour: Behaviour,
    pub rate_limits: RateLimits,
}

impl State {
    pub fn record(&mut self, at: DateTime<Utc>, event: LedgerEvent) {
        crate::sandbox::core::ledger::record(&mut self.ledger, at, event);
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users.values().find(|u| u.name == name)
    }

    /// Revokes a token family; returns false if it was already revoked or unknown.
    pub fn revoke_family(&mut self, family_id: &str, reason: &str, at: DateTime<Utc>) -> bool {
        let Some(family) = self.families.get_mut(family_id) else {
            return false;
        };
        if family.revoked.is_some() {
            return false;
        }
        family.revoked = Some(reason.to_string());
        let user_id = family.user_id.clone();
        self.record(
            at,
            LedgerEvent::FamilyRevoked {
                family_id: family_id.to_string(),
                user_id,
                reason: reason.to_string(),
            },
        );
        true
    }

    /// Moves every in-flight transfer along its path up to `now`, returning funds for
    /// the ones that ended cancelled or refunded.
    pub fn advance_transfers(&mut self, now: DateTime<Utc>, step: Duration) {
        let mut still = Vec::with_capacity(self.in_flight.len());
        let in_flight = std::mem::take(&mut self.in_flight);
        let mut finals = Vec::new();
        for pos in in_flight {
            let t = self.transfers.at_mut(pos);
            let elapsed = now - t.created_at;
            let reached = if step <= Duration::zero() {
                t.path.len() - 1
            } else {
                let steps = elapsed.num_milliseconds() / step.num_milliseconds().max(1);
                (steps.max(0) as usize).min(t.path.len() - 1)
            };
            while t.step < reached {
                t.step += 1;
                let at = t.created_at + step * t.step as i32;
                t.events.push((t.path[t.step], at.min(now)));
            }
            if t.is_final() {
                let status = t.status();
                let refund =
                    matches!(status, "cancelled" | "funds_refunded") && !t.settled_funds_returned;
                if refund {
                    t.settled_funds_returned = true;
                }
                finals.push((
                    t.id.clone(),
                    status,
                    refund,
                    t.user_id.clone(),
                    t.quote.source_currency.clone(),
                    t.quote.source_amount,
                ));
            } else {
                still.push(pos);
            }
        }
        self.in_flight = still;
        for (transfer_id, status, refund, user_id, currency, amount) in finals {
            if refund {
                if let Some(b) = self
                    .users
                    .get_mut(&user_id)
                    .and_then(|u| u.balances.get_mut(&currency))
                {
                    b.available += amount;
                }
            }
            self.record(
                now,
                LedgerEvent::TransferFinal {
                    transfer_id,
                    status: status.to_string(),
                },
            );
        }
    }
}
