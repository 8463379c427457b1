//! The Busha client against the in-process sandbox: every method's happy path, and
//! every error class a caller branches on, produced the way Busha would produce it.

use std::str::FromStr;
use std::time::Duration;
use treasury::provider::Unleased;

use rust_decimal::Decimal;
use treasury::money::Currency;
use treasury::provider::AccessToken;
use treasury::provider::busha::{
    AccountNumber, BushaClient, BushaConfig, Called, Channel, ErrorKind, NewQuote, NewRecipient,
    PageRequest, PayOut, ProviderError, Quote, QuoteAmount, QuoteStatus, RecipientFilter,
    RecipientShape, RecipientType, ResolveBankAccount, Settlement, SortOrder, TransferFilter,
    TransferStatus,
};
use treasury::provider::pacing::EndpointLimits;
use treasury::sandbox::{
    Fault, FaultKind, LedgerEvent, NewUser, OAuthClientConfig, RateLimits, Rewrite, Sandbox,
    SandboxConfig, SandboxUser,
};

const CLIENT_ID: &str = "busha-oauth2-5c1d9e58-client-tests-test";
const BANK: &str = "000013";
const ACCOUNT: &str = "0123456789";
const NAME: &str = "ADA LOVELACE";

/// Every scope the client's endpoints need.
const ALL_SCOPES: &[&str] = &[
    "balances:read",
    "quotes:read",
    "quotes:write",
    "transfers:read",
    "transfers:write",
    "recipients:read",
    "recipients:write",
];

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// Busha's limits in the sandbox, with `endpoint` lowered to `per_minute`.
fn sandbox_limit(endpoint: &str, per_minute: u32) -> RateLimits {
    let mut limits = RateLimits::busha();
    limits.overrides.insert(endpoint.to_string(), per_minute);
    limits
}

fn usdt() -> Currency {
    Currency::new("USDT").unwrap()
}

fn ngn() -> Currency {
    Currency::new("NGN").unwrap()
}

/// A sandbox with one OAuth client and one user ("ada": 1,000 USDT, 500,000 NGN), and a
/// client pointed at it.
struct Harness {
    sb: Sandbox,
    client: BushaClient,
    user: SandboxUser,
    token: AccessToken,
}

impl Harness {
    /// Busha's own limits in the sandbox; the client's pacer 100 times looser, because a
    /// test that waited 3 s per quote would be slow and these tests are not about pacing.
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut BushaConfig)) -> Self {
        let sb = Sandbox::start(SandboxConfig::default()).await.unwrap();
        sb.register_client(OAuthClientConfig::new(
            CLIENT_ID,
            "client-secret-never-logged",
            "http://localhost:8080/oauth/callback",
        ));
        let user = sb.create_user(
            NewUser::new("ada")
                .balance("USDT", d("1000"))
                .balance("NGN", d("500000")),
        );
        sb.add_bank_account(BANK, ACCOUNT, NAME);
        let token = Self::mint(&sb, &user, ALL_SCOPES);
        let mut config = BushaConfig::new(sb.url());
        config.limits = EndpointLimits::busha().scaled(100);
        configure(&mut config);
        let client = BushaClient::new(config).unwrap();
        Self {
            sb,
            client,
            user,
            token,
        }
    }

    fn mint(sb: &Sandbox, user: &SandboxUser, scopes: &[&str]) -> AccessToken {
        AccessToken::new(sb.mint_tokens(CLIENT_ID, &user.id, scopes).access_token)
    }

    async fn recipient(&self) -> String {
        let new = NewRecipient::ngn_bank(
            BANK,
            "Guaranty Trust Bank",
            AccountNumber::new(ACCOUNT),
            NAME,
        );
        let created = self
            .client
            .create_recipient(&self.token, &new, &Unleased)
            .await
            .unwrap();
        created.value.id
    }

    /// A USDT → NGN bank payout quote for `usdt` USDT.
    fn payout(&self, recipient_id: &str, usdt_amount: &str, reference: &str) -> NewQuote {
        NewQuote {
            source_currency: usdt(),
            target_currency: ngn(),
            amount: QuoteAmount::Source(d(usdt_amount)),
            reference: Some(reference.to_string()),
            pay_out: Some(PayOut::BankTransfer {
                recipient_id: recipient_id.to_string(),
            }),
        }
    }

    async fn quote(&self, usdt_amount: &str, reference: &str) -> Quote {
        let recipient = self.recipient().await;
        let new = self.payout(&recipient, usdt_amount, reference);
        self.client
            .create_quote(&self.token, &new, &Unleased)
            .await
            .unwrap()
            .value
    }

    /// The request id the sandbox gave the last request it saw on `endpoint`.
    fn last_request_id(&self, endpoint: &str) -> String {
        self.sb
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.endpoint == endpoint)
            .map(|r| r.request_id)
            .unwrap_or_else(|| panic!("no request on {endpoint}"))
    }

    fn transfers_created_for(&self, quote_id: &str) -> usize {
        self.sb
            .ledger()
            .iter()
            .filter(|e| {
                matches!(&e.event, LedgerEvent::TransferCreated { quote_id: q, .. } if q == quote_id)
            })
            .count()
    }
}

