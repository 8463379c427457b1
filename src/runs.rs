//! Runs: one occurrence of a job, as a persisted state machine. Domain types only; the
//! store persists them and the pipeline drives them.
//!
//! ```text
//! created ─► awaiting_approval ─► recipient_resolved ─► quote_locked ─► transfer_submitted ─► settled
//!    │              │                      │ ▲               │                    │
//!    └──────────────┴──────► cancelled     │ └─ re-quote ◄───┘                    └──► failed
//!                                          └────────────────► failed | needs_human
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::money::{Currency, Money};
pub use crate::provider::boundary::TransferStatus;

/// A run's id, derived from the job's `id` key and the occurrence key (invariant 2),
/// so that two schedulers or a replayed trigger name the same run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// `run_` + the first 24 hex digits of SHA-256(job id, NUL, occurrence key).
    pub fn derive(job_id: &str, occurrence_key: &str) -> Self {
        let mut h = Sha256::new();
        h.update(job_id.as_bytes());
        h.update([0u8]);
        h.update(occurrence_key.as_bytes());
        let digest = h.finalize();
        Self(format!("run_{}", hex::encode(&digest[..12])))
    }

    /// Accepts an id as printed by `treasury runs list`.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("run_")?;
        (hex.len() == 24 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quote `reference` for attempt `n`: stable across retries of one attempt,
    /// new for each re-quote, 12–64 characters (`run_<24 hex>-q<n>`).
    pub fn quote_reference(&self, attempt: u32) -> String {
        format!("{}-q{attempt}", self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Created,
    AwaitingApproval,
    RecipientResolved,
    QuoteLocked,
    TransferSubmitted,
    Settled,
    Failed,
    Cancelled,
    /// The quote carried `two_step`: a person must act; `runs retry` re-quotes.
    NeedsHuman,
}

impl RunState {
    pub const ALL: [RunState; 9] = [
        RunState::Created,
        RunState::AwaitingApproval,
        RunState::RecipientResolved,
        RunState::QuoteLocked,
        RunState::TransferSubmitted,
        RunState::Settled,
        RunState::Failed,
        RunState::Cancelled,
        RunState::NeedsHuman,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Created => "created",
            RunState::AwaitingApproval => "awaiting_approval",
            RunState::RecipientResolved => "recipient_resolved",
            RunState::QuoteLocked => "quote_locked",
            RunState::TransferSubmitted => "transfer_submitted",
            RunState::Settled => "settled",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::NeedsHuman => "needs_human",
        }
    }

    /// No executor will touch the run again (`runs retry` can reopen failed and
    /// needs-human runs).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Settled | RunState::Failed | RunState::Cancelled | RunState::NeedsHuman
        )
    }

    /// True once a transfer may exist: from here on money may have moved.
    pub fn money_may_have_moved(self) -> bool {
        matches!(
            self,
            RunState::QuoteLocked | RunState::TransferSubmitted | RunState::Settled
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown run state {s:?}"))
    }
}

/// The money-moving call whose intent is persisted while it is in flight (invariant 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingOp {
    CreateRecipient,
    CreateQuote,
    CreateTransfer,
}

impl PendingOp {
    pub fn as_str(self) -> &'static str {
        match self {
            PendingOp::CreateRecipient => "create_recipient",
            PendingOp::CreateQuote => "create_quote",
            PendingOp::CreateTransfer => "create_transfer",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            PendingOp::CreateRecipient,
            PendingOp::CreateQuote,
            PendingOp::CreateTransfer,
        ]
        .into_iter()
        .find(|op| op.as_str() == s)
    }
}

/// Which side of the quote is fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "side", rename_all = "snake_case")]
pub enum Amount {
    /// Send exactly this much of the source currency.
    Source {
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
    },
    /// The recipient receives exactly this much of the target currency.
    Target {
        #[serde(with = "rust_decimal::serde::str")]
        amount: Decimal,
    },
}

