//! Real sandbox responses validated against Busha's official OpenAPI spec
//! (`tests/fixtures/busha-openapi.yaml`, a copy of `bushaHQ/openapi` at `ff43999`).
//!
//! Each response is checked against the schema the spec declares for that operation
//! and status (`4XX`/`5XX` included), with `$ref`s resolved inside a root document that
//! embeds the spec's `components`. OpenAPI 3.0 schemas are draft-4 flavoured, so the
//! validator runs with draft 4 semantics and checks the formats it knows (`date-time`).
//! A sandbox body that does not conform is a sandbox bug: fix the sandbox, not the spec.

use std::sync::OnceLock;

use chrono::Duration;
use reqwest::StatusCode;
use rust_decimal::dec;
use serde_json::{Value, json};
use treasury::sandbox::{Fault, FaultKind, RateLimits, TransferOutcome};

use crate::support::{
    ACCOUNT_NUMBER, BANK_CODE, Reply, TestSandbox, flat_recipient, legacy_recipient, payout_body,
};

/// The spec, parsed once per test process.
fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let yaml = include_str!("../fixtures/busha-openapi.yaml");
        serde_norway::from_str(yaml).expect("the OpenAPI spec is valid YAML")
    })
}

/// The schema the spec declares for `method path` answering `status`.
fn declared_schema(method: &str, path: &str, status: u16) -> Value {
    let spec = spec();
    let responses = &spec["paths"][path][method]["responses"];
    let mut response = responses
        .get(status.to_string())
        .or_else(|| responses.get(format!("{}XX", status / 100)))
        .unwrap_or_else(|| panic!("the spec declares no {status} for {method} {path}"));
    if let Some(target) = response.get("$ref").and_then(Value::as_str) {
        response = spec
            .pointer(target.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {target}"));
    }
    response
        .pointer("/content/application~1json/schema")
        .unwrap_or_else(|| panic!("no JSON schema for {status} of {method} {path}"))
        .clone()
}

/// A validator for `schema`, in a root document that carries the spec's components so
/// that every `#/components/...` reference resolves.
fn validator(schema: &Value) -> jsonschema::Validator {
    let root = json!({ "allOf": [schema], "components": spec()["components"].clone() });
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&root)
        .expect("the spec's schema compiles")
}

/// Every way `body` breaks the schema of `method path` at `status`.
fn violations(method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
    validator(&declared_schema(method, path, status))
        .iter_errors(body)
        .map(|e| format!("{} (at {})", e, e.instance_path()))
        .collect()
}

/// Asserts that a real response conforms to the spec.
fn assert_conforms(method: &str, path: &str, reply: &Reply) {
    let errors = violations(method, path, reply.status.as_u16(), &reply.body);
    assert!(
        errors.is_empty(),
        "{method} {path} answered {} with a body that does not conform:\n  {}\nbody: {:#}",
        reply.status,
        errors.join("\n  "),
        reply.body
    );
}

// ------------------------------------------------------------------ the checker itself

#[tokio::test]
async fn the_conformance_check_rejects_broken_copies_of_real_bodies() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();
    let recipient = ts.create_recipient(&token).await;
    let quote = ts.quote(&token, payout_body(&recipient, "10")).await;
    let transfer = ts.transfer(&token, &quote.id()).await;
    let error = ts.quote(&token, json!({})).await;
    assert_conforms("post", "/v1/quotes", &quote);
    assert_conforms("post", "/v1/transfers", &transfer);
    assert_conforms("post", "/v1/quotes", &error);

    let broken = |reply: &Reply, pointer: &str, value: Value| {
        let mut body = reply.body.clone();
        *body.pointer_mut(pointer).expect("the pointer exists") = value;
        body
    };
    let cases = [
        (
            "post",
            "/v1/quotes",
            201,
            broken(&quote, "/data/source_amount", json!(10.0)),
        ),
        (
            "post",
            "/v1/quotes",
            201,
            broken(&quote, "/data/status", json!("locked")),
        ),
        (
            "post",
            "/v1/quotes",
            201,
            broken(&quote, "/data/created_at", json!("yesterday")),
        ),
        (
            "post",
            "/v1/quotes",
            201,
            broken(&quote, "/data", json!({ "id": "QUO_x" })),
        ),
        (
            "post",
            "/v1/transfers",
            201,
            broken(&transfer, "/data/status", json!("done")),
        ),
        (
            "post",
            "/v1/transfers",
            201,
            broken(&transfer, "/data/fees", json!("none")),
        ),
        (
            "post",
            "/v1/quotes",
            400,
            broken(&error, "/error", json!({ "name": "bad_request" })),
        ),
    ];

    for (method, path, status, body) in cases {
        assert!(
            !violations(method, path, status, &body).is_empty(),
            "a broken {method} {path} {status} body passed: {body}"
        );
    }
}

// ------------------------------------------------------------------ balances, banks, pairs

