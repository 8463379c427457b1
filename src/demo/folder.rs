//! The demo's folder: its store, queue and log, and with `--keep` what a newcomer needs
//! to look around afterwards (the config, the master key, the sandbox's state and the
//! demo accounts' passwords, printed once).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::config::Secret;
use crate::sandbox::Sandbox;

/// The log file's name in the folder.
pub const LOG_FILE: &str = "demo.log";
/// The store's file name in the folder.
pub const STORE_FILE: &str = "treasury.db";
const CONFIG_FILE: &str = "treasury.toml";
const KEY_FILE: &str = "master-key";
const SANDBOX_FILE: &str = "sandbox-state.json";

/// Where the demo writes. A temporary folder is deleted when this is dropped; a kept
/// one stays.
pub enum DemoFolder {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl DemoFolder {
    /// `keep`: a folder that is new or empty (a kept demo is never overwritten).
    /// `None`: a fresh temporary folder.
    pub fn open(keep: Option<&Path>) -> Result<DemoFolder, String> {
        let Some(dir) = keep else {
            return tempfile::tempdir()
                .map(DemoFolder::Temporary)
                .map_err(|e| format!("cannot create a temporary directory: {e}"));
        };
        let shown = dir.display();
        if dir.exists() {
            let mut entries = std::fs::read_dir(dir)
                .map_err(|e| format!("--keep {shown}: cannot read the folder: {e}"))?;
            if entries.next().is_some() {
                return Err(format!(
                    "--keep {shown}: the folder is not empty; name a new or empty folder (a kept demo is never overwritten)"
                ));
            }
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--keep {shown}: cannot create the folder: {e}"))?;
        let abs = std::path::absolute(dir)
            .map_err(|e| format!("--keep {shown}: cannot resolve the folder: {e}"))?;
        Ok(DemoFolder::Kept(abs))
    }

    pub fn path(&self) -> &Path {
        match self {
            DemoFolder::Kept(p) => p,
            DemoFolder::Temporary(t) => t.path(),
        }
    }

    pub fn is_kept(&self) -> bool {
        matches!(self, DemoFolder::Kept(_))
    }

    /// The log file, created (or appended to).
    pub fn log_file(&self) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join(LOG_FILE))
    }
}

/// A fresh master key in `TREASURY_MASTER_KEY`'s format (version 1).
pub fn fresh_master_key() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill_bytes(bytes.as_mut());
    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()))
}

/// What `--keep` leaves besides the store: the config `treasury serve` reads, the
/// master key (owner-only), and the sandbox's state with account numbers masked.
pub struct Keepsake<'a> {
    pub dir: &'a Path,
    pub master_key: &'a str,
    /// The config the demo ran with, as text.
    pub config_text: &'a str,
    pub http_listen: std::net::SocketAddr,
}

impl Keepsake<'_> {
    pub fn write(&self, sandbox: &Sandbox, user_id: &str) -> Result<(), String> {
        let err = |what: &str, e: std::io::Error| format!("cannot write {what}: {e}");
        write_private(&self.dir.join(KEY_FILE), self.master_key.as_bytes())
            .map_err(|e| err(KEY_FILE, e))?;
        std::fs::write(self.dir.join(CONFIG_FILE), self.config())
            .map_err(|e| err(CONFIG_FILE, e))?;
        let state = serde_json::to_string_pretty(&sandbox_state(sandbox, user_id))
            .map_err(|e| e.to_string())?;
        std::fs::write(self.dir.join(SANDBOX_FILE), state).map_err(|e| err(SANDBOX_FILE, e))
    }

    /// The demo's config with `[store] url` pointing at the kept store. The sandbox it
    /// ran against is gone: `treasury serve` reads the store and never calls Busha.
    fn config(&self) -> String {
        let url = format!("sqlite://{}?mode=rw", self.dir.join(STORE_FILE).display());
        let mut text = String::from(
            "# Written by `treasury demo --keep`: the demo's config over its kept store.\n\
             # The in-process sandbox it ran against is gone; `treasury serve` reads the\n\
             # store only.\n",
        );
        let mut in_store = false;
        for line in self.config_text.lines() {
            let t = line.trim_start();
            if t.starts_with('[') {
                in_store = t.starts_with("[store]");
            }
            if in_store && t.starts_with("url") {
                text.push_str(&format!("url = {}\n", toml_string(&url)));
            } else if t.starts_with("listen") {
                text.push_str(&format!(
                    "listen = {}\n",
                    toml_string(&self.http_listen.to_string())
                ));
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// The lines that tell a newcomer how to look around, with each account's password
    /// shown this once.
    pub fn print(
        &self,
        accounts: &[(String, Secret)],
        out: &mut (dyn Write + Send),
    ) -> std::io::Result<()> {
        let dir = self.dir.display();
        writeln!(
            out,
            "\nkept       {dir}: the store, {CONFIG_FILE}, {KEY_FILE} (owner-only), {SANDBOX_FILE} and {LOG_FILE}"
        )?;
        writeln!(
            out,
            "accounts   (passwords shown once; they are stored hashed)"
        )?;
        for (name, password) in accounts {
            writeln!(out, "           {name:<16} {}", password.expose())?;
        }
        writeln!(
            out,
            "console    TREASURY_MASTER_KEY=\"$(cat {dir}/{KEY_FILE})\" treasury serve --config {dir}/{CONFIG_FILE}"
        )?;
        writeln!(
            out,
            "           then open http://{} and sign in",
            self.http_listen
        )
    }
}

/// A TOML basic string: JSON's escapes are a subset of TOML's.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// The sandbox as the demo left it: balances and every ledger event, account numbers
/// masked.
fn sandbox_state(sandbox: &Sandbox, user_id: &str) -> Value {
    let balances: serde_json::Map<String, Value> = ["USDT", "NGN"]
        .iter()
        .filter_map(|c| {
            let b = sandbox.balance(user_id, c)?;
            Some((c.to_string(), Value::String(b.to_string())))
        })
        .collect();
    let mut ledger = serde_json::to_value(sandbox.ledger()).unwrap_or(Value::Null);
    crate::cli::runs::mask_json(&mut ledger);
    json!({ "user": user_id, "balances": balances, "ledger": ledger })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_folder_that_holds_files_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("treasury.db"), b"earlier demo").unwrap();
        let err = DemoFolder::open(Some(dir.path())).err().unwrap();
        assert!(err.contains("not empty"), "{err}");
        let left = std::fs::read(dir.path().join("treasury.db")).unwrap();
        assert_eq!(left, b"earlier demo");
    }

    #[test]
    fn the_kept_config_points_at_the_kept_store_and_listen_address() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keepsake {
            dir: dir.path(),
            master_key: "k",
            config_text: "[store]\nurl = \"sqlite://x.db\"\n[http]\nlisten = \"127.0.0.1:1\"\n[busha]\nurl = \"keep\"\n",
            http_listen: "127.0.0.1:8787".parse().unwrap(),
        };
        let text = k.config();
        let parsed: toml::Table = text.parse().unwrap();
        let url = parsed["store"]["url"].as_str().unwrap();
        assert!(url.ends_with("/treasury.db?mode=rw"), "{url}");
        assert!(url.contains(&dir.path().display().to_string()), "{url}");
        assert_eq!(parsed["http"]["listen"].as_str(), Some("127.0.0.1:8787"));
        assert_eq!(
            parsed["busha"]["url"].as_str(),
            Some("keep"),
            "other keys kept"
        );
    }
}