/// Asserts that a call succeeded with the request id the sandbox sent for it.
fn ok<T>(h: &Harness, endpoint: &str, called: Result<Called<T>, ProviderError>) -> T {
    let called = called.unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    assert_eq!(
        called.request_id.as_deref(),
        Some(h.last_request_id(endpoint).as_str()),
        "{endpoint}: X-Request-Id"
    );
    called.value
}

/// Asserts that a call failed, with the request id the sandbox sent for it.
fn failed<T: std::fmt::Debug>(
    h: &Harness,
    endpoint: &str,
    called: Result<Called<T>, ProviderError>,
) -> ProviderError {
    let err = called.expect_err("the call should have failed");
    assert_eq!(err.endpoint(), endpoint);
    assert_eq!(
        err.request_id(),
        Some(h.last_request_id(endpoint).as_str()),
        "{endpoint}: X-Request-Id on an error"
    );
    err
}

// ------------------------------------------------------------------------ happy paths

#[tokio::test]
async fn balances_banks_and_pairs_are_read_and_typed() {
    let h = Harness::start().await;

    let page = ok(
        &h,
        "GET /v1/balances",
        h.client.list_balances(&h.token).await,
    );
    let usdt_balance = page
        .items
        .iter()
        .find(|b| b.currency == usdt())
        .expect("a USDT balance");
    assert_eq!(usdt_balance.available.amount, d("1000"));
    assert_eq!(page.next_cursor, None);

    let by_code = ok(
        &h,
        "GET /v1/balances/{id_or_code}",
        h.client.get_balance(&h.token, "NGN").await,
    );
    assert_eq!(by_code.available.amount, d("500000"));
    let by_id = ok(
        &h,
        "GET /v1/balances/{id_or_code}",
        h.client.get_balance(&h.token, &usdt_balance.id).await,
    );
    assert_eq!(by_id.currency, usdt());

    let banks = ok(&h, "GET /v1/banks", h.client.list_banks(&ngn(), "NG").await);
    assert!(banks.iter().any(|b| b.code == BANK), "{banks:?}");
    assert!(banks.iter().all(|b| b.currency == ngn()));

    let pairs = ok(
        &h,
        "GET /v1/pairs",
        h.client.list_pairs(None, Some(&usdt()), Some(&ngn())).await,
    );
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert_eq!(pairs[0].id, "USDTNGN");
    assert!(pairs[0].sell_price.amount > Decimal::ZERO);
    let with_token = ok(
        &h,
        "GET /v1/pairs",
        h.client.list_pairs(Some(&h.token), None, None).await,
    );
    assert!(with_token.len() > 1);
}

