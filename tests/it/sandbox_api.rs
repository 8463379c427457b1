//! The sandbox's resource API against `busha-api.md` §2 and `design.md`: auth and
//! scopes, rate limits, quote expiry and its switches, one transfer per quote, the
//! transfer status walk and injected outcomes, faults around commit, request ids,
//! validation, balances, recipients, name enquiry, pagination and `two_step`.

use std::collections::HashSet;

use chrono::Duration;
use reqwest::StatusCode;
use rust_decimal::{Decimal, dec};
use serde_json::{Value, json};
use treasury::sandbox::{
    CannedResponse, DuplicateTransfers, ExpiredQuoteTransfers, Fault, FaultKind, LedgerEvent,
    OAuthClientConfig, RateLimits, Rewrite, TransferOutcome,
};

use crate::support::{
    ACCOUNT_NAME, ACCOUNT_NUMBER, BANK_CODE, REDIRECT_URI, Reply, TestSandbox, flat_recipient,
    legacy_recipient, payout_body,
};

// ------------------------------------------------------------------ helpers

fn transfers_created(ts: &TestSandbox) -> Vec<LedgerEvent> {
    ts.sb
        .ledger()
        .into_iter()
        .map(|e| e.event)
        .filter(|e| matches!(e, LedgerEvent::TransferCreated { .. }))
        .collect()
}

fn quotes_created(ts: &TestSandbox) -> usize {
    ts.sb
        .ledger()
        .iter()
        .filter(|e| matches!(e.event, LedgerEvent::QuoteCreated { .. }))
        .count()
}

/// A sandbox, a worker token and a recipient for the registered bank account.
async fn payout_setup() -> (TestSandbox, String, String) {
    payout_setup_with(|_| {}).await
}

async fn payout_setup_with(
    edit: impl FnOnce(&mut treasury::sandbox::SandboxConfig),
) -> (TestSandbox, String, String) {
    let ts = TestSandbox::start_with(edit).await;
    let token = ts.worker_token();
    let recipient = ts.create_recipient(&token).await;
    (ts, token, recipient)
}

fn status_of(reply: &Reply) -> &str {
    reply.body["data"]["status"].as_str().unwrap_or_default()
}

fn limits(endpoint: &str, per_minute: u32) -> RateLimits {
    let mut limits = RateLimits::busha();
    limits.overrides.insert(endpoint.into(), per_minute);
    limits
}

// ------------------------------------------------------------------ auth and scopes

#[tokio::test]
async fn a_token_without_the_endpoints_scope_gets_403_insufficient_scope() {
    let ts = TestSandbox::start().await;
    let token = ts.token(&["quotes:read"]);

    let reply = ts.get("/v1/balances", &token).await;

    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error_name(), "insufficient_scope");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("balances:read")),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn a_missing_garbage_or_expired_token_gets_401_unauthorized() {
    let ts = TestSandbox::start().await;
    let token = ts.token(&["balances:read"]);

    let missing = ts.get_anonymous("/v1/balances").await;
    let garbage = ts.get("/v1/balances", "not.a.jwt").await;
    ts.advance(Duration::minutes(61));
    let expired = ts.get("/v1/balances", &token).await;

    for reply in [&missing, &garbage, &expired] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        assert_eq!(reply.error_name(), "unauthorized");
    }
}

// ------------------------------------------------------------------ rate limits

#[tokio::test]
async fn going_over_a_rate_limit_gets_429_with_retry_after() {
    let ts = TestSandbox::start().await;
    ts.sb.set_rate_limits(limits("GET /v1/balances", 2));
    let token = ts.token(&["balances:read"]);

    let first = ts.get("/v1/balances", &token).await;
    let second = ts.get("/v1/balances", &token).await;
    let third = ts.get("/v1/balances", &token).await;

    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.header("retry-after"), Some("60"));
    assert_eq!(third.header("x-rate-limit"), Some("2"));
}

