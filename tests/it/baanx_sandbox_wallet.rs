//! The Baanx sandbox's wallets, whitelist, withdrawals, history and consent v2, and
//! its control surface and standalone binary (issue 12 §2).

use chrono::Duration;
use reqwest::{Method, StatusCode};
use rust_decimal::dec;
use serde_json::{Value, json};
use treasury::sandbox::baanx::{
    BaanxClient, BaanxEvent, Custody, NewWhitelistEntry, PlatformWallet,
};
use treasury::sandbox::{Fault, FaultKind, RateLimits};

use crate::baanx_sandbox_support::{Bx, KEY, REDIRECT, SECRET};

const DEST: &str = "0x9999999999999999999999999999999999999999";

/// A sandbox with a granted user holding 100 USDC on Linea and `DEST` whitelisted.
async fn funded() -> (Bx, String, String) {
    let bx = Bx::start().await;
    let wallet = bx.wallet("linea", "usdc", dec!(100));
    bx.sb.add_whitelist(
        &bx.user.id,
        NewWhitelistEntry {
            currency: "usdc".into(),
            name: "Treasury".into(),
            address: DEST.into(),
            memo: None,
        },
    );
    let grant = bx.grant().await;
    (bx, grant.access, wallet.address)
}

fn withdraw_body(amount: &str, source: &str) -> Value {
    json!({ "amount": amount, "recipientAddrss": DEST, "sourceAddress": source, "currency": "usdc" })
}