#[tokio::test]
async fn a_recipient_is_resolved_created_found_read_and_deleted() {
    let h = Harness::start().await;

    let resolved = ok(
        &h,
        "POST /v1/recipients/resolve-bank-account",
        h.client
            .resolve_bank_account(
                &h.token,
                &ResolveBankAccount {
                    currency: ngn(),
                    country: "NG".into(),
                    channel: Channel::BankTransfer,
                    bank_code: Some(BANK.into()),
                    account_number: AccountNumber::new(ACCOUNT),
                },
            )
            .await,
    );
    assert_eq!(resolved.account_name, NAME);
    assert_eq!(resolved.account_number.as_str(), ACCOUNT);

    let new = NewRecipient::ngn_bank(
        BANK,
        resolved.bank_name.clone().unwrap_or_default(),
        resolved.account_number.clone(),
        &resolved.account_name,
    );
    let created = ok(
        &h,
        "POST /v1/recipients",
        h.client.create_recipient(&h.token, &new, &Unleased).await,
    );
    assert_eq!(created.shape, RecipientShape::Flat);
    assert_eq!(created.kind, RecipientType::NgnBank);
    assert_eq!(created.account_name.as_deref(), Some(NAME));
    assert!(created.active);

    let found = ok(
        &h,
        "GET /v1/recipients",
        h.client
            .list_recipients(
                &h.token,
                &RecipientFilter {
                    account_number: Some(AccountNumber::new(ACCOUNT)),
                    kind: Some(RecipientType::NgnBank),
                    currency: Some(ngn()),
                    ..RecipientFilter::default()
                },
            )
            .await,
    );
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].id, created.id);
    let none = h
        .client
        .list_recipients(
            &h.token,
            &RecipientFilter {
                account_number: Some(AccountNumber::new("9999999999")),
                ..RecipientFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(none.value.items.is_empty());

    let read = ok(
        &h,
        "GET /v1/recipients/{id}",
        h.client.get_recipient(&h.token, &created.id).await,
    );
    assert_eq!(read, created);

    ok(
        &h,
        "DELETE /v1/recipients/{id}",
        h.client.delete_recipient(&h.token, &created.id).await,
    );
    let gone = failed(
        &h,
        "GET /v1/recipients/{id}",
        h.client.get_recipient(&h.token, &created.id).await,
    );
    assert_eq!(gone.kind(), &ErrorKind::NotFound);
}

#[tokio::test]
async fn a_list_mixing_legacy_and_flat_recipients_is_normalised() {
    let h = Harness::start().await;
    let flat = h.recipient().await;
    // The client only writes the flat shape; write a legacy one by hand.
    let legacy = reqwest::Client::new()
        .post(h.sb.url().join("v1/recipients").unwrap())
        .bearer_auth(h.token.secret())
        .header("X-BU-Version", "2025-06-01")
        .json(&serde_json::json!({
            "currency_id": "NGN", "country_id": "NG", "type": "ngn_bank_transfer",
            "legal_entity_type": "business",
            "fields": [
                { "name": "bank_name", "value": "Access Bank" },
                { "name": "bank_code", "value": "000014" },
                { "name": "account_number", "value": "0013246052" },
                { "name": "account_name", "value": "JOHN DOE" }
            ]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), 201);

    let page = ok(
        &h,
        "GET /v1/recipients",
        h.client
            .list_recipients(&h.token, &RecipientFilter::default())
            .await,
    );
    assert_eq!(page.items.len(), 2);
    let old = page
        .items
        .iter()
        .find(|r| r.shape == RecipientShape::Legacy)
        .expect("the legacy recipient");
    assert_eq!(old.kind, RecipientType::NgnBank);
    assert_eq!(old.account_number.as_ref().unwrap().as_str(), "0013246052");
    assert_eq!(old.bank_code.as_deref(), Some("000014"));
    assert_eq!(old.account_name.as_deref(), Some("JOHN DOE"));
    assert_eq!(old.currency, Some(ngn()));
    let new = page.items.iter().find(|r| r.id == flat).unwrap();
    assert_eq!(new.shape, RecipientShape::Flat);
}

#[tokio::test]
async fn a_recipient_we_cannot_read_is_skipped_named_and_counted_and_the_page_is_read() {
    // Arrange: two saved recipients; Busha lists the first with a currency we have no
    // type for (the spec allows any string).
    let metrics = treasury::metrics::install();
    let h = Harness::start().await;
    let mine = h.recipient().await;
    let other = reqwest::Client::new()
        .post(h.sb.url().join("v1/recipients").unwrap())
        .bearer_auth(h.token.secret())
        .header("X-BU-Version", "2025-07-11")
        .json(&serde_json::json!({
            "type": "ngn_bank", "currency": "NGN", "country_code": "NG",
            "bank_code": "000014", "bank_name": "Access Bank",
            "account_number": "0013246052", "account_name": "JOHN DOE",
            "entity_type": "personal"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201);
    h.sb.add_fault(Fault::new(
        "GET /v1/recipients",
        FaultKind::Rewrite(Rewrite::new(
            "/data/0/currency",
            serde_json::json!("USDT-TRC20"),
        )),
    ));

    // Act
    let page = ok(
        &h,
        "GET /v1/recipients",
        h.client
            .list_recipients(&h.token, &RecipientFilter::default())
            .await,
    );

    // Assert: one read, one skipped with what identifies it, and the metric counts it.
    assert_eq!(page.items.len(), 1, "{page:?}");
    assert_eq!(page.skipped.len(), 1, "{page:?}");
    let skipped = &page.skipped[0];
    assert_eq!(skipped.currency.as_deref(), Some("USDT-TRC20"));
    let ids = [skipped.id.clone().unwrap(), page.items[0].id.clone()];
    assert!(ids.contains(&mine), "{ids:?}");
    assert!(skipped.account_number.is_some() && !skipped.error.is_empty());
    assert!(!format!("{skipped:?} {skipped}").contains("0013246052"));
    let rendered = metrics.render();
    assert!(
        rendered
            .contains(r#"treasury_provider_items_skipped_total{endpoint="GET /v1/recipients"}"#),
        "{rendered}"
    );
}

#[tokio::test]
async fn a_provider_error_names_its_endpoint_status_and_request_id_or_that_there_was_no_response() {
    let h = Harness::start().await;
    h.sb.add_fault(Fault::new("GET /v1/recipients", FaultKind::ServerError(503)).times(1));
    let answered = failed(
        &h,
        "GET /v1/recipients",
        h.client
            .list_recipients(&h.token, &RecipientFilter::default())
            .await,
    );
    let text = answered.to_string();
    let id = h.last_request_id("GET /v1/recipients");
    assert!(
        text.starts_with("GET /v1/recipients: transient failure")
            && text.contains(&format!("(HTTP 503, request id {id})")),
        "{text}"
    );

    // Nothing listens on port 9: no response at all, and the text says so.
    let down = BushaClient::new(BushaConfig::new(
        url::Url::parse("http://127.0.0.1:9").unwrap(),
    ))
    .unwrap();
    let unanswered = down
        .list_recipients(&h.token, &RecipientFilter::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unanswered.contains("GET /v1/recipients") && unanswered.contains("(no HTTP response)"),
        "{unanswered}"
    );
}

#[tokio::test]
async fn a_quote_is_locked_read_listed_and_turned_into_a_delivered_transfer() {
    let h = Harness::start().await;
    let recipient = h.recipient().await;
    let reference = "payroll-2026-03-w1-ada";

    let quote = ok(
        &h,
        "POST /v1/quotes",
        h.client
            .create_quote(&h.token, &h.payout(&recipient, "100", reference), &Unleased)
            .await,
    );
    assert_eq!(quote.reference, reference);
    assert_eq!(quote.status, QuoteStatus::Pending);
    assert_eq!(quote.source_amount, d("100"));
    assert!(quote.rate.rate > Decimal::ZERO);
    assert!(quote.two_step.is_none());
    assert!(quote.has_external_payout());
    let fee: Decimal = quote.fees.iter().map(|f| f.amount.amount).sum();
    assert_eq!(
        quote.target_amount,
        quote.source_amount * quote.rate.rate - fee,
        "target = source × rate − fees"
    );
    let expires_at = quote.expires_at.expect("an expiry");
    assert_eq!(expires_at - quote.created_at, chrono::Duration::minutes(30));

    let read = ok(
        &h,
        "GET /v1/quotes/{id}",
        h.client.get_quote(&h.token, &quote.id).await,
    );
    assert_eq!(read.id, quote.id);
    assert_eq!(read.rate, quote.rate);

    let listed = ok(
        &h,
        "GET /v1/quotes",
        h.client
            .list_quotes(&h.token, &PageRequest::default())
            .await,
    );
    assert!(listed.items.iter().any(|q| q.reference == reference));

    let transfer = ok(
        &h,
        "POST /v1/transfers",
        h.client
            .create_transfer(&h.token, &quote.id, &Unleased)
            .await,
    );
    assert_eq!(transfer.quote_id, quote.id);
    assert_eq!(transfer.target_amount, quote.target_amount);
    assert_eq!(transfer.settlement(), Settlement::InFlight);

    let by_quote = ok(
        &h,
        "GET /v1/transfers",
        h.client
            .list_transfers(
                &h.token,
                &TransferFilter {
                    quote_id: Some(quote.id.clone()),
                    ..TransferFilter::default()
                },
            )
            .await,
    );
    assert_eq!(by_quote.items.len(), 1);
    assert_eq!(by_quote.items[0].id, transfer.id);

    // Time passes at Busha: the transfer walks to its final status.
    h.sb.clock().advance(chrono::Duration::minutes(5));
    let done = ok(
        &h,
        "GET /v1/transfers/{id}",
        h.client.get_transfer(&h.token, &transfer.id).await,
    );
    assert_eq!(done.status, TransferStatus::FundsDelivered);
    assert_eq!(done.settlement(), Settlement::Succeeded);
    let accepted = h.client.get_quote(&h.token, &quote.id).await.unwrap().value;
    assert_eq!(accepted.status, QuoteStatus::Accepted);

    let delivered = h
        .client
        .list_transfers(
            &h.token,
            &TransferFilter {
                status: vec![TransferStatus::FundsDelivered, TransferStatus::Cancelled],
                ..TransferFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(delivered.value.items.len(), 1);
}

#[tokio::test]
async fn lists_page_with_cursors_until_there_is_no_next_cursor() {
    let h = Harness::start().await;
    let recipient = h.recipient().await;
    for i in 0..3 {
        let reference = format!("paging-test-quote-{i}");
        h.client
            .create_quote(&h.token, &h.payout(&recipient, "10", &reference), &Unleased)
            .await
            .unwrap();
    }
    let first = h
        .client
        .list_quotes(
            &h.token,
            &PageRequest {
                limit: Some(2),
                sort: Some(SortOrder::Asc),
                cursor: None,
            },
        )
        .await
        .unwrap()
        .value;
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.items[0].reference, "paging-test-quote-0");
    let cursor = first.next_cursor.expect("a second page");
    let second = h
        .client
        .list_quotes(
            &h.token,
            &PageRequest {
                limit: Some(2),
                sort: Some(SortOrder::Asc),
                cursor: Some(cursor),
            },
        )
        .await
        .unwrap()
        .value;
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].reference, "paging-test-quote-2");
    assert_eq!(second.next_cursor, None);
}

// ------------------------------------------------------------------------ error classes

#[tokio::test]
async fn a_garbage_token_is_unauthorized_and_never_printed() {
    let h = Harness::start().await;
    let garbage = AccessToken::new("garbage-token-4f2a");
    let err = failed(
        &h,
        "GET /v1/balances",
        h.client.list_balances(&garbage).await,
    );
    assert_eq!(err.kind(), &ErrorKind::Unauthorized);
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401));
    assert!(!err.outcome_unknown());
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("garbage-token-4f2a"), "{shown}");
}

#[tokio::test]
async fn a_token_without_the_scope_is_insufficient_scope_naming_it() {
    let h = Harness::start().await;
    let narrow = Harness::mint(&h.sb, &h.user, &["quotes:read"]);
    let err = failed(
        &h,
        "GET /v1/balances/{id_or_code}",
        h.client.get_balance(&narrow, "USDT").await,
    );
    assert_eq!(
        err.kind(),
        &ErrorKind::InsufficientScope {
            required: Some("balances:read".into())
        }
    );
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403));

    let quote = NewQuote {
        source_currency: usdt(),
        target_currency: ngn(),
        amount: QuoteAmount::Source(d("10")),
        reference: None,
        pay_out: None,
    };
    let err = failed(
        &h,
        "POST /v1/quotes",
        h.client.create_quote(&narrow, &quote, &Unleased).await,
    );
    assert!(
        matches!(err.kind(), ErrorKind::InsufficientScope { required: Some(s) } if s == "quotes:write")
    );
    assert!(!err.outcome_unknown());
}

