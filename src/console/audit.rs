//! The audit page: the chain verified now, the head to copy for anchoring, and the
//! export downloads (`treasury audit verify`, `head` and `export` over the same store
//! functions).

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use maud::html;

use super::session::Signed;
use super::{ConsoleState, HttpError, view};
use crate::store::AuditExport;

/// `GET /audit`.
pub async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
) -> Result<Html<String>, HttpError> {
    let verdict = state.store.verify_audit(None).await?;
    let head = state.store.audit_head().await?;
    let body = html! {
        @match &verdict {
            Ok(chain) => p.box id="verdict" { "Audit chain verified: " (chain.entries) " entries." },
            Err(broken) => p.error id="verdict" { "Audit chain BROKEN: " (broken.to_string()) },
        }
        div.box {
            p { "Head to copy for anchoring (" code { "treasury audit verify --expect-head" } " checks it later):" }
            @match &head {
                Some((seq, hash)) => pre id="head" { (seq) " " (hash) },
                None => p { "The audit log is empty." },
            }
        }
        p { "Export every entry: " a href="/audit/export.jsonl" { "JSON lines" } " · " a href="/audit/export.csv" { "CSV" } }
        p.note { "The seal and checkpoint checks need the master key and run with " code { "treasury audit verify" } "." }
    };
    Ok(view::respond(view::page(
        "Audit",
        Some(&signed),
        None,
        body,
    )))
}

/// `GET /audit/export.{jsonl,csv}`.
pub async fn export(
    State(state): State<ConsoleState>,
    _signed: Signed,
    Path(file): Path<String>,
) -> Result<Response, HttpError> {
    let (format, kind) = match file.as_str() {
        "export.jsonl" => (AuditExport::Jsonl, "application/jsonl"),
        "export.csv" => (AuditExport::Csv, "text/csv; charset=utf-8"),
        other => return Err(HttpError::NotFound(format!("no audit export {other:?}"))),
    };
    let entries = state.store.audit_entries(None, None).await?;
    let mut out = Vec::new();
    format
        .write(&entries, &mut out)
        .map_err(HttpError::internal)?;
    let disposition = format!("attachment; filename=\"audit-{file}\"");
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}