#[tokio::test]
async fn the_rate_limit_counts_per_client_and_endpoint_over_a_rolling_minute() {
    let ts = TestSandbox::start().await;
    ts.sb.set_rate_limits(limits("GET /v1/balances", 2));
    ts.sb.register_client(OAuthClientConfig::new(
        "second-client-test",
        "s2",
        REDIRECT_URI,
    ));
    let token = ts.token(&["balances:read", "quotes:read"]);
    let other_client = ts
        .sb
        .mint_tokens("second-client-test", &ts.user.id, &["balances:read"])
        .access_token;

    // t = 0 s and t = 30 s fill the minute.
    assert_eq!(ts.get("/v1/balances", &token).await.status, StatusCode::OK);
    ts.advance(Duration::seconds(30));
    assert_eq!(ts.get("/v1/balances", &token).await.status, StatusCode::OK);
    let over = ts.get("/v1/balances", &token).await;
    let other_endpoint = ts.get("/v1/quotes", &token).await;
    let other_client_reply = ts.get("/v1/balances", &other_client).await;
    // t = 61 s: the request at 0 s left the window, the one at 30 s has not.
    ts.advance(Duration::seconds(31));
    let one_freed = ts.get("/v1/balances", &token).await;
    let still_full = ts.get("/v1/balances", &token).await;

    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.header("retry-after"), Some("30"));
    assert_eq!(other_endpoint.status, StatusCode::OK);
    assert_eq!(other_client_reply.status, StatusCode::OK);
    assert_eq!(one_freed.status, StatusCode::OK);
    assert_eq!(still_full.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn with_the_retry_after_switch_off_no_429_carries_retry_after() {
    let ts = TestSandbox::start_with(|c| c.behaviour.retry_after_header = false).await;
    ts.sb.set_rate_limits(limits("GET /v1/balances", 1));
    ts.sb
        .add_fault(Fault::new("GET /v1/quotes", FaultKind::RateLimited).times(1));
    let token = ts.token(&["balances:read", "quotes:read"]);

    assert_eq!(ts.get("/v1/balances", &token).await.status, StatusCode::OK);
    let counted = ts.get("/v1/balances", &token).await;
    let injected = ts.get("/v1/quotes", &token).await;

    for reply in [&counted, &injected] {
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.header("retry-after"), None, "{:?}", reply.headers);
    }
}

// ------------------------------------------------------------------ quotes

#[tokio::test]
async fn a_quote_expires_after_thirty_minutes() {
    let (ts, token, recipient) = payout_setup().await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;
    let id = quote["id"].as_str().expect("quote id");

    ts.advance(Duration::minutes(29));
    let before = ts.get(&format!("/v1/quotes/{id}"), &token).await;
    ts.advance(Duration::minutes(2));
    let after = ts.get(&format!("/v1/quotes/{id}"), &token).await;

    assert_eq!(quote["status"], "pending");
    assert_eq!(status_of(&before), "pending");
    assert_eq!(status_of(&after), "expired");
}

#[tokio::test]
async fn a_transfer_on_an_expired_quote_is_refused() {
    let (ts, token, recipient) = payout_setup().await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;

    ts.advance(Duration::minutes(31));
    let reply = ts.transfer(&token, quote["id"].as_str().expect("id")).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(transfers_created(&ts).is_empty());
    assert_eq!(ts.available(&token, "USDT").await, dec!(1000));
}

#[tokio::test]
async fn with_reprice_an_expired_quote_is_transferred_at_the_current_price() {
    let (ts, token, recipient) =
        payout_setup_with(|c| c.behaviour.expired_quote_transfers = ExpiredQuoteTransfers::Reprice)
            .await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;

    ts.advance(Duration::minutes(31));
    ts.sb.set_price("USDT", "NGN", dec!(1550), dec!(1500));
    let reply = ts.transfer(&token, quote["id"].as_str().expect("id")).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    // 100 USDT × 1500 − 100 NGN fee, not the quoted 100 × 1600 − 100.
    assert_eq!(quote["target_amount"], "159900");
    assert_eq!(reply.body["data"]["target_amount"], "149900");
    match transfers_created(&ts).as_slice() {
        [
            LedgerEvent::TransferCreated {
                repriced,
                duplicate,
                target_amount,
                ..
            },
        ] => {
            assert!(*repriced);
            assert!(!*duplicate);
            assert_eq!(*target_amount, dec!(149900));
        }
        other => panic!("expected one TransferCreated, got {other:?}"),
    }
}

#[tokio::test]
async fn a_quote_allows_only_one_transfer() {
    let (ts, token, recipient) = payout_setup().await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;
    let id = quote["id"].as_str().expect("id");

    let first = ts.transfer(&token, id).await;
    let second = ts.transfer(&token, id).await;
    let quote_after = ts.get(&format!("/v1/quotes/{id}"), &token).await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(transfers_created(&ts).len(), 1);
    assert_eq!(status_of(&quote_after), "accepted");
    assert_eq!(ts.available(&token, "USDT").await, dec!(900));
}

#[tokio::test]
async fn with_duplicates_allowed_a_second_transfer_is_created_and_flagged() {
    let (ts, token, recipient) =
        payout_setup_with(|c| c.behaviour.duplicate_transfers = DuplicateTransfers::Allow).await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;
    let id = quote["id"].as_str().expect("id");

    let first = ts.transfer(&token, id).await;
    let second = ts.transfer(&token, id).await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_ne!(first.id(), second.id());
    let flags: Vec<bool> = transfers_created(&ts)
        .iter()
        .map(|e| match e {
            LedgerEvent::TransferCreated { duplicate, .. } => *duplicate,
            _ => unreachable!("filtered above"),
        })
        .collect();
    assert_eq!(flags, vec![false, true]);
    // The dangerous case really pays twice.
    assert_eq!(ts.available(&token, "USDT").await, dec!(800));
}

