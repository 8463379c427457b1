//! Jobs certain to fail: a payout whose amount, at every rate the guard accepts, breaks
//! the job's `max_per_run` or its rolling 24-hour cap. [`super::parse`] refuses them, so
//! `jobs validate`, `jobs plan` and `treasury run` all say so before any run exists.
//!
//! The limits are in the source currency. The least a run is held to:
//! - a source amount S ("send"): S, at any rate;
//! - a target amount T ("deliver") with `min_rate`: the guard reserves T / min_rate +
//!   max_fees before quoting ([`RateGuard::reserve_for_target`]), and refuses the run
//!   when that is over a limit;
//! - a target amount with only `max_rate`: every quote the guard accepts costs at least
//!   T / max_rate, and the transfer is checked against the quote's source amount;
//! - with neither (only `max_drift_pct`), a target amount has no least cost: nothing is
//!   certain;
//! - a trigger: its smallest amount, `min_amount`; a sweep: more than `threshold - keep`;
//! - a batch: each payee, and one occurrence's payees together against the daily cap.
//!
//! Shown figures keep the statement true: a least amount is rounded down, to 2 places
//! unless that would not show it above the limit, then to the source's precision.

use rust_decimal::{Decimal, RoundingStrategy};

use super::spec::{JobSpec, Payout, Trigger};
use crate::money::Currency;
use crate::runs::{Amount, RateGuard};

/// Which `[limits]` key a job certainly breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKey {
    MaxPerRun,
    DailyCap,
}

impl LimitKey {
    /// The key in `[limits]`.
    pub fn key(self) -> &'static str {
        match self {
            LimitKey::MaxPerRun => "max_per_run",
            LimitKey::DailyCap => "daily_cap",
        }
    }
}

/// A limit every run (or every occurrence) of a job breaks, with the arithmetic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertainFailure {
    pub limit: LimitKey,
    pub message: String,
}

/// The least source amount a run needs, and how it was found.
struct Least {
    value: Decimal,
    /// `true`: the run needs strictly more than `value` (a sweep).
    strict: bool,
    /// "deliver 500000 NGN at `guard.min_rate` 1450 reserves 500000 / 1450 + ...".
    how: String,
}

impl Least {
    fn breaks(&self, limit: Decimal) -> bool {
        if self.strict {
            self.value >= limit
        } else {
            self.value > limit
        }
    }
}

/// Every limit `spec` is certain to break.
pub fn certain_failures(spec: &JobSpec) -> Vec<CertainFailure> {
    let src = spec.source_currency();
    let mut out = Vec::new();
    let mut batch_total: Option<(Decimal, usize)> = None;
    for (what, least) in leasts(spec) {
        let Some(least) = least else { continue };
        if let Some(f) = per_run_failure(spec, &what, &least, src) {
            out.push(f);
        }
        if matches!(spec.payout(), Payout::Batch(_)) {
            let (sum, n) = batch_total.unwrap_or((Decimal::ZERO, 0));
            batch_total = Some((sum + least.value, n + 1));
        }
    }
    let cap = spec.limits().job_daily_cap;
    if let (Some((sum, n)), Some(cap), true) = (batch_total, cap, out.is_empty()) {
        if n > 1 && sum > cap {
            out.push(CertainFailure {
                limit: LimitKey::DailyCap,
                message: format!(
                    "every occurrence breaks `limits.daily_cap` = {cap} {src}: its {n} payees together need at least {} {src}, so at least one of its runs is refused every time",
                    shown(sum, cap, src)
                ),
            });
        }
    }
    out
}

