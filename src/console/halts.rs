//! The kill switch: halt and resume everything, one job or one grant, with a reason;
//! the halts in force. A job or grant nobody knows is refused with the closest known
//! name, by the same [`KnownNames`] check as `treasury halt`.

use axum::Form;
use axum::extract::State;
use axum::response::Html;
use maud::html;
use serde::Deserialize;

use super::session::Signed;
use super::{ConsoleState, HttpError, view};
use crate::guards::HaltScope;
use crate::guards::known::KnownNames;
use crate::operators::Role;

/// `GET /halts`.
pub async fn page(
    State(state): State<ConsoleState>,
    signed: Signed,
) -> Result<Html<String>, HttpError> {
    let halts = state.store.halts().await?;
    let body = html! {
        @if halts.is_empty() {
            p.box id="no-halts" { "Nothing is halted: runs move money as their jobs say." }
        } @else {
            div.halted id="halts" {
                p { strong { "Halted now:" } }
                @for h in &halts {
                    form.inline method="post" action="/halts/resume" {
                        (view::csrf_field(&signed))
                        input type="hidden" name="scope" value=(h.scope.kind());
                        input type="hidden" name="target" value=(h.scope.target());
                        span { strong { (h.scope.to_string()) } " by " (h.halted_by) " at "
                            (h.halted_at.format("%Y-%m-%d %H:%M UTC"))
                            @if let Some(r) = &h.reason { ": " (r) } }
                        button type="submit" { "Resume" }
                    }
                }
            }
        }
        form.box method="post" action="/halts" id="halt-form" {
            (view::csrf_field(&signed))
            p.note { "A halt stops every new recipient creation, quote lock and transfer it covers; runs in flight stop before their next step." }
            label for="scope" { "What to halt" }
            select id="scope" name="scope" {
                option value="all" { "Everything" }
                option value="job" { "One job" }
                option value="grant" { "One grant" }
            }
            label for="target" { "Job id or grant alias (not for everything)" }
            input id="target" name="target";
            label for="reason" { "Reason" }
            input id="reason" name="reason" size="40";
            p { button.danger id="halt" type="submit" { "Halt" } }
        }
    };
    Ok(view::respond(view::page(
        "Kill switch",
        Some(&signed),
        None,
        body,
    )))
}

#[derive(Deserialize)]
pub struct ScopeForm {
    #[serde(default)]
    csrf: String,
    scope: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    reason: String,
}

impl ScopeForm {
    fn scope(&self) -> Result<HaltScope, HttpError> {
        let target = self.target.trim();
        let needs = |what: &str| {
            HttpError::BadRequest(format!("scope {what}: give the {what}'s name in `target`"))
        };
        match self.scope.as_str() {
            "all" => Ok(HaltScope::All),
            "job" if target.is_empty() => Err(needs("job")),
            "grant" if target.is_empty() => Err(needs("grant")),
            "job" => Ok(HaltScope::Job(target.to_string())),
            "grant" => Ok(HaltScope::Grant(target.to_string())),
            other => Err(HttpError::BadRequest(format!(
                "scope {other:?} is not all, job or grant"
            ))),
        }
    }
}

/// The form's scope, refused when it names a job or grant nobody knows.
async fn known_scope(state: &ConsoleState, form: &ScopeForm) -> Result<HaltScope, HttpError> {
    let scope = form.scope()?;
    let known = KnownNames::gather(
        &state.store,
        state.jobs().iter().map(|j| j.id().to_string()),
        state.grant_aliases.iter().cloned(),
    )
    .await?;
    known.check(&scope).map_err(HttpError::BadRequest)?;
    Ok(scope)
}

/// `POST /halts`.
pub async fn halt(
    State(state): State<ConsoleState>,
    signed: Signed,
    Form(form): Form<ScopeForm>,
) -> Result<Html<String>, HttpError> {
    signed.check_csrf(&form.csrf)?;
    let who = signed.operator(Role::Operator)?;
    let scope = known_scope(&state, &form).await?;
    let reason = Some(form.reason.trim()).filter(|r| !r.is_empty());
    let new = state
        .store
        .set_halt(&scope, reason, &who, state.clock.now())
        .await?;
    let message = if new {
        tracing::warn!(%scope, operator = %who, "HALT from the console");
        format!("Halted {scope}: no recipient creation, quote lock or transfer starts.")
    } else {
        format!("{scope} was already halted; nothing changed.")
    };
    Ok(view::respond(view::page(
        "Kill switch",
        Some(&signed),
        None,
        view::done(&message, "/halts"),
    )))
}

/// `POST /halts/resume`.
pub async fn resume(
    State(state): State<ConsoleState>,
    signed: Signed,
    Form(form): Form<ScopeForm>,
) -> Result<Html<String>, HttpError> {
    signed.check_csrf(&form.csrf)?;
    let who = signed.operator(Role::Operator)?;
    let scope = known_scope(&state, &form).await?;
    let lifted = state
        .store
        .clear_halt(&scope, &who, state.clock.now())
        .await?;
    if !lifted {
        return Err(HttpError::BadRequest(format!(
            "{scope} is not halted; nothing to resume"
        )));
    }
    tracing::warn!(%scope, operator = %who, "resumed from the console");
    Ok(view::respond(view::page(
        "Kill switch",
        Some(&signed),
        None,
        view::done(
            &format!("Resumed {scope}: held runs go on at their next check."),
            "/halts",
        ),
    )))
}