#[tokio::test]
async fn a_quote_with_both_or_neither_amount_is_request_validation() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();

    let both = ts
        .quote(
            &token,
            json!({ "source_currency": "USDT", "target_currency": "NGN",
                    "source_amount": "10", "target_amount": "16000" }),
        )
        .await;
    let neither = ts
        .quote(
            &token,
            json!({ "source_currency": "USDT", "target_currency": "NGN" }),
        )
        .await;

    for reply in [&both, &neither] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.error_name(), "request_validation");
        assert!(reply.body["fields"].is_object(), "{}", reply.body);
    }
    assert_eq!(quotes_created(&ts), 0);
}

#[tokio::test]
async fn a_reference_of_11_or_65_characters_is_schema_validation() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();
    let with_reference = |r: String| {
        json!({ "source_currency": "USDT", "target_currency": "NGN",
                "source_amount": "10", "reference": r })
    };

    let short = ts.quote(&token, with_reference("r".repeat(11))).await;
    let long = ts.quote(&token, with_reference("r".repeat(65))).await;
    let shortest = ts.quote(&token, with_reference("r".repeat(12))).await;
    let longest = ts.quote(&token, with_reference("r".repeat(64))).await;

    for reply in [&short, &long] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.error_name(), "schema_validation");
        assert!(reply.body["schema"].is_array(), "{}", reply.body);
    }
    assert_eq!(shortest.status, StatusCode::CREATED, "{}", shortest.body);
    assert_eq!(longest.status, StatusCode::CREATED, "{}", longest.body);
    assert_eq!(longest.body["data"]["reference"], "r".repeat(64));
}

#[tokio::test]
async fn an_amount_with_more_decimals_than_its_currency_allows_is_refused() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();

    // USDT has 6 decimal places, NGN 2.
    let usdt = ts
        .quote(
            &token,
            json!({ "source_currency": "USDT", "target_currency": "NGN", "source_amount": "1.0000001" }),
        )
        .await;
    let ngn = ts
        .quote(
            &token,
            json!({ "source_currency": "USDT", "target_currency": "NGN", "target_amount": "1000.001" }),
        )
        .await;

    assert_eq!(usdt.status, StatusCode::BAD_REQUEST);
    assert_eq!(ngn.status, StatusCode::BAD_REQUEST);
    assert_eq!(quotes_created(&ts), 0);
}

#[tokio::test]
async fn a_quote_beyond_the_balance_is_refused_and_not_recorded() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();

    let reply = ts
        .quote(
            &token,
            json!({ "source_currency": "USDT", "target_currency": "NGN", "source_amount": "1000.000001" }),
        )
        .await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(quotes_created(&ts), 0);
    let listed = ts.get("/v1/quotes", &token).await;
    assert_eq!(listed.body["data"], json!([]));
}

#[tokio::test]
async fn a_quote_at_or_over_two_step_from_carries_two_step_and_cannot_be_transferred() {
    let (ts, token, recipient) =
        payout_setup_with(|c| c.behaviour.two_step_from = Some(dec!(500))).await;

    let small = ts.payout_quote(&token, &recipient, "499.99").await;
    let large = ts.payout_quote(&token, &recipient, "500").await;
    let refused = ts.transfer(&token, large["id"].as_str().expect("id")).await;

    assert!(small.get("two_step").is_none(), "{small}");
    assert_eq!(large["two_step"]["type"], "authenticator");
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(transfers_created(&ts).is_empty());
    assert_eq!(ts.available(&token, "USDT").await, dec!(1000));
}

// ------------------------------------------------------------------ transfers

#[tokio::test]
async fn a_transfer_debits_the_source_balance() {
    let (ts, token, recipient) = payout_setup().await;
    let quote = ts.payout_quote(&token, &recipient, "123.45").await;

    let reply = ts.transfer(&token, quote["id"].as_str().expect("id")).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["data"]["quote_id"], quote["id"]);
    assert_eq!(ts.available(&token, "USDT").await, dec!(876.55));
    // The payout lands outside Busha: the NGN balance is untouched.
    assert_eq!(ts.available(&token, "NGN").await, dec!(500000));
}

#[tokio::test]
async fn a_usdt_to_ngn_bank_payout_walks_every_status_to_funds_delivered() {
    let (ts, token, recipient) = payout_setup().await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;
    let created = ts.transfer(&token, quote["id"].as_str().expect("id")).await;
    let path = format!("/v1/transfers/{}", created.id());

    let mut seen = vec![status_of(&created).to_string()];
    for _ in 0..5 {
        ts.advance(Duration::seconds(5));
        seen.push(status_of(&ts.get(&path, &token).await).to_string());
    }
    let last = ts.get(&path, &token).await;

    assert_eq!(
        seen,
        [
            "pending",
            "processing",
            "funds_converted",
            "outgoing_payment_sent",
            "funds_delivered",
            "funds_delivered",
        ]
    );
    let timeline = &last.body["data"]["timeline"];
    assert_eq!(timeline["transfer_status"], "funds_delivered");
    assert!(
        timeline["events"]
            .as_array()
            .is_some_and(|e| e.len() == 5 && e.iter().all(|e| e["done"] == true)),
        "{timeline}"
    );
    let finals: Vec<_> = ts
        .sb
        .ledger()
        .into_iter()
        .filter(|e| matches!(e.event, LedgerEvent::TransferFinal { .. }))
        .collect();
    assert_eq!(finals.len(), 1, "a transfer becomes final once");
}

