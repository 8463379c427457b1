//! The sandbox's OAuth2 / OIDC issuer, on the rules in `busha-api.md` §1:
//! exact redirect URIs, the 12-scope catalogue, mandatory PKCE S256, single-use
//! 10-minute codes, HTTP Basic client auth, refresh-token rotation with family
//! revocation on replay, RS256 JWT access tokens, `id_token` only with `openid`,
//! `refresh_token` only with `offline_access`, and RFC 7009 revocation.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{OAuthClientConfig, RevokedAccessTokens, SCOPE_CATALOGUE};
use super::edge::basic_credentials;
use super::reply::OAuthError;
use super::state::{AccessRec, AuthCode, Family, LedgerEvent, RefreshRec, State as World};
use super::{NewUser, Sandbox};

pub fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth2/auth", get(authorize).post(authorize_submit))
        .route("/oauth2/token", post(token))
        .route("/oauth2/revoke", post(revoke))
}

/// Claims of an access token (Hydra-style: `scp` as an array, no `aud`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub client_id: String,
    pub scp: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: Vec<&'a str>,
    exp: i64,
    iat: i64,
    auth_time: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

async fn discovery(State(sb): State<Sandbox>) -> Response {
    let iss = sb.issuer();
    axum::Json(serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth2/auth"),
        "token_endpoint": format!("{iss}/oauth2/token"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": SCOPE_CATALOGUE,
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce"],
    }))
    .into_response()
}

async fn jwks(State(sb): State<Sandbox>) -> Response {
    axum::Json(sb.inner.keys.read().jwks()).into_response()
}

/// Parameters of an authorization request (query on GET, form on POST).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AuthParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
}

struct ValidAuth {
    client: OAuthClientConfig,
    redirect_uri: String,
    scopes: Vec<String>,
    state: String,
    challenge: String,
    nonce: Option<String>,
}

enum Reject {
    /// The redirect URI cannot be trusted: show an error page.
    Page(String),
    /// Send the error back to the client's redirect URI.
    Redirect {
        uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        match self {
            Reject::Page(message) => (
                StatusCode::BAD_REQUEST,
                Html(page(
                    "Authorization error",
                    &format!("<p>{}</p>", escape(&message)),
                )),
            )
                .into_response(),
            Reject::Redirect {
                uri,
                error,
                description,
                state,
            } => {
                let mut pairs = vec![
                    ("error", error.to_string()),
                    ("error_description", description),
                ];
                if let Some(s) = state {
                    pairs.push(("state", s));
                }
                redirect(&uri, &pairs)
            }
        }
    }
}

