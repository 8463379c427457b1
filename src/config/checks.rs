//! What the config file is checked for before it is deserialized, so that every
//! problem is reported in one pass with its place: TOML syntax (in plain words), a
//! secret written into the file, a public `http://` URL, a store scheme we do not
//! support, and a grant alias declared twice.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::CLIENT_SECRET_ENV;

/// One problem, and where (`line` 0: the whole file).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Store URL schemes the store module opens.
pub const STORE_SCHEMES: &[&str] = &["sqlite", "postgres", "postgresql"];

struct Scan<'t> {
    text: &'t str,
    found: Vec<Problem>,
}

impl Scan<'_> {
    fn at(&mut self, span: Range<usize>, message: String) {
        let (line, col) = crate::jobs::parse::line_col(self.text, span.start);
        self.found.push(Problem { line, col, message });
    }
}

/// Every problem this pass finds in `text`.
pub fn scan(text: &str) -> Vec<Problem> {
    let mut s = Scan {
        text,
        found: Vec::new(),
    };
    if let Some(at) = text.find('\0') {
        s.at(
            at..at,
            "the file holds a NUL byte: a config file is text".into(),
        );
        return s.found;
    }
    let (root, syntax) = DeTable::parse_recoverable(text);
    for e in syntax {
        let span = e.span().unwrap_or(0..0);
        let message = crate::jobs::toml_words::plain(e.message(), text, span.clone());
        s.at(span, message);
    }
    let root = root.get_ref();
    secrets(&mut s, root, "");
    if let Some(busha) = table(root, "busha") {
        for key in ["issuer_url", "api_url"] {
            if let Some((url, span)) = string(busha, key) {
                public_http(&mut s, &format!("[busha] {key}"), url, span);
            }
        }
    }
    if let Some((url, span)) = table(root, "store").and_then(|t| string(t, "url")) {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        if !STORE_SCHEMES.contains(&scheme) {
            s.at(
                span,
                format!(
                    "[store] url {url:?}: the scheme {scheme:?} is not supported (use sqlite://PATH?mode=rwc or postgres://user@host/db)"
                ),
            );
        }
    }
    duplicate_aliases(&mut s, root);
    s.found
}

fn table<'a>(t: &'a DeTable<'_>, key: &str) -> Option<&'a DeTable<'a>> {
    match t.get(key).map(Spanned::get_ref) {
        Some(DeValue::Table(t)) => Some(t),
        _ => None,
    }
}

fn string<'a>(t: &'a DeTable<'_>, key: &str) -> Option<(&'a str, Range<usize>)> {
    let v = t.get(key)?;
    match v.get_ref() {
        DeValue::String(s) => Some((s, v.span())),
        _ => None,
    }
}

/// The variable a secret-looking key should name instead, if the key looks secret.
fn secret_variable(key: &str) -> Option<&'static str> {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_env") {
        return None;
    }
    match k.as_str() {
        "client_secret" => Some(CLIENT_SECRET_ENV),
        "operator_token" | "token" => Some(crate::operators::OPERATOR_AUTH_ENV),
        "master_key" | "key" => Some("TREASURY_MASTER_KEY"),
        "webhook_secret" => Some("TREASURY_BUSHA_WEBHOOK_SECRET"),
        _ if ["secret", "password", "token", "private_key", "api_key"]
            .iter()
            .any(|w| k.contains(w)) =>
        {
            Some("")
        }
        _ => None,
    }
}

fn secrets(s: &mut Scan<'_>, t: &DeTable<'_>, section: &str) {
    for (k, v) in t.iter() {
        let name = k.get_ref();
        if let Some(var) = secret_variable(name) {
            let instead = if var.is_empty() {
                "put the secret in an environment variable and name the variable with a `secret_env` key".to_string()
            } else {
                format!("set the environment variable {var} instead")
            };
            let shown = if section.is_empty() {
                format!("`{name}`")
            } else {
                format!("`{section}.{name}`")
            };
            s.at(
                k.span(),
                format!("{shown} holds a secret, and secrets never go in a file: remove it and {instead}"),
            );
        }
        let inner = if section.is_empty() {
            name.to_string()
        } else {
            format!("{section}.{name}")
        };
        match v.get_ref() {
            DeValue::Table(t) => secrets(s, t, &inner),
            DeValue::Array(items) => {
                for item in items {
                    if let DeValue::Table(t) = item.get_ref() {
                        secrets(s, t, &inner);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `http://` is refused unless the host is this machine or a private network.
fn public_http(s: &mut Scan<'_>, what: &str, text: &str, span: Range<usize>) {
    let Ok(url) = url::Url::parse(text) else {
        return;
    };
    if url.scheme() != "http" {
        return;
    }
    let private = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !private {
        s.at(
            span,
            format!(
                "{what} {text:?} is plain http:// to a public host: tokens and money would cross the network unencrypted; use https://"
            ),
        );
    }
}

fn duplicate_aliases(s: &mut Scan<'_>, root: &DeTable<'_>) {
    let Some(DeValue::Array(grants)) = root.get("grants").map(Spanned::get_ref) else {
        return;
    };
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for g in grants {
        let DeValue::Table(t) = g.get_ref() else {
            continue;
        };
        let Some((alias, span)) = string(t, "alias") else {
            continue;
        };
        let provider = string(t, "provider").map_or("busha", |(p, _)| p);
        let key = format!("{provider}/{alias}");
        let line = crate::jobs::parse::line_col(s.text, span.start).0;
        match first.get(&key) {
            Some(at) => s.at(
                span,
                format!("grant alias {alias:?} is declared twice (first on line {at}): each alias names one grant"),
            ),
            None => {
                first.insert(key, line);
            }
        }
    }
}