/// Runs one transfer of 100 USDT with an injected outcome to its end.
async fn run_to_end(outcome: TransferOutcome) -> (String, Decimal) {
    let (ts, token, recipient) = payout_setup().await;
    ts.sb.push_transfer_outcome(outcome);
    let quote = ts.payout_quote(&token, &recipient, "100").await;
    let created = ts.transfer(&token, quote["id"].as_str().expect("id")).await;
    assert_eq!(ts.available(&token, "USDT").await, dec!(900));

    ts.advance(Duration::minutes(5));
    let end = ts
        .get(&format!("/v1/transfers/{}", created.id()), &token)
        .await;
    (
        status_of(&end).to_string(),
        ts.available(&token, "USDT").await,
    )
}

#[tokio::test]
async fn an_injected_cancellation_ends_cancelled_and_returns_the_balance() {
    let (status, usdt) = run_to_end(TransferOutcome::Cancelled).await;

    assert_eq!(status, "cancelled");
    assert_eq!(usdt, dec!(1000));
}

#[tokio::test]
async fn an_injected_refund_ends_funds_refunded_and_returns_the_balance() {
    let (status, usdt) = run_to_end(TransferOutcome::FundsRefunded).await;

    assert_eq!(status, "funds_refunded");
    assert_eq!(usdt, dec!(1000));
}

#[tokio::test]
async fn an_injected_delivery_failure_ends_funds_not_delivered_and_keeps_the_debit() {
    let (status, usdt) = run_to_end(TransferOutcome::FundsNotDelivered).await;

    assert_eq!(status, "funds_not_delivered");
    assert_eq!(usdt, dec!(900));
}

// ------------------------------------------------------------------ faults

#[tokio::test]
async fn a_response_dropped_after_commit_leaves_a_transfer_that_the_quote_id_lookup_finds() {
    let (ts, token, recipient) = payout_setup().await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;
    let quote_id = quote["id"].as_str().expect("id");
    ts.sb
        .add_fault(Fault::new("POST /v1/transfers", FaultKind::DropAfterCommit).times(1));

    let attempt = ts
        .try_post("/v1/transfers", &token, &json!({ "quote_id": quote_id }))
        .await;
    let lookup = ts
        .get(&format!("/v1/transfers?quote_id={quote_id}"), &token)
        .await;

    assert!(
        attempt.is_err(),
        "a lost response must reach the caller as a transport error, got {:?}",
        attempt.map(|r| r.status())
    );
    assert_eq!(lookup.status, StatusCode::OK);
    let found = lookup.body["data"].as_array().expect("a list");
    assert_eq!(found.len(), 1, "{}", lookup.body);
    assert_eq!(found[0]["quote_id"], quote_id);
    assert_eq!(transfers_created(&ts).len(), 1);
    assert!(
        ts.sb
            .ledger()
            .iter()
            .any(|e| matches!(&e.event, LedgerEvent::ResponseDropped { endpoint, .. } if endpoint == "POST /v1/transfers"))
    );
}

#[tokio::test]
async fn a_request_dropped_before_commit_creates_nothing() {
    let (ts, token, recipient) = payout_setup().await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;
    let quote_id = quote["id"].as_str().expect("id");
    ts.sb
        .add_fault(Fault::new("POST /v1/transfers", FaultKind::DropBeforeCommit).times(1));

    let attempt = ts
        .try_post("/v1/transfers", &token, &json!({ "quote_id": quote_id }))
        .await;
    let lookup = ts
        .get(&format!("/v1/transfers?quote_id={quote_id}"), &token)
        .await;
    let retry = ts.transfer(&token, quote_id).await;

    assert!(attempt.is_err(), "got {:?}", attempt.map(|r| r.status()));
    assert_eq!(lookup.body["data"], json!([]));
    assert_eq!(retry.status, StatusCode::CREATED, "the fault fired once");
    assert_eq!(transfers_created(&ts).len(), 1);
}

#[tokio::test]
async fn an_injected_503_creates_nothing() {
    let (ts, token, recipient) = payout_setup().await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;
    let quote_id = quote["id"].as_str().expect("id");
    ts.sb
        .add_fault(Fault::new("POST /v1/transfers", FaultKind::ServerError(503)).times(1));

    let reply = ts.transfer(&token, quote_id).await;
    let lookup = ts
        .get(&format!("/v1/transfers?quote_id={quote_id}"), &token)
        .await;

    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.error_name(), "service_unavailable");
    assert_eq!(lookup.body["data"], json!([]));
    assert!(transfers_created(&ts).is_empty());
    assert_eq!(ts.available(&token, "USDT").await, dec!(1000));
}

