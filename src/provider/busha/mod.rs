//! The typed Busha resource-API client.
//!
//! One method per endpoint; each takes the customer's token per call (one client serves
//! many grants), waits for the endpoint's pacer, sends, and returns the typed value with
//! Busha's `X-Request-Id` in [`Called`], or one [`ProviderError`] saying what the caller
//! can do about it. Every mutating call (POST, DELETE) that may have been applied without
//! us learning so fails with an error whose `outcome_unknown()` is true.
//!
//! What this module never does: retry (retries belong to the run's state machine), follow
//! redirects (a redirected POST would be replayed as something else), send
//! `X-BU-PROFILE-ID` with OAuth tokens, or log a token, a body or a full URL.

mod boundary;
mod page;
mod to_domain;
mod types;

pub use crate::provider::Called;
pub(crate) use crate::provider::error::retry_after;
pub use crate::provider::error::{ErrorKind, ProviderError};
pub use crate::provider::pager::{Pager, PagingError};
pub use page::{Page, Skipped};
pub use types::*;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::pacing::{EndpointLimits, Pacer, SharedPacing};
use super::{AccessToken, SendCheck};

/// The recipient shape we send and ask for (`busha-api.md` §2.0, §2.5).
pub const RECIPIENTS_VERSION: &str = "2025-07-11";

/// Where Busha is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct BushaConfig {
    /// e.g. `https://api.busha.io` or the sandbox's URL.
    pub api_base: Url,
    /// Whole-call limit, connect to last byte.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub limits: EndpointLimits,
    /// The longest a call waits for its pacer before failing as
    /// [`ErrorKind::RateLimited`] with nothing sent. `None` waits as long as it takes.
    /// A worker that must not sleep for pacing (`design.md`) sets a short bound and
    /// schedules the retry itself.
    pub max_pacing_wait: Option<Duration>,
    /// Pacing state shared with every other process (the distributed profile), or
    /// `None` for a pacer of this process's own.
    pub shared_pacing: Option<SharedPacing>,
}

impl BushaConfig {
    /// Busha's documented limits, a 30 s call timeout, a 10 s connect timeout, and at
    /// most 20 s waiting for the pacer: a caller holding a lease must never wait for
    /// ever (after the bound, the call fails as rate-limited with nothing sent).
    pub fn new(api_base: Url) -> Self {
        Self {
            api_base,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            limits: EndpointLimits::busha(),
            max_pacing_wait: Some(Duration::from_secs(20)),
            shared_pacing: None,
        }
    }
}

/// The Busha client. Cheap to clone; clones share the connection pool and the pacer.
#[derive(Clone)]
pub struct BushaClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_base: Url,
    pacer: Pacer,
    max_pacing_wait: Option<Duration>,
    timeout: Duration,
}

impl std::fmt::Debug for BushaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BushaClient")
            .field("api_base", &self.inner.api_base.as_str())
            .finish_non_exhaustive()
    }
}

/// An endpoint: its method and its route template, which is also its pacing key.
#[derive(Clone, Copy, Debug)]
struct Endpoint {
    verb: Verb,
    key: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Delete,
}

impl Endpoint {
    const fn get(key: &'static str) -> Self {
        Self {
            verb: Verb::Get,
            key,
        }
    }

    const fn post(key: &'static str) -> Self {
        Self {
            verb: Verb::Post,
            key,
        }
    }

    fn method(self) -> Method {
        match self.verb {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        }
    }

    /// Whether the call may change state at Busha.
    fn mutating(self) -> bool {
        self.verb != Verb::Get
    }
}