/// Who gets paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecipientSpec {
    /// A saved Busha recipient.
    Id { id: String },
    /// A bank account, checked by name enquiry before a recipient is created.
    Bank {
        bank_code: String,
        account_number: String,
        /// The name the account must carry (compared after normalising).
        expected_name: String,
    },
}

/// Bounds a quote must satisfy before any transfer (invariant 5). Rates are target
/// units per source unit (e.g. NGN per USDT).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateGuard {
    #[serde(
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_rate: Option<Decimal>,
    #[serde(
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_rate: Option<Decimal>,
    /// Largest distance, in percent, from the reference price (`GET /v1/pairs`).
    #[serde(
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_drift_pct: Option<Decimal>,
    /// Largest total fee, in the source currency (the quote's `fees`, converted).
    #[serde(
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_fees: Option<Decimal>,
}

impl RateGuard {
    /// What the guards reserve against the caps for a target amount before any quote
    /// exists: its source cost at `min_rate` (the worst rate the guard accepts) plus
    /// `max_fees`, rounded up to the source currency's precision. `None` without a
    /// positive `min_rate`, or if the arithmetic overflows.
    pub fn reserve_for_target(&self, target: Decimal, source: &Currency) -> Option<Decimal> {
        let min_rate = self.min_rate.filter(|r| *r > Decimal::ZERO)?;
        target
            .checked_div(min_rate)?
            .checked_add(self.max_fees.unwrap_or_default())
            .map(|d| {
                d.round_dp_with_strategy(
                    source.precision(),
                    rust_decimal::RoundingStrategy::AwayFromZero,
                )
            })
    }

    /// Checks a quote's rate (as Busha reports it: counter units per base unit) and its
    /// total fees against the bounds. The error names the rate and the bound.
    pub fn check(
        &self,
        rate: Decimal,
        reference: Option<Decimal>,
        fees: Decimal,
        fee_currency: &Currency,
    ) -> Result<(), String> {
        if let Some(min) = self.min_rate {
            if rate < min {
                return Err(format!("rate {rate} is below the minimum rate {min}"));
            }
        }
        if let Some(max) = self.max_rate {
            if rate > max {
                return Err(format!("rate {rate} is above the maximum rate {max}"));
            }
        }
        if let Some(max_drift) = self.max_drift_pct {
            let Some(reference) = reference.filter(|r| !r.is_zero()) else {
                return Err(format!(
                    "rate {rate} cannot be checked against the maximum drift {max_drift}%: no reference price"
                ));
            };
            let drift = ((rate - reference).abs() / reference * Decimal::ONE_HUNDRED).round_dp(4);
            if drift > max_drift {
                return Err(format!(
                    "rate {rate} is {drift}% from the reference price {reference}, above the maximum drift {max_drift}%"
                ));
            }
        }
        if let Some(max_fees) = self.max_fees {
            if fees > max_fees {
                return Err(format!(
                    "fees {fees} {fee_currency} exceed the maximum fees {max_fees} {fee_currency}"
                ));
            }
        }
        Ok(())
    }
}

/// Everything a run needs to move money, frozen when the run is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutSpec {
    /// The grant alias (declared in `config/`).
    pub grant: String,
    pub source_currency: Currency,
    pub target_currency: Currency,
    pub amount: Amount,
    pub recipient: RecipientSpec,
    #[serde(default)]
    pub guard: RateGuard,
    /// Re-quotes allowed when a quote falls outside the guard or goes stale.
    #[serde(default = "default_max_requotes")]
    pub max_requotes: u32,
    /// Spending limits in the source currency, checked (and reserved) at quote lock.
    #[serde(default)]
    pub limits: Limits,
    /// Who must approve the run before it moves money, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRule>,
    /// For a sweep: `amount` is an upper bound (what was computed when it fired and
    /// approved), and what is quoted is re-computed against the live balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepBound>,
}

