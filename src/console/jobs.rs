//! The jobs page: each loaded job's plan, as `treasury jobs plan` prints it (next
//! occurrences, amounts, recipients masked with the holders' names runs have read,
//! guards, limits, approval need, file version), and each job's daily caps with what
//! the last 24 hours used and what is left.

use axum::extract::State;
use axum::response::Html;
use maud::{Markup, html};
use rust_decimal::Decimal;

use super::session::Signed;
use super::{ConsoleState, HttpError, view};
use crate::jobs::Job;
use crate::jobs::plan::{Holders, plan_with, write_text};

/// `GET /jobs`.
pub async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
) -> Result<Html<String>, HttpError> {
    let jobs = state.jobs();
    let jobs = jobs.as_slice();
    let holders = Holders::read(&state.store, jobs).await?;
    let plan = plan_with(jobs, state.clock.now(), 3, &holders);
    let mut text = Vec::new();
    write_text(&mut text, &plan).map_err(HttpError::internal)?;
    let caps = caps_table(&state, jobs).await?;
    let body = html! {
        @if jobs.is_empty() {
            p.box { "This server loaded no job files (" code { "treasury serve" } " runs none); "
                code { "treasury jobs plan" } " shows them." }
        } @else {
            h2 { "Daily caps (rolling 24 hours)" }
            (caps)
            div id="plan" { (view::pre(&String::from_utf8_lossy(&text))) }
        }
    };
    Ok(view::respond(view::page("Jobs", Some(&signed), None, body)))
}

/// Each job's caps in its source currency: the cap, what counts against it now (the
/// reservations the guards hold), and what is left.
async fn caps_table(state: &ConsoleState, jobs: &[Job]) -> Result<Markup, HttpError> {
    let now = state.clock.now();
    let mut rows = Vec::new();
    for job in jobs {
        let spec = job.spec();
        let limits = spec.limits();
        if limits.job_daily_cap.is_none() && limits.grant_daily_cap.is_none() {
            continue;
        }
        let currency = spec.source_currency();
        let used = state
            .store
            .cap_usage(job.id().as_str(), spec.grant(), currency.as_str(), now)
            .await?;
        rows.push((job, currency, used));
    }
    let cell = |cap: Option<Decimal>, used: Decimal| match cap {
        Some(cap) => html! { (used) " used, " ((cap - used).max(Decimal::ZERO)) " left of " (cap) },
        None => view::dash(),
    };
    Ok(html! {
        @if rows.is_empty() {
            p { "No job declares a daily cap, and no grant cap applies." }
        } @else {
            table id="caps" {
                tr { th { "Job" } th { "Grant" } th { "Currency" } th { "Job cap" } th { "Grant cap" } }
                @for (job, currency, used) in &rows {
                    tr {
                        td { (job.id()) } td { (job.spec().grant()) } td { (currency) }
                        td { (cell(job.spec().limits().job_daily_cap, used.job)) }
                        td { (cell(job.spec().limits().grant_daily_cap, used.grant)) }
                    }
                }
            }
        }
    })
}
