//! The Baanx emulator's in-memory world: two independent regional stores (users,
//! login tokens, OAuth sessions, codes, token families, consent), and the ledger.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::{BaanxBehaviour, BaanxClient, PlatformWallet, Region};
use crate::sandbox::core::faults::Fault;
use crate::sandbox::core::ledger::{self, Entry};
use crate::sandbox::core::rate::{RateLimits, Windows};
use crate::sandbox::core::requests::RequestRecord;

pub struct User {
    pub id: String,
    pub email: String,
    pub password: String,
    pub otp: Option<String>,
    /// When an SMS code was last sent (`POST /v1/auth/login/otp`).
    pub otp_sent_at: Option<DateTime<Utc>>,
    pub phone_number: String,
    pub verification_state: String,
    pub phase: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub created_at: DateTime<Utc>,
    pub internal: Vec<InternalWallet>,
    pub platform: Vec<PlatformRec>,
    pub external: Vec<ExternalWallet>,
    pub whitelist: Vec<WhitelistRec>,
}

pub struct InternalWallet {
    pub id: String,
    pub network: String,
    pub currency: String,
    pub address: String,
    pub memo: Option<String>,
    pub address_id: String,
    pub balance: Decimal,
    pub history: Vec<HistoryItem>,
}

/// A credit or reward wallet: absent (404) until first credited.
pub struct PlatformRec {
    pub kind: PlatformWallet,
    pub id: String,
    pub currency: String,
    pub balance: Decimal,
    pub withdrawable: bool,
    pub history: Vec<HistoryItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExternalWallet {
    pub address: String,
    pub currency: String,
    pub network: String,
    pub balance: Decimal,
    pub allowance: Decimal,
}

#[derive(Clone)]
pub struct HistoryItem {
    pub name: String,
    pub amount: Decimal,
    pub currency: String,
    /// `debit` or `credit`.
    pub sign: &'static str,
    /// When it shows in the history (and the date it carries).
    pub date: DateTime<Utc>,
}

pub struct WhitelistRec {
    pub id: String,
    pub currency: String,
    pub name: String,
    pub first_name: String,
    pub last_name: String,
    pub address: String,
    pub memo: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Listed and payable from then on (the pending-approval switch).
    pub approved_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

pub struct LoginToken {
    pub user_id: String,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
}

/// An OAuth authorization session opened by initiate.
pub struct Session {
    pub client_key: String,
    pub redirect_uri: String,
    pub state: String,
    pub challenge: String,
    pub expires_at: DateTime<Utc>,
    /// A code was issued from it: it cannot issue another.
    pub used: bool,
    /// Hosted UI progress: the user whose password was checked, and whether their OTP
    /// step is done.
    pub hosted_user: Option<String>,
    pub hosted_otp_ok: bool,
}

pub struct Code {
    pub client_key: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
    pub family_id: Option<String>,
}

pub struct Family {
    pub client_key: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub revoked: Option<String>,
}

pub struct RefreshRec {
    pub family_id: String,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
}

pub struct AccessRec {
    pub family_id: String,
    pub expires_at: DateTime<Utc>,
}

/// One consent item of a consent set.
#[derive(Clone)]
pub struct ConsentRec {
    pub consent_id: String,
    pub consent_type: String,
    pub status: String,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub revocation: Option<DateTime<Utc>>,
}

pub struct ConsentSet {
    pub id: String,
    pub onboarding_id: String,
    pub tenant_id: String,
    pub policy_type: String,
    pub user_id: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub consents: Vec<ConsentRec>,
}

#[derive(Clone)]
pub struct AuditRec {
    pub audit_id: String,
    pub user_id: Option<String>,
    pub consent_set_id: String,
    pub action: &'static str,
    pub at: DateTime<Utc>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// One region's backend. The two never see each other's users or tokens.
#[derive(Default)]
pub struct RegionStore {
    pub users: HashMap<String, User>,
    pub login_tokens: HashMap<String, LoginToken>,
    pub sessions: HashMap<String, Session>,
    pub codes: HashMap<String, Code>,
    pub families: HashMap<String, Family>,
    pub refresh_tokens: HashMap<String, RefreshRec>,
    pub access_tokens: HashMap<String, AccessRec>,
    pub consent_sets: Vec<ConsentSet>,
    pub audit: Vec<AuditRec>,
    /// Failed logins per email (for the lockout).
    pub failures: HashMap<String, VecDeque<DateTime<Utc>>>,
}

impl RegionStore {
    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.email.eq_ignore_ascii_case(email))
    }

