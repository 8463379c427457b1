//! The kill switch refuses names nobody knows: `treasury halt|resume --job|--grant`
//! with a typo fails, changes nothing and suggests the closest known name. A job id is
//! known from `jobs/` or from the store's runs (a removed job's runs in flight can still
//! be halted); a grant alias from config, the store's grants or its runs. On both
//! store backends.

use rust_decimal::dec;
use tokio_util::sync::CancellationToken;
use treasury::audit::NewAuditEntry;
use treasury::clock::Clock;
use treasury::runs::Run;

use crate::backends::TestStore;
use crate::on_both_backends;

/// A config on `t`'s store declaring grant `acme-treasury`, and a jobs directory with
/// the example `vendor-weekly` job.
struct Cli {
    dir: tempfile::TempDir,
    store: treasury::store::Store,
}

impl Cli {
    fn new(t: &TestStore) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("treasury.toml"),
            format!(
                "[store]\nurl = \"{}\"\n\n[busha]\nissuer_url = \"http://127.0.0.1:1\"\napi_url = \"http://127.0.0.1:1\"\nclient_id = \"treasury-test\"\nredirect_uri = \"http://127.0.0.1:1/cb\"\n\n[[grants]]\nalias = \"acme-treasury\"\nprovider = \"busha\"\nscopes = [\"balances:read\"]\n",
                t.url
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("jobs")).unwrap();
        std::fs::copy(
            "jobs/vendor-weekly.toml",
            dir.path().join("jobs/vendor-weekly.toml"),
        )
        .unwrap();
        Cli {
            dir,
            store: t.store.clone(),
        }
    }

    /// `treasury <args> --jobs DIR`, logged in as the account `ops`: its output, or its error.
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let config = self.dir.path().join("treasury.toml");
        let jobs = self.dir.path().join("jobs");
        let mut argv = vec!["treasury", "--config", config.to_str().unwrap()];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--jobs", jobs.to_str().unwrap()]);
        let cli = <treasury::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let mut out = Vec::new();
        let login = crate::operators_world::login(&self.store, &Clock::system(), "ops").await;
        treasury::cli::run_as(
            cli,
            Clock::system(),
            CancellationToken::new(),
            login,
            &mut out,
        )
        .await
        .map(|()| String::from_utf8(out).unwrap())
        .map_err(|e| e.to_string())
    }
}

async fn a_mistyped_job_or_grant_is_refused_with_the_closest_name_and_nothing_halts(t: TestStore) {
    // Arrange: a run of a job removed from jobs/, on a grant config no longer declares.
    let cli = Cli::new(&t);
    let mut spec = crate::guards_world::ngn(dec!(1000));
    spec.grant = "legacy-grant".into();
    let run = Run::new(
        "removed-job",
        "occ-1",
        "v1",
        spec,
        false,
        Clock::system().now(),
    );
    let entry = NewAuditEntry::new("scheduler:test", "run.created", serde_json::json!({}))
        .run(run.id.as_str())
        .job("removed-job");
    assert!(t.store.create_run(&run, entry).await.unwrap());

    // Act + Assert: typos are refused, with the name meant.
    let err = cli
        .run(&["halt", "--job", "vendor-weeky"])
        .await
        .unwrap_err();
    assert!(
        err.contains("no job \"vendor-weeky\"") && err.contains("did you mean \"vendor-weekly\"?"),
        "{err}"
    );
    let err = cli
        .run(&["halt", "--grant", "acme-treasry"])
        .await
        .unwrap_err();
    assert!(
        err.contains("no grant \"acme-treasry\"")
            && err.contains("did you mean \"acme-treasury\"?"),
        "{err}"
    );
    let err = cli
        .run(&["halt", "--job", "no-such-job"])
        .await
        .unwrap_err();
    assert!(
        err.contains("no job \"no-such-job\"") && err.contains("removed-job, vendor-weekly"),
        "the known ids are listed: {err}"
    );
    assert!(t.store.halts().await.unwrap().is_empty(), "nothing halted");

    // Known names: from jobs/, config, and the store's runs.
    for args in [
        ["halt", "--job", "vendor-weekly"],
        ["halt", "--job", "removed-job"],
        ["halt", "--grant", "acme-treasury"],
        ["halt", "--grant", "legacy-grant"],
    ] {
        let out = cli.run(&args).await.unwrap();
        assert!(out.starts_with("halted "), "{args:?}: {out}");
    }
    assert_eq!(t.store.halts().await.unwrap().len(), 4);

    // A resume with a typo is refused the same way, and lifts nothing.
    let err = cli
        .run(&["resume", "--job", "removed-jb"])
        .await
        .unwrap_err();
    assert!(err.contains("did you mean \"removed-job\"?"), "{err}");
    assert_eq!(t.store.halts().await.unwrap().len(), 4);
    cli.run(&["resume", "--job", "removed-job"]).await.unwrap();
    assert_eq!(t.store.halts().await.unwrap().len(), 3);
}

on_both_backends!(a_mistyped_job_or_grant_is_refused_with_the_closest_name_and_nothing_halts);
