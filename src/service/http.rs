//! The worker's HTTP server as `treasury run` assembles it: health and metrics, the
//! signed triggers, the operator-authenticated connect routes, and the web console.

use std::sync::Arc;

use axum::Router;

use crate::clock::Clock;
use crate::config::{Secret, Settings};
use crate::console::{ConsoleState, SessionRules};
use crate::grants::SealStatus;
use crate::grants::{BaanxConnector, BaanxTokens, BushaOAuth, Connector, Custodian, Keyring};
use crate::jobs::Job;
use crate::store::Store;
use crate::triggers::TriggerKeys;

/// What the routes are built from.
pub(super) struct HttpParts<'a> {
    pub settings: &'a Settings,
    pub store: Store,
    pub clock: Clock,
    pub keys: Arc<Keyring>,
    pub oauth: Arc<BushaOAuth>,
    pub custodian: Custodian,
    pub baanx: Option<Arc<BaanxTokens>>,
    pub jobs: Arc<Vec<Job>>,
    /// The live job set: triggers and the console follow its reloads.
    pub live: Option<crate::jobs::in_force::LiveSet>,
    pub trigger_keys: Arc<TriggerKeys>,
    pub webhook_secret: Option<Secret>,
    pub seals: SealStatus,
    pub worker_id: String,
}

/// Every route of the worker's HTTP server.
pub(super) fn router(p: HttpParts<'_>) -> Router {
    let HttpParts {
        settings,
        store,
        clock,
        keys,
        oauth,
        custodian,
        baanx,
        jobs,
        live,
        trigger_keys,
        webhook_secret,
        seals,
        worker_id,
    } = p;
    let mut console =
        console_state(settings, &store, &clock, jobs.clone()).with_custodian(custodian.clone());
    if let Some(live) = &live {
        console = console.following(live.clone());
    }
    let mut router = crate::http::ops::ops_router(crate::http::ops::OpsState {
        store: store.clone(),
        clock: clock.clone(),
        metrics: crate::metrics::install(),
        webhook_secret: webhook_secret.map(Arc::new),
        seals,
    })
    .merge(crate::http::triggers::trigger_router(
        crate::http::triggers::TriggerState {
            store: store.clone(),
            clock: clock.clone(),
            jobs: jobs.clone(),
            keys: trigger_keys,
            actor: format!("worker:{worker_id}"),
            live,
        },
    ));
    // The connect routes authenticate operator accounts by their personal tokens.
    let baanx = baanx.zip(settings.baanx.as_ref()).map(|(tokens, b)| {
        BaanxConnector::new(
            store.clone(),
            keys.clone(),
            tokens,
            custodian.clone(),
            clock.clone(),
            settings.grants.clone(),
            b.hosted_url.clone(),
        )
    });
    let connector = Connector::new(
        store.clone(),
        keys,
        oauth,
        clock.clone(),
        settings.grants.clone(),
    );
    router = router.merge(crate::http::router(crate::http::AppState {
        connector: Some(connector),
        baanx,
        store: store.clone(),
        clock: clock.clone(),
    }));
    router.merge(crate::console::router(console))
}

/// The console over `store`, knowing the loaded jobs' ids and the declared grants.
pub fn console_state(
    settings: &Settings,
    store: &Store,
    clock: &Clock,
    jobs: Arc<Vec<Job>>,
) -> ConsoleState {
    let rules: SessionRules = settings.http.sessions();
    ConsoleState::new(store.clone(), clock.clone(), rules).with_names(
        jobs,
        settings.grants.iter().map(|g| g.alias.clone()).collect(),
    )
}
