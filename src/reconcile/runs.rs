//! Checking each run in scope against what Busha listed: its current transfer, and
//! every transfer it held before a retry.

use super::listing::Seen;
use super::{Disagreement, Report};
use crate::provider::busha::{Settlement, Transfer};
use crate::runs::{Run, RunState};
use crate::store::{HeldTransfer, Store, StoreError};

pub(super) async fn check_run(
    store: &Store,
    run: &Run,
    seen: &Seen,
    report: &mut Report,
) -> Result<(), StoreError> {
    report.runs_checked += 1;
    let mut found = |transfer_id: Option<&str>, problem: String| {
        report.disagreements.push(Disagreement {
            run_id: run.id.to_string(),
            transfer_id: transfer_id.map(str::to_string),
            problem,
        });
    };
    if let Some(problem) = current(run, seen) {
        found(run.transfer_id.as_deref(), problem);
    }
    for held in store.transfers_of_run(&run.id).await? {
        if run.transfer_id.as_deref() == Some(held.transfer_id.as_str()) {
            continue;
        }
        if let Some(problem) = earlier(run, &held, seen) {
            found(Some(&held.transfer_id), problem);
        }
    }
    Ok(())
}

/// Whether Busha's silence about `id` proves anything: only when the run's grant was
/// listed in full and the item was readable.
fn missing_is_a_finding(run: &Run, seen: &Seen, id: &str) -> bool {
    seen.complete.contains(&run.spec.grant) && !seen.unreadable.contains(id)
}

/// The run's current transfer (or its absence) against Busha's.
fn current(run: &Run, seen: &Seen) -> Option<String> {
    let Some(id) = &run.transfer_id else {
        // No transfer recorded: Busha must not have one made from our quote.
        let quote = run.quote.as_ref()?;
        return seen
            .transfers
            .values()
            .find(|t| t.quote_id == quote.id)
            .map(|t| {
                format!(
                    "Busha has transfer {} from our quote {}, but the run records none",
                    t.id, quote.id
                )
            });
    };
    let Some(t) = seen.transfers.get(id) else {
        return missing_is_a_finding(run, seen, id)
            .then(|| format!("the run records transfer {id}, which Busha does not list"));
    };
    if let Some(problem) = against_quote(run, t) {
        return Some(problem);
    }
    match (run.state, t.settlement()) {
        (RunState::Settled, Settlement::Failed) => Some(format!(
            "the run is settled but Busha says {}",
            t.status.as_str()
        )),
        (RunState::Failed, Settlement::Succeeded) => Some(format!(
            "the run failed but Busha says {}",
            t.status.as_str()
        )),
        _ => None,
    }
}

fn against_quote(run: &Run, t: &Transfer) -> Option<String> {
    let q = run.quote.as_ref()?;
    let id = &t.id;
    if t.quote_id != q.id {
        return Some(format!(
            "transfer {id} was made from quote {}, the run locked {}",
            t.quote_id, q.id
        ));
    }
    if t.source_amount != q.source_amount || t.target_amount != q.target_amount {
        return Some(format!(
            "transfer {id} moves {} {} for {} {}; the run locked {} for {}",
            t.source_amount,
            t.source_currency,
            t.target_amount,
            t.target_currency,
            q.source_amount,
            q.target_amount
        ));
    }
    None
}

/// A transfer the run held before a retry: it belongs to the run, and it must have
/// failed at Busha (that is why the run was retried), or the payee was paid twice.
fn earlier(run: &Run, held: &HeldTransfer, seen: &Seen) -> Option<String> {
    let id = &held.transfer_id;
    let Some(t) = seen.transfers.get(id) else {
        return missing_is_a_finding(run, seen, id).then(|| {
            format!("the run held transfer {id} before a retry, which Busha does not list")
        });
    };
    match t.settlement() {
        Settlement::Failed => None,
        Settlement::Succeeded => Some(format!(
            "transfer {id}, which the run held before a retry, was delivered too (Busha says {}): the payee may have been paid twice",
            t.status.as_str()
        )),
        Settlement::InFlight => Some(format!(
            "transfer {id}, which the run held before a retry, is still {} at Busha",
            t.status.as_str()
        )),
    }
}
