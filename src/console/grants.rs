//! The grants page: each stored grant's status, expiries, scopes and consent record;
//! links to connect or reconnect through the worker's `/oauth/connect/{alias}` flow
//! (both providers; it asks for the operator's personal token); revoke after a
//! confirmation, through the custodian as `treasury grants revoke` does. No token, or
//! token ciphertext, is ever shown.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Html;
use maud::{Markup, html};
use serde::Deserialize;

use super::session::Signed;
use super::{ConsoleState, HttpError, view};
use crate::operators::Role;
use crate::store::GrantRow;

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

fn grant_row(signed: &Signed, g: &GrantRow) -> Markup {
    let connect = format!("/oauth/connect/{}", g.alias);
    html! {
        tr.grant data-alias=(g.alias) {
            td { strong { (g.alias) } br; span.note { (g.provider) " · " (g.subject) } }
            td { (g.status) @if let Some(r) = &g.status_reason { br; span.note { (r) } } }
            td { "access until " (when(Some(g.access_expires_at))) br;
                 "refresh until " (when(g.refresh_expires_at)) br;
                 span.note { "connected " (when(Some(g.connected_at))) } }
            td { (g.scopes) }
            td { @match &g.consent { Some(c) => (view::pre(c)), None => "-" } }
            td {
                a href=(connect) { @if g.status == "active" { "Reconnect" } @else { "Connect" } }
                @if g.status == "active" {
                    form.inline method="post" action={ "/grants/" (g.alias) "/revoke" } {
                        (view::csrf_field(signed))
                        button.danger type="submit" { "Revoke…" }
                    }
                }
            }
        }
    }
}

/// `GET /grants`.
pub async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
) -> Result<Html<String>, HttpError> {
    let grants = state.store.grants().await?;
    let missing: Vec<&String> = state
        .grant_aliases
        .iter()
        .filter(|a| !grants.iter().any(|g| &g.alias == *a))
        .collect();
    let body = html! {
        p.note { "Connect and reconnect open the provider's consent page; your browser asks for your operator name and personal token (" code { "treasury operators token" } ")." }
        div.scroll { table id="grants" {
            thead { tr { th { "Grant" } th { "Status" } th { "Expiries" } th { "Scopes" } th { "Consent" } th { "Act" } } }
            tbody {
                @for g in &grants { (grant_row(&signed, g)) }
                @for a in &missing {
                    tr.grant data-alias=(a) { td { strong { (a) } } td { "not connected" } td {} td {} td {}
                        td { a href={ "/oauth/connect/" (a) } { "Connect" } } }
                }
            }
        } }
    };
    Ok(view::respond(view::page(
        "Grants",
        Some(&signed),
        None,
        body,
    )))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    /// `yes` once the operator confirmed.
    #[serde(default)]
    confirm: String,
}

/// `POST /grants/{alias}/revoke`: first a confirmation page, then the revocation.
pub async fn revoke(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(alias): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Html<String>, HttpError> {
    signed.check_csrf(&form.csrf)?;
    let who = signed.operator(Role::Operator)?;
    let grant = state
        .store
        .grants()
        .await?
        .into_iter()
        .find(|g| g.alias == alias)
        .ok_or_else(|| HttpError::NotFound(format!("no stored grant {alias:?}")))?;
    if form.confirm != "yes" {
        let body = html! {
            form.box method="post" action={ "/grants/" (alias) "/revoke" } {
                (view::csrf_field(&signed))
                input type="hidden" name="confirm" value="yes";
                p { "Revoke " strong { (alias) } " (" (grant.provider) " user " (grant.subject) ")? "
                    "Every job on it is held until it is connected again." }
                button.danger id="confirm-revoke" type="submit" { "Yes, revoke " (alias) }
                " " a href="/grants" { "No, keep it" }
            }
        };
        return Ok(view::respond(view::page(
            "Revoke a grant",
            Some(&signed),
            None,
            body,
        )));
    }
    let custodian = state.custodian.as_ref().ok_or_else(|| {
        HttpError::Refused(
            "this server holds no grant keys (treasury serve): revoke with `treasury grants revoke`".into(),
        )
    })?;
    let done = custodian
        .revoke(&grant.id, &who.actor())
        .await
        .map_err(HttpError::internal)?;
    Ok(view::respond(view::page(
        "Grant revoked",
        Some(&signed),
        None,
        view::done(
            &format!(
                "Revoked {alias} (status {}); jobs using it are held until it is connected again.",
                done.status.as_str()
            ),
            "/grants",
        ),
    )))
}