#[tokio::test]
async fn missing_resources_are_not_found() {
    let h = Harness::start().await;
    let err = failed(
        &h,
        "GET /v1/transfers/{id}",
        h.client.get_transfer(&h.token, "TRF_doesnotexist").await,
    );
    assert_eq!(err.kind(), &ErrorKind::NotFound);
    let err = failed(
        &h,
        "GET /v1/quotes/{id}",
        h.client.get_quote(&h.token, "QUO_doesnotexist").await,
    );
    assert_eq!(err.kind(), &ErrorKind::NotFound);
    let err = failed(
        &h,
        "GET /v1/balances/{id_or_code}",
        h.client.get_balance(&h.token, "BTC").await,
    );
    assert_eq!(err.kind(), &ErrorKind::NotFound);
}

#[tokio::test]
async fn malformed_requests_are_validation_errors_with_their_fields() {
    let h = Harness::start().await;

    // Recipient ids are UUIDs: request_validation on `id`.
    let err = failed(
        &h,
        "GET /v1/recipients/{id}",
        h.client.get_recipient(&h.token, "not-a-uuid").await,
    );
    let ErrorKind::Validation { fields } = err.kind() else {
        panic!("{err}")
    };
    assert!(fields.contains_key("id"), "{fields:?}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));

    // Page size out of range.
    let err = failed(
        &h,
        "GET /v1/quotes",
        h.client
            .list_quotes(
                &h.token,
                &PageRequest {
                    limit: Some(1000),
                    ..PageRequest::default()
                },
            )
            .await,
    );
    assert!(matches!(err.kind(), ErrorKind::Validation { fields } if fields.contains_key("limit")));

    // A channel Busha does not know: schema_validation, kept under "schema".
    let err = failed(
        &h,
        "POST /v1/recipients/resolve-bank-account",
        h.client
            .resolve_bank_account(
                &h.token,
                &ResolveBankAccount {
                    currency: ngn(),
                    country: "NG".into(),
                    channel: Channel::Other("carrier_pigeon".into()),
                    bank_code: Some(BANK.into()),
                    account_number: AccountNumber::new(ACCOUNT),
                },
            )
            .await,
    );
    let ErrorKind::Validation { fields } = err.kind() else {
        panic!("{err}")
    };
    assert!(
        fields["schema"]
            .iter()
            .any(|r| r.contains("carrier_pigeon")),
        "{fields:?}"
    );
    // A 4xx on a mutation is a definite "no".
    assert!(!err.outcome_unknown());
}

#[tokio::test]
async fn business_refusals_are_rejected_with_busha_s_name_and_message() {
    let h = Harness::start().await;
    let recipient = h.recipient().await;

    // More than the 1,000 USDT balance.
    let err = failed(
        &h,
        "POST /v1/quotes",
        h.client
            .create_quote(
                &h.token,
                &h.payout(&recipient, "5000", "too-much-for-ada"),
                &Unleased,
            )
            .await,
    );
    assert_eq!(
        err.kind(),
        &ErrorKind::Rejected {
            name: "bad_request".into()
        }
    );
    assert!(
        err.message().unwrap().contains("insufficient balance"),
        "{err}"
    );
    assert!(!err.outcome_unknown());

    // A currency Busha does not offer.
    let unknown = NewQuote {
        target_currency: Currency::new("ZZZ").unwrap(),
        pay_out: None,
        ..h.payout(&recipient, "10", "unknown-currency")
    };
    let err = h
        .client
        .create_quote(&h.token, &unknown, &Unleased)
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Rejected { .. }), "{err}");

    // A quote is good for one transfer only.
    let quote = h
        .client
        .create_quote(
            &h.token,
            &h.payout(&recipient, "10", "used-once-quote"),
            &Unleased,
        )
        .await
        .unwrap()
        .value;
    h.client
        .create_transfer(&h.token, &quote.id, &Unleased)
        .await
        .unwrap();
    let err = failed(
        &h,
        "POST /v1/transfers",
        h.client
            .create_transfer(&h.token, &quote.id, &Unleased)
            .await,
    );
    assert!(matches!(err.kind(), ErrorKind::Rejected { .. }), "{err}");
    assert_eq!(h.transfers_created_for(&quote.id), 1);
}

