//! The inbox: runs awaiting approval, oldest first, with their age, amount, job,
//! masked payee and holder, and who approved so far; approve, reject with a reason,
//! and approve a whole occurrence after its summary. It refreshes itself every 15 s
//! (a meta refresh that does not count as use of the session).
//!
//! Approvals go through `Store::approve_run` as the CLI's do: the job's owner is
//! refused, an account counts once, and the run is released when enough distinct
//! accounts approved.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Html;
use maud::{Markup, html};
use serde::Deserialize;

use super::session::Signed;
use super::shown::{amount_both, payee, run_id};
use super::{ConsoleState, HttpError, view};
use crate::guards::{ApprovalPreview, approvals_needed};
use crate::operators::Role;
use crate::runs::{Run, RunState};
use crate::store::{ApprovalRow, RunFilter};

/// The occurrence a run belongs to: a batch's runs share the part before `#`.
fn occurrence_of(run: &Run) -> &str {
    run.occurrence_key
        .split_once('#')
        .map_or(run.occurrence_key.as_str(), |(o, _)| o)
}

/// `GET /`: the inbox.
pub async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
) -> Result<Html<String>, HttpError> {
    let mut runs = state
        .store
        .list_runs(&RunFilter {
            job_id: None,
            state: Some(RunState::AwaitingApproval),
            limit: Some(500),
        })
        .await?;
    runs.sort_by_key(|r| r.created_at);
    let mut rows = Vec::with_capacity(runs.len());
    for run in &runs {
        let approvals = state.store.run_approvals(&run.id).await?;
        rows.push((run, approvals, payee(&state.store, run).await?));
    }
    let mut batches: BTreeMap<(String, String), usize> = BTreeMap::new();
    for run in &runs {
        let key = (run.job_id.clone(), occurrence_of(run).to_string());
        *batches.entry(key).or_default() += 1;
    }
    let mut previews = Vec::new();
    for ((job, occ), n) in &batches {
        if *n > 1
            && let Some(p) =
                crate::guards::batch::preview_occurrence(&state.store, job, occ).await?
        {
            previews.push(p);
        }
    }
    let now = state.clock.now();
    let body = html! {
        p.note { "Runs waiting for approval, oldest first. This page refreshes itself every 15 seconds." }
        @for p in &previews { (batch_box(&signed, p)) }
        @if rows.is_empty() {
            p.box id="inbox-empty" { "Nothing awaits approval." }
        } @else {
            div.scroll { table id="inbox" {
                thead { tr { th { "Age" } th { "Job" } th { "Amount" } th { "Payee" } th { "Approved by" } th { "Decide" } } }
                tbody { @for (run, approvals, payee) in &rows { (inbox_row(&signed, run, approvals, payee, now)) } }
            } }
        }
    };
    Ok(view::respond(view::page(
        "Inbox",
        Some(&signed),
        Some("15;url=/?auto=1"),
        body,
    )))
}

fn inbox_row(
    signed: &Signed,
    run: &Run,
    approvals: &[ApprovalRow],
    payee: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    let needed = approvals_needed(&run.spec);
    html! {
        tr.run data-run=(run.id.as_str()) {
            td { (view::age(now - run.created_at)) }
            td { (run.job_id) br; span.note { (run.occurrence_key) } }
            td { (amount_both(run)) }
            td { (payee) }
            td.approvals {
                (approvals.len()) " of " (needed)
                @for a in approvals { br; (a.approver) }
            }
            td {
                a href={ "/runs/" (run.id.as_str()) } { "Timeline" }
                (decide_forms(signed, run))
            }
        }
    }
}

/// The approve and reject forms of one run.
pub fn decide_forms(signed: &Signed, run: &Run) -> Markup {
    let id = run.id.as_str();
    html! {
        form.inline method="post" action={ "/runs/" (id) "/approve" } {
            (view::csrf_field(signed))
            button.approve type="submit" { "Approve" }
        }
        form.inline method="post" action={ "/runs/" (id) "/reject" } {
            (view::csrf_field(signed))
            input name="reason" placeholder="reason" aria-label="reason for rejecting";
            button.danger.reject type="submit" { "Reject" }
        }
    }
}