fn withdrawals(bx: &Bx) -> Vec<(String, rust_decimal::Decimal)> {
    bx.sb
        .ledger()
        .into_iter()
        .filter_map(|e| match e.event {
            BaanxEvent::Withdrawal {
                withdrawal_id,
                amount,
                ..
            } => Some((withdrawal_id, amount)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn internal_wallets_list_and_create_idempotently_per_network_and_currency() {
    let bx = Bx::start().await;
    let access = bx.grant().await.access;
    let create = |pairs: Value| {
        bx.call(Method::POST, "/v1/wallet/internal")
            .bearer(&access)
            .json(json!({ "wallets": pairs }))
            .send()
    };

    let first = create(json!([{ "network": "linea", "currency": "usdc" }, { "network": "xrp", "currency": "xrp" }])).await;
    let again = create(json!([{ "network": "linea", "currency": "usdc" }])).await;
    let unsupported = create(json!([{ "network": "bitcoin", "currency": "usdc" }])).await;
    let list = bx
        .call(Method::GET, "/v1/wallet/internal")
        .bearer(&access)
        .send()
        .await;

    assert_eq!(first.body, json!({ "success": true }));
    assert_eq!(again.body, json!({ "success": true }));
    assert_eq!(unsupported.status, StatusCode::BAD_REQUEST);
    let wallets = list.body.as_array().unwrap();
    assert_eq!(wallets.len(), 2, "no duplicate: {}", list.body);
    assert_eq!(wallets[0]["balance"], "0");
    assert_eq!(wallets[0]["type"], "INTERNAL");
    assert_eq!(wallets[0]["addressMemo"], Value::Null);
    assert!(
        wallets[1]["addressMemo"].is_string(),
        "an XRP wallet has a destination tag"
    );
}

#[tokio::test]
async fn a_non_custodial_tenant_refuses_internal_wallet_routes_with_baanx_message() {
    let bx = Bx::start().await;
    bx.sb.register_client(BaanxClient {
        custody: Custody::NonCustodial,
        ..BaanxClient::new("nc", SECRET, REDIRECT)
    });
    let login = bx
        .login(
            crate::baanx_sandbox_support::EMAIL,
            crate::baanx_sandbox_support::PASSWORD,
            treasury::sandbox::baanx::Region::International,
        )
        .await;

    let a = bx
        .bare(Method::GET, "/v1/wallet/internal")
        .header("x-client-key", "nc")
        .header("authorization", &format!("Bearer {login}"))
        .send()
        .await;

    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.body,
        json!({ "message": "This route is only available for CUSTODIAL" })
    );
}

#[tokio::test]
async fn credit_and_reward_wallets_are_404_until_first_credited() {
    let bx = Bx::start().await;
    let access = bx.grant().await.access;

    let before = bx
        .call(Method::GET, "/v1/wallet/credit")
        .bearer(&access)
        .send()
        .await;
    bx.sb
        .credit(&bx.user.id, PlatformWallet::Credit, dec!(150.50), true);
    bx.sb
        .credit(&bx.user.id, PlatformWallet::Reward, dec!(3), false);
    let credit = bx
        .call(Method::GET, "/v1/wallet/credit")
        .bearer(&access)
        .send()
        .await;
    let reward = bx
        .call(Method::GET, "/v1/wallet/reward")
        .bearer(&access)
        .send()
        .await;
    let locked = bx
        .call(Method::POST, "/v1/wallet/reward/withdraw")
        .bearer(&access)
        .json(json!({ "amount": "1" }))
        .send()
        .await;
    let estimate = bx
        .call(Method::GET, "/v1/wallet/credit/withdraw-estimation")
        .bearer(&access)
        .send()
        .await;
    let paid = bx
        .call(Method::POST, "/v1/wallet/credit/withdraw")
        .bearer(&access)
        .json(json!({ "amount": "10.00" }))
        .send()
        .await;
    let too_much = bx
        .call(Method::POST, "/v1/wallet/credit/withdraw")
        .bearer(&access)
        .json(json!({ "amount": "1000" }))
        .send()
        .await;

    assert_eq!(before.status, StatusCode::NOT_FOUND);
    assert_eq!(before.body, json!({ "message": "Wallet not found" }));
    assert_eq!(credit.body["balance"], "150.50");
    assert_eq!(credit.body["currency"], "usdc");
    assert_eq!(credit.body["isWithdrawable"], true);
    assert_eq!(credit.body["type"], "CREDIT");
    assert_eq!(reward.body["isWithdrawable"], false);
    assert_eq!(locked.status, StatusCode::BAD_REQUEST);
    for key in ["gas", "fee", "wei", "eth", "usdc"] {
        assert!(
            estimate.body[key].is_string(),
            "the union shape has {key}: {}",
            estimate.body
        );
    }
    assert_eq!(paid.status, StatusCode::OK);
    assert!(paid.body["txHash"].as_str().unwrap().starts_with("0x"));
    assert_eq!(paid.body["network"], "linea");
    assert_eq!(paid.body["confirmed"], true);
    assert_eq!(too_much.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ledger = bx.sb.ledger();
    assert!(ledger.iter().any(|e| matches!(&e.event, BaanxEvent::Withdrawal { wallet_type, tx_hash: Some(_), .. } if wallet_type == "CREDIT")));
}

#[tokio::test]
async fn the_withdraw_field_is_recipient_addrss_typo_included() {
    let (bx, access, source) = funded().await;
    let spelled_out = json!({ "amount": "1", "recipientAddress": DEST, "sourceAddress": source, "currency": "usdc" });

    let refused = bx
        .call(Method::POST, "/v1/wallet/internal/withdraw")
        .bearer(&access)
        .json(spelled_out)
        .send()
        .await;
    let paid = bx
        .call(Method::POST, "/v1/wallet/internal/withdraw")
        .bearer(&access)
        .json(withdraw_body("25.5", &source))
        .send()
        .await;

    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.body,
        json!({ "message": "recipientAddrss is required" })
    );
    assert_eq!(paid.status, StatusCode::OK);
    assert_eq!(
        paid.body,
        json!({ "success": true }),
        "no id, no hash, no status"
    );
    assert_eq!(
        bx.sb.balance(&bx.user.id, "linea", "usdc"),
        Some(dec!(74.5))
    );
    assert_eq!(withdrawals(&bx), [("wd_000001".to_string(), dec!(25.5))]);
}

#[tokio::test]
async fn memo_rules_refuse_null_keys_a_missing_tag_and_a_stray_memo() {
    let (bx, access, source) = funded().await;
    let xrp = bx.wallet("xrp", "xrp", dec!(50));
    let post = |body: Value| {
        bx.call(Method::POST, "/v1/wallet/internal/withdraw")
            .bearer(&access)
            .json(body)
            .send()
    };

    let mut null_memo = withdraw_body("1", &source);
    null_memo["recipientMemo"] = Value::Null;
    let null_memo = post(null_memo).await;
    let mut stray = withdraw_body("1", &source);
    stray["recipientMemo"] = json!("42");
    let stray = post(stray).await;
    let no_tag = post(json!({ "amount": "1", "recipientAddrss": "rDEST", "sourceAddress": xrp.address, "currency": "xrp" })).await;

    assert_eq!(
        null_memo.body,
        json!({ "message": "recipientMemo must be a string when present" })
    );
    assert_eq!(
        stray.body,
        json!({ "message": "recipientMemo is not supported for usdc" })
    );
    assert_eq!(
        no_tag.body,
        json!({ "message": "recipientMemo is required for xrp" })
    );
    assert!(withdrawals(&bx).is_empty());
}

#[tokio::test]
async fn whitelist_enforcement_refuses_unlisted_addresses_unless_switched_off() {
    let (bx, access, source) = funded().await;
    let mut elsewhere = withdraw_body("1", &source);
    elsewhere["recipientAddrss"] = json!("0x1111111111111111111111111111111111111111");

    let refused = bx
        .call(Method::POST, "/v1/wallet/internal/withdraw")
        .bearer(&access)
        .json(elsewhere.clone())
        .send()
        .await;
    bx.sb.update_behaviour(|b| b.whitelist_enforced = false);
    let allowed = bx
        .call(Method::POST, "/v1/wallet/internal/withdraw")
        .bearer(&access)
        .json(elsewhere)
        .send()
        .await;

    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.body,
        json!({ "message": "Recipient address is not whitelisted" })
    );
    assert_eq!(allowed.body, json!({ "success": true }));
}

#[tokio::test]
async fn insufficient_balance_is_422_and_debits_nothing() {
    let (bx, access, source) = funded().await;

    let a = bx
        .call(Method::POST, "/v1/wallet/internal/withdraw")
        .bearer(&access)
        .json(withdraw_body("100.01", &source))
        .send()
        .await;

    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.body, json!({ "message": "Insufficient balance" }));
    assert_eq!(bx.sb.balance(&bx.user.id, "linea", "usdc"), Some(dec!(100)));
}

#[tokio::test]
async fn pending_whitelist_entries_are_absent_and_unpayable_until_approved() {
    let (bx, access, source) = funded().await;
    bx.sb.update_behaviour(|b| b.whitelist_approval_secs = 3600);
    let new = "0x2222222222222222222222222222222222222222";
    let add = bx
        .call(Method::POST, "/v1/wallet/whitelist")
        .bearer(&access)
        .json(json!({ "wallets": [
            { "currency": "usdc", "name": "Vendor", "beneficiaryFirstName": "Grace", "beneficiaryLastName": "Hopper", "walletAddress": new },
            { "currency": "usdt", "name": "Other", "beneficiaryFirstName": "Alan", "beneficiaryLastName": "Turing", "walletAddress": new },
        ]}))
        .send()
        .await;
    let list = || {
        bx.call(Method::GET, "/v1/wallet/whitelist?currency=usdc")
            .bearer(&access)
            .send()
    };
    let mut pay = withdraw_body("5", &source);
    pay["recipientAddrss"] = json!(new);

    let pending_list = list().await;
    let pending_pay = bx
        .call(Method::POST, "/v1/wallet/internal/withdraw")
        .bearer(&access)
        .json(pay.clone())
        .send()
        .await;
    bx.advance(Duration::seconds(3600));
    let approved_list = list().await;
    let approved_pay = bx
        .call(Method::POST, "/v1/wallet/internal/withdraw")
        .bearer(&access)
        .json(pay)
        .send()
        .await;
    let no_currency = bx
        .call(Method::GET, "/v1/wallet/whitelist")
        .bearer(&access)
        .send()
        .await;

    assert_eq!(add.body, json!({ "success": true }));
    assert_eq!(
        pending_list.body.as_array().unwrap().len(),
        1,
        "only the seeded entry: {}",
        pending_list.body
    );
    assert_eq!(
        pending_pay.body["message"],
        "Recipient address is not whitelisted"
    );
    let entries = approved_list.body.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let vendor = entries.iter().find(|e| e["walletAddress"] == new).unwrap();
    assert_eq!(vendor["beneficiaryFirstName"], "Grace");
    assert_eq!(vendor["walletMemo"], Value::Null);
    assert_eq!(approved_pay.body, json!({ "success": true }));
    assert_eq!(no_currency.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bx.sb
            .ledger()
            .iter()
            .any(|e| matches!(e.event, BaanxEvent::WhitelistAdded { pending: true, .. }))
    );

    // Delete by ids: the entry disappears.
    let id = vendor["id"].as_str().unwrap();
    let deleted = bx
        .call(Method::DELETE, "/v1/wallet/whitelist")
        .bearer(&access)
        .json(json!({ "walletIds": [id] }))
        .send()
        .await;
    assert_eq!(deleted.body, json!({ "success": true }));
    let after = list().await;
    assert!(after.body.as_array().unwrap().iter().all(|e| e["id"] != id));
    let used = after.body.as_array().unwrap()[0]["lastUsedAt"].clone();
    assert_eq!(used, Value::Null, "the seeded entry was never paid");
}

#[tokio::test]
async fn history_is_ten_a_page_newest_first_zero_based_after_the_settle_delay() {
    let (bx, access, source) = funded().await;
    let wallet_id = bx.wallet("linea", "usdc", dec!(100)).id;
    // Twelve withdrawals in a minute: twice the sandbox's limits, for volume.
    bx.sb.set_rate_limits(RateLimits::baanx().scaled(2));
    for i in 1..=12 {
        let a = bx
            .call(Method::POST, "/v1/wallet/internal/withdraw")
            .bearer(&access)
            .json(withdraw_body(&i.to_string(), &source))
            .send()
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        bx.advance(Duration::seconds(1));
        if i == 1 {
            bx.sb.set_wallet(
                &bx.user.id,
                treasury::sandbox::baanx::NewWallet {
                    network: "linea".into(),
                    currency: "usdc".into(),
                    balance: dec!(100),
                },
            );
        }
    }
    let page = |p: &str| {
        bx.call(Method::GET, &format!("/v1/wallet/history?walletId={wallet_id}&walletType=INTERNAL&walletCurrency=usdc&page={p}")).bearer(&access).send()
    };

    let unsettled = page("0").await;
    bx.advance(Duration::seconds(10));
    let first = page("0").await;
    let second = page("1").await;
    let beyond = page("2").await;
    let garbage = page("x").await;
    let no_currency = bx
        .call(
            Method::GET,
            &format!("/v1/wallet/history?walletId={wallet_id}&walletType=INTERNAL"),
        )
        .bearer(&access)
        .send()
        .await;

    let amounts = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| h["amount"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        amounts(&unsettled.body).len() < 12,
        "the newest have not settled yet"
    );
    assert_eq!(
        amounts(&first.body),
        ["12", "11", "10", "9", "8", "7", "6", "5", "4", "3"]
    );
    assert_eq!(amounts(&second.body), ["2", "1"]);
    assert_eq!(beyond.body, json!([]));
    assert_eq!(garbage.body, first.body, "an invalid page is page 0");
    let item = &first.body[0];
    assert_eq!(item["name"], "Internal withdrawal");
    assert_eq!(item["sign"], "debit");
    assert_eq!(item["currency"], "usdc");
    assert!(item.get("id").is_none(), "history items carry no id");
    assert_eq!(no_currency.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_withdrawal_dropped_after_commit_debited_and_appears_in_history() {
    let (bx, access, source) = funded().await;
    let wallet_id = bx.wallet("linea", "usdc", dec!(100)).id;
    bx.sb.add_fault(
        Fault::new(
            "POST /v1/wallet/internal/withdraw",
            FaultKind::DropAfterCommit,
        )
        .times(1),
    );

    let sent = bx
        .http
        .post(bx.url("/v1/wallet/internal/withdraw"))
        .header("x-client-key", KEY)
        .bearer_auth(&access)
        .json(&withdraw_body("40", &source))
        .send()
        .await;
    let lost = match sent {
        Ok(res) => res.bytes().await.is_err(),
        Err(_) => true,
    };
    bx.advance(Duration::seconds(10));
    let history = bx
        .call(
            Method::GET,
            &format!(
                "/v1/wallet/history?walletId={wallet_id}&walletType=INTERNAL&walletCurrency=usdc"
            ),
        )
        .bearer(&access)
        .send()
        .await;

    assert!(lost, "the caller got no answer");
    assert_eq!(bx.sb.balance(&bx.user.id, "linea", "usdc"), Some(dec!(60)));
    assert_eq!(withdrawals(&bx).len(), 1, "counted from Baanx's side");
    assert!(
        bx.sb
            .ledger()
            .iter()
            .any(|e| matches!(e.event, BaanxEvent::ResponseDropped { .. }))
    );
    assert_eq!(history.body.as_array().unwrap().len(), 1);
    assert_eq!(history.body[0]["amount"], "40");
}

#[tokio::test]
async fn a_withdrawal_dropped_before_commit_moved_nothing() {
    let (bx, access, source) = funded().await;
    bx.sb.add_fault(
        Fault::new(
            "POST /v1/wallet/internal/withdraw",
            FaultKind::DropBeforeCommit,
        )
        .times(1),
    );

    let sent = bx
        .http
        .post(bx.url("/v1/wallet/internal/withdraw"))
        .header("x-client-key", KEY)
        .bearer_auth(&access)
        .json(&withdraw_body("40", &source))
        .send()
        .await;
    let lost = match sent {
        Ok(res) => res.bytes().await.is_err(),
        Err(_) => true,
    };

    assert!(lost);
    assert_eq!(bx.sb.balance(&bx.user.id, "linea", "usdc"), Some(dec!(100)));
    assert!(withdrawals(&bx).is_empty());
}

#[tokio::test]
async fn consent_sets_link_read_audit_and_revoke_keeping_the_original_record() {
    let bx = Bx::start().await;
    let user = bx.user.id.clone();
    let consents = |with_terms: bool| {
        let mut list = vec![
            json!({ "consentType": "marketingNotifications", "consentStatus": "denied" }),
            json!({ "consentType": "smsNotifications", "consentStatus": "granted" }),
            json!({ "consentType": "emailNotifications", "consentStatus": "granted" }),
        ];
        if with_terms {
            list.push(json!({ "consentType": "termsAndPrivacy", "consentStatus": "granted" }));
        }
        json!({ "onboardingId": "onb-1", "tenantId": "tenant-1", "policyType": "global", "consents": list })
    };
    let write = |m: Method, path: &str| bx.call(m, path).header("x-secret-key", SECRET);

    let no_secret = bx
        .call(Method::POST, "/v2/consent/onboarding")
        .json(consents(true))
        .send()
        .await;
    let missing = write(Method::POST, "/v2/consent/onboarding")
        .json(consents(false))
        .send()
        .await;
    let created = write(Method::POST, "/v2/consent/onboarding")
        .json(consents(true))
        .send()
        .await;
    let set_id = created.body["consentSetId"].as_str().unwrap().to_string();
    let unknown_user = bx
        .call(Method::GET, &format!("/v2/consent/user/{user}"))
        .send()
        .await;
    let linked = write(Method::PATCH, &format!("/v2/consent/onboarding/{set_id}"))
        .json(json!({ "userId": user }))
        .send()
        .await;
    let status = bx
        .call(Method::GET, &format!("/v2/consent/user/{user}"))
        .send()
        .await;
    let terms = created.body["consents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["consentType"] == "termsAndPrivacy")
        .unwrap()["consentId"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = write(
        Method::DELETE,
        &format!("/v2/consent/consentSet/{set_id}/consent/{terms}"),
    )
    .send()
    .await;
    let again = write(
        Method::DELETE,
        &format!("/v2/consent/consentSet/{set_id}/consent/{terms}"),
    )
    .send()
    .await;
    let full = bx
        .call(Method::GET, &format!("/v2/consent/user/{user}?full=true"))
        .send()
        .await;
    let audit = bx
        .call(Method::GET, &format!("/v2/consent/user/{user}/audit"))
        .send()
        .await;
    let by_set = bx
        .call(Method::GET, &format!("/v2/consent/consentSet/{set_id}"))
        .send()
        .await;

    assert_eq!(no_secret.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        missing.body,
        json!({ "error": "Validation error", "details": ["Missing required consent: termsAndPrivacy for policy type: global"] })
    );
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(unknown_user.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown_user.body["error"], "Not found");
    assert_eq!(linked.body["userId"], user);
    assert_eq!(status.body["consentStatus"], "complete");
    assert!(status.body.get("consentSets").is_none());
    assert_eq!(revoked.body["consentStatus"], "revoked");
    assert_ne!(
        revoked.body["consentId"], terms,
        "revocation is a new record"
    );
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(full.body["consentStatus"], "incomplete");
    assert_eq!(full.body["consentSets"].as_array().unwrap().len(), 1);
    let records = by_set.body["consents"].as_array().unwrap();
    let of_terms: Vec<&str> = records
        .iter()
        .filter(|c| c["consentType"] == "termsAndPrivacy")
        .map(|c| c["consentStatus"].as_str().unwrap())
        .collect();
    assert_eq!(of_terms, ["granted", "revoked"], "the original is kept");
    let actions: Vec<&str> = audit.body["auditRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["linked", "revoked"],
        "records of this user (creation predates the link)"
    );
}

#[tokio::test]
async fn the_control_surface_seeds_users_wallets_whitelist_and_flips_switches() {
    let bx = Bx::start().await;
    let post = |path: &str, body: Value| bx.http.post(bx.url(path)).json(&body).send();

    let user: Value = post("/_sandbox/users", json!({ "email": "cs@example.com", "password": "pw", "otp": "111222", "verification_state": "VERIFIED", "region": "us" })).await.unwrap().json().await.unwrap();
    let id = user["id"].as_str().unwrap();
    let wallet = post(
        &format!("/_sandbox/users/{id}/wallets"),
        json!({ "network": "solana", "currency": "sol", "balance": "2.5" }),
    )
    .await
    .unwrap();
    let whitelisted = post(
        &format!("/_sandbox/users/{id}/whitelist"),
        json!({ "currency": "sol", "name": "Cold", "address": "SoLaNa" }),
    )
    .await
    .unwrap();
    let mut behaviour: Value = bx
        .http
        .get(bx.url("/_sandbox/behaviour"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    behaviour["whitelist_enforced"] = json!(false);
    let put = bx
        .http
        .put(bx.url("/_sandbox/behaviour"))
        .json(&behaviour)
        .send()
        .await
        .unwrap();
    let clock: Value = post("/_sandbox/clock/advance", json!({ "seconds": 60 }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ledger: Vec<Value> = bx
        .http
        .get(bx.url("/_sandbox/ledger"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(user["region"], "us");
    assert_eq!(wallet.status(), StatusCode::CREATED);
    assert_eq!(whitelisted.status(), StatusCode::CREATED);
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    assert!(!bx.sb.behaviour().whitelist_enforced);
    assert_eq!(bx.sb.balance(id, "solana", "sol"), Some(dec!(2.5)));
    assert!(clock["now"].is_string());
    assert_eq!(ledger.last().unwrap()["kind"], "whitelist_added");
}

// ------------------------------------------------------------------ the standalone binary

/// A `baanx-sandbox` child process, killed when the test ends (even by a panic).
struct Process {
    child: std::process::Child,
    base: url::Url,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_standalone_binary_prints_help_and_takes_no_secret_from_argv() {
    let bin = env!("CARGO_BIN_EXE_baanx-sandbox");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .expect("run --help");
    let refused = std::process::Command::new(bin)
        .args([
            "--client-key",
            KEY,
            "--redirect-uri",
            REDIRECT,
            "--secret-key",
            SECRET,
        ])
        .output()
        .expect("run with --secret-key");
    let no_env = std::process::Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--client-key",
            KEY,
            "--redirect-uri",
            REDIRECT,
        ])
        .env_remove("BAANX_SANDBOX_SECRET_KEY")
        .output()
        .expect("run without the secret");

    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--client-key",
        "--redirect-uri",
        "--custody",
        "--auto-consent",
        "--user",
        "--wallet",
        "--whitelist",
        "BAANX_SANDBOX_SECRET_KEY",
    ] {
        assert!(
            text.contains(flag),
            "--help does not mention {flag}:\n{text}"
        );
    }
    assert!(!refused.status.success(), "there is no --secret-key flag");
    assert_eq!(no_env.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_env.stderr).contains("BAANX_SANDBOX_SECRET_KEY"));
}

#[tokio::test]
async fn the_standalone_binary_seeds_from_flags_and_serves_api_mode() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_baanx-sandbox"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--client-key",
            KEY,
            "--redirect-uri",
            REDIRECT,
        ])
        .args([
            "--user",
            "bin@example.com:pw:123456",
            "--wallet",
            "bin@example.com:linea/usdc=250",
        ])
        .args([
            "--whitelist",
            &format!("bin@example.com:usdc:{DEST}:Treasury"),
        ])
        .env("BAANX_SANDBOX_SECRET_KEY", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn baanx-sandbox");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut process = Process {
        child,
        base: url::Url::parse("http://unset/").unwrap(),
    };
    let ready = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout).lines().find_map(|l| {
            l.ok()?
                .strip_prefix("baanx-sandbox listening on ")
                .map(str::to_string)
        })
    });
    let url = tokio::time::timeout(std::time::Duration::from_secs(30), ready)
        .await
        .unwrap()
        .unwrap()
        .expect("a readiness line");
    process.base = url::Url::parse(url.trim()).unwrap();
    let http = crate::support::no_redirects();
    let at = |p: &str| process.base.join(p).unwrap();

    let login: Value = http
        .post(at("v1/auth/login"))
        .header("x-client-key", KEY)
        .json(&json!({ "email": "bin@example.com", "password": "pw" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = login["userId"].as_str().unwrap();
    http.post(at("v1/auth/login/otp"))
        .header("x-client-key", KEY)
        .json(&json!({ "userId": user_id }))
        .send()
        .await
        .unwrap();
    let done: Value = http
        .post(at("v1/auth/login"))
        .header("x-client-key", KEY)
        .json(&json!({ "email": "bin@example.com", "password": "pw", "otpCode": "123456" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = done["accessToken"].as_str().expect("an OTP login");
    let wallets: Value = http
        .get(at("v1/wallet/internal"))
        .header("x-client-key", KEY)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list: Value = http
        .get(at("v1/wallet/whitelist?currency=usdc"))
        .header("x-client-key", KEY)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(login["isOtpRequired"], true);
    assert_eq!(wallets[0]["balance"], "250");
    assert_eq!(list[0]["walletAddress"], DEST);
}
