//! What a plan adds up to: per job and overall, the amounts of the planned runs per
//! currency and side, and the approvals they will need. Computes only.

use std::collections::BTreeMap;
use std::io::Write;

use rust_decimal::Decimal;
use serde::Serialize;

use super::plan::{JobPlan, Plan};
use super::spec::Side;

/// An amount of one currency on one side: what is sent, or what is delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CurrencyTotal {
    pub currency: String,
    pub side: Side,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// The planned runs of one job, or of all, added up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub runs: usize,
    pub amounts: Vec<CurrencyTotal>,
    /// Runs that will wait in `awaiting_approval`.
    pub runs_needing_approval: usize,
    /// Approvals those runs need in all (each run needs its job's `approvers`).
    pub approvals: u32,
}

/// Per job (by id) and overall.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanTotals {
    pub jobs: BTreeMap<String, Totals>,
    pub overall: Totals,
}

#[derive(Default)]
struct Sum {
    runs: usize,
    amounts: BTreeMap<(String, Side), Decimal>,
    needing: usize,
    approvals: u32,
}

impl Sum {
    fn add(&mut self, job: &JobPlan) {
        for r in job.occurrences.iter().flat_map(|o| &o.runs) {
            self.runs += 1;
            *self
                .amounts
                .entry((r.currency.clone(), r.side))
                .or_default() += r.amount;
            if r.approval_needed {
                self.needing += 1;
                self.approvals += r.approvers.unwrap_or(1);
            }
        }
    }

    fn done(self) -> Totals {
        Totals {
            runs: self.runs,
            amounts: self
                .amounts
                .into_iter()
                .map(|((currency, side), amount)| CurrencyTotal {
                    currency,
                    side,
                    amount: amount.normalize(),
                })
                .collect(),
            runs_needing_approval: self.needing,
            approvals: self.approvals,
        }
    }
}

/// The totals of the runs `plan` shows (scheduled occurrences; triggers and sweeps
/// name their amounts only when they fire).
pub fn totals(plan: &Plan) -> PlanTotals {
    let mut overall = Sum::default();
    let mut jobs = BTreeMap::new();
    for j in &plan.jobs {
        let mut one = Sum::default();
        one.add(j);
        overall.add(j);
        jobs.insert(j.id.clone(), one.done());
    }
    PlanTotals {
        jobs,
        overall: overall.done(),
    }
}

/// `2 runs: send 300 USDT, deliver 1350000 NGN; 1 needs approval (2 approvals)`.
pub fn describe(t: &Totals) -> String {
    let amounts: Vec<String> = t
        .amounts
        .iter()
        .map(|a| {
            let side = match a.side {
                Side::Source => "send",
                Side::Target => "deliver",
            };
            format!("{side} {} {}", a.amount, a.currency)
        })
        .collect();
    let approval = match t.runs_needing_approval {
        0 => "no approval needed".to_string(),
        n => format!("{n} need approval ({} approvals in all)", t.approvals),
    };
    let amounts = if amounts.is_empty() {
        String::new()
    } else {
        format!(": {}", amounts.join(", "))
    };
    format!("{} run(s){amounts}; {approval}", t.runs)
}

/// The totals section of `plan`'s text.
pub fn write_text(out: &mut dyn Write, t: &PlanTotals) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(out, "totals over the occurrences shown")?;
    for (id, jt) in &t.jobs {
        if jt.runs > 0 {
            writeln!(out, "  {id}: {}", describe(jt))?;
        }
    }
    writeln!(out, "  overall: {}", describe(&t.overall))
}
