//! The jobs page: each loaded job's plan, as `treasury jobs plan` prints it (next
//! occurrences, amounts, recipients masked with the holders' names runs have read,
//! guards, limits, approval need, file version).

use axum::extract::State;
use axum::response::Html;
use maud::html;

use super::session::Signed;
use super::{ConsoleState, HttpError, view};
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
    let body = html! {
        @if jobs.is_empty() {
            p.box { "This server loaded no job files (" code { "treasury serve" } " runs none); "
                code { "treasury jobs plan" } " shows them." }
        } @else {
            div id="plan" { (view::pre(&String::from_utf8_lossy(&text))) }
        }
    };
    Ok(view::respond(view::page("Jobs", Some(&signed), None, body)))
}