#[tokio::test]
async fn balances_conform() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();

    let list = ts.get("/v1/balances", &token).await;
    let by_code = ts.get("/v1/balances/USDT", &token).await;
    let balance_id = list.body["data"][0]["id"]
        .as_str()
        .expect("a balance id")
        .to_string();
    let by_id = ts.get(&format!("/v1/balances/{balance_id}"), &token).await;
    let missing = ts.get("/v1/balances/XYZ", &token).await;

    assert_eq!(list.status, StatusCode::OK);
    assert_conforms("get", "/v1/balances", &list);
    for reply in [&by_code, &by_id] {
        assert_eq!(reply.status, StatusCode::OK);
        assert_conforms("get", "/v1/balances/{id_or_code}", reply);
    }
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_conforms("get", "/v1/balances/{id_or_code}", &missing);
}

#[tokio::test]
async fn banks_and_pairs_conform() {
    let ts = TestSandbox::start().await;

    let banks = ts.get_anonymous("/v1/banks?currency=NGN&country=NG").await;
    let pairs = ts.get_anonymous("/v1/pairs").await;

    assert_eq!(banks.status, StatusCode::OK);
    assert!(banks.body["data"].as_array().is_some_and(|b| !b.is_empty()));
    assert_conforms("get", "/v1/banks", &banks);
    assert_eq!(pairs.status, StatusCode::OK);
    assert!(pairs.body["data"].as_array().is_some_and(|p| !p.is_empty()));
    assert_conforms("get", "/v1/pairs", &pairs);
}

// ------------------------------------------------------------------ recipients

#[tokio::test]
async fn recipients_conform_in_both_shapes() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();

    let flat = ts
        .post("/v1/recipients", &token, &flat_recipient("1111111111"))
        .await;
    let legacy = ts
        .post("/v1/recipients", &token, &legacy_recipient("2222222222"))
        .await;
    let list = ts.get("/v1/recipients", &token).await;
    let get_flat = ts
        .get(&format!("/v1/recipients/{}", flat.id()), &token)
        .await;
    let get_legacy = ts
        .get(&format!("/v1/recipients/{}", legacy.id()), &token)
        .await;
    let flat_as_legacy = ts
        .http
        .get(ts.url(&format!("/v1/recipients/{}", flat.id())))
        .bearer_auth(&token)
        .header("X-BU-Version", "2025-06-01")
        .send()
        .await
        .expect("GET recipient");
    let flat_as_legacy = Reply {
        status: flat_as_legacy.status(),
        headers: flat_as_legacy.headers().clone(),
        body: flat_as_legacy.json().await.expect("JSON"),
    };
    let not_found = ts
        .get(
            "/v1/recipients/00000000-0000-4000-8000-000000000000",
            &token,
        )
        .await;

    for reply in [&flat, &legacy] {
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_conforms("post", "/v1/recipients", reply);
    }
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(2));
    assert_conforms("get", "/v1/recipients", &list);
    for reply in [&get_flat, &get_legacy, &flat_as_legacy] {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_conforms("get", "/v1/recipients/{id}", reply);
    }
    assert!(flat_as_legacy.body["data"]["fields"].is_array());
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_conforms("get", "/v1/recipients/{id}", &not_found);
}

#[tokio::test]
async fn resolve_bank_account_conforms() {
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

    assert_eq!(known.status, StatusCode::CREATED);
    assert_conforms("post", "/v1/recipients/resolve-bank-account", &known);
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_conforms("post", "/v1/recipients/resolve-bank-account", &unknown);
}

// ------------------------------------------------------------------ quotes and transfers

