//! The console's layout and shared fragments (maud escapes every value it renders).

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::session::Signed;

/// The one stylesheet: readable on a laptop, usable on a phone (tables scroll).
pub const CSS: &str = r#"
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1b1f24; background: #f6f7f9; }
header { background: #1b2a41; color: #fff; padding: .6rem 1rem; display: flex; flex-wrap: wrap; gap: .8rem; align-items: center; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header .who { margin-left: auto; font-size: .9em; opacity: .9; }
header form { display: inline; }
main { padding: 1rem; max-width: 70rem; margin: 0 auto; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid #e2e5ea; vertical-align: top; }
th { background: #eef1f5; font-size: .85em; text-transform: uppercase; letter-spacing: .03em; }
pre { background: #fff; padding: .8rem; overflow-x: auto; border: 1px solid #e2e5ea; font-size: .85em; }
button { padding: .35rem .8rem; border-radius: 4px; border: 1px solid #1b2a41; background: #1b2a41; color: #fff; cursor: pointer; }
button.danger { background: #9b1c1c; border-color: #9b1c1c; }
input, select { padding: .3rem; border: 1px solid #b9c0ca; border-radius: 4px; }
.box { background: #fff; border: 1px solid #e2e5ea; padding: .8rem 1rem; margin: .8rem 0; }
.note { color: #5a6472; font-size: .9em; }
.error { background: #fde8e8; border: 1px solid #f3b4b4; padding: .6rem 1rem; }
.halted { background: #fff4e5; border: 1px solid #f0c36d; padding: .6rem 1rem; }
form.inline { display: inline-flex; gap: .3rem; flex-wrap: wrap; margin: .2rem 0; }
label { display: block; margin: .5rem 0 .2rem; }
@media (max-width: 640px) {
  main { padding: .6rem; }
  table#inbox thead, table#grants thead { display: none; }
  table#inbox tr, table#grants tr { display: block; border-bottom: 2px solid #c9cfd8; padding: .4rem 0; }
  table#inbox td, table#grants td { display: block; border: 0; padding: .15rem .5rem; }
}
"#;

/// A whole page: the header with the navigation and the signed-in account.
pub fn page(title: &str, signed: Option<&Signed>, refresh: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(r) = refresh { meta http-equiv="refresh" content=(r); }
                title { (title) " · treasury" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header {
                    a href="/" { "Inbox" }
                    a href="/runs" { "Runs" }
                    a href="/halts" { "Kill switch" }
                    a href="/jobs" { "Jobs" }
                    a href="/grants" { "Grants" }
                    a href="/audit" { "Audit" }
                    @if let Some(s) = signed {
                        @if s.account.role == crate::operators::Role::Admin { a href="/operators" { "Operators" } }
                    }
                    @if let Some(s) = signed {
                        a.who href="/password" { (s.account.name) " (" (s.account.role) ")" }
                        form method="post" action="/signout" {
                            (csrf_field(s))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(s) = signed {
                        @if s.account.password_temporary {
                            p.error { "Your password is a one-time password: choose a new one with "
                                code { "treasury operators passwd " (s.account.name) }
                                " before you approve or change anything." }
                        }
                    }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every form of a session carries.
pub fn csrf_field(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.csrf()); }
}

/// The sign-in page, with the form's double-submit token and the last error.
pub fn signin_page(csrf: &str, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        None,
        html! {
            @if let Some(e) = error { p.error id="signin-error" { (e) } }
            form.box method="post" action="/signin" {
                input type="hidden" name="csrf" value=(csrf);
                label for="name" { "Operator name" }
                input id="name" name="name" autocomplete="username" required;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                p { button id="signin" type="submit" { "Sign in" } }
            }
        },
    )
}

/// A page that only says something (errors, refusals).
pub fn message_page(title: &str, message: &str) -> Markup {
    page(
        title,
        None,
        None,
        html! {
            p.error id="message" { (message) }
            p { a href="/" { "Back to the inbox" } }
        },
    )
}

/// A message after an action, above the page it leads back to.
pub fn done(message: &str, back: &str) -> Markup {
    html! {
        p.box id="done" { (message) }
        p { a href=(back) { "Back" } }
    }
}

/// Text shown as is in a `<pre>` (escaped).
pub fn pre(text: &str) -> Markup {
    html! { pre { (text) } }
}

/// An age in words: "3 min", "2 h 5 min", "4 d".
pub fn age(d: chrono::Duration) -> String {
    let m = d.num_minutes().max(0);
    match m {
        0..=59 => format!("{m} min"),
        60..=1439 => format!("{} h {} min", m / 60, m % 60),
        _ => format!("{} d", m / 1440),
    }
}

/// Nothing, as a non-breaking dash.
pub fn dash() -> Markup {
    PreEscaped("&ndash;".into())
}

/// A rendered page as a response body.
pub fn respond(m: Markup) -> axum::response::Html<String> {
    axum::response::Html(m.into_string())
}