#[tokio::test]
async fn over_the_sandbox_limit_is_rate_limited_with_retry_after() {
    // The sandbox allows 2 balance reads a minute; the client's pacer would allow 10,000.
    let h = Harness::start().await;
    h.sb.set_rate_limits(sandbox_limit("GET /v1/balances", 2));
    for _ in 0..2 {
        h.client.list_balances(&h.token).await.unwrap();
    }
    let err = failed(
        &h,
        "GET /v1/balances",
        h.client.list_balances(&h.token).await,
    );
    let ErrorKind::RateLimited { retry_after } = err.kind() else {
        panic!("{err}")
    };
    let wait = retry_after.expect("the sandbox sends Retry-After");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert_eq!(err.status().map(|s| s.as_u16()), Some(429));
}

#[tokio::test]
async fn a_server_error_on_a_read_is_transient_and_the_retry_succeeds() {
    let h = Harness::start().await;
    let quote = h.quote("10", "transient-read-quote").await;
    h.sb.add_fault(Fault::new("GET /v1/quotes/{id}", FaultKind::ServerError(503)).times(1));
    let err = failed(
        &h,
        "GET /v1/quotes/{id}",
        h.client.get_quote(&h.token, &quote.id).await,
    );
    assert_eq!(err.kind(), &ErrorKind::Transient);
    assert!(!err.outcome_unknown());
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert!(h.client.get_quote(&h.token, &quote.id).await.is_ok());
}