fn batch_box(signed: &Signed, p: &ApprovalPreview) -> Markup {
    html! {
        form.box.batch method="post" action="/occurrences/approve" {
            (view::csrf_field(signed))
            input type="hidden" name="job" value=(p.job_id);
            input type="hidden" name="occurrence" value=(p.occurrence);
            @for r in &p.awaiting { input type="hidden" name="run" value=(r.id); }
            p { strong { "Occurrence " (p.occurrence) " of " (p.job_id) } ": "
                (p.awaiting.len()) " run(s) awaiting approval, " (p.others) " other(s) left alone" }
            p { "Total: " @if p.total.is_empty() { (view::dash()) } @else { (p.total.join(", ")) } }
            @if p.new_payees.is_empty() {
                p { "New payees: none (each was paid by an earlier run of the job)" }
            } @else {
                p { "New payees (" (p.new_payees.len()) "):" }
                ul { @for payee in &p.new_payees { li { strong { "NEW " } (payee) } } }
            }
            button type="submit" { "Approve these " (p.awaiting.len()) " runs" }
        }
    }
}

#[derive(Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /runs/{id}/approve`.
pub async fn approve(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Result<Html<String>, HttpError> {
    signed.check_csrf(&form.csrf)?;
    let who = signed.operator(Role::Approver)?;
    let id = run_id(&id)?;
    let a = state
        .store
        .approve_run(&id, &who, state.clock.now())
        .await?
        .map_err(HttpError::Refused)?;
    let message = if a.released {
        format!(
            "Approved {id} by {}: it is due now.",
            a.approvers.join(" and ")
        )
    } else {
        format!(
            "Recorded your approval of {id} ({} of {} distinct approvers); it waits for more.",
            a.approvers.len(),
            a.needed
        )
    };
    let back = format!("/runs/{id}");
    Ok(view::respond(view::page(
        "Approved",
        Some(&signed),
        None,
        view::done(&message, &back),
    )))
}

/// `POST /runs/{id}/reject`.
pub async fn reject(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Result<Html<String>, HttpError> {
    signed.check_csrf(&form.csrf)?;
    let who = signed.operator(Role::Approver)?;
    let id = run_id(&id)?;
    let note = Some(form.reason.trim()).filter(|r| !r.is_empty());
    state
        .store
        .reject_run(&id, &who, note, state.clock.now())
        .await?
        .map_err(HttpError::Refused)?;
    Ok(view::respond(view::page(
        "Rejected",
        Some(&signed),
        None,
        view::done(
            &format!("Rejected {id}: it is cancelled and moves no money."),
            "/",
        ),
    )))
}

/// `POST /occurrences/approve`: the batch form's fields, `run` once per run shown.
/// Parsed by hand because a form may repeat a name, which serde's map cannot hold.
pub async fn approve_batch(
    State(state): State<ConsoleState>,
    signed: Signed,
    body: String,
) -> Result<Html<String>, HttpError> {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    signed.check_csrf(field("csrf").unwrap_or_default())?;
    let who = signed.operator(Role::Approver)?;
    let shown: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k == "run")
        .map(|(_, v)| v.clone())
        .collect();
    if shown.is_empty() {
        return Err(HttpError::BadRequest(
            "the batch form named no run (field `run`)".into(),
        ));
    }
    let done =
        crate::guards::batch::approve_shown(&state.store, &shown, &who, state.clock.now()).await?;
    let body = html! {
        p.box id="done" { "Approved as " (who) ": " (done.released) " run(s) now due, "
            (done.recorded) " waiting for more approvers, " (done.refused.len()) " refused." }
        @if !done.refused.is_empty() { ul { @for why in &done.refused { li { (why) } } } }
        p { a href="/" { "Back to the inbox" } }
    };
    if done.refused.len() == shown.len() {
        return Err(HttpError::Refused(format!(
            "no run was approved: {}",
            done.refused.join("; ")
        )));
    }
    Ok(view::respond(view::page(
        "Batch approved",
        Some(&signed),
        None,
        body,
    )))
}