#[tokio::test]
async fn an_ignore_filters_fault_lists_every_transfer_whatever_the_quote_id() {
    let (ts, token, recipient) = payout_setup().await;
    let mut quote_ids = Vec::new();
    for _ in 0..3 {
        let quote = ts.payout_quote(&token, &recipient, "10").await;
        let id = quote["id"].as_str().expect("id").to_string();
        assert_eq!(ts.transfer(&token, &id).await.status, StatusCode::CREATED);
        quote_ids.push(id);
    }
    let path = format!("/v1/transfers?quote_id={}", quote_ids[0]);
    let honest = ts.get(&path, &token).await;
    assert_eq!(honest.body["data"].as_array().map(Vec::len), Some(1));

    ts.sb
        .add_fault(Fault::new("GET /v1/transfers", FaultKind::IgnoreFilters).times(1));
    let lying = ts.get(&path, &token).await;

    assert_eq!(lying.status, StatusCode::OK);
    let listed: HashSet<&str> = lying.body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|t| t["quote_id"].as_str())
        .collect();
    assert_eq!(listed.len(), 3, "{}", lying.body);
    assert!(
        ts.sb
            .ledger()
            .iter()
            .any(|e| matches!(e.event, LedgerEvent::FiltersIgnored { .. }))
    );
}

#[tokio::test]
async fn a_rewrite_fault_answers_for_other_currencies_but_commits_the_real_quote() {
    let (ts, token, recipient) = payout_setup().await;
    ts.sb.add_fault(
        Fault::new(
            "POST /v1/quotes",
            FaultKind::Rewrite(Rewrite::new("/data/source_currency", json!("BTC"))),
        )
        .times(1),
    );

    let lying = ts.payout_quote(&token, &recipient, "13").await;
    let id = lying["id"].as_str().expect("id");
    let stored = ts.get(&format!("/v1/quotes/{id}"), &token).await;

    assert_eq!(lying["source_currency"], "BTC");
    assert_eq!(stored.body["data"]["source_currency"], "USDT");
    assert_eq!(quotes_created(&ts), 1);
}

#[tokio::test]
async fn a_respond_fault_answers_the_canned_status_body_and_retry_after() {
    let (ts, token, recipient) = payout_setup().await;
    ts.sb.add_fault(
        Fault::new(
            "POST /v1/quotes",
            FaultKind::Respond(CannedResponse {
                status: 503,
                body: json!({"error": "temporarily_unavailable"}),
                retry_after: Some(7),
            }),
        )
        .times(1),
    );

    let reply = ts.quote(&token, payout_body(&recipient, "10")).await;

    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["error"], "temporarily_unavailable");
    assert_eq!(reply.header("retry-after"), Some("7"));
    assert_eq!(quotes_created(&ts), 0);
}

#[tokio::test]
async fn every_response_carries_a_request_id_including_errors() {
    let ts = TestSandbox::start().await;
    ts.sb.set_rate_limits(limits("GET /v1/banks", 1));
    let token = ts.worker_token();

    let replies = vec![
        ts.get("/v1/balances", &token).await,
        ts.get_anonymous("/v1/banks").await,
        ts.get_anonymous("/v1/banks").await,
        ts.get_anonymous("/v1/balances").await,
        ts.get("/v1/balances", &ts.token(&["quotes:read"])).await,
        ts.get("/v1/quotes/QUO_doesnotexist", &token).await,
        ts.quote(&token, json!({})).await,
        ts.get_anonymous("/v1/no-such-endpoint").await,
        ts.post("/oauth2/token", "", &json!({})).await,
    ];

    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [200, 200, 429, 401, 403, 404, 400, 404, 400]);
    let mut ids = HashSet::new();
    for reply in &replies {
        let id = reply
            .header("x-request-id")
            .unwrap_or_else(|| panic!("no X-Request-Id on a {} response", reply.status));
        assert!(
            id.strip_prefix("req_").is_some_and(
                |rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric())
            ),
            "{id} is not req_ plus alphanumerics"
        );
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), replies.len(), "request ids are unique");
}

// ------------------------------------------------------------------ recipients

#[tokio::test]
async fn recipients_are_created_in_both_shapes_and_found_by_account_number() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();

    let flat = ts
        .post("/v1/recipients", &token, &flat_recipient("1111111111"))
        .await;
    let legacy = ts
        .post("/v1/recipients", &token, &legacy_recipient("2222222222"))
        .await;
    let by_account = ts
        .get("/v1/recipients?account_number=1111111111", &token)
        .await;

    assert_eq!(flat.status, StatusCode::CREATED, "{}", flat.body);
    assert_eq!(flat.body["data"]["type"], "ngn_bank");
    assert_eq!(flat.body["data"]["category"], "bank");
    assert_eq!(flat.body["data"]["account_number"], "1111111111");
    assert_eq!(legacy.status, StatusCode::CREATED, "{}", legacy.body);
    assert!(legacy.body["data"]["fields"].is_array(), "{}", legacy.body);
    assert_eq!(legacy.body["data"]["legal_entity_type"], "business");
    let found = by_account.body["data"].as_array().expect("a list");
    assert_eq!(found.len(), 1, "{}", by_account.body);
    assert_eq!(found[0]["id"], flat.body["data"]["id"]);
}

