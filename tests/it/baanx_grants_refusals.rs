//! Baanx customers a connect refuses (issue 12 §4), each with a message that says why
//! and nothing stored: not verified, onboarding incomplete, a consent not confirmed,
//! `termsAndPrivacy` denied or revoked, and a second alias on one Baanx user.

use reqwest::Method;
use serde_json::json;
use treasury::grants::ConnectError;
use treasury::sandbox::baanx::{BaanxEvent, NewBaanxUser};

use crate::baanx_grants_harness::{API, Bw, OTHER, Script};
use crate::baanx_sandbox_support::{EMAIL, PASSWORD, SECRET};
use crate::backends::TestStore;

#[tokio::test]
async fn api_mode_refuses_unverified_or_unonboarded_customers_and_a_consent_not_confirmed() {
    let w = Bw::start(TestStore::sqlite().await).await;
    w.bx.sb
        .create_user(NewBaanxUser::new("kyc@example.com", "pw").verification("PENDING"));
    w.bx.sb
        .create_user(NewBaanxUser::new("new@example.com", "pw").phase("ADDRESS"));
    let attempt = async |answers: &[&str]| {
        let mut script = Script::new(answers);
        w.connector()
            .connect_api(API, &mut script, "operator:cli")
            .await
            .unwrap_err()
            .to_string()
    };

    let unverified = attempt(&["kyc@example.com", "pw"]).await;
    let onboarding = attempt(&["new@example.com", "pw"]).await;
    let declined = attempt(&[EMAIL, PASSWORD, "no"]).await;

    assert!(
        unverified.contains("not verified") && unverified.contains("PENDING"),
        "{unverified}"
    );
    assert!(
        onboarding.contains("onboarding is incomplete") && onboarding.contains("ADDRESS"),
        "{onboarding}"
    );
    assert!(declined.contains("not confirmed"), "{declined}");
    assert!(
        w.store().grants().await.unwrap().is_empty(),
        "nothing was stored"
    );
    assert_eq!(
        w.count(|e| matches!(e, BaanxEvent::LoggedOut { .. })),
        3,
        "every login was ended"
    );
    assert_eq!(w.count(|e| matches!(e, BaanxEvent::TokenIssued { .. })), 0);
}

/// Links a global consent set to `user` with termsAndPrivacy `terms`; `revoke` then
/// revokes that consent.
async fn consent_for(w: &Bw, user: &str, terms: &str, revoke: bool) {
    let write = |m: Method, path: &str| w.bx.call(m, path).header("x-secret-key", SECRET);
    let body = json!({ "onboardingId": format!("onb-{user}"), "tenantId": "tenant-1", "policyType": "global", "consents": [
        { "consentType": "marketingNotifications", "consentStatus": "denied" },
        { "consentType": "smsNotifications", "consentStatus": "granted" },
        { "consentType": "emailNotifications", "consentStatus": "granted" },
        { "consentType": "termsAndPrivacy", "consentStatus": terms },
    ]});
    let created = write(Method::POST, "/v2/consent/onboarding")
        .json(body)
        .send()
        .await;
    assert!(created.status.is_success(), "{}", created.text);
    let set = created.body["consentSetId"].as_str().unwrap().to_string();
    let linked = write(Method::PATCH, &format!("/v2/consent/onboarding/{set}"))
        .json(json!({ "userId": user }))
        .send()
        .await;
    assert!(linked.status.is_success(), "{}", linked.text);
    if revoke {
        let id = created.body["consents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["consentType"] == "termsAndPrivacy")
            .unwrap()["consentId"]
            .as_str()
            .unwrap()
            .to_string();
        let r = write(
            Method::DELETE,
            &format!("/v2/consent/consentSet/{set}/consent/{id}"),
        )
        .send()
        .await;
        assert!(r.status.is_success(), "{}", r.text);
    }
}

#[tokio::test]
async fn a_customer_whose_terms_and_privacy_are_denied_or_revoked_is_refused() {
    // Arrange
    let w = Bw::start(TestStore::sqlite().await).await;
    let denied =
        w.bx.sb
            .create_user(NewBaanxUser::new("denied@example.com", "pw"));
    let revoked =
        w.bx.sb
            .create_user(NewBaanxUser::new("revoked@example.com", "pw"));
    consent_for(&w, &denied.id, "denied", false).await;
    consent_for(&w, &revoked.id, "granted", true).await;
    consent_for(&w, &w.bx.user.id, "granted", false).await;
    let attempt = async |email: &str, alias: &str| {
        let mut script = Script::new(&[email, "pw", "yes"]);
        w.connector()
            .connect_api(alias, &mut script, "operator:cli")
            .await
    };

    // Act
    let refused_denied = attempt("denied@example.com", API).await.unwrap_err();
    let refused_revoked = attempt("revoked@example.com", API).await.unwrap_err();
    let granted = w.connect_api(OTHER).await.unwrap();

    // Assert
    assert!(
        matches!(refused_denied, ConnectError::Refused(_)),
        "{refused_denied}"
    );
    assert!(
        refused_denied
            .to_string()
            .contains("termsAndPrivacy consent at Baanx is denied"),
        "{refused_denied}"
    );
    assert!(
        refused_revoked.to_string().contains("is revoked"),
        "{refused_revoked}"
    );
    assert_eq!(
        w.count(|e| matches!(e, BaanxEvent::FamilyRevoked { .. })),
        2,
        "the refused consents' tokens were revoked"
    );
    assert!(granted.warnings.is_empty(), "{:?}", granted.warnings);
    let status = granted.grant.consent.unwrap().provider_consent.unwrap();
    assert_eq!(status.terms_and_privacy.as_deref(), Some("granted"));
    let stored = w.store().grants().await.unwrap();
    assert_eq!(stored.len(), 1, "only the consenting customer is stored");
}

#[tokio::test]
async fn two_aliases_on_one_baanx_user_are_refused() {
    let w = Bw::start(TestStore::sqlite().await).await;
    let first = w.connect_api(API).await.unwrap();

    let second = w.connect_api(OTHER).await.unwrap_err().to_string();

    assert!(
        second.contains("already connected as [\"cards\"]"),
        "{second}"
    );
    let token = w.custodian().access_token(&first.grant.id).await.unwrap();
    assert!(
        w.token_works(token.secret()).await,
        "the first grant is untouched"
    );
    assert_eq!(
        w.count(|e| matches!(e, BaanxEvent::FamilyRevoked { .. })),
        0
    );
}
