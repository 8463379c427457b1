//! `treasury demo`: the whole product on one machine with zero setup. An in-process
//! Busha sandbox on a free port, a temporary SQLite store and a generated master key;
//! a demo customer connected through the real OAuth flow; then the example jobs run on
//! the same code paths as `treasury run`, driven by one clock shared with the sandbox.

use std::io::Write;
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::clock::Clock;
use crate::config::{Secret, Settings};
use crate::grants::{
    BushaOAuth, CallbackParams, Connector, Custodian, CustodyConfig, Keyring, OAuthSettings,
};
use crate::provider::busha::{BushaClient, BushaConfig};
use crate::provider::pacing::EndpointLimits;
use crate::runs::{Run, mask_account_numbers_in};
use crate::sandbox::{NewUser, OAuthClientConfig, Sandbox, SandboxConfig, SandboxUser};
use crate::store::Store;

/// The demo customer's Busha user.
pub const DEMO_USER: &str = "demo-customer";
const DEMO_CLIENT: &str = "treasury-demo";

/// Everything the demo runs on.
pub struct DemoEnv {
    pub sandbox: Sandbox,
    pub user: SandboxUser,
    pub clock: Clock,
    pub store: Store,
    pub settings: Settings,
    pub keys: Arc<Keyring>,
    pub oauth: Arc<BushaOAuth>,
    pub custodian: Custodian,
    pub busha: BushaClient,
    _dir: tempfile::TempDir,
}

/// A bank account the sandbox's name enquiry knows: (bank code, number, name).
pub type KnownAccount = (String, String, String);

/// Starts the sandbox, a temporary store and a generated key, and connects every grant
/// alias of `settings` through the real authorization-code + PKCE flow.
pub async fn setup(
    mut settings: Settings,
    accounts: &[KnownAccount],
    out: &mut (dyn Write + Send),
) -> Result<DemoEnv, String> {
    let clock = Clock::system();
    let secret = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let redirect =
        url::Url::parse("http://127.0.0.1:8787/oauth/callback").map_err(|e| e.to_string())?;
    let sandbox = Sandbox::start(SandboxConfig {
        clock: clock.clone(),
        auto_consent: Some(DEMO_USER.into()),
        clients: vec![OAuthClientConfig::new(
            DEMO_CLIENT,
            &secret,
            redirect.as_str(),
        )],
        transfer_step: chrono::Duration::seconds(2),
        ..SandboxConfig::default()
    })
    .await
    .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    let user = sandbox.create_user(
        NewUser::new(DEMO_USER)
            .balance("USDT", Decimal::from(250_000))
            .balance("NGN", Decimal::from(5_000_000)),
    );
    for (bank, number, name) in accounts {
        sandbox.add_bank_account(bank, number, name);
    }
    let _ = writeln!(
        out,
        "sandbox    Busha sandbox on {} (user {DEMO_USER}: 250,000 USDT)",
        sandbox.url()
    );

    let dir =
        tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("treasury.db").display()
    );
    let store = Store::connect(&url).await.map_err(|e| e.to_string())?;
    settings.store.url = url;
    settings.busha.issuer_url = sandbox.url();
    settings.busha.api_url = sandbox.url();
    settings.busha.client_id = DEMO_CLIENT.into();
    settings.busha.redirect_uri = redirect.clone();
    let _ = writeln!(
        out,
        "store      temporary SQLite store {}",
        dir.path().join("treasury.db").display()
    );

    let keys = Arc::new(Keyring::generate(1));
    let oauth = Arc::new(
        BushaOAuth::discover(
            &OAuthSettings::new(sandbox.url(), DEMO_CLIENT, Secret::new(secret), redirect),
            clock.clone(),
        )
        .await
        .map_err(|e| format!("cannot read the sandbox's discovery: {e}"))?,
    );
    let connector = Connector::new(
        store.clone(),
        keys.clone(),
        oauth.clone(),
        clock.clone(),
        settings.grants.clone(),
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    for spec in &settings.grants {
        let started = connector
            .begin(&spec.alias)
            .await
            .map_err(|e| e.to_string())?;
        // The sandbox's auto-consent answers the authorization page with a redirect to
        // our callback; a browser would follow it, and so do we.
        let res = browser
            .get(started.url.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| url::Url::parse(l).ok())
            .ok_or("the sandbox did not redirect back to the callback")?;
        let mut params = CallbackParams::default();
        for (k, v) in location.query_pairs() {
            match k.as_ref() {
                "code" => params.code = Some(v.into_owned()),
                "state" => params.state = Some(v.into_owned()),
                "error" => params.error = Some(v.into_owned()),
                "error_description" => params.error_description = Some(v.into_owned()),
                _ => {}
            }
        }
        let done = connector
            .complete(&params, "operator:demo")
            .await
            .map_err(|e| e.to_string())?;
        let _ = writeln!(
            out,
            "connect    grant {} connected through OAuth2 + PKCE (Busha user {}, {} scopes)",
            done.grant.alias,
            done.grant.subject,
            done.grant.scopes.len()
        );
    }
    let custodian = Custodian::new(
        store.clone(),
        keys.clone(),
        oauth.clone(),
        clock.clone(),
        CustodyConfig::default(),
    );
    let mut api = BushaConfig::new(sandbox.url());
    // The demo keeps Busha's documented limits: the pacer and the sandbox agree.
    api.limits = EndpointLimits::busha();
    let busha = BushaClient::new(api).map_err(|e| e.to_string())?;
    Ok(DemoEnv {
        sandbox,
        user,
        clock,
        store,
        settings,
        keys,
        oauth,
        custodian,
        busha,
        _dir: dir,
    })
}

/// The run table: job, state, amounts, rate, transfer id.
pub fn write_run_table(runs: &[Run], out: &mut (dyn Write + Send)) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<26} {:<34} {:<19} {:>14} {:>16} {:>9}  TRANSFER",
        "JOB", "OCCURRENCE", "STATE", "SOURCE", "TARGET", "RATE"
    )?;
    for r in runs {
        let (source, target, rate) = match &r.quote {
            Some(q) => (
                format!("{} {}", q.source_amount, r.spec.source_currency),
                format!("{} {}", q.target_amount, r.spec.target_currency),
                q.rate.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let occurrence: String = r.occurrence_key.chars().take(34).collect();
        writeln!(
            out,
            "{:<26} {:<34} {:<19} {:>14} {:>16} {:>9}  {}",
            r.job_id,
            mask_account_numbers_in(&occurrence),
            r.state.as_str(),
            source,
            target,
            rate,
            r.transfer_id.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

/// The demo's last line: `audit chain verified (N entries)`, or the break.
pub async fn audit_line(store: &Store) -> Result<String, String> {
    match store.verify_audit(None).await.map_err(|e| e.to_string())? {
        Ok(chain) => Ok(format!("audit chain verified ({} entries)", chain.entries)),
        Err(broken) => Err(format!("audit chain broken: {broken}")),
    }
}
