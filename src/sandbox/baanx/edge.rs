//! What every Baanx API request passes through: the client key (499 missing, 498
//! unknown, also when the tenant is not served in the request's region), the region
//! (`x-us-env: true` or `region=us`), injected faults, the rolling-minute limit per
//! client key and endpoint, and the request log.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::BaanxSandbox;
use super::config::{BaanxClient, Region};
use super::reply::Message;
use super::state::BaanxEvent;
use crate::sandbox::core::edge::{canned_response, dropped, pick_faults, rewrite_response};
use crate::sandbox::core::faults::FaultKind;
use crate::sandbox::core::rate::{self, retry_after_secs};
use crate::sandbox::core::requests::RequestRecord;

/// The tenant and region of a request, put in its extensions by [`edge`].
#[derive(Clone)]
pub struct Tenant {
    pub client: BaanxClient,
    pub region: Region,
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = Message;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Message> {
        parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .ok_or_else(Message::missing_client_key)
    }
}

/// The region a request asks for.
pub fn region_of(headers: &HeaderMap, query: Option<&str>) -> Region {
    let header_us = headers
        .get("x-us-env")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let query_us = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k == "region" && v.eq_ignore_ascii_case("us"));
    if header_us || query_us {
        Region::Us
    } else {
        Region::International
    }
}

pub async fn edge(
    State(sb): State<BaanxSandbox>,
    matched: MatchedPath,
    mut req: Request,
    next: Next,
) -> Response {
    let endpoint = format!("{} {}", req.method(), matched.as_str());
    let request_id = uuid::Uuid::new_v4().to_string();
    let key = req
        .headers()
        .get("x-client-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let region = region_of(req.headers(), req.uri().query());
    let log = Log {
        sb: &sb,
        endpoint: &endpoint,
        client_key: key.clone(),
        request_id: &request_id,
    };
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return log.finish(Message::missing_client_key().into_response(), false);
    };
    let client = sb.inner.world.lock().clients.get(&key).cloned();
    let Some(client) = client.filter(|c| c.region.is_none_or(|r| r == region)) else {
        return log.finish(Message::invalid_client_key().into_response(), false);
    };
    req.extensions_mut().insert(Tenant { client, region });

    let faults = pick_faults(&mut sb.inner.world.lock().faults, &endpoint);
    let mut drop_after = false;
    let mut rewrites = Vec::new();
    for fault in faults {
        match fault {
            FaultKind::Latency(d) => tokio::time::sleep(d).await,
            FaultKind::ServerError(status) => {
                return log.finish(Message::server(status).into_response(), false);
            }
            FaultKind::RateLimited => {
                let res = Message::too_many(Some(1)).into_response();
                return log.finish(res, false);
            }
            FaultKind::DropBeforeCommit => return log.finish(dropped(), true),
            FaultKind::DropAfterCommit => drop_after = true,
            FaultKind::Respond(canned) => return log.finish(canned_response(&canned), false),
            // Baanx lists have no filters worth ignoring; a rewrite covers the rest.
            FaultKind::IgnoreFilters => {}
            FaultKind::Rewrite(r) => rewrites.push(r),
        }
    }

    if let Err(refused) = take_rate(&sb, &key, &endpoint) {
        return log.finish(refused.into_response(), false);
    }

    let mut res = next.run(req).await;
    if !rewrites.is_empty() {
        let (rewritten, applied) = rewrite_response(res, &rewrites).await;
        res = rewritten;
        let now = sb.now();
        let mut w = sb.inner.world.lock();
        for pointer in applied {
            w.record(
                now,
                BaanxEvent::ResponseRewritten {
                    endpoint: endpoint.clone(),
                    request_id: request_id.clone(),
                    pointer,
                },
            );
        }
    }
    if drop_after {
        let now = sb.now();
        sb.inner.world.lock().record(
            now,
            BaanxEvent::ResponseDropped {
                endpoint: endpoint.clone(),
                request_id: request_id.clone(),
            },
        );
        return log.finish(dropped(), true);
    }
    log.finish(res, false)
}

fn take_rate(sb: &BaanxSandbox, key: &str, endpoint: &str) -> Result<(), Message> {
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let w = &mut *w;
    let header = w.behaviour.retry_after_header;
    rate::take(&mut w.windows, &w.rate_limits, key, endpoint, now)
        .map_err(|(_, wait)| Message::too_many(header.then_some(retry_after_secs(wait))))
}

/// Records a request in the log as it leaves.
pub struct Log<'a> {
    pub sb: &'a BaanxSandbox,
    pub endpoint: &'a str,
    pub client_key: Option<String>,
    pub request_id: &'a str,
}

impl Log<'_> {
    pub fn finish(self, res: Response, dropped: bool) -> Response {
        let record = RequestRecord {
            at: self.sb.now(),
            client_id: self.client_key,
            endpoint: self.endpoint.to_string(),
            status: res.status().as_u16(),
            request_id: self.request_id.to_string(),
            dropped,
        };
        self.sb.inner.world.lock().requests.push(record);
        res
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}
