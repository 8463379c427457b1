//! Choosing one's own password in the console (after an admin's reset, a one-time
//! password must be changed before the account approves or changes anything). The
//! change bumps the account's credential version, which ends every session and token
//! of it: the browser signs in again with the new password.

use axum::Form;
use axum::extract::State;
use axum::response::Html;
use maud::html;
use serde::Deserialize;

use super::session::Signed;
use super::{ConsoleState, HttpError, view};
use crate::config::Secret;
use crate::operators::login;
use crate::operators::secrets::{check_new_password, hash_password};
use crate::store::OperatorChange;

/// `GET /password`.
pub async fn page(signed: Signed) -> Html<String> {
    let body = html! {
        form.box method="post" action="/password" id="password-form" {
            (view::csrf_field(&signed))
            label for="current" { "Current password" }
            input id="current" name="current" type="password" autocomplete="current-password" required;
            label for="new" { "New password (at least 12 characters)" }
            input id="new" name="new" type="password" autocomplete="new-password" required;
            label for="repeat" { "New password again" }
            input id="repeat" name="repeat" type="password" autocomplete="new-password" required;
            p { button id="change" type="submit" { "Change password" } }
        }
    };
    view::respond(view::page("Your password", Some(&signed), None, body))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    current: String,
    new: String,
    repeat: String,
}

/// `POST /password`.
pub async fn change(
    State(state): State<ConsoleState>,
    signed: Signed,
    Form(form): Form<PasswordForm>,
) -> Result<Html<String>, HttpError> {
    signed.check_csrf(&form.csrf)?;
    if form.new != form.repeat {
        return Err(HttpError::BadRequest(
            "the new password and its repetition differ".into(),
        ));
    }
    check_new_password(&form.new).map_err(HttpError::BadRequest)?;
    let now = state.clock.now();
    let me = &signed.account;
    let current = Secret::new(form.current);
    let me = login::with_password(&state.store, &me.name, &current, now)
        .await
        .map_err(HttpError::Refused)?;
    let hash = hash_password(&Secret::new(form.new)).map_err(HttpError::internal)?;
    let change = OperatorChange::Password {
        hash,
        temporary: false,
    };
    state.store.change_operator(&me, change, &me, now).await?;
    Ok(view::respond(view::page(
        "Password changed",
        None,
        None,
        html! {
            p.box id="done" { "Your password is changed, and every session and token of yours has ended." }
            p { a href="/signin" { "Sign in with the new password" } }
        },
    )))
}
