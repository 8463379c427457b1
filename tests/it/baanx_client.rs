//! The typed Baanx client against the Baanx sandbox: a happy path for every endpoint
//! it calls, and each error class produced through the sandbox (issue 12 §3).

use std::time::Duration as StdDuration;

use chrono::Duration;
use rust_decimal::dec;
use treasury::money::Currency;
use treasury::provider::baanx::{
    BaanxClient, BaanxConfig, Grant, HistoryOf, InternalWithdrawal, NewWhitelistEntry, Region,
};
use treasury::provider::busha::ErrorKind;
use treasury::provider::pacing::EndpointLimits;
use treasury::provider::{AccessToken, Unleased};
use treasury::sandbox::baanx::{NewBaanxUser, NewWhitelistEntry as Seeded, PlatformWallet};
use treasury::sandbox::{CannedResponse, Fault, FaultKind, RateLimits};

use crate::baanx_sandbox_support::{Bx, EMAIL, KEY, PASSWORD, REDIRECT, SECRET};

const DEST: &str = "0x9999999999999999999999999999999999999999";

fn client(bx: &Bx, key: &str) -> BaanxClient {
    let mut config = BaanxConfig::new(bx.sb.url(), key);
    config.secret_key = Some(SECRET.into());
    config.timeout = StdDuration::from_millis(700);
    // Volume: the client paces ten times faster than Baanx's defaults, and the sandbox
    // allows as much.
    config.limits = EndpointLimits::baanx().scaled(10);
    bx.sb.set_rate_limits(RateLimits::baanx().scaled(10));
    BaanxClient::new(config).expect("a client")
}

fn usdc() -> Currency {
    Currency::new("usdc").unwrap()
}

/// The sandbox's user through API mode, tokens from the client's own exchange.
async fn granted(bx: &Bx) -> (BaanxClient, AccessToken, String) {
    let c = client(bx, KEY);
    let (code, verifier) = bx
        .code_for(EMAIL, PASSWORD, Region::International.into_sandbox())
        .await;
    let tokens = c
        .exchange_code(Region::International, &code, REDIRECT, &verifier)
        .await
        .expect("exchange")
        .value;
    (
        c,
        AccessToken::new(tokens.access_token),
        tokens.refresh_token,
    )
}

trait IntoSandbox {
    fn into_sandbox(self) -> treasury::sandbox::baanx::Region;
}

impl IntoSandbox for Region {
    fn into_sandbox(self) -> treasury::sandbox::baanx::Region {
        match self {
            Region::International => treasury::sandbox::baanx::Region::International,
            Region::Us => treasury::sandbox::baanx::Region::Us,
        }
    }
}

fn intl(token: &AccessToken) -> Grant<'_> {
    Grant {
        token,
        region: Region::International,
    }
}