/// The first limit one run breaks, if any (`max_per_run` is never above the cap).
fn per_run_failure(
    spec: &JobSpec,
    what: &str,
    least: &Least,
    src: &Currency,
) -> Option<CertainFailure> {
    let limits = spec.limits();
    let checks = [
        (LimitKey::MaxPerRun, limits.max_per_run),
        (LimitKey::DailyCap, limits.job_daily_cap),
    ];
    checks.into_iter().find_map(|(limit, bound)| {
        let bound = bound.filter(|b| least.breaks(*b))?;
        Some(CertainFailure {
            limit,
            message: format!(
                "every run {what}breaks `limits.{}` = {bound} {src}: {}",
                limit.key(),
                least
                    .how
                    .replace("{shown}", &shown(least.value, bound, src)),
            ),
        })
    })
}

/// Each amount a run of the job can be held to, with what it is ("of payee ada ").
fn leasts(spec: &JobSpec) -> Vec<(String, Option<Least>)> {
    let guard = spec.guard();
    let src = spec.source_currency();
    let tgt = spec.target_currency();
    match (spec.payout(), spec.trigger()) {
        (Payout::Batch(payees), _) => payees
            .iter()
            .map(|p| {
                let what = format!("of payee {:?} ", p.key);
                (what, least_of(&p.amount, guard, src, tgt, ""))
            })
            .collect(),
        (
            Payout::Single {
                amount: Some(a), ..
            },
            _,
        ) => {
            vec![(String::new(), least_of(a, guard, src, tgt, ""))]
        }
        (Payout::Single { amount: None, .. }, Trigger::Http(t)) => {
            let smallest = "(`trigger.min_amount`, the smallest a request may ask) ";
            let amount = t.side.amount(t.min_amount);
            vec![(String::new(), least_of(&amount, guard, src, tgt, smallest))]
        }
        (Payout::Single { amount: None, .. }, Trigger::Sweep(s)) => {
            let value = s.threshold - s.keep;
            let how = format!(
                "a sweep fires above `sweep.threshold` {} and leaves `sweep.keep` {}, so it moves more than {value} {src}",
                s.threshold, s.keep
            );
            vec![(
                String::new(),
                Some(Least {
                    value,
                    strict: true,
                    how,
                }),
            )]
        }
        (Payout::Single { amount: None, .. }, Trigger::Schedule(_)) => Vec::new(),
    }
}

/// The least source amount of a fixed amount, at the guard's worst rate for the check.
/// `how` carries `{shown}` where the (rounded) least amount goes.
fn least_of(
    amount: &Amount,
    guard: &RateGuard,
    src: &Currency,
    tgt: &Currency,
    note: &str,
) -> Option<Least> {
    match amount {
        Amount::Source { amount } => Some(Least {
            value: *amount,
            strict: false,
            how: format!("it sends {amount} {src} {note}at any rate"),
        }),
        Amount::Target { amount } => {
            if let (Some(min), Some(value)) =
                (guard.min_rate, guard.reserve_for_target(*amount, src))
            {
                let fees = guard
                    .max_fees
                    .map(|f| format!(" + `guard.max_fees` {f}"))
                    .unwrap_or_default();
                return Some(Least {
                    value,
                    strict: false,
                    how: format!(
                        "deliver {amount} {tgt} {note}at `guard.min_rate` {min} is {amount} / {min}{fees} = at least {{shown}} {src}, which the guard reserves before any quote"
                    ),
                });
            }
            let max = guard.max_rate.filter(|r| *r > Decimal::ZERO)?;
            Some(Least {
                value: amount.checked_div(max)?,
                strict: false,
                how: format!(
                    "deliver {amount} {tgt} {note}costs at least {amount} / {max} = {{shown}} {src} even at `guard.max_rate` {max}, the best rate the guard accepts"
                ),
            })
        }
    }
}

/// `value` rounded down for a statement "at least `value`" against `limit`: to 2 places,
/// or to the currency's precision when 2 places would not show it above the limit.
fn shown(value: Decimal, limit: Decimal, src: &Currency) -> String {
    let down = |dp| value.round_dp_with_strategy(dp, RoundingStrategy::ToZero);
    let two = down(2);
    if two > limit || value == two {
        two.normalize().to_string()
    } else {
        down(src.precision()).normalize().to_string()
    }
}