#[tokio::test]
async fn a_server_error_on_a_transfer_is_outcome_unknown() {
    let h = Harness::start().await;
    let quote = h.quote("10", "server-error-transfer").await;
    h.sb.add_fault(Fault::new("POST /v1/transfers", FaultKind::ServerError(500)).times(1));
    let err = failed(
        &h,
        "POST /v1/transfers",
        h.client
            .create_transfer(&h.token, &quote.id, &Unleased)
            .await,
    );
    assert_eq!(err.kind(), &ErrorKind::OutcomeUnknown);
    assert!(err.outcome_unknown());
}

#[tokio::test]
async fn a_transfer_whose_response_is_lost_is_outcome_unknown_and_found_by_quote_id() {
    let h = Harness::start().await;
    let quote = h.quote("100", "dropped-after-commit").await;
    h.sb.add_fault(Fault::new("POST /v1/transfers", FaultKind::DropAfterCommit).times(1));

    let err = h
        .client
        .create_transfer(&h.token, &quote.id, &Unleased)
        .await
        .expect_err("the response was dropped");
    assert!(err.outcome_unknown(), "{err}");
    assert_eq!(err.endpoint(), "POST /v1/transfers");

    // It happened at Busha all the same …
    assert_eq!(h.transfers_created_for(&quote.id), 1);
    // … and reconciliation by quote id finds it, so nobody pays twice.
    let found = h
        .client
        .list_transfers(
            &h.token,
            &TransferFilter {
                quote_id: Some(quote.id.clone()),
                ..TransferFilter::default()
            },
        )
        .await
        .unwrap()
        .value;
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].quote_id, quote.id);
}