    /// Revokes a family; false if it was already revoked or unknown.
    pub fn revoke_family(&mut self, family_id: &str, reason: &str) -> bool {
        match self.families.get_mut(family_id) {
            Some(f) if f.revoked.is_none() => {
                f.revoked = Some(reason.to_string());
                true
            }
            _ => false,
        }
    }

    /// Live families of (client, user).
    pub fn live_families(&self, client_key: &str, user_id: &str) -> Vec<String> {
        self.families
            .iter()
            .filter(|(_, f)| f.client_key == client_key && f.user_id == user_id)
            .filter(|(_, f)| f.revoked.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// What happened, for asserting from Baanx's side. Amounts are exact decimals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaanxEvent {
    SessionOpened {
        client_key: String,
        mode: String,
    },
    LoginSucceeded {
        user_id: String,
    },
    /// Password checked; the OTP step is still due.
    LoginOtpRequired {
        user_id: String,
    },
    LoginFailed {
        email: String,
        reason: String,
    },
    OtpSent {
        user_id: String,
    },
    LoggedOut {
        user_id: String,
    },
    CodeIssued {
        client_key: String,
        user_id: String,
    },
    CodeReplayed {
        client_key: String,
        user_id: String,
    },
    /// `grant` is `authorization_code` or `refresh_token`.
    TokenIssued {
        client_key: String,
        user_id: String,
        family_id: String,
        grant: String,
    },
    RefreshReplayed {
        client_key: String,
        user_id: String,
        family_id: String,
    },
    FamilyRevoked {
        family_id: String,
        user_id: String,
        reason: String,
    },
    WhitelistAdded {
        user_id: String,
        entry_id: String,
        currency: String,
        address: String,
        /// Not approved yet (listed and payable from `approved_at`).
        pending: bool,
        approved_at: DateTime<Utc>,
    },
    WhitelistDeleted {
        user_id: String,
        entry_id: String,
    },
    /// Money left a wallet. `withdrawal_id` is the sandbox's own: Baanx gives none.
    Withdrawal {
        withdrawal_id: String,
        user_id: String,
        /// `INTERNAL`, `CREDIT` or `REWARD`.
        wallet_type: String,
        currency: String,
        amount: Decimal,
        recipient: String,
        tx_hash: Option<String>,
    },
    ConsentRecorded {
        consent_set_id: String,
        action: String,
    },
    ResponseDropped {
        endpoint: String,
        request_id: String,
    },
    ResponseRewritten {
        endpoint: String,
        request_id: String,
        pointer: String,
    },
}

/// One ledger entry of the Baanx emulator.
pub type BaanxLedgerEntry = Entry<BaanxEvent>;

pub struct World {
    pub clients: HashMap<String, BaanxClient>,
    pub regions: [RegionStore; 2],
    pub behaviour: BaanxBehaviour,
    pub rate_limits: RateLimits,
    pub faults: Vec<Fault>,
    pub windows: Windows,
    pub ledger: Vec<BaanxLedgerEntry>,
    pub requests: Vec<RequestRecord>,
    pub withdrawals: u64,
    pub auto_consent: Option<String>,
}

impl World {
    pub fn record(&mut self, at: DateTime<Utc>, event: BaanxEvent) {
        ledger::record(&mut self.ledger, at, event);
    }

    pub fn region(&mut self, region: Region) -> &mut RegionStore {
        &mut self.regions[region.index()]
    }

    /// The region and user with this id, in whichever region holds it.
    pub fn find_user(&mut self, user_id: &str) -> Option<(Region, &mut User)> {
        for region in [Region::International, Region::Us] {
            if self.regions[region.index()].users.contains_key(user_id) {
                let user = self.regions[region.index()].users.get_mut(user_id)?;
                return Some((region, user));
            }
        }
        None
    }

    /// The next sandbox-side withdrawal id.
    pub fn next_withdrawal_id(&mut self) -> String {
        self.withdrawals += 1;
        format!("wd_{:06}", self.withdrawals)
    }
}