/// What a sweep must leave behind, checked against the live balance right before the
/// quote lock and again before the transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepBound {
    /// Never leave less than this in the source balance.
    #[serde(with = "rust_decimal::serde::str")]
    pub keep: Decimal,
    /// Below this, the sweep is skipped rather than made small.
    #[serde(
        default,
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_amount: Option<Decimal>,
}

impl SweepBound {
    /// What a sweep approved for `approved` may move with `available` in the balance:
    /// `min(approved, available - keep)`, or `Err` with the reason to skip it.
    pub fn amount(&self, approved: Decimal, available: Decimal) -> Result<Decimal, String> {
        let room = available - self.keep;
        let amount = approved.min(room);
        let floor = self.min_amount.unwrap_or(Decimal::ZERO);
        if amount <= Decimal::ZERO || amount < floor {
            return Err(format!(
                "{available} available less keep {} leaves {}, below the minimum sweep {floor}",
                self.keep,
                room.max(Decimal::ZERO)
            ));
        }
        Ok(amount)
    }
}

/// Spending limits in the source currency. A run that would break one fails with the
/// reason; it is not deferred.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    #[serde(
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_per_run: Option<Decimal>,
    /// Rolling 24 hours, all runs of the job.
    #[serde(
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub job_daily_cap: Option<Decimal>,
    /// Rolling 24 hours, all runs on the grant.
    #[serde(
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub grant_daily_cap: Option<Decimal>,
}

/// The approval a run needs: this many distinct approvers, none of them the job's owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRule {
    pub approvers: u32,
    /// The job's declared owner, who may never approve its runs.
    pub owner: String,
}

fn default_max_requotes() -> u32 {
    3
}

impl PayoutSpec {
    /// The fixed side as money, with the currency's precision checked.
    pub fn fixed_money(&self) -> Result<Money, crate::money::MoneyError> {
        match &self.amount {
            Amount::Source { amount } => Money::new(*amount, self.source_currency.clone()),
            Amount::Target { amount } => Money::new(*amount, self.target_currency.clone()),
        }
    }
}

/// A run as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub job_id: String,
    pub occurrence_key: String,
    /// Hash of the job file version the run was created from.
    pub job_version: String,
    pub spec: PayoutSpec,
    pub state: RunState,
    /// Why the run is where it is (failure reason, approval note, ...).
    pub reason: Option<String>,
    pub recipient_id: Option<String>,
    /// Quote attempts so far; the attempt number is part of the quote reference.
    pub quote_attempt: u32,
    /// `quote_attempt` when an operator last retried the run: `max_requotes` counts
    /// from here.
    #[serde(default)]
    pub quote_attempt_base: u32,
    pub quote: Option<LockedQuote>,
    pub transfer_id: Option<String>,
    /// Stored as its code; read back through [`TransferStatus::parse`].
    pub transfer_status: Option<TransferStatus>,
    /// A money-moving call that may be in flight.
    pub pending: Option<PendingOp>,
    /// The quote request of the current attempt, persisted with its intent: a quote
    /// found by its reference after an unknown outcome is checked against it.
    #[serde(default)]
    pub quote_ask: Option<QuoteAsk>,
    /// The account holder's name as the provider reports it for `recipient_id`.
    #[serde(default)]
    pub recipient_name: Option<String>,
    /// Executions that made progress or failed transiently, for backoff.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a run asked for in one quote attempt. Currencies are the spec's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteAsk {
    /// `run_<id>-q<attempt>`, the attempt's reference at Busha.
    pub reference: String,
    /// The fixed side and its amount (for a sweep, the bounded amount).
    pub amount: Amount,
    pub recipient_id: String,
}

/// The quote a run locked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedQuote {
    pub id: String,
    pub reference: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub rate: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub source_amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub target_amount: Decimal,
    /// Total fees in the source currency.
    #[serde(with = "rust_decimal::serde::str")]
    pub fees: Decimal,
    pub expires_at: DateTime<Utc>,
}