#[tokio::test]
async fn a_request_dropped_before_commit_is_transient_on_reads_and_unknown_on_writes() {
    let h = Harness::start().await;
    let quote = h.quote("10", "dropped-before-commit").await;
    h.sb.add_fault(Fault::new("GET /v1/quotes/{id}", FaultKind::DropBeforeCommit).times(1));
    let err = h.client.get_quote(&h.token, &quote.id).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Transient, "{err}");

    // The client cannot tell "never arrived" from "arrived and lost": it must not guess.
    h.sb.add_fault(Fault::new("POST /v1/transfers", FaultKind::DropBeforeCommit).times(1));
    let err = h
        .client
        .create_transfer(&h.token, &quote.id, &Unleased)
        .await
        .unwrap_err();
    assert!(err.outcome_unknown(), "{err}");
    // Reconciliation shows nothing happened, so a retry is safe.
    assert_eq!(h.transfers_created_for(&quote.id), 0);
    let retried = h
        .client
        .create_transfer(&h.token, &quote.id, &Unleased)
        .await
        .unwrap();
    assert_eq!(retried.value.quote_id, quote.id);
}

#[tokio::test]
async fn a_call_slower_than_the_timeout_is_outcome_unknown_on_writes_and_transient_on_reads() {
    let h = Harness::start_with(|c| c.timeout = Duration::from_millis(300)).await;
    let recipient = h.recipient().await;
    let slow = FaultKind::Latency(Duration::from_millis(1500));

    h.sb.add_fault(Fault::new("POST /v1/quotes", slow.clone()).times(1));
    let err = h
        .client
        .create_quote(
            &h.token,
            &h.payout(&recipient, "10", "timed-out-quote-1"),
            &Unleased,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::OutcomeUnknown, "{err}");
    assert_eq!(err.request_id(), None, "no response, no request id");

    h.sb.add_fault(Fault::new("GET /v1/balances", slow).times(1));
    let err = h.client.list_balances(&h.token).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Transient, "{err}");
}