#[tokio::test]
async fn a_legacy_recipient_is_listed_in_legacy_shape_alongside_flat_ones() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();
    let flat = ts
        .post("/v1/recipients", &token, &flat_recipient("1111111111"))
        .await
        .id();
    let legacy = ts
        .post("/v1/recipients", &token, &legacy_recipient("2222222222"))
        .await
        .id();

    let list = ts.get("/v1/recipients", &token).await;

    let items = list.body["data"].as_array().expect("a list");
    let item = |id: &str| {
        items
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed in {}", list.body))
    };
    assert_eq!(items.len(), 2);
    assert!(item(&legacy)["fields"].is_array());
    assert!(item(&legacy).get("category").is_none());
    assert_eq!(item(&flat)["category"], "bank");
    assert!(item(&flat).get("fields").is_none());
}

#[tokio::test]
async fn a_recipient_can_be_fetched_then_deleted_with_204_then_is_gone() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();
    let id = ts.create_recipient(&token).await;
    let path = format!("/v1/recipients/{id}");

    let fetched = ts.get(&path, &token).await;
    let deleted = ts.delete(&path, &token).await;
    let after = ts.get(&path, &token).await;
    let listed = ts.get("/v1/recipients", &token).await;

    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["data"]["account_name"], ACCOUNT_NAME);
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    assert_eq!(listed.body["data"], json!([]));
}

#[tokio::test]
async fn a_recipient_with_an_unknown_bank_code_is_refused() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();
    let mut body = flat_recipient(ACCOUNT_NUMBER);
    // A NIBSS code (GTBank's), not one of Busha's own codes.
    body["bank_code"] = json!("058");

    let reply = ts.post("/v1/recipients", &token, &body).await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body["fields"]["bank_code"].is_array(),
        "{}",
        reply.body
    );
    assert_eq!(
        ts.get("/v1/recipients", &token).await.body["data"],
        json!([])
    );
}

#[tokio::test]
async fn name_enquiry_resolves_a_registered_account_and_refuses_an_unknown_one() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();
    let enquiry = |account: &str| {
        json!({ "currency_id": "NGN", "country_id": "NG", "channel": "bank_transfer",
                "bank_code": BANK_CODE, "account_number": account })
    };

    let known = ts
        .post(
            "/v1/recipients/resolve-bank-account",
            &token,
            &enquiry(ACCOUNT_NUMBER),
        )
        .await;
    let unknown = ts
        .post(
            "/v1/recipients/resolve-bank-account",
            &token,
            &enquiry("9999999999"),
        )
        .await;

    assert_eq!(known.status, StatusCode::CREATED, "{}", known.body);
    assert_eq!(known.body["data"]["account_name"], ACCOUNT_NAME);
    assert_eq!(known.body["data"]["account_number"], ACCOUNT_NUMBER);
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.body.get("data").is_none());
}

// ------------------------------------------------------------------ pagination