#[tokio::test]
async fn every_endpoint_has_a_happy_path_through_the_sandbox() {
    let bx = Bx::start().await;
    let source = bx.wallet("linea", "usdc", dec!(100)).address;
    let (c, token, refresh) = granted(&bx).await;
    let g = intl(&token);

    let refreshed = c
        .refresh(Region::International, &refresh)
        .await
        .unwrap()
        .value;
    let token = AccessToken::new(refreshed.access_token.clone());
    let g2 = intl(&token);
    let user = c.user(g2).await.unwrap().value;
    c.create_internal_wallets(g2, &[("solana", &Currency::new("sol").unwrap())])
        .await
        .unwrap();
    let wallets = c.internal_wallets(g2).await.unwrap().value;
    let before_credit = c.credit_wallet(g2).await.unwrap().value;
    bx.sb
        .credit(&bx.user.id, PlatformWallet::Credit, dec!(20), true);
    let credit = c.credit_wallet(g2).await.unwrap().value;
    let reward = c.reward_wallet(g2).await.unwrap().value;
    let estimate = c.credit_estimation(g2).await.unwrap().value;
    let chain = c
        .credit_withdraw(g2, dec!(5), &Unleased)
        .await
        .unwrap()
        .value;
    let entry = NewWhitelistEntry {
        currency: "usdc".into(),
        name: "Treasury".into(),
        beneficiary_first_name: "Ada".into(),
        beneficiary_last_name: "Lovelace".into(),
        wallet_address: DEST.into(),
        wallet_memo: None,
    };
    c.add_to_whitelist(g2, &[entry]).await.unwrap();
    let listed = c.whitelist(g2, &usdc()).await.unwrap().value;
    let withdrawal = InternalWithdrawal {
        amount: dec!(12.5),
        recipient_address: DEST.into(),
        recipient_memo: None,
        source_address: source.clone(),
        source_memo: None,
        currency: "usdc".into(),
    };
    c.withdraw(g2, &withdrawal, &Unleased).await.unwrap();
    bx.advance(Duration::seconds(10));
    let wallet_id = wallets
        .iter()
        .find(|w| w.address == source)
        .unwrap()
        .id
        .clone();
    let history = c
        .history(
            g2,
            &HistoryOf::Internal {
                wallet_id,
                currency: usdc(),
            },
            0,
        )
        .await
        .unwrap()
        .value;
    c.remove_from_whitelist(g2, &[listed[0].id.as_str()])
        .await
        .unwrap();
    let emptied = c.whitelist(g2, &usdc()).await.unwrap().value;
    c.revoke(g2).await.unwrap();
    let after_revoke = c.user(g2).await.unwrap_err();

    assert!(refreshed.refresh_token_expires_in.is_some());
    assert_eq!(user.email, EMAIL);
    assert_eq!(wallets.len(), 2);
    assert!(wallets.iter().any(|w| w.currency.as_str() == "SOL"));
    assert_eq!(
        before_credit.balance,
        dec!(0),
        "a 404 reads as a zero balance"
    );
    assert_eq!(before_credit.id, None);
    assert_eq!(credit.balance, dec!(20));
    assert!(credit.is_withdrawable);
    assert_eq!(reward.balance, dec!(0));
    assert!(estimate.fee_usdc.is_some());
    assert!(chain.tx_hash.starts_with("0x"));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].wallet_address, DEST);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].amount, dec!(12.5));
    assert!(emptied.is_empty());
    assert_eq!(after_revoke.kind(), &ErrorKind::Unauthorized);
    assert_eq!(
        bx.sb.balance(&bx.user.id, "linea", "usdc"),
        Some(dec!(87.5))
    );
    let _ = g;
}