impl Run {
    /// A new run for an occurrence.
    pub fn new(
        job_id: &str,
        occurrence_key: &str,
        job_version: &str,
        spec: PayoutSpec,
        needs_approval: bool,
        now: DateTime<Utc>,
    ) -> Self {
        Run {
            id: RunId::derive(job_id, occurrence_key),
            job_id: job_id.into(),
            occurrence_key: occurrence_key.into(),
            job_version: job_version.into(),
            spec,
            state: if needs_approval {
                RunState::AwaitingApproval
            } else {
                RunState::Created
            },
            reason: None,
            recipient_id: None,
            quote_attempt: 0,
            quote_attempt_base: 0,
            quote: None,
            transfer_id: None,
            transfer_status: None,
            pending: None,
            quote_ask: None,
            recipient_name: None,
            attempts: 0,
            next_attempt_at: now,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Compares account names the way a person would: case, punctuation, spacing and
/// word order do not matter.
pub fn names_match(expected: &str, actual: &str) -> bool {
    fn words(s: &str) -> Vec<String> {
        let mut w: Vec<String> = s
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| w.to_lowercase())
            .collect();
        w.sort();
        w
    }
    let (e, a) = (words(expected), words(actual));
    !e.is_empty() && e == a
}

/// Who a run pays, for people: the account holder's name as the provider reports it
/// once the recipient is resolved; until then the job's declared name, marked as such
/// (the provider has not confirmed it yet). Account numbers are masked.
pub fn payee_shown(run: &Run) -> String {
    match (&run.spec.recipient, &run.recipient_name) {
        (
            RecipientSpec::Bank {
                bank_code,
                account_number,
                ..
            },
            Some(holder),
        ) => format!(
            "{holder} ({} at bank {bank_code})",
            mask_account(account_number)
        ),
        (
            RecipientSpec::Bank {
                bank_code,
                account_number,
                expected_name,
            },
            None,
        ) => format!(
            "{expected_name} ({} at bank {bank_code}; name as the job declares it, not yet confirmed by the provider)",
            mask_account(account_number)
        ),
        (RecipientSpec::Id { id }, Some(holder)) => format!("{holder} (recipient {id})"),
        (RecipientSpec::Id { id }, None) => {
            format!("recipient {id} (holder not yet read from the provider)")
        }
    }
}

/// Masks all but the last four characters of an account number for logs and output.
pub fn mask_account(number: &str) -> String {
    let n = number.chars().count();
    if n <= 4 {
        return "*".repeat(n);
    }
    let tail: String = number.chars().skip(n - 4).collect();
    format!("{}{}", "*".repeat(n - 4), tail)
}

/// Masks every run of 8 or more digits in free text (account numbers in reasons,
/// occurrence keys and error messages), like [`mask_account`].
pub fn mask_account_numbers_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 8 {
            out.push_str(&mask_account(digits));
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_depend_on_job_and_occurrence_only() {
        let a = RunId::derive("vendor-payout", "2026-01-05T09:00:00Z");
        assert_eq!(a, RunId::derive("vendor-payout", "2026-01-05T09:00:00Z"));
        assert_ne!(a, RunId::derive("vendor-payout", "2026-01-12T09:00:00Z"));
        assert_ne!(a, RunId::derive("vendor-payout2", "2026-01-05T09:00:00Z"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(RunId::derive("ab", "c"), RunId::derive("a", "bc"));
        assert_eq!(RunId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(RunId::parse("run_xyz"), None);
    }

    #[test]
    fn quote_references_fit_busha_bounds_and_change_per_attempt() {
        let id = RunId::derive("j", "k");
        let r1 = id.quote_reference(1);
        assert!((12..=64).contains(&r1.len()), "{r1}");
        assert_ne!(r1, id.quote_reference(2));
        assert_eq!(r1, id.quote_reference(1));
    }

    #[test]
    fn states_round_trip_and_finality_is_right() {
        for st in RunState::ALL {
            assert_eq!(st.as_str().parse::<RunState>().unwrap(), st);
        }
        assert!(RunState::Settled.is_final());
        assert!(!RunState::QuoteLocked.is_final());
    }

    #[test]
    fn names_match_after_normalising() {
        assert!(names_match("Ada Lovelace", "LOVELACE, ADA"));
        assert!(names_match("ada  lovelace.", "ADA LOVELACE"));
        assert!(!names_match("Ada Lovelace", "ADA BYRON LOVELACE"));
        assert!(!names_match("", ""));
    }

    #[test]
    fn the_rate_guard_names_the_rate_and_the_bound() {
        use rust_decimal::dec;
        let usdt = Currency::new("USDT").unwrap();
        let guard = RateGuard {
            min_rate: Some(dec!(1550)),
            max_rate: Some(dec!(1700)),
            max_drift_pct: Some(dec!(2)),
            max_fees: Some(dec!(1)),
        };
        assert!(
            guard
                .check(dec!(1600), Some(dec!(1600)), dec!(0.06), &usdt)
                .is_ok()
        );
        let low = guard
            .check(dec!(1500), Some(dec!(1500)), dec!(0), &usdt)
            .unwrap_err();
        assert!(low.contains("1500") && low.contains("1550"), "{low}");
        let high = guard
            .check(dec!(1750), Some(dec!(1750)), dec!(0), &usdt)
            .unwrap_err();
        assert!(high.contains("1750") && high.contains("1700"), "{high}");
        let drift = guard
            .check(dec!(1600), Some(dec!(1650)), dec!(0), &usdt)
            .unwrap_err();
        assert!(drift.contains("1650") && drift.contains("2%"), "{drift}");
        let fees = guard
            .check(dec!(1600), Some(dec!(1600)), dec!(2), &usdt)
            .unwrap_err();
        assert!(fees.contains("2 USDT") && fees.contains("1 USDT"), "{fees}");
    }

    #[test]
    fn a_payee_is_shown_by_the_providers_name_once_known() {
        let spec = PayoutSpec {
            grant: "g".into(),
            source_currency: Currency::new("USDT").unwrap(),
            target_currency: Currency::new("NGN").unwrap(),
            amount: Amount::Source {
                amount: Decimal::ONE,
            },
            recipient: RecipientSpec::Bank {
                bank_code: "000013".into(),
                account_number: "0123456789".into(),
                expected_name: "SOSANYA DICKSON OLUMIDE".into(),
            },
            guard: RateGuard::default(),
            max_requotes: 3,
            limits: Limits::default(),
            approval: None,
            sweep: None,
        };
        let mut run = Run::new("j", "o", "v", spec, false, chrono::Utc::now());
        let before = payee_shown(&run);
        assert!(
            before.contains("SOSANYA DICKSON OLUMIDE") && before.contains("not yet confirmed"),
            "{before}"
        );
        run.recipient_name = Some("ADA LOVELACE".into());
        let after = payee_shown(&run);
        assert_eq!(after, "ADA LOVELACE (******6789 at bank 000013)");
        run.spec.recipient = RecipientSpec::Id {
            id: "64ae8c26b1f5b4a1c2d3e4f5".into(),
        };
        assert_eq!(
            payee_shown(&run),
            "ADA LOVELACE (recipient 64ae8c26b1f5b4a1c2d3e4f5)"
        );
    }

    #[test]
    fn account_numbers_are_masked() {
        assert_eq!(mask_account("0123456789"), "******6789");
        assert_eq!(mask_account("123"), "***");
        assert_eq!(
            mask_account_numbers_in("payee#0123456789 at 2026-01-05, ref 12345"),
            "payee#******6789 at 2026-01-05, ref 12345"
        );
    }
}