fn validate(sb: &Sandbox, p: &AuthParams) -> Result<ValidAuth, Reject> {
    let client = p
        .client_id
        .as_deref()
        .and_then(|id| sb.inner.state.lock().clients.get(id).cloned())
        .ok_or_else(|| Reject::Page("unknown client_id".into()))?;
    let redirect_uri = p
        .redirect_uri
        .clone()
        .filter(|r| client.redirect_uris.iter().any(|known| known == r))
        .ok_or_else(|| {
            Reject::Page("redirect_uri does not exactly match a registered redirect URI".into())
        })?;
    let back = |error: &'static str, description: &str| Reject::Redirect {
        uri: redirect_uri.clone(),
        error,
        description: description.to_string(),
        state: p.state.clone(),
    };
    if client.status != "approved" {
        return Err(back(
            "unauthorized_client",
            &format!("the client is {}", client.status),
        ));
    }
    if p.response_type.as_deref() != Some("code") {
        return Err(back(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    let state = p.state.clone().filter(|s| s.len() >= 8).ok_or_else(|| {
        back(
            "invalid_request",
            "state is required (at least 8 characters)",
        )
    })?;
    let scopes: Vec<String> = p
        .scope
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return Err(back("invalid_scope", "scope is required"));
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| !SCOPE_CATALOGUE.contains(&s.as_str()))
    {
        return Err(back(
            "invalid_scope",
            &format!("{bad} is not a Busha scope"),
        ));
    }
    if let Some(bad) = scopes.iter().find(|s| !client.scopes.contains(s)) {
        return Err(back(
            "invalid_scope",
            &format!("{bad} is not among the client's approved scopes"),
        ));
    }
    let challenge = p.code_challenge.clone().ok_or_else(|| {
        back(
            "invalid_request",
            "PKCE is required: code_challenge is missing",
        )
    })?;
    if p.code_challenge_method.as_deref() != Some("S256") {
        return Err(back(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if challenge.len() != 43 || URL_SAFE_NO_PAD.decode(&challenge).is_err() {
        return Err(back(
            "invalid_request",
            "code_challenge must be base64url(sha256(code_verifier))",
        ));
    }
    Ok(ValidAuth {
        client,
        redirect_uri,
        scopes,
        state,
        challenge,
        nonce: p.nonce.clone(),
    })
}

async fn authorize(State(sb): State<Sandbox>, Query(p): Query<AuthParams>) -> Response {
    let valid = match validate(&sb, &p) {
        Ok(v) => v,
        Err(reject) => return reject.into_response(),
    };
    if let Some(name) = sb.inner.config.auto_consent.clone() {
        let user_id = {
            let mut st = sb.inner.state.lock();
            match st.user_by_name(&name) {
                Some(u) => u.id.clone(),
                None => super::create_user(&mut st, NewUser::new(&name)).id,
            }
        };
        return issue_code(&sb, valid, &user_id);
    }
    Html(consent_form(&valid, &p, None)).into_response()
}

/// The consent form's submission. A script can post it directly: the original
/// authorization parameters plus `username`, `password` and `decision`.
#[derive(Debug, Deserialize)]
struct ConsentForm {
    #[serde(flatten)]
    params: AuthParams,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    decision: String,
}

async fn authorize_submit(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let form: ConsentForm = match serde_urlencoded_from(&body) {
        Some(f) => f,
        None => return Reject::Page("the consent form could not be read".into()).into_response(),
    };
    let valid = match validate(&sb, &form.params) {
        Ok(v) => v,
        Err(reject) => return reject.into_response(),
    };
    if form.decision != "approve" {
        return Reject::Redirect {
            uri: valid.redirect_uri,
            error: "access_denied",
            description: "the user cancelled the authorization".into(),
            state: Some(valid.state),
        }
        .into_response();
    }
    let user_id = {
        let st = sb.inner.state.lock();
        st.user_by_name(&form.username)
            .filter(|u| u.password == form.password)
            .map(|u| u.id.clone())
    };
    match user_id {
        Some(user_id) => issue_code(&sb, valid, &user_id),
        None => (
            StatusCode::UNAUTHORIZED,
            Html(consent_form(
                &valid,
                &form.params,
                Some("Wrong username or password."),
            )),
        )
            .into_response(),
    }
}

fn serde_urlencoded_from<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    serde_json::from_value(serde_json::Value::Object(map)).ok()
}

fn issue_code(sb: &Sandbox, valid: ValidAuth, user_id: &str) -> Response {
    let code = random_token();
    let now = sb.now();
    {
        let mut st = sb.inner.state.lock();
        st.codes.insert(
            code.clone(),
            AuthCode {
                client_id: valid.client.client_id.clone(),
                user_id: user_id.to_string(),
                redirect_uri: valid.redirect_uri.clone(),
                scopes: valid.scopes.clone(),
                challenge: valid.challenge,
                nonce: valid.nonce,
                issued_at: now,
                used: false,
                family_id: None,
            },
        );
        st.record(
            now,
            LedgerEvent::CodeIssued {
                client_id: valid.client.client_id,
                user_id: user_id.to_string(),
            },
        );
    }
    redirect(
        &valid.redirect_uri,
        &[
            ("code", code),
            ("state", valid.state),
            ("scope", valid.scopes.join(" ")),
        ],
    )
}

fn redirect(uri: &str, pairs: &[(&str, String)]) -> Response {
    let location = match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => return Reject::Page("redirect_uri is not a URL".into()).into_response(),
    };
    let mut res = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

fn consent_form(valid: &ValidAuth, p: &AuthParams, error: Option<&str>) -> String {
    let hidden: String = [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("scope", &p.scope),
        ("state", &p.state),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
        ("nonce", &p.nonce),
    ]
    .iter()
    .filter_map(|(name, value)| {
        value.as_ref().map(|v| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
                escape(v)
            )
        })
    })
    .collect();
    // `openid` and `offline_access` are hidden from the consent screen, as on Busha.
    let scopes: String = valid
        .scopes
        .iter()
        .filter(|s| *s != "openid" && *s != "offline_access")
        .map(|s| format!("<li>{}</li>", escape(s)))
        .collect();
    let error = error
        .map(|e| format!("<p role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in to Busha (sandbox)",
        &format!(
            "<p><strong>{client}</strong> asks to act on your Busha account:</p>\n<ul>{scopes}</ul>\n{error}\
             <form method=\"post\" action=\"/oauth2/auth\">\n{hidden}\
             <label>Username <input name=\"username\" autocomplete=\"username\"></label>\n\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\n\
             <button name=\"decision\" value=\"approve\">Approve</button>\n\
             <button name=\"decision\" value=\"deny\">Cancel</button>\n</form>",
            client = escape(&valid.client.client_id),
        ),
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body><h1>{t}</h1>\n{body}\n</body></html>\n",
        t = escape(title)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Parses an `application/x-www-form-urlencoded` body; a repeated parameter is an error.
fn form_params(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let mut params = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body).into_owned() {
        if params.insert(k.clone(), v).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {k} is repeated"
            )));
        }
    }
    Ok(params)
}

