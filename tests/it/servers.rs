//! Private PostgreSQL and Redis servers on free ports, for tests that restart, kill or
//! flush a server without disturbing anything else. Such tests hold [`SERIAL`]: they
//! run one at a time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Held by every test that starts a private server.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pg_bin(tool: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (.ci/run installs them)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(tool)
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (initdb refuses root).
fn as_postgres(tool: &str, args: &[&str]) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(pg_bin(tool))
            .args(args);
        c
    } else {
        let mut c = Command::new(pg_bin(tool));
        c.args(args);
        c
    }
}

/// A PostgreSQL cluster of our own: initdb in a temp dir, trust auth, one port.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let dir = tempfile::Builder::new()
            .prefix("treasury-pg-")
            .tempdir()
            .unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let data = dir.path().join("data");
        let ok = as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
        assert!(ok, "initdb failed");
        let pg = PrivatePostgres {
            dir,
            port: free_port(),
        };
        pg.ctl("start");
        pg
    }

    fn ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("pg.log");
        let ok = as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-m",
                "fast",
                action,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
        assert!(ok, "pg_ctl {action} failed");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn stop(&self) {
        self.ctl("stop");
    }

    pub fn restart(&self) {
        self.ctl("restart");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

/// A Redis server of our own, in the foreground of a child process.
pub struct PrivateRedis {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let dir = tempfile::Builder::new()
            .prefix("treasury-redis-")
            .tempdir()
            .unwrap();
        let mut r = PrivateRedis {
            child: None,
            dir,
            port: free_port(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                self.dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (.ci/run installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_recovers_on_its_own_after_postgresql_restarts() {
    let _serial = SERIAL.lock().await;
    let pg = PrivatePostgres::start();
    let store = treasury::store::Store::connect(&pg.url()).await.unwrap();
    let entry =
        || treasury::audit::NewAuditEntry::new("worker:w", "run.step", serde_json::json!({}));
    store
        .append_audit(chrono::Utc::now(), entry())
        .await
        .unwrap();
    pg.stop();
    let down = store
        .append_audit(chrono::Utc::now(), entry())
        .await
        .unwrap_err();
    assert!(
        down.is_transient(),
        "a lost connection is transient: {down}"
    );
    pg.restart();
    // The pool replaces dead connections by itself; a few tries cover the ones it
    // still hands out before it notices.
    let mut recovered = false;
    for _ in 0..20 {
        if store
            .append_audit(chrono::Utc::now(), entry())
            .await
            .is_ok()
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store did not recover after the restart");
    assert_eq!(store.verify_audit(None).await.unwrap().unwrap().entries, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_redis_can_be_killed_and_started_again_empty() {
    let _serial = SERIAL.lock().await;
    let mut redis = PrivateRedis::start();
    let addr = ("127.0.0.1", redis.port);
    assert!(std::net::TcpStream::connect(addr).is_ok());
    redis.kill();
    assert!(std::net::TcpStream::connect(addr).is_err());
    redis.restart();
    assert!(
        std::net::TcpStream::connect(addr).is_ok(),
        "{}",
        redis.url()
    );
}