// ------------------------------------------------------------------------ pacing

#[tokio::test]
async fn the_pacer_keeps_a_burst_under_the_limit_with_no_429() {
    // 60 a minute in both: the pacer spaces calls ~1.02 s apart.
    let h = Harness::start_with(|c| {
        c.limits = EndpointLimits::busha().with("GET /v1/balances", 60);
    })
    .await;
    h.sb.set_rate_limits(sandbox_limit("GET /v1/balances", 60));

    let burst = (0..4).map(|_| h.client.list_balances(&h.token));
    let results = futures_util::future::join_all(burst).await;
    for r in &results {
        assert!(r.is_ok(), "{:?}", r.as_ref().err());
    }

    let seen: Vec<_> =
        h.sb.requests()
            .into_iter()
            .filter(|r| r.endpoint == "GET /v1/balances")
            .collect();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|r| r.status == 200), "{seen:?}");
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= chrono::Duration::milliseconds(950),
            "requests {gap} apart"
        );
    }
}

// ------------------------------------------------------------------------ unreadable 2xx

/// A server that answers 2xx with bodies the client cannot parse, which the sandbox
/// never does: an amount as a JSON number, and a transfer without its fields.
async fn misbehaving_busha() -> url::Url {
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use axum::routing::{get, post};

    fn with_id(id: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static(id));
        headers
    }
    let app = axum::Router::new()
        .route(
            "/v1/transfers",
            post(|| async {
                (
                    StatusCode::CREATED,
                    with_id("req_created0001"),
                    r#"{"status":"success","data":{"id":"TRF_x"}}"#,
                )
            }),
        )
        .route(
            "/v1/balances/{code}",
            get(|| async {
                (
                    StatusCode::OK,
                    with_id("req_balance0001"),
                    r#"{"status":"success","data":{"id":"b","user_id":"u","profile_id":"p",
                        "currency":"NGN","name":"Naira","type":"fiat",
                        "available":{"amount":100.5,"currency":"NGN"},
                        "pending":{"amount":"0","currency":"NGN"},
                        "savings":{"amount":"0","currency":"NGN"},
                        "investments":{"amount":"0","currency":"NGN"},
                        "total":{"amount":"0","currency":"NGN"}}}"#,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    url::Url::parse(&format!("http://{addr}/")).unwrap()
}

#[tokio::test]
async fn an_unreadable_success_is_decode_and_on_a_transfer_also_outcome_unknown() {
    let client = BushaClient::new(BushaConfig::new(misbehaving_busha().await)).unwrap();
    let token = AccessToken::new("tok");

    let err = client
        .create_transfer(&token, "QUO_x", &Unleased)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Decode { mutating: true });
    assert!(err.outcome_unknown(), "the transfer was created: reconcile");
    assert_eq!(err.request_id(), Some("req_created0001"));
    assert_eq!(err.status().map(|s| s.as_u16()), Some(201));

    // A read that comes back with an amount as a JSON number: refused, not rounded.
    let err = client.get_balance(&token, "NGN").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Decode { mutating: false });
    assert!(!err.outcome_unknown());
    assert_eq!(err.request_id(), Some("req_balance0001"));
}