/// HTTP Basic client authentication, the only method Busha documents.
fn authenticate_client(
    sb: &Sandbox,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<OAuthClientConfig, OAuthError> {
    let Some((id, secret)) = basic_credentials(headers) else {
        let reason = if params.contains_key("client_secret") {
            "client authentication method not allowed: use HTTP Basic (client_secret_basic)"
        } else {
            "client authentication is required (HTTP Basic)"
        };
        return Err(OAuthError::invalid_client(reason));
    };
    let st = sb.inner.state.lock();
    match st.clients.get(&id) {
        Some(c) if c.client_secret == secret => Ok(c.clone()),
        _ => Err(OAuthError::invalid_client(
            "client authentication failed (unknown client or wrong secret)",
        )),
    }
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

async fn token(State(sb): State<Sandbox>, headers: HeaderMap, body: Bytes) -> Response {
    match token_inner(&sb, &headers, &body) {
        Ok(tokens) => {
            let mut res = axum::Json(tokens).into_response();
            let h = res.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            res
        }
        Err(e) => e.into_response(),
    }
}

fn token_inner(
    sb: &Sandbox,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let params = form_params(headers, body)?;
    let client = authenticate_client(sb, headers, &params)?;
    let grant_status = sb.inner.state.lock().behaviour.invalid_grant_status;
    let invalid_grant = |d: &str| OAuthError::new(grant_status, "invalid_grant", d);
    let param = |name: &str| {
        params
            .get(name)
            .cloned()
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    };
    match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = param("code")?;
            let redirect_uri = param("redirect_uri")?;
            let verifier = param("code_verifier")?;
            let now = sb.now();
            let mut st = sb.inner.state.lock();
            let reuse_revokes = st.behaviour.revoke_family_on_code_reuse;
            let Some(rec) = st.codes.get_mut(&code) else {
                return Err(invalid_grant("the authorization code is invalid"));
            };
            if rec.client_id != client.client_id {
                return Err(invalid_grant(
                    "the authorization code was issued to another client",
                ));
            }
            if rec.used {
                let family = rec.family_id.clone();
                if let (true, Some(family)) = (reuse_revokes, family) {
                    st.revoke_family(&family, "authorization code replayed", now);
                }
                return Err(invalid_grant(
                    "the authorization code has already been used",
                ));
            }
            if now > rec.issued_at + sb.inner.config.code_ttl {
                return Err(invalid_grant("the authorization code has expired"));
            }
            if rec.redirect_uri != redirect_uri {
                return Err(invalid_grant(
                    "redirect_uri does not match the authorization request",
                ));
            }
            if !(43..=128).contains(&verifier.len())
                || !verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            {
                return Err(OAuthError::invalid_request(
                    "code_verifier must be 43-128 unreserved characters",
                ));
            }
            let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if digest != rec.challenge {
                return Err(invalid_grant("PKCE verification failed"));
            }
            rec.used = true;
            let (user_id, scopes, nonce) =
                (rec.user_id.clone(), rec.scopes.clone(), rec.nonce.clone());
            let issued = issue_into(
                sb,
                &mut st,
                &client.client_id,
                &user_id,
                &scopes,
                None,
                nonce.as_deref(),
                "authorization_code",
            );
            if let Some(rec) = st.codes.get_mut(&code) {
                rec.family_id = Some(issued.family_id.clone());
            }
            Ok(issued.into_response_body(&scopes))
        }
        Some("refresh_token") => {
            let presented = param("refresh_token")?;
            let now = sb.now();
            let mut st = sb.inner.state.lock();
            let Some(rec) = st.refresh_tokens.get(&presented) else {
                return Err(invalid_grant("the refresh token is invalid"));
            };
            if rec.client_id != client.client_id {
                return Err(invalid_grant(
                    "the refresh token was issued to another client",
                ));
            }
            let family_id = rec.family_id.clone();
            let (used, expires_at) = (rec.used, rec.expires_at);
            let Some(family) = st.families.get(&family_id) else {
                return Err(invalid_grant("the refresh token is invalid"));
            };
            if let Some(reason) = &family.revoked {
                return Err(invalid_grant(&format!(
                    "the token family was revoked: {reason}"
                )));
            }
            let (user_id, scopes) = (family.user_id.clone(), family.scopes.clone());
            if used {
                st.record(
                    now,
                    LedgerEvent::RefreshReplayed {
                        client_id: client.client_id.clone(),
                        user_id,
                        family_id: family_id.clone(),
                    },
                );
                st.revoke_family(&family_id, "refresh token replayed", now);
                return Err(invalid_grant(
                    "the refresh token was already used; the token family is revoked",
                ));
            }
            if now >= expires_at {
                return Err(invalid_grant("the refresh token has expired"));
            }
            if let Some(rec) = st.refresh_tokens.get_mut(&presented) {
                rec.used = true;
            }
            let issued = issue_into(
                sb,
                &mut st,
                &client.client_id,
                &user_id,
                &scopes,
                Some(family_id),
                None,
                "refresh_token",
            );
            Ok(issued.into_response_body(&scopes))
        }
        Some(other) => Err(OAuthError::new(
            400,
            "unsupported_grant_type",
            format!("grant_type {other} is not supported"),
        )),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

/// Tokens just issued.
pub(super) struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_in: i64,
    pub family_id: String,
}

impl Issued {
    fn into_response_body(self, scopes: &[String]) -> TokenResponse {
        TokenResponse {
            access_token: self.access_token,
            token_type: "bearer",
            expires_in: self.expires_in,
            scope: scopes.join(" "),
            refresh_token: self.refresh_token,
            id_token: self.id_token,
        }
    }
}

/// Issues an access token (and a refresh token with `offline_access`, an id token with
/// `openid`) into `family_id`, or into a new family.
#[allow(clippy::too_many_arguments)]
pub(super) fn issue_into(
    sb: &Sandbox,
    st: &mut World,
    client_id: &str,
    user_id: &str,
    scopes: &[String],
    family_id: Option<String>,
    nonce: Option<&str>,
    grant: &str,
) -> Issued {
    let now = sb.now();
    let cfg = &sb.inner.config;
    let family_id = family_id.unwrap_or_else(|| {
        let id = format!("fam_{}", nanoid::nanoid!(16, &super::ALPHANUMERIC));
        st.families.insert(
            id.clone(),
            Family {
                user_id: user_id.into(),
                scopes: scopes.to_vec(),
                revoked: None,
            },
        );
        id
    });
    let exp = now + cfg.access_token_ttl;
    let jti = uuid::Uuid::new_v4().to_string();
    let keys = sb.inner.keys.read();
    let access_token = keys.sign(&AccessClaims {
        iss: sb.issuer().to_string(),
        sub: user_id.into(),
        client_id: client_id.into(),
        scp: scopes.to_vec(),
        exp: exp.timestamp(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        jti: jti.clone(),
    });
    st.access_tokens.insert(
        jti,
        AccessRec {
            family_id: Some(family_id.clone()),
            revoked: false,
        },
    );
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let refresh_token = has("offline_access").then(|| {
        let token = random_token();
        st.refresh_tokens.insert(
            token.clone(),
            RefreshRec {
                family_id: family_id.clone(),
                client_id: client_id.into(),
                expires_at: now + cfg.refresh_token_ttl,
                used: false,
            },
        );
        token
    });
    let id_token = has("openid").then(|| {
        keys.sign(&IdClaims {
            iss: sb.issuer(),
            sub: user_id,
            aud: vec![client_id],
            exp: exp.timestamp(),
            iat: now.timestamp(),
            auth_time: now.timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
            nonce,
        })
    });
    st.record(
        now,
        LedgerEvent::TokenIssued {
            client_id: client_id.into(),
            user_id: user_id.into(),
            family_id: family_id.clone(),
            grant: grant.into(),
        },
    );
    Issued {
        access_token,
        refresh_token,
        id_token,
        // One second under the lifetime, as Hydra reports it.
        expires_in: cfg.access_token_ttl.num_seconds() - 1,
        family_id,
    }
}

/// Issues tokens in a fresh family, outside any HTTP request.
pub(super) fn issue_tokens(
    sb: &Sandbox,
    client_id: &str,
    user_id: &str,
    scopes: &[String],
    family_id: Option<String>,
    nonce: Option<&str>,
    grant: &str,
) -> Issued {
    let mut st = sb.inner.state.lock();
    issue_into(
        sb, &mut st, client_id, user_id, scopes, family_id, nonce, grant,
    )
}

/// RFC 7009. Revoking a refresh token kills its family; unknown tokens get 200.
async fn revoke(State(sb): State<Sandbox>, headers: HeaderMap, body: Bytes) -> Response {
    let result = (|| {
        let params = form_params(&headers, &body)?;
        let client = authenticate_client(&sb, &headers, &params)?;
        let token = params
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let now = sb.now();
        let family = {
            let st = sb.inner.state.lock();
            st.refresh_tokens
                .get(token)
                .filter(|r| r.client_id == client.client_id)
                .map(|r| r.family_id.clone())
        };
        if let Some(family) = family {
            sb.inner
                .state
                .lock()
                .revoke_family(&family, "revoked by the client", now);
        } else if let Ok(claims) = sb
            .inner
            .keys
            .read()
            .verify::<AccessClaims>(token, sb.issuer())
        {
            if claims.client_id == client.client_id {
                if let Some(rec) = sb.inner.state.lock().access_tokens.get_mut(&claims.jti) {
                    rec.revoked = true;
                }
            }
        }
        Ok::<_, OAuthError>(())
    })();
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Why a bearer token was refused.
#[derive(Debug)]
pub enum TokenRefused {
    Invalid,
    Expired,
    Revoked,
}

/// Checks a bearer access token: signature (JWKS keys), issuer, lifetime against the
/// sandbox clock, and revocation per [`RevokedAccessTokens`].
pub fn verify_access_token(sb: &Sandbox, token: &str) -> Result<AccessClaims, TokenRefused> {
    let claims: AccessClaims = sb
        .inner
        .keys
        .read()
        .verify(token, sb.issuer())
        .map_err(|_| TokenRefused::Invalid)?;
    let now = sb.now().timestamp();
    if now >= claims.exp {
        return Err(TokenRefused::Expired);
    }
    let st = sb.inner.state.lock();
    if st.behaviour.revoked_family_access_tokens == RevokedAccessTokens::Rejected {
        let rec = st.access_tokens.get(&claims.jti);
        let family_revoked = rec
            .and_then(|r| r.family_id.as_ref())
            .and_then(|f| st.families.get(f))
            .is_some_and(|f| f.revoked.is_some());
        if family_revoked || rec.is_some_and(|r| r.revoked) {
            return Err(TokenRefused::Revoked);
        }
    }
    Ok(claims)
}