#[tokio::test]
async fn paging_through_25_quotes_with_limit_10_returns_each_exactly_once() {
    // 25 quotes in a minute: the quote limit is raised (×2) for this test only.
    let ts = TestSandbox::start_with(|c| c.rate_limits = RateLimits::busha().scaled(2)).await;
    let token = ts.worker_token();
    let mut created = Vec::new();
    for i in 0..25 {
        let reply = ts
            .quote(
                &token,
                json!({ "source_currency": "USDT", "target_currency": "NGN",
                        "source_amount": format!("{}", i + 1), "reference": format!("pagination-ref-{i:02}") }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        created.push(reply.id());
    }

    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/quotes?limit=10".to_string(),
            Some(c) => format!("/v1/quotes?limit=10&cursor={}", urlencode(c)),
        };
        let page = ts.get(&path, &token).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        cursor = page.body["pagination"]["next_cursor"]
            .as_str()
            .map(str::to_string);
        pages.push(page);
        if cursor.is_none() || pages.len() > 5 {
            break;
        }
    }

    let sizes: Vec<u64> = pages
        .iter()
        .map(|p| {
            p.body["pagination"]["current_entries_size"]
                .as_u64()
                .expect("size")
        })
        .collect();
    assert_eq!(sizes, [10, 10, 5]);
    let seen: Vec<String> = pages
        .iter()
        .flat_map(|p| p.body["data"].as_array().expect("data").clone())
        .map(|q| q["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(seen.len(), 25);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        25,
        "no quote twice"
    );
    // Newest first, as Busha lists.
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
}

#[tokio::test]
async fn the_previous_cursor_leads_back_to_the_previous_page() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();
    for i in 0..5 {
        let reply = ts
            .quote(
                &token,
                json!({ "source_currency": "USDT", "target_currency": "NGN",
                        "source_amount": format!("{}", i + 1) }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let ids = |r: &Reply| -> Vec<Value> {
        r.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|q| q["id"].clone())
            .collect()
    };
    let first = ts.get("/v1/quotes?limit=2", &token).await;
    let next = first.body["pagination"]["next_cursor"]
        .as_str()
        .expect("next")
        .to_string();
    let second = ts
        .get(
            &format!("/v1/quotes?limit=2&cursor={}", urlencode(&next)),
            &token,
        )
        .await;
    let prev = second.body["pagination"]["previous_cursor"]
        .as_str()
        .expect("a second page has a previous cursor")
        .to_string();

    let back = ts
        .get(
            &format!("/v1/quotes?limit=2&cursor={}", urlencode(&prev)),
            &token,
        )
        .await;

    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert_eq!(ids(&back), ids(&first));
    assert!(first.body["pagination"].get("previous_cursor").is_none());
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ------------------------------------------------------------------ the whole payout recipe

#[tokio::test]
async fn the_worker_recipe_runs_end_to_end_on_the_sandbox() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();

    let existing = ts
        .get(
            &format!("/v1/recipients?account_number={ACCOUNT_NUMBER}"),
            &token,
        )
        .await;
    let resolved = ts
        .post(
            "/v1/recipients/resolve-bank-account",
            &token,
            &json!({ "currency_id": "NGN", "country_id": "NG", "channel": "bank_transfer",
                     "bank_code": BANK_CODE, "account_number": ACCOUNT_NUMBER }),
        )
        .await;
    let recipient = ts.create_recipient(&token).await;
    let quote = ts.quote(&token, payout_body(&recipient, "50")).await;
    let transfer = ts.transfer(&token, &quote.id()).await;
    ts.advance(Duration::minutes(1));
    let done = ts
        .get(&format!("/v1/transfers/{}", transfer.id()), &token)
        .await;

    assert_eq!(existing.body["data"], json!([]));
    assert_eq!(resolved.status, StatusCode::CREATED);
    assert_eq!(
        quote.body["data"]["pay_out"]["recipient_details"]["account_number"],
        ACCOUNT_NUMBER
    );
    assert_eq!(transfer.status, StatusCode::CREATED);
    assert_eq!(status_of(&done), "funds_delivered");
    assert_eq!(
        done.body["data"]["pay_out"]["recipient_id"],
        recipient.as_str()
    );
}

#[tokio::test]
async fn a_refunded_balance_is_spendable_without_polling_the_transfer_first() {
    let (ts, token, recipient) = payout_setup().await;
    ts.sb.push_transfer_outcome(TransferOutcome::Cancelled);
    let quote = ts.payout_quote(&token, &recipient, "1000").await;
    let created = ts.transfer(&token, quote["id"].as_str().expect("id")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    // The cancellation happened a minute ago; nobody has looked at the transfer since.
    ts.advance(Duration::minutes(1));
    let again = ts.quote(&token, payout_body(&recipient, "1000")).await;

    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
}

#[tokio::test]
async fn the_ledger_is_up_to_date_with_the_clock() {
    let (ts, token, recipient) = payout_setup().await;
    let quote = ts.payout_quote(&token, &recipient, "100").await;
    let created = ts.transfer(&token, quote["id"].as_str().expect("id")).await;

    ts.advance(Duration::minutes(1));
    let ledger = ts.sb.ledger();

    assert!(
        ledger.iter().any(|e| matches!(
            &e.event,
            LedgerEvent::TransferFinal { transfer_id, status }
                if *transfer_id == created.id() && status == "funds_delivered"
        )),
        "the ledger reports the delivery without a GET first: {ledger:?}"
    );
}

// ------------------------------------------------------------------ the standalone binary

/// A `busha-sandbox` child process, killed when the test ends (even by a panic).
struct SandboxProcess {
    child: std::process::Child,
    base: url::Url,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SandboxProcess {
    /// Starts the binary on a free port and waits for its readiness line.
    async fn start(args: &[&str]) -> SandboxProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_busha-sandbox"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn busha-sandbox");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut process = SandboxProcess {
            child,
            base: url::Url::parse("http://unset/").expect("a URL"),
        };
        // Reading stdout blocks; the readiness line is the synchronisation point.
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            lines.find_map(|line| {
                line.ok()?
                    .strip_prefix("busha-sandbox listening on ")
                    .map(str::to_string)
            })
        });
        let url = tokio::time::timeout(std::time::Duration::from_secs(30), ready)
            .await
            .expect("busha-sandbox printed its readiness line within 30 s")
            .expect("the reader thread finished")
            .expect("busha-sandbox printed its readiness line before exiting");
        process.base = url::Url::parse(url.trim()).expect("the readiness line ends in a URL");
        assert_ne!(process.base.port(), Some(0), "the URL names the bound port");
        process
    }

    fn url(&self, path: &str) -> String {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("a path")
            .to_string()
    }
}

