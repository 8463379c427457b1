//! The one request path of the Baanx client: endpoints, the pacer, the headers every
//! call carries (`x-client-key`, `x-us-env`, the bearer, `x-secret-key` on the token
//! endpoint only), the lease check before a money-moving call, and classification.

use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{BaanxClient, Grant, Region, error};
use crate::provider::SendCheck;
use crate::provider::busha::{Called, ErrorKind, ProviderError};

/// Declares an [`Endpoint`] constant: method and route template.
macro_rules! endpoint {
    ($name:ident, $method:literal, $path:literal) => {
        const $name: Endpoint = Endpoint {
            method: $method,
            key: concat!($method, " ", $path),
        };
    };
}

/// One endpoint: its method, route template (the pacing key), and path.
#[derive(Clone, Copy)]
pub(super) struct Endpoint {
    pub(super) method: &'static str,
    pub(super) key: &'static str,
}

impl Endpoint {
    pub(super) fn mutating(self) -> bool {
        self.method != "GET"
    }
}

/// One request, short of its endpoint.
pub(super) struct Call<'a> {
    pub(super) grant: Option<Grant<'a>>,
    pub(super) region: Region,
    pub(super) query: Vec<(&'static str, String)>,
    pub(super) body: Option<Value>,
    pub(super) secret: bool,
    pub(super) check: Option<&'a dyn SendCheck>,
}

impl<'a> Call<'a> {
    pub(super) fn as_(grant: Grant<'a>) -> Self {
        Self {
            grant: Some(grant),
            region: grant.region,
            query: Vec::new(),
            body: None,
            secret: false,
            check: None,
        }
    }
    /// A call without a bearer (client key only).
    pub(super) fn unauthenticated(region: Region) -> Self {
        Self {
            grant: None,
            region,
            query: Vec::new(),
            body: None,
            secret: false,
            check: None,
        }
    }
    pub(super) fn query(mut self, name: &'static str, value: impl ToString) -> Self {
        self.query.push((name, value.to_string()));
        self
    }
    pub(super) fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    pub(super) fn checked(mut self, check: &'a dyn SendCheck) -> Self {
        self.check = Some(check);
        self
    }
}

impl BaanxClient {
    // --- The one request path ---------------------------------------------------------

    pub(super) async fn json<T: DeserializeOwned>(
        &self,
        ep: Endpoint,
        path: &[&str],
        call: Call<'_>,
    ) -> Result<Called<T>, ProviderError> {
        let (status, body) = self.send(ep, path, call).await?;
        serde_json::from_slice(&body)
            .map(|value| Called {
                value,
                request_id: None,
            })
            .map_err(|e| {
                ProviderError::new(
                    ep.key,
                    ErrorKind::Decode {
                        mutating: ep.mutating(),
                    },
                )
                .with_status(status)
                .with_source(e)
            })
    }

    /// A call that answers `{"success": true}`; `success: false` is a refusal.
    pub(super) async fn success(
        &self,
        ep: Endpoint,
        path: &[&str],
        call: Call<'_>,
    ) -> Result<Called<()>, ProviderError> {
        let called: Called<Value> = self.json(ep, path, call).await?;
        match called.value.get("success").and_then(Value::as_bool) {
            Some(true) => Ok(called.map(|_| ())),
            Some(false) => Err(ProviderError::new(
                ep.key,
                ErrorKind::Rejected {
                    name: "success_false".into(),
                },
            )
            .with_message("Baanx answered success: false")),
            None => Err(ProviderError::new(
                ep.key,
                ErrorKind::Decode {
                    mutating: ep.mutating(),
                },
            )
            .with_message("the answer has no success flag")),
        }
    }

    async fn send(
        &self,
        ep: Endpoint,
        path: &[&str],
        call: Call<'_>,
    ) -> Result<(StatusCode, Vec<u8>), ProviderError> {
        let config = &self.inner.config;
        if let Some(check) = call.check {
            if check.covered_for() < config.timeout {
                return Err(ProviderError::new(ep.key, ErrorKind::Withheld)
                    .with_message("the lease cannot cover the call; nothing was sent"));
            }
        }
        self.pace(ep).await?;
        let mut url = config.api_base.clone();
        url.path_segments_mut()
            .map_err(|()| ProviderError::invalid_request(ep.key, "base URL cannot take a path"))?
            .pop_if_empty()
            .extend(path);
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        let method = Method::from_bytes(ep.method.as_bytes())
            .map_err(|_| ProviderError::invalid_request(ep.key, "bad method"))?;
        let mut req = self
            .inner
            .http
            .request(method, url)
            .header("x-client-key", &config.client_key)
            .header("x-us-env", call.region.us_env());
        if let Some(g) = call.grant {
            req = req.bearer_auth(g.token.secret());
        }
        if let (true, Some(secret)) = (call.secret, &config.secret_key) {
            req = req.header("x-secret-key", secret);
        }
        if let Some(body) = &call.body {
            req = req.json(body);
        }
        let res = req.send().await.map_err(|e| transport(ep, e))?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = match res.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) if status.is_success() => {
                let kind = if ep.mutating() {
                    ErrorKind::OutcomeUnknown
                } else {
                    ErrorKind::Transient
                };
                return Err(ProviderError::new(ep.key, kind)
                    .with_status(status)
                    .with_message("response body could not be read")
                    .with_source(e.without_url()));
            }
            Err(_) => Vec::new(),
        };
        if !status.is_success() {
            return Err(error::from_response(
                ep.key,
                ep.mutating(),
                status,
                &headers,
                &body,
            ));
        }
        Ok((status, body))
    }

    async fn pace(&self, ep: Endpoint) -> Result<(), ProviderError> {
        let pacer = &self.inner.pacer;
        match self.inner.config.max_pacing_wait {
            None => {
                pacer.acquire(ep.key).await;
                Ok(())
            }
            Some(wait) if pacer.acquire_within(ep.key, wait).await => Ok(()),
            Some(wait) => Err(ProviderError::new(
                ep.key,
                ErrorKind::RateLimited { retry_after: None },
            )
            .with_message(format!(
                "paced locally: no slot within {} ms; nothing was sent",
                wait.as_millis()
            ))),
        }
    }
}

/// A failure without a response: connect errors prove nothing was sent.
fn transport(ep: Endpoint, e: reqwest::Error) -> ProviderError {
    let kind = if e.is_connect() || !ep.mutating() {
        ErrorKind::Transient
    } else {
        ErrorKind::OutcomeUnknown
    };
    ProviderError::new(ep.key, kind).with_source(e.without_url())
}
