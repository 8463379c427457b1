//! One run's timeline (exactly what `treasury runs show` prints), the runs list with
//! its filters (job, state, grant, period), and the payments report of the same
//! filters as CSV. Account numbers are masked everywhere; CSV cells that a
//! spreadsheet would run as a formula are neutralised.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use maud::html;
use serde::Deserialize;

use super::inbox::decide_forms;
use super::session::Signed;
use super::shown::run_id;
use super::{ConsoleState, HttpError, view};
use crate::cli::runs::RunsCommand;
use crate::runs::{Amount, Run, RunState, payee_shown};
use crate::store::RunFilter;

/// `GET /runs/{id}`: the run's timeline, and its approve and reject forms while it
/// awaits approval.
pub async fn show(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Html<String>, HttpError> {
    let id = run_id(&id)?;
    let run = state
        .store
        .get_run(&id)
        .await?
        .ok_or_else(|| HttpError::NotFound(format!("no run {id}")))?;
    let mut text = Vec::new();
    let cmd = RunsCommand::Show {
        id: id.to_string(),
        json: false,
    };
    crate::cli::runs::command(&state.store, &state.clock, cmd, None, &mut text)
        .await
        .map_err(HttpError::internal)?;
    let text = String::from_utf8_lossy(&text);
    let body = html! {
        p { "State: " strong id="run-state" { (run.state) } " · job " (run.job_id) " · " (payee_shown(&run)) }
        @if run.state == RunState::AwaitingApproval { div.box { (decide_forms(&signed, &run)) } }
        div id="timeline" { (view::pre(&text)) }
    };
    Ok(view::respond(view::page(
        &format!("Run {id}"),
        Some(&signed),
        None,
        body,
    )))
}

/// The runs list's filters, from the query string.
#[derive(Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    job: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    grant: String,
    /// First day of the period (UTC, inclusive), YYYY-MM-DD.
    #[serde(default)]
    from: String,
    /// Last day of the period (UTC, inclusive), YYYY-MM-DD.
    #[serde(default)]
    to: String,
}

impl Filters {
    fn day(field: &str, v: &str) -> Result<Option<NaiveDate>, HttpError> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                HttpError::BadRequest(format!("`{field}` must be a date YYYY-MM-DD, got {v:?}"))
            })
    }

    /// The runs these filters select, newest first.
    async fn select(&self, state: &ConsoleState) -> Result<Vec<Run>, HttpError> {
        let run_state = Some(self.state.trim())
            .filter(|s| !s.is_empty())
            .map(str::parse::<RunState>)
            .transpose()
            .map_err(|e| HttpError::BadRequest(format!("`state`: {e}")))?;
        let (from, to) = (Self::day("from", &self.from)?, Self::day("to", &self.to)?);
        let start = from
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        let end = to
            .and_then(|d| d.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        let job = Some(self.job.trim()).filter(|j| !j.is_empty());
        let grant = self.grant.trim();
        let runs = state
            .store
            .list_runs(&RunFilter {
                job_id: job.map(str::to_string),
                state: run_state,
                limit: Some(i64::MAX),
            })
            .await?;
        let within = |t: DateTime<Utc>| start.is_none_or(|s| t >= s) && end.is_none_or(|e| t < e);
        Ok(runs
            .into_iter()
            .filter(|r| grant.is_empty() || r.spec.grant == grant)
            .filter(|r| within(r.created_at))
            .collect())
    }

    fn query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("job", &self.job)
            .append_pair("state", &self.state)
            .append_pair("grant", &self.grant)
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .finish()
    }
}

/// `GET /runs`: the filtered list, newest first, with a CSV link for the same filters.
pub async fn list(
    State(state): State<ConsoleState>,
    signed: Signed,
    Query(f): Query<Filters>,
) -> Result<Html<String>, HttpError> {
    let runs = f.select(&state).await?;
    let body = html! {
        form.box method="get" action="/runs" id="filters" {
            label for="job" { "Job" } input id="job" name="job" value=(f.job);
            label for="state" { "State" } input id="state" name="state" value=(f.state) placeholder="settled, failed, …";
            label for="grant" { "Grant" } input id="grant" name="grant" value=(f.grant);
            label for="from" { "From (UTC day)" } input id="from" name="from" type="date" value=(f.from);
            label for="to" { "To (UTC day, inclusive)" } input id="to" name="to" type="date" value=(f.to);
            p { button id="filter" type="submit" { "Filter" } }
        }
        p { a id="csv" href={ "/runs.csv?" (f.query()) } { "Payments report (CSV) for these filters" }
            " · " span id="count" { (runs.len()) } " run(s)" }
        div.scroll { table id="runs" {
            thead { tr { th { "Created" } th { "Run" } th { "Job" } th { "State" } th { "Amount" } th { "Payee" } th { "Transfer" } } }
            tbody { @for r in &runs {
                tr.run data-run=(r.id.as_str()) {
                    td { (r.created_at.format("%Y-%m-%d %H:%M")) }
                    td { a href={ "/runs/" (r.id.as_str()) } { (r.id.as_str()) } }
                    td { (r.job_id) }
                    td { (r.state) }
                    td { (super::shown::amount_both(r)) }
                    td { (payee_shown(r)) }
                    td { (r.transfer_id.as_deref().unwrap_or("-")) }
                }
            } }
        } }
    };
    Ok(view::respond(view::page("Runs", Some(&signed), None, body)))
}

/// `GET /runs.csv`: the payments report for the list's filters.
pub async fn csv(
    State(state): State<ConsoleState>,
    _signed: Signed,
    Query(f): Query<Filters>,
) -> Result<Response, HttpError> {
    let runs = f.select(&state).await?;
    let mut out = String::from(
        "date,run,job,payee,source_amount,source_currency,target_amount,target_currency,rate,fees,transfer_id,status\r\n",
    );
    for r in &runs {
        out.push_str(&csv_line(&payment_cells(r)));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"payments.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// One run's report cells: the quote's amounts when it has one, else what it asked.
fn payment_cells(r: &Run) -> [String; 12] {
    let s = &r.spec;
    let (src, tgt) = match (&r.quote, &s.amount) {
        (Some(q), _) => (q.source_amount.to_string(), q.target_amount.to_string()),
        (None, Amount::Source { amount }) => (amount.to_string(), String::new()),
        (None, Amount::Target { amount }) => (String::new(), amount.to_string()),
    };
    [
        r.created_at.to_rfc3339(),
        r.id.to_string(),
        r.job_id.clone(),
        payee_shown(r),
        src,
        s.source_currency.to_string(),
        tgt,
        s.target_currency.to_string(),
        r.quote
            .as_ref()
            .map_or(String::new(), |q| q.rate.to_string()),
        r.quote
            .as_ref()
            .map_or(String::new(), |q| q.fees.to_string()),
        r.transfer_id.clone().unwrap_or_default(),
        r.state.to_string(),
    ]
}

/// One CSV record: each cell quoted, with formula starts neutralised.
pub fn csv_line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| format!("\"{}\"", neutralise(c).replace('"', "\"\"")))
        .collect();
    format!("{}\r\n", quoted.join(","))
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a tab or
/// carriage return before one) gets a leading `'`, so it stays text.
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_quotes_doubled() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+1"), "'+1");
        assert_eq!(neutralise("-1"), "'-1");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("ADA LOVELACE"), "ADA LOVELACE");
        assert_eq!(
            csv_line(&["a\"b".into(), "=1".into()]),
            "\"a\"\"b\",\"'=1\"\r\n"
        );
    }
}