const LIST_BALANCES: Endpoint = Endpoint::get("GET /v1/balances");
const GET_BALANCE: Endpoint = Endpoint::get("GET /v1/balances/{id_or_code}");
const LIST_BANKS: Endpoint = Endpoint::get("GET /v1/banks");
const LIST_PAIRS: Endpoint = Endpoint::get("GET /v1/pairs");
const LIST_RECIPIENTS: Endpoint = Endpoint::get("GET /v1/recipients");
const GET_RECIPIENT: Endpoint = Endpoint::get("GET /v1/recipients/{id}");
const CREATE_RECIPIENT: Endpoint = Endpoint::post("POST /v1/recipients");
const DELETE_RECIPIENT: Endpoint = Endpoint {
    verb: Verb::Delete,
    key: "DELETE /v1/recipients/{id}",
};
const RESOLVE_BANK_ACCOUNT: Endpoint = Endpoint::post("POST /v1/recipients/resolve-bank-account");
const CREATE_QUOTE: Endpoint = Endpoint::post("POST /v1/quotes");
const LIST_QUOTES: Endpoint = Endpoint::get("GET /v1/quotes");
const GET_QUOTE: Endpoint = Endpoint::get("GET /v1/quotes/{id}");
const CREATE_TRANSFER: Endpoint = Endpoint::post("POST /v1/transfers");
const LIST_TRANSFERS: Endpoint = Endpoint::get("GET /v1/transfers");
const GET_TRANSFER: Endpoint = Endpoint::get("GET /v1/transfers/{id}");

/// Everything about one request except the endpoint.
struct Call<'a> {
    token: Option<&'a AccessToken>,
    /// Path segments after the base, e.g. `["v1", "quotes", id]`; percent-encoded here.
    path: Vec<&'a str>,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    recipients_version: bool,
    /// For money-moving calls: proven right before the request leaves.
    check: Option<&'a dyn SendCheck>,
}

impl<'a> Call<'a> {
    fn new(token: Option<&'a AccessToken>, path: &[&'a str]) -> Self {
        Self {
            token,
            path: path.to_vec(),
            query: Vec::new(),
            body: None,
            recipients_version: false,
            check: None,
        }
    }

    fn checked(mut self, check: &'a dyn SendCheck) -> Self {
        self.check = Some(check);
        self
    }

    fn query(mut self, name: &'static str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.query.push((name, value.to_string()));
        }
        self
    }

    fn recipients_version(mut self) -> Self {
        self.recipients_version = true;
        self
    }
}

/// Busha's success envelope: `{status, message, data}`; only `data` matters.
#[derive(serde::Deserialize)]
struct DataEnvelope<T> {
    data: T,
}

