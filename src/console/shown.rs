//! How the console shows a run: its amount in both currencies, its payee with the
//! holder's name as the provider reports it, and its id parsed from a path.

use crate::runs::{Amount, RecipientSpec, Run, RunId, payee_shown};
use crate::store::{Store, StoreError};

use super::HttpError;

/// The amount a run moves, in both currencies: the quote's when it has one, else the
/// fixed side and the other side as the rate guard bounds it (`min_rate`).
pub fn amount_both(run: &Run) -> String {
    let s = &run.spec;
    let (src, tgt) = (&s.source_currency, &s.target_currency);
    if let Some(q) = &run.quote {
        return format!(
            "{} {src} → {} {tgt} at {}",
            q.source_amount, q.target_amount, q.rate
        );
    }
    let min = s.guard.min_rate.filter(|r| !r.is_zero());
    match (&s.amount, min) {
        (Amount::Source { amount }, Some(r)) => format!(
            "{amount} {src} → at least {} {tgt} (min rate {r})",
            (amount * r).round_dp(2)
        ),
        (Amount::Target { amount }, Some(r)) => format!(
            "{amount} {tgt} ← at most {} {src} (min rate {r})",
            (amount / r).round_dp(2)
        ),
        (Amount::Source { amount }, None) => format!("{amount} {src} → {tgt} at the quoted rate"),
        (Amount::Target { amount }, None) => format!("{amount} {tgt} ← {src} at the quoted rate"),
    }
}

/// A run id from the path, or a clear refusal.
pub fn run_id(s: &str) -> Result<RunId, HttpError> {
    RunId::parse(s.trim()).ok_or_else(|| {
        HttpError::NotFound(format!("{s:?} is not a run id (run_ and 24 hex digits)"))
    })
}

/// The payee, masked: the holder's name the run read from the provider; before its
/// own resolution, for a recipient given by id, the name an earlier run read of it.
pub async fn payee(store: &Store, run: &Run) -> Result<String, StoreError> {
    if run.recipient_name.is_none()
        && let RecipientSpec::Id { id } = &run.spec.recipient
        && let Some(holder) = store
            .seen_recipient(&run.spec.grant, id)
            .await?
            .and_then(|seen| seen.holder_name)
    {
        let holder = crate::untrusted::one_line(&holder);
        return Ok(format!(
            "{holder} (recipient {id}; the holder's name as the provider reported it to an earlier run)"
        ));
    }
    Ok(payee_shown(run))
}