#[tokio::test]
async fn each_error_class_comes_through_the_sandbox() {
    let bx = Bx::start().await;
    let xrp = bx.wallet("xrp", "xrp", dec!(5)).address;
    let source = bx.wallet("linea", "usdc", dec!(10)).address;
    bx.sb.add_whitelist(
        &bx.user.id,
        Seeded {
            currency: "usdc".into(),
            name: "T".into(),
            address: DEST.into(),
            memo: None,
        },
    );
    let (c, token, refresh) = granted(&bx).await;
    let g = intl(&token);
    let pay = |amount: rust_decimal::Decimal, currency: &str, source: &str| InternalWithdrawal {
        amount,
        recipient_address: if currency == "xrp" {
            "rDEST".into()
        } else {
            DEST.into()
        },
        recipient_memo: None,
        source_address: source.into(),
        source_memo: None,
        currency: currency.into(),
    };

    let forged = AccessToken::new("forged-token-value");
    let unauthorized = c.user(intl(&forged)).await.unwrap_err();
    let not_found = c
        .history(
            g,
            &HistoryOf::Internal {
                wallet_id: "nope".into(),
                currency: usdc(),
            },
            0,
        )
        .await
        .unwrap_err();
    let validation = c
        .withdraw(g, &pay(dec!(1), "xrp", &xrp), &Unleased)
        .await
        .unwrap_err();
    let refused = c
        .withdraw(g, &pay(dec!(11), "usdc", &source), &Unleased)
        .await
        .unwrap_err();
    bx.sb.add_fault(
        Fault::new(
            "GET /v1/user",
            FaultKind::Respond(CannedResponse {
                status: 429,
                body: serde_json::json!({"message": "Too many requests, please try again later."}),
                retry_after: Some(7),
            }),
        )
        .times(1),
    );
    let limited = c.user(g).await.unwrap_err();
    bx.sb
        .add_fault(Fault::new("GET /v1/user", FaultKind::ServerError(503)).times(1));
    let transient = c.user(g).await.unwrap_err();
    bx.sb.add_fault(
        Fault::new(
            "POST /v1/wallet/internal/withdraw",
            FaultKind::ServerError(500),
        )
        .times(1),
    );
    let unknown_5xx = c
        .withdraw(g, &pay(dec!(1), "usdc", &source), &Unleased)
        .await
        .unwrap_err();
    bx.sb.add_fault(
        Fault::new(
            "POST /v1/wallet/internal/withdraw",
            FaultKind::DropAfterCommit,
        )
        .times(1),
    );
    let unknown_drop = c
        .withdraw(g, &pay(dec!(1), "usdc", &source), &Unleased)
        .await
        .unwrap_err();
    bx.sb.add_fault(
        Fault::new(
            "GET /v1/user",
            FaultKind::Latency(StdDuration::from_millis(1500)),
        )
        .times(1),
    );
    let slow_read = c.user(g).await.unwrap_err();

    assert_eq!(unauthorized.kind(), &ErrorKind::Unauthorized);
    assert_eq!(not_found.kind(), &ErrorKind::NotFound);
    let ErrorKind::Validation { fields } = validation.kind() else {
        panic!("{validation}")
    };
    assert_eq!(fields["request"], ["recipientMemo is required for xrp"]);
    assert_eq!(
        refused.kind(),
        &ErrorKind::Rejected {
            name: "http_422".into()
        }
    );
    assert_eq!(refused.message(), Some("Insufficient balance"));
    assert_eq!(
        limited.kind(),
        &ErrorKind::RateLimited {
            retry_after: Some(StdDuration::from_secs(7))
        }
    );
    assert_eq!(transient.kind(), &ErrorKind::Transient);
    assert!(unknown_5xx.outcome_unknown(), "{unknown_5xx}");
    assert!(unknown_drop.outcome_unknown(), "{unknown_drop}");
    assert_eq!(
        slow_read.kind(),
        &ErrorKind::Transient,
        "a timed-out read: {slow_read}"
    );
    // The dropped withdrawal did happen: the caller must reconcile, not resubmit.
    assert_eq!(bx.sb.balance(&bx.user.id, "linea", "usdc"), Some(dec!(9)));

    // OAuth: a replayed refresh token and a wrong secret are refusals that say so.
    let _ = c.refresh(Region::International, &refresh).await.unwrap();
    let replay = c
        .refresh(Region::International, &refresh)
        .await
        .unwrap_err();
    assert_eq!(
        replay.kind(),
        &ErrorKind::Rejected {
            name: "invalid_grant".into()
        }
    );
    let mut wrong = BaanxConfig::new(bx.sb.url(), KEY);
    wrong.limits = EndpointLimits::baanx().scaled(10);
    wrong.secret_key = Some("not-it".into());
    let wrong = BaanxClient::new(wrong)
        .unwrap()
        .refresh(Region::International, "x")
        .await
        .unwrap_err();
    assert_eq!(
        wrong.kind(),
        &ErrorKind::Rejected {
            name: "invalid_client".into()
        }
    );

    for shown in [&unauthorized, &validation, &limited, &unknown_drop, &replay] {
        let text = format!("{shown} {shown:?}");
        assert!(
            !text.contains(token.secret())
                && !text.contains("forged-token-value")
                && !text.contains(&refresh),
            "{text}"
        );
    }
}

#[tokio::test]
async fn client_key_errors_are_configuration_errors_and_say_so() {
    let bx = Bx::start().await;
    let token = AccessToken::new("t");

    let unknown = client(&bx, "not-our-key")
        .user(intl(&token))
        .await
        .unwrap_err();
    let missing = client(&bx, "").user(intl(&token)).await.unwrap_err();

    assert_eq!(
        unknown.kind(),
        &ErrorKind::Rejected {
            name: "client_key_invalid".into()
        }
    );
    assert!(
        unknown.to_string().contains("configuration error"),
        "{unknown}"
    );
    assert_eq!(
        missing.kind(),
        &ErrorKind::Rejected {
            name: "client_key_missing".into()
        }
    );
    assert!(
        missing.to_string().contains("configuration error"),
        "{missing}"
    );
}

#[tokio::test]
async fn every_call_carries_the_grants_region() {
    let bx = Bx::start().await;
    bx.sb
        .create_user(NewBaanxUser::new("us@example.com", "pw").region(Region::Us.into_sandbox()));
    let c = client(&bx, KEY);
    let (code, verifier) = bx
        .code_for("us@example.com", "pw", Region::Us.into_sandbox())
        .await;
    let tokens = c
        .exchange_code(Region::Us, &code, REDIRECT, &verifier)
        .await
        .unwrap()
        .value;
    let token = AccessToken::new(tokens.access_token);

    let home = c
        .user(Grant {
            token: &token,
            region: Region::Us,
        })
        .await;
    let abroad = c
        .user(Grant {
            token: &token,
            region: Region::International,
        })
        .await
        .unwrap_err();

    assert_eq!(home.unwrap().value.email, "us@example.com");
    assert_eq!(abroad.kind(), &ErrorKind::Unauthorized);
}