impl BushaClient {
    /// Builds the client. Fails only on a base URL that cannot take paths, or if the TLS
    /// backend cannot start.
    pub fn new(config: BushaConfig) -> Result<Self, ProviderError> {
        let http = super::http_client(
            "client setup",
            &config.api_base,
            config.timeout,
            config.connect_timeout,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                api_base: config.api_base,
                pacer: match config.shared_pacing {
                    Some(shared) => Pacer::shared(config.limits, shared),
                    None => Pacer::new(config.limits),
                },
                max_pacing_wait: config.max_pacing_wait,
                timeout: config.timeout,
            }),
        })
    }

    pub fn api_base(&self) -> &Url {
        &self.inner.api_base
    }

    /// The longest a call may take before it is answered or given up: the pacer's
    /// bound plus the request timeout. `None` when pacing is unbounded.
    pub fn longest_call(&self) -> Option<Duration> {
        self.inner.max_pacing_wait.map(|p| p + self.inner.timeout)
    }

    /// The whole-call timeout: the longest a request takes once it has been sent.
    pub fn call_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The pacer this client waits on before every call.
    pub fn pacer(&self) -> &Pacer {
        &self.inner.pacer
    }

    // --- Balances -------------------------------------------------------------------

    /// `GET /v1/balances` (`balances:read`).
    pub async fn list_balances(
        &self,
        token: &AccessToken,
    ) -> Result<Called<Page<Balance>>, ProviderError> {
        self.list(LIST_BALANCES, Call::new(Some(token), &["v1", "balances"]))
            .await
    }

    /// `GET /v1/balances/{id_or_code}`: by balance id or currency code (`balances:read`).
    pub async fn get_balance(
        &self,
        token: &AccessToken,
        id_or_code: &str,
    ) -> Result<Called<Balance>, ProviderError> {
        self.data(
            GET_BALANCE,
            Call::new(Some(token), &["v1", "balances", id_or_code]),
        )
        .await
    }

    // --- Reference data -------------------------------------------------------------

    /// `GET /v1/banks` (public). Busha's own bank codes for recipients.
    pub async fn list_banks(
        &self,
        currency: &crate::money::Currency,
        country: &str,
    ) -> Result<Called<Vec<Bank>>, ProviderError> {
        let call = Call::new(None, &["v1", "banks"])
            .query("currency", Some(currency))
            .query("country", Some(country));
        self.data::<Option<Vec<Bank>>>(LIST_BANKS, call)
            .await
            .map(|c| c.map(Option::unwrap_or_default))
    }

    /// `GET /v1/pairs` (token optional): indicative prices, nothing reserved.
    pub async fn list_pairs(
        &self,
        token: Option<&AccessToken>,
        base: Option<&crate::money::Currency>,
        counter: Option<&crate::money::Currency>,
    ) -> Result<Called<Vec<Pair>>, ProviderError> {
        let call = Call::new(token, &["v1", "pairs"])
            .query("base", base)
            .query("counter", counter);
        self.data::<Option<Vec<Pair>>>(LIST_PAIRS, call)
            .await
            .map(|c| c.map(Option::unwrap_or_default))
    }

    // --- Recipients -----------------------------------------------------------------

    /// `GET /v1/recipients` (`recipients:read`). Either shape may come back.
    pub async fn list_recipients(
        &self,
        token: &AccessToken,
        filter: &RecipientFilter,
    ) -> Result<Called<Page<Recipient>>, ProviderError> {
        let call = Call::new(Some(token), &["v1", "recipients"])
            .recipients_version()
            .query("currency", filter.currency.as_ref())
            .query(
                "account_number",
                filter.account_number.as_ref().map(AccountNumber::as_str),
            )
            .query("type", filter.kind.as_ref())
            .query("cursor", filter.cursor.as_ref())
            .query("limit", filter.limit);
        self.list(LIST_RECIPIENTS, call).await
    }

    /// `GET /v1/recipients/{id}` (`recipients:read`).
    pub async fn get_recipient(
        &self,
        token: &AccessToken,
        id: &str,
    ) -> Result<Called<Recipient>, ProviderError> {
        let call = Call::new(Some(token), &["v1", "recipients", id]).recipients_version();
        self.data(GET_RECIPIENT, call).await
    }

    /// `POST /v1/recipients` (`recipients:write`), flat 2025-07-11 shape. Busha does not
    /// deduplicate recipients: search by account number first, and after an unknown
    /// outcome search again before creating another.
    pub async fn create_recipient(
        &self,
        token: &AccessToken,
        recipient: &NewRecipient,
        check: &dyn SendCheck,
    ) -> Result<Called<Recipient>, ProviderError> {
        let mut call = Call::new(Some(token), &["v1", "recipients"])
            .recipients_version()
            .checked(check);
        call.body = Some(json_body(CREATE_RECIPIENT, recipient)?);
        self.data(CREATE_RECIPIENT, call).await
    }

    /// `DELETE /v1/recipients/{id}` (204).
    pub async fn delete_recipient(
        &self,
        token: &AccessToken,
        id: &str,
    ) -> Result<Called<()>, ProviderError> {
        let call = Call::new(Some(token), &["v1", "recipients", id]).recipients_version();
        let response = self.send(DELETE_RECIPIENT, call).await?;
        Ok(Called {
            value: (),
            request_id: response.request_id,
        })
    }

    /// `POST /v1/recipients/resolve-bank-account` (`recipients:write`, 201): name enquiry.
    pub async fn resolve_bank_account(
        &self,
        token: &AccessToken,
        request: &ResolveBankAccount,
    ) -> Result<Called<ResolvedBankAccount>, ProviderError> {
        let mut call = Call::new(Some(token), &["v1", "recipients", "resolve-bank-account"]);
        call.body = Some(json_body(RESOLVE_BANK_ACCOUNT, request)?);
        self.data(RESOLVE_BANK_ACCOUNT, call).await
    }

    // --- Quotes ---------------------------------------------------------------------

    /// `POST /v1/quotes` (`quotes:write`, 201): locks a rate. Treat it as money movement.
    /// Refused locally, with nothing sent, if the amount is not positive or too precise
    /// for its currency, or the reference is not 12–64 characters.
    pub async fn create_quote(
        &self,
        token: &AccessToken,
        quote: &NewQuote,
        check: &dyn SendCheck,
    ) -> Result<Called<Quote>, ProviderError> {
        quote
            .check()
            .map_err(|reason| ProviderError::invalid_request(CREATE_QUOTE.key, reason))?;
        let mut call = Call::new(Some(token), &["v1", "quotes"]).checked(check);
        call.body = Some(json_body(CREATE_QUOTE, &quote.wire())?);
        self.data(CREATE_QUOTE, call).await
    }

    /// `GET /v1/quotes` (`quotes:read`).
    pub async fn list_quotes(
        &self,
        token: &AccessToken,
        page: &PageRequest,
    ) -> Result<Called<Page<Quote>>, ProviderError> {
        let call = Call::new(Some(token), &["v1", "quotes"])
            .query("cursor", page.cursor.as_ref())
            .query("limit", page.limit)
            .query("sort", page.sort.map(SortOrder::as_str));
        self.list(LIST_QUOTES, call).await
    }

    /// `GET /v1/quotes/{id}` (`quotes:read`).
    pub async fn get_quote(
        &self,
        token: &AccessToken,
        id: &str,
    ) -> Result<Called<Quote>, ProviderError> {
        self.data(GET_QUOTE, Call::new(Some(token), &["v1", "quotes", id]))
            .await
    }

    // --- Transfers ------------------------------------------------------------------

    /// `POST /v1/transfers {quote_id}` (`transfers:write`, 201): moves the money. Busha
    /// has no idempotency key: after an unknown outcome, look with
    /// [`Self::list_transfers`] by `quote_id` before ever sending this again.
    pub async fn create_transfer(
        &self,
        token: &AccessToken,
        quote_id: &str,
        check: &dyn SendCheck,
    ) -> Result<Called<Transfer>, ProviderError> {
        let mut call = Call::new(Some(token), &["v1", "transfers"]).checked(check);
        call.body = Some(json_body(
            CREATE_TRANSFER,
            &types::WireTransfer { quote_id },
        )?);
        self.data(CREATE_TRANSFER, call).await
    }

    /// `GET /v1/transfers` (`transfers:read`).
    pub async fn list_transfers(
        &self,
        token: &AccessToken,
        filter: &TransferFilter,
    ) -> Result<Called<Page<Transfer>>, ProviderError> {
        let status = (!filter.status.is_empty()).then(|| {
            filter
                .status
                .iter()
                .map(TransferStatus::as_str)
                .collect::<Vec<_>>()
                .join(",")
        });
        let call = Call::new(Some(token), &["v1", "transfers"])
            .query("quote_id", filter.quote_id.as_ref())
            .query("status", status)
            .query("cursor", filter.cursor.as_ref())
            .query("limit", filter.limit);
        self.list(LIST_TRANSFERS, call).await
    }

    /// `GET /v1/transfers/{id}` (`transfers:read`).
    pub async fn get_transfer(
        &self,
        token: &AccessToken,
        id: &str,
    ) -> Result<Called<Transfer>, ProviderError> {
        self.data(
            GET_TRANSFER,
            Call::new(Some(token), &["v1", "transfers", id]),
        )
        .await
    }

    // --- Plumbing -------------------------------------------------------------------

    /// A call whose body is `{data: T}`.
    async fn data<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        call: Call<'_>,
    ) -> Result<Called<T>, ProviderError> {
        let response = self.send(endpoint, call).await?;
        let envelope: DataEnvelope<T> = response.decode(endpoint)?;
        Ok(Called {
            value: envelope.data,
            request_id: response.request_id,
        })
    }

    /// A call whose body is a paginated list; items that cannot be read are skipped
    /// (see [`Page::skipped`]).
    async fn list<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        call: Call<'_>,
    ) -> Result<Called<Page<T>>, ProviderError> {
        let response = self.send(endpoint, call).await?;
        // The envelope must be readable; its items are read one by one.
        let envelope: page::ListEnvelope = response.decode(endpoint)?;
        Ok(Called {
            value: envelope.into_page(endpoint.key),
            request_id: response.request_id,
        })
    }

    /// Paces, sends, and turns anything but a readable 2xx into a [`ProviderError`].
    async fn send(&self, endpoint: Endpoint, call: Call<'_>) -> Result<Success, ProviderError> {
        let mutating = endpoint.mutating();
        let url = self.url(endpoint, &call)?;
        let mut request = self
            .inner
            .http
            .request(endpoint.method(), url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = call.token {
            // reqwest marks this header sensitive, so it never shows in its Debug output.
            request = request.bearer_auth(token.secret());
        }
        if call.recipients_version {
            request = request.header("X-BU-Version", RECIPIENTS_VERSION);
        }
        if let Some(body) = call.body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body);
        }

        self.pace(endpoint, call.check).await?;
        // The last check before the request leaves: after any pacing wait, the lease
        // must still cover the whole call. Only a pause between here and the socket
        // write escapes it (see the README's invariants).
        if let Some(check) = call.check {
            self.withhold_unless_covered(endpoint, check)?;
        }
        let started = Instant::now();
        let result = request.send().await;

        let response = match result {
            Ok(response) => response,
            Err(e) => {
                let kind = transport_kind(&e, mutating);
                tracing::debug!(
                    endpoint = endpoint.key,
                    latency_ms = started.elapsed().as_millis() as u64,
                    timeout = e.is_timeout(),
                    connect = e.is_connect(),
                    %kind,
                    "busha call failed before a response"
                );
                return Err(ProviderError::new(endpoint.key, kind).with_source(e.without_url()));
            }
        };

        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let headers = response.headers().clone();
        let body = response.bytes().await.map(Vec::from);
        tracing::debug!(
            endpoint = endpoint.key,
            status = status.as_u16(),
            request_id = request_id.as_deref().unwrap_or("-"),
            latency_ms = started.elapsed().as_millis() as u64,
            "busha call"
        );
        metrics::histogram!("treasury_provider_request_seconds", "endpoint" => endpoint.key)
            .record(started.elapsed().as_secs_f64());
        if status.as_u16() == 429 {
            metrics::counter!("treasury_provider_429_total", "endpoint" => endpoint.key)
                .increment(1);
        }

        if !status.is_success() {
            // An unreadable error body still has a status, which is what classifies it.
            let body = body.unwrap_or_default();
            return Err(ProviderError::from_response(
                endpoint.key,
                mutating,
                status,
                &headers,
                request_id,
                &body,
            ));
        }
        match body {
            Ok(body) => Ok(Success {
                status,
                request_id,
                body,
            }),
            // The status said yes, then the connection broke: a mutation happened but we
            // did not see what it made.
            Err(e) => {
                let kind = if mutating {
                    ErrorKind::OutcomeUnknown
                } else {
                    ErrorKind::Transient
                };
                Err(ProviderError::new(endpoint.key, kind)
                    .with_status(status)
                    .with_request_id(request_id)
                    .with_message("response body could not be read")
                    .with_source(e.without_url()))
            }
        }
    }

    /// Fails as [`ErrorKind::Withheld`] unless `check` covers the whole call timeout.
    fn withhold_unless_covered(
        &self,
        endpoint: Endpoint,
        check: &dyn SendCheck,
    ) -> Result<Duration, ProviderError> {
        let covered = check.covered_for();
        if covered >= self.inner.timeout {
            return Ok(covered - self.inner.timeout);
        }
        tracing::warn!(
            endpoint = endpoint.key,
            covered_ms = covered.as_millis() as u64,
            timeout_ms = self.inner.timeout.as_millis() as u64,
            "busha call withheld: the lease cannot cover it"
        );
        Err(
            ProviderError::new(endpoint.key, ErrorKind::Withheld).with_message(format!(
                "the lease covers {} ms, the call may take {} ms; nothing was sent",
                covered.as_millis(),
                self.inner.timeout.as_millis()
            )),
        )
    }

    /// Waits for the endpoint's pacer, within `max_pacing_wait` if one is set, and
    /// never longer than `check` leaves for the call after the wait.
    async fn pace(
        &self,
        endpoint: Endpoint,
        check: Option<&dyn SendCheck>,
    ) -> Result<(), ProviderError> {
        let pacer = &self.inner.pacer;
        // A day or more of cover is no bound at all (an unleased caller).
        let spare = check
            .map(|c| self.withhold_unless_covered(endpoint, c))
            .transpose()?
            .filter(|spare| *spare < Duration::from_secs(86_400));
        let max_wait = match (self.inner.max_pacing_wait, spare) {
            (Some(bound), Some(spare)) => Some(bound.min(spare)),
            (bound, spare) => bound.or(spare),
        };
        let Some(max_wait) = max_wait else {
            pacer.acquire(endpoint.key).await;
            return Ok(());
        };
        if pacer.acquire_within(endpoint.key, max_wait).await {
            return Ok(());
        }
        tracing::debug!(endpoint = endpoint.key, "busha call held back by the pacer");
        Err(ProviderError::new(
            endpoint.key,
            // We do not know when a cell frees under contention; the caller backs off.
            ErrorKind::RateLimited { retry_after: None },
        )
        .with_message(format!(
            "paced locally: no slot within {} ms; nothing was sent",
            max_wait.as_millis()
        )))
    }

    fn url(&self, endpoint: Endpoint, call: &Call<'_>) -> Result<Url, ProviderError> {
        let mut url = self.inner.api_base.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|()| {
                ProviderError::invalid_request(endpoint.key, "base URL cannot take a path")
            })?;
            segments.pop_if_empty().extend(&call.path);
        }
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        Ok(url)
    }
}

