//! The operators page, for admins only: every account with its role and status, and
//! disable or enable (which also unlocks), through the same store change and rule
//! as `treasury operators disable|enable`. A disabled account's sessions and tokens
//! stop working at their next request.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Html;
use maud::html;
use serde::Deserialize;

use super::session::Signed;
use super::{ConsoleState, HttpError, view};
use crate::operators::{OperatorName, Role, may_change};
use crate::store::OperatorChange;

/// `GET /operators`.
pub async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
) -> Result<Html<String>, HttpError> {
    signed.operator(Role::Admin)?;
    let accounts = state.store.operators().await?;
    let body = html! {
        p.note { "Accounts are added, and passwords reset, with " code { "treasury operators" } "." }
        div.scroll { table id="operators" {
            thead { tr { th { "Name" } th { "Role" } th { "Status" } th { "Since" } th { "Act" } } }
            tbody { @for a in &accounts {
                tr.operator data-name=(a.name) {
                    td { (a.name) }
                    td { (a.role) }
                    td { @if a.disabled { "disabled" } @else if a.locked { "locked" } @else { "active" }
                         @if a.password_temporary { br; span.note { "one-time password" } } }
                    td { (a.created_at.format("%Y-%m-%d")) }
                    td { form.inline method="post" action={ "/operators/" (a.name) } {
                        (view::csrf_field(&signed))
                        @if a.disabled || a.locked {
                            input type="hidden" name="action" value="enable";
                            button type="submit" { "Enable" }
                        } @else if a.id != signed.account.id {
                            input type="hidden" name="action" value="disable";
                            button.danger type="submit" { "Disable" }
                        }
                    } }
                }
            } }
        } }
    };
    Ok(view::respond(view::page(
        "Operators",
        Some(&signed),
        None,
        body,
    )))
}

#[derive(Deserialize)]
pub struct ChangeForm {
    #[serde(default)]
    csrf: String,
    action: String,
}

/// `POST /operators/{name}`: `action` is `disable` or `enable`.
pub async fn change(
    State(state): State<ConsoleState>,
    signed: Signed,
    Path(name): Path<String>,
    Form(form): Form<ChangeForm>,
) -> Result<Html<String>, HttpError> {
    signed.check_csrf(&form.csrf)?;
    signed.operator(Role::Admin)?;
    let (change, enabling) = match form.action.as_str() {
        "disable" => (OperatorChange::Disable, false),
        "enable" => (OperatorChange::Enable, true),
        other => {
            return Err(HttpError::BadRequest(format!(
                "`action` must be disable or enable, got {other:?}"
            )));
        }
    };
    let n = OperatorName::new(&name).map_err(HttpError::BadRequest)?;
    let (target, _) = state
        .store
        .operator_with_hash(&n)
        .await?
        .ok_or_else(|| HttpError::NotFound(format!("no operator {n}")))?;
    may_change(&signed.account, &target, enabling).map_err(HttpError::Refused)?;
    let after = state
        .store
        .change_operator(&target, change, &signed.account, state.clock.now())
        .await?;
    let status = if after.disabled {
        "disabled"
    } else {
        "enabled"
    };
    Ok(view::respond(view::page(
        "Operators",
        Some(&signed),
        None,
        view::done(&format!("{} is {status}.", after.name), "/operators"),
    )))
}
