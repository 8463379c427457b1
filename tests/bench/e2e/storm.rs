//! The refresh storm: many runs on grants whose access tokens have all expired.

use std::sync::Arc;

use serde_json::{Value, json};
use treasury::audit::NewAuditEntry;
use treasury::pipeline::{Pipeline, PipelineConfig};
use treasury::runs::Run;
use treasury::sandbox::{OAuthClientConfig, Sandbox};

use crate::world::{SCALE, bench_world_with, drain, spec};

/// 1,000 concurrent runs on 10 grants whose access tokens have all expired: the
/// custodian refreshes each grant once, whoever asks first, and the others wait for it.
pub async fn refresh_storm(runs: usize, grants: usize) -> Value {
    use treasury::config::Secret;
    use treasury::grants::{
        BushaOAuth, CallbackParams, Connector, Custodian, CustodyConfig, Keyring, OAuthSettings,
    };
    use treasury::sandbox::LedgerEvent;
    let b = bench_world_with(true, SCALE, None).await;
    let redirect = url::Url::parse("http://127.0.0.1:9/oauth/callback").unwrap();
    b.sb.register_client(OAuthClientConfig::new(
        "storm",
        "storm-secret",
        redirect.as_str(),
    ));
    let oauth = Arc::new(
        BushaOAuth::discover(
            &OAuthSettings::new(
                b.sb.url(),
                "storm",
                Secret::new("storm-secret".to_string()),
                redirect,
            ),
            b.clock.clone(),
        )
        .await
        .unwrap(),
    );
    let specs: Vec<treasury::config::GrantSpec> = (0..grants)
        .map(|g| treasury::config::GrantSpec {
            alias: format!("g{g}"),
            provider: "busha".into(),
            scopes: [
                "balances:read",
                "quotes:read",
                "quotes:write",
                "transfers:read",
                "transfers:write",
                "recipients:read",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ..Default::default()
        })
        .collect();
    let keys = Arc::new(Keyring::generate(1));
    let connector = Connector::new(
        b.store.clone(),
        keys.clone(),
        oauth.clone(),
        b.clock.clone(),
        specs.clone(),
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The sandbox's HTML form, posted as a person would (user "bench", default password).
    for spec in &specs {
        let started = connector.begin(&spec.alias).await.unwrap();
        let mut form: Vec<(String, String)> = started.url.query_pairs().into_owned().collect();
        form.push(("username".into(), "bench".into()));
        form.push(("password".into(), "sandbox".into()));
        form.push(("decision".into(), "approve".into()));
        let mut post = started.url.clone();
        post.set_query(None);
        let res = browser.post(post).form(&form).send().await.unwrap();
        let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
        let mut params = CallbackParams::default();
        for (k, v) in location.query_pairs() {
            match k.as_ref() {
                "code" => params.code = Some(v.into_owned()),
                "state" => params.state = Some(v.into_owned()),
                _ => {}
            }
        }
        connector.complete(&params, "bench").await.unwrap();
    }
    // Every access token expires.
    b.clock.advance(chrono::Duration::hours(2));
    let custodian = Custodian::new(
        b.store.clone(),
        keys,
        oauth,
        b.clock.clone(),
        CustodyConfig::default(),
    );
    let mut ids = Vec::with_capacity(runs);
    for i in 0..runs {
        let mut spec = spec(&b.recipient);
        spec.grant = format!("g{}", i % grants);
        let run = Run::new("storm", &format!("s-{i}"), "v1", spec, false, b.clock.now());
        b.store
            .create_run(&run, NewAuditEntry::new("bench", "run.created", json!({})))
            .await
            .unwrap();
        ids.push(run.id);
    }
    let refreshes = |sb: &Sandbox| {
        sb.ledger()
            .iter()
            .filter(|e| matches!(&e.event, LedgerEvent::TokenIssued { grant, .. } if grant == "refresh_token"))
            .count()
    };
    let before = refreshes(&b.sb);
    let p = Pipeline::new(
        b.store.clone(),
        b.busha.clone(),
        Arc::new(custodian),
        b.clock.clone(),
        PipelineConfig {
            track_base: chrono::Duration::milliseconds(50),
            ..PipelineConfig::default()
        },
    );
    let secs = drain(&p, &b.clock, ids, runs).await;
    json!({ "runs": runs, "grants": grants, "refreshes": refreshes(&b.sb) - before, "seconds": secs })
}