#[tokio::test]
async fn quotes_conform_when_created_fetched_listed_and_expired() {
    let ts = TestSandbox::start_with(|c| c.behaviour.two_step_from = Some(dec!(500))).await;
    let token = ts.worker_token();
    let recipient = ts.create_recipient(&token).await;

    let payout = ts.quote(&token, payout_body(&recipient, "100")).await;
    let two_step = ts.quote(&token, payout_body(&recipient, "600")).await;
    let by_target = ts
        .quote(
            &token,
            json!({ "source_currency": "NGN", "target_currency": "USDT", "target_amount": "25.5",
                    "reference": "treasury-run-000001" }),
        )
        .await;
    let same_currency = ts
        .quote(
            &token,
            json!({ "source_currency": "NGN", "target_currency": "NGN", "source_amount": "5000",
                    "pay_out": { "type": "bank_transfer", "recipient_id": recipient } }),
        )
        .await;
    ts.advance(Duration::minutes(31));
    let expired = ts.get(&format!("/v1/quotes/{}", payout.id()), &token).await;
    let list = ts.get("/v1/quotes?limit=3", &token).await;
    let next = list.body["pagination"]["next_cursor"]
        .as_str()
        .expect("a next page");
    let second_page = ts
        .get(
            &format!(
                "/v1/quotes?limit=3&cursor={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            ),
            &token,
        )
        .await;

    for reply in [&payout, &two_step, &by_target, &same_currency] {
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_conforms("post", "/v1/quotes", reply);
    }
    assert!(two_step.body["data"]["two_step"].is_object());
    assert_eq!(expired.body["data"]["status"], "expired");
    assert_conforms("get", "/v1/quotes/{id}", &expired);
    assert_conforms("get", "/v1/quotes", &list);
    assert_conforms("get", "/v1/quotes", &second_page);
}

#[tokio::test]
async fn transfers_conform_at_every_status_and_outcome() {
    let ts = TestSandbox::start_with(|c| c.rate_limits = RateLimits::busha().scaled(5)).await;
    let token = ts.worker_token();
    let recipient = ts.create_recipient(&token).await;
    let outcomes = [
        TransferOutcome::Delivered,
        TransferOutcome::Cancelled,
        TransferOutcome::FundsNotDelivered,
        TransferOutcome::FundsRefunded,
        TransferOutcome::Stuck,
    ];
    let mut ids = Vec::new();
    for outcome in outcomes {
        ts.sb.push_transfer_outcome(outcome);
        let quote = ts.quote(&token, payout_body(&recipient, "10")).await;
        let created = ts.transfer(&token, &quote.id()).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_conforms("post", "/v1/transfers", &created);
        ids.push(created.id());
    }
    // A conversion into the balance (no payout) as well.
    let conversion = ts
        .quote(
            &token,
            json!({ "source_currency": "USDT", "target_currency": "NGN", "source_amount": "1" }),
        )
        .await;
    let converted = ts.transfer(&token, &conversion.id()).await;
    assert_conforms("post", "/v1/transfers", &converted);
    ids.push(converted.id());

    // Every intermediate status, then every final one.
    for _ in 0..6 {
        ts.advance(Duration::seconds(5));
        for id in &ids {
            let reply = ts.get(&format!("/v1/transfers/{id}"), &token).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_conforms("get", "/v1/transfers/{id}", &reply);
        }
    }
    let list = ts.get("/v1/transfers?limit=4", &token).await;
    let by_quote = ts
        .get(
            &format!("/v1/transfers?quote_id={}", conversion.id()),
            &token,
        )
        .await;

    assert_conforms("get", "/v1/transfers", &list);
    assert_conforms("get", "/v1/transfers", &by_quote);
    let statuses: Vec<String> = ids
        .iter()
        .map(|id| {
            ts.sb
                .ledger()
                .iter()
                .find_map(|e| match &e.event {
                    treasury::sandbox::LedgerEvent::TransferFinal {
                        transfer_id,
                        status,
                    } if transfer_id == id => Some(status.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "in flight".into())
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "funds_delivered",
            "cancelled",
            "funds_not_delivered",
            "funds_refunded",
            "in flight",
            "funds_converted",
        ]
    );
}

// ------------------------------------------------------------------ errors

#[tokio::test]
async fn error_bodies_conform() {
    let ts = TestSandbox::start().await;
    let token = ts.worker_token();
    ts.sb.set_rate_limits({
        let mut l = RateLimits::busha();
        l.overrides.insert("GET /v1/transfers".into(), 1);
        l
    });
    ts.sb
        .add_fault(Fault::new("POST /v1/transfers", FaultKind::ServerError(503)).times(1));
    ts.sb
        .add_fault(Fault::new("GET /v1/quotes", FaultKind::ServerError(500)).times(1));

    let cases = [
        (
            "post",
            "/v1/quotes",
            ts.quote(
                &token,
                json!({ "source_currency": "USDT", "target_currency": "NGN" }),
            )
            .await,
        ),
        (
            "post",
            "/v1/quotes",
            ts.quote(
                &token,
                json!({ "source_currency": "USDT", "target_currency": "NGN",
                        "source_amount": "1", "reference": "short" }),
            )
            .await,
        ),
        (
            "get",
            "/v1/balances",
            ts.get_anonymous("/v1/balances").await,
        ),
        (
            "get",
            "/v1/balances",
            ts.get("/v1/balances", &ts.token(&["quotes:read"])).await,
        ),
        (
            "get",
            "/v1/quotes/{id}",
            ts.get("/v1/quotes/QUO_nope", &token).await,
        ),
        (
            "get",
            "/v1/transfers",
            ts.get("/v1/transfers", &token).await,
        ),
        (
            "get",
            "/v1/transfers",
            ts.get("/v1/transfers", &token).await,
        ),
        (
            "post",
            "/v1/transfers",
            ts.transfer(&token, "QUO_whatever").await,
        ),
        ("get", "/v1/quotes", ts.get("/v1/quotes", &token).await),
        (
            "post",
            "/v1/transfers",
            ts.post("/v1/transfers", &token, &json!({ "quote_id": 42 }))
                .await,
        ),
    ];

    let statuses: Vec<u16> = cases.iter().map(|(_, _, r)| r.status.as_u16()).collect();
    assert_eq!(statuses, [400, 400, 401, 403, 404, 200, 429, 503, 500, 400]);
    for (method, path, reply) in &cases {
        assert_conforms(method, path, reply);
    }
}