/// A 2xx response, read in full.
struct Success {
    status: StatusCode,
    request_id: Option<String>,
    body: Vec<u8>,
}

impl Success {
    fn decode<T: DeserializeOwned>(&self, endpoint: Endpoint) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ProviderError::new(
                endpoint.key,
                ErrorKind::Decode {
                    mutating: endpoint.mutating(),
                },
            )
            .with_status(self.status)
            .with_request_id(self.request_id.clone())
            .with_source(e)
        })
    }
}

/// How a failure without a response is classified.
fn transport_kind(e: &reqwest::Error, mutating: bool) -> ErrorKind {
    if e.is_builder() {
        ErrorKind::InvalidRequest
    } else if e.is_connect() || !mutating {
        // A connect error means no byte of the request left: safe even for a POST.
        ErrorKind::Transient
    } else {
        // Timed out, reset or closed after the request may have arrived.
        ErrorKind::OutcomeUnknown
    }
}

fn json_body(endpoint: Endpoint, value: &impl Serialize) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(value).map_err(|e| {
        ProviderError::invalid_request(endpoint.key, "request could not be serialised")
            .with_source(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::provider::Unleased;
    use std::str::FromStr;

    fn client(base: &str) -> BushaClient {
        let mut config = BushaConfig::new(Url::parse(base).unwrap());
        config.connect_timeout = Duration::from_millis(500);
        config.timeout = Duration::from_secs(2);
        BushaClient::new(config).unwrap()
    }

    #[test]
    fn config_defaults_are_busha_limits_and_bounded_timeouts() {
        let config = BushaConfig::new(Url::parse("https://api.busha.io").unwrap());
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert_eq!(config.connect_timeout, Duration::from_secs(10));
        assert_eq!(config.limits, EndpointLimits::busha());
        assert_eq!(config.max_pacing_wait, Some(Duration::from_secs(20)));
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_ids() {
        let c = client("http://127.0.0.1:9/busha/");
        let mut call = Call::new(None, &["v1", "transfers", "TRF_a/../b?x"]);
        call = call.query("quote_id", Some("QUO_1 2"));
        let url = c.url(GET_TRANSFER, &call).unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/busha/v1/transfers/TRF_a%2F..%2Fb%3Fx?quote_id=QUO_1+2"
        );
        let url = client("http://127.0.0.1:9")
            .url(LIST_BANKS, &Call::new(None, &["v1", "banks"]))
            .unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/v1/banks");
    }

    #[tokio::test]
    async fn a_call_held_back_too_long_by_the_pacer_is_rate_limited_and_not_sent() {
        let mut config = BushaConfig::new(Url::parse("http://127.0.0.1:9").unwrap());
        config.limits = EndpointLimits::uniform(1);
        config.max_pacing_wait = Some(Duration::from_millis(20));
        let c = BushaClient::new(config).unwrap();
        let token = AccessToken::new("t");
        // The first call takes the minute's only cell (and fails to connect).
        let first = c.get_transfer(&token, "TRF_1").await.unwrap_err();
        assert_eq!(first.kind(), &ErrorKind::Transient);
        let second = c.get_transfer(&token, "TRF_1").await.unwrap_err();
        assert_eq!(
            second.kind(),
            &ErrorKind::RateLimited { retry_after: None },
            "{second}"
        );
        assert_eq!(second.status(), None);
        assert!(second.to_string().contains("nothing was sent"), "{second}");
    }

    #[test]
    fn a_base_url_that_cannot_take_paths_is_refused() {
        let err = BushaClient::new(BushaConfig::new(
            Url::parse("mailto:ops@example.com").unwrap(),
        ))
        .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidRequest);
    }

    #[tokio::test]
    async fn an_over_precise_quote_is_refused_without_sending_anything() {
        // Nothing listens on port 9 (discard): had the client sent, it would have come
        // back Transient (connect refused), not InvalidRequest.
        let c = client("http://127.0.0.1:9");
        let token = AccessToken::new("tok-never-shown");
        let quote = NewQuote {
            source_currency: Currency::new("NGN").unwrap(),
            target_currency: Currency::new("USDT").unwrap(),
            amount: QuoteAmount::Source(rust_decimal::Decimal::from_str("1000.001").unwrap()),
            reference: None,
            pay_out: None,
        };
        let err = c.create_quote(&token, &quote, &Unleased).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidRequest, "{err}");
        assert_eq!(err.endpoint(), "POST /v1/quotes");
        assert!(err.to_string().contains("decimal places"), "{err}");

        let short_ref = NewQuote {
            amount: QuoteAmount::Source(rust_decimal::Decimal::from(1000)),
            reference: Some("too-short".into()),
            ..quote
        };
        let err = c
            .create_quote(&token, &short_ref, &Unleased)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::InvalidRequest);

        // The same quote, valid, does go out, and fails to connect: Transient, since a
        // refused connection proves nothing was sent, even for a POST.
        let ok = NewQuote {
            reference: None,
            ..short_ref
        };
        let err = c.create_quote(&token, &ok, &Unleased).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Transient, "{err}");
        assert!(!err.outcome_unknown());
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("tok-never-shown"), "{shown}");
        // The cause is in the text, the URL is not.
        assert!(shown.to_lowercase().contains("refused"), "{shown}");
        assert!(!err.to_string().contains("127.0.0.1"), "{err}");
    }
}