#[tokio::test]
async fn the_standalone_binary_serves_the_issuer_the_api_and_the_control_surface() {
    use crate::support::{CLIENT_ID, CLIENT_SECRET, no_redirects, pkce_pair};
    let sandbox = SandboxProcess::start(&[
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
        "--redirect-uri",
        REDIRECT_URI,
        "--auto-consent",
        "ada",
        "--user",
        "ada",
        "--balance",
        "ada:USDT=1000",
    ])
    .await;
    let http = no_redirects();

    // One token exchange through the issuer.
    let (verifier, challenge) = pkce_pair();
    let mut auth = url::Url::parse(&sandbox.url("/oauth2/auth")).expect("URL");
    auth.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "balances:read quotes:read quotes:write"),
        ("state", "binary-state-0123456789"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let redirect = http.get(auth).send().await.expect("GET /oauth2/auth");
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = url::Url::parse(
        redirect.headers()["location"]
            .to_str()
            .expect("ASCII Location"),
    )
    .expect("Location is a URL");
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let tokens: Value = http
        .post(sandbox.url("/oauth2/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .expect("POST /oauth2/token")
        .json()
        .await
        .expect("a token response");
    let access = tokens["access_token"].as_str().expect("an access token");

    // The flags' opening balance, and a quote whose expiry the control surface drives.
    let balance: Value = http
        .get(sandbox.url("/v1/balances/USDT"))
        .bearer_auth(access)
        .send()
        .await
        .expect("GET balance")
        .json()
        .await
        .expect("JSON");
    let quote: Value = http
        .post(sandbox.url("/v1/quotes"))
        .bearer_auth(access)
        .json(
            &json!({ "source_currency": "USDT", "target_currency": "NGN", "source_amount": "10" }),
        )
        .send()
        .await
        .expect("POST quote")
        .json()
        .await
        .expect("JSON");
    let quote_id = quote["data"]["id"].as_str().expect("a quote id");
    let before: Value = http
        .get(sandbox.url("/_sandbox/clock"))
        .send()
        .await
        .expect("GET clock")
        .json()
        .await
        .expect("JSON");
    let advanced = http
        .post(sandbox.url("/_sandbox/clock/advance"))
        .json(&json!({ "seconds": 31 * 60 }))
        .send()
        .await
        .expect("POST clock/advance");
    assert_eq!(advanced.status(), StatusCode::OK);
    let after: Value = advanced.json().await.expect("JSON");
    let expired: Value = http
        .get(sandbox.url(&format!("/v1/quotes/{quote_id}")))
        .bearer_auth(access)
        .send()
        .await
        .expect("GET quote")
        .json()
        .await
        .expect("JSON");
    let ledger: Vec<Value> = http
        .get(sandbox.url("/_sandbox/ledger"))
        .send()
        .await
        .expect("GET ledger")
        .json()
        .await
        .expect("JSON");

    assert_eq!(balance["data"]["available"]["amount"], "1000");
    let instant = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["now"].as_str().expect("now")).expect("RFC 3339")
    };
    assert!(instant(&after) - instant(&before) >= Duration::minutes(31));
    assert_eq!(expired["data"]["status"], "expired");
    let kinds: Vec<&str> = ledger
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["code_issued", "token_issued", "quote_created"]);
    assert_eq!(ledger[1]["grant"], "authorization_code");
}

#[test]
fn the_standalone_binary_prints_help_and_exits_0() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_busha-sandbox"))
        .arg("--help")
        .output()
        .expect("run busha-sandbox --help");

    assert!(output.status.success(), "{:?}", output.status);
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--client-id",
        "--auto-consent",
        "--user",
        "--balance",
        "--listen",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[tokio::test]
async fn a_recipient_seeded_through_the_control_surface_is_found_by_its_id() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();
    let id = "7c1d2e3f-4a5b-4c6d-8e9f-a0b1c2d3e4f5";
    let res = ts
        .http
        .post(ts.url(&format!("/_sandbox/users/{}/recipients", ts.user.id)))
        .json(&json!({
            "id": id,
            "currency": "NGN",
            "bank_code": "000015",
            "account_number": "3000000001",
            "account_name": "ALAN TURING",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    let reply = ts.get(&format!("/v1/recipients/{id}"), &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["data"]["id"], id);
    assert_eq!(reply.body["data"]["currency"], "NGN");
    assert_eq!(reply.body["data"]["bank_name"], "Zenith Bank");
    // Nothing of ours created it: the ledger holds no recipient creation.
    assert!(
        !ts.sb
            .ledger()
            .iter()
            .any(|e| matches!(e.event, LedgerEvent::RecipientCreated { .. }))
    );

    // An unknown user is a 404, and nothing is seeded.
    let res = ts
        .http
        .post(ts.url("/_sandbox/users/no-such-user/recipients"))
        .json(&json!({
            "id": "8c1d2e3f-4a5b-4c6d-8e9f-a0b1c2d3e4f5",
            "currency": "NGN",
            "bank_code": "000015",
            "account_number": "3000000002",
            "account_name": "NOBODY",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
