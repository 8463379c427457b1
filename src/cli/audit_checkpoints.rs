//! `treasury audit checkpoint|keygen|public-key` and `audit verify --checkpoints`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use ed25519_dalek::VerifyingKey;

use super::audit::AuditCommand;
use super::{CliError, Context};
use crate::audit::checkpoint::SignedCheckpoint;
use crate::audit::{ChainBreak, VerifiedChain};
use crate::checkpoints::key::{generate, parse_public_key, public_key_pem, signing_key_from_env};
use crate::checkpoints::{Checkpointer, Folder, Made, verify_since, verify_with};

/// `audit verify`'s checkpoint flags.
#[derive(Args, Debug, Default)]
pub struct CheckpointArgs {
    /// A checkpoint folder: every signature, the checkpoints' own chain, and each
    /// checkpointed head at its sequence number are proven (default with
    /// --since-checkpoint or --public-key: `[audit] checkpoints`).
    #[arg(long, value_name = "FOLDER")]
    pub checkpoints: Option<PathBuf>,
    /// The key the checkpoints were signed with: PEM text, a PEM file, or the base64
    /// of the raw 32 bytes (default: the public key of TREASURY_AUDIT_SIGNING_KEY).
    #[arg(long, value_name = "KEY")]
    pub public_key: Option<String>,
    /// Verify only the entries after the last checkpoint, once the chain is proven to
    /// still hold that checkpoint's head.
    #[arg(long)]
    pub since_checkpoint: bool,
}

impl CheckpointArgs {
    pub fn is_set(&self) -> bool {
        self.checkpoints.is_some() || self.public_key.is_some() || self.since_checkpoint
    }
}

fn io(e: std::io::Error) -> CliError {
    CliError(format!("cannot write output: {e}"))
}

/// The commands that need neither a config nor a store.
pub(super) fn offline(command: AuditCommand, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    match command {
        AuditCommand::Keygen => writeln!(out, "{}", generate()).map_err(io),
        AuditCommand::PublicKey => {
            let key = signing_key_from_env().map_err(|e| CliError(e.to_string()))?;
            write!(out, "{}", public_key_pem(&key.verifying_key())).map_err(io)
        }
        other => Err(CliError(format!("{other:?} needs the store"))),
    }
}

impl Context {
    fn checkpoint_folder(&self, given: Option<PathBuf>) -> Result<Folder, CliError> {
        given
            .or_else(|| self.settings.audit.checkpoints.clone())
            .map(Folder::new)
            .ok_or_else(|| {
                CliError(format!(
                    "no checkpoint folder: pass --checkpoints <folder> or set [audit] checkpoints in {}",
                    self.settings.path.display()
                ))
            })
    }

    /// `treasury audit checkpoint`.
    pub(super) async fn checkpoint(
        &self,
        json: bool,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CliError> {
        let folder = self.checkpoint_folder(None)?;
        let key = signing_key_from_env().map_err(|e| CliError(e.to_string()))?;
        let holder = format!("cli:{}", std::process::id());
        let cp = Checkpointer::new(self.store.clone(), folder, key, self.clock.clone(), &holder);
        let (made, fresh) = match cp.make().await.map_err(|e| CliError(e.to_string()))? {
            Made::New(c) => (c, true),
            Made::UpToDate(c) => (c, false),
            Made::Busy => {
                return Err(CliError(
                    "another process holds the checkpoint lease and is making one; try again shortly".into(),
                ));
            }
        };
        let c = &made.checkpoint;
        let file = cp.folder().file(c.number, "msg");
        if json {
            let body = serde_json::json!({ "number": c.number, "new": fresh, "head_seq": c.head_seq, "head_hash": c.head_hash, "entries": c.entries, "at": c.at, "hash": made.hash(), "file": file });
            writeln!(out, "{body}").map_err(io)
        } else if fresh {
            writeln!(
                out,
                "checkpoint {} made: entry {} {} ({})",
                c.number,
                c.head_seq,
                c.head_hash,
                file.display()
            )
            .map_err(io)
        } else {
            writeln!(
                out,
                "checkpoint {} already covers the head (entry {}); none made",
                c.number, c.head_seq
            )
            .map_err(io)
        }
    }

    /// `treasury audit verify --checkpoints <folder> --public-key <key> [--since-checkpoint]`.
    pub(super) async fn verify_checkpoints(
        &self,
        expect_head: Option<String>,
        args: CheckpointArgs,
        json: bool,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CliError> {
        let folder = self.checkpoint_folder(args.checkpoints)?;
        let key: VerifyingKey = match &args.public_key {
            Some(k) => parse_public_key(k),
            None => signing_key_from_env().map(|k| k.verifying_key()),
        }
        .map_err(|e| CliError(e.to_string()))?;
        let cps = folder
            .read_all(&key)
            .map_err(|e| CliError(format!("checkpoints broken: {e}")))?;
        let verdict = if args.since_checkpoint {
            verify_since(&self.store, cps.last()).await
        } else {
            verify_with(&self.store, &cps, expect_head).await
        }
        .map_err(CliError::from)?;
        let chain = match verdict {
            Ok(chain) => chain,
            Err(broken) => return Err(broken_against(&cps, &broken, json, out)),
        };
        report(&cps, &chain, args.since_checkpoint, json, out)
    }
}

/// The failure, naming the checkpoint whose head the chain lost where there is one.
fn broken_against(
    cps: &[SignedCheckpoint],
    broken: &ChainBreak,
    json: bool,
    out: &mut (dyn Write + Send),
) -> CliError {
    let pinned = match broken {
        ChainBreak::PinMismatch { seq } | ChainBreak::PinBeyondHead { seq, .. } => cps
            .iter()
            .find(|c| c.checkpoint.head_seq == *seq)
            .map(|c| c.checkpoint.number),
        _ => None,
    };
    if json {
        let body = serde_json::json!({ "ok": false, "first_bad_seq": broken.seq(), "checkpoint": pinned, "error": broken.to_string() });
        // The error below says it all if the output cannot be written.
        let _ = writeln!(out, "{body}");
    }
    match pinned {
        Some(n) => CliError(format!(
            "audit chain broken against checkpoint {n}: {broken}"
        )),
        None => CliError(format!("audit chain broken: {broken}")),
    }
}

fn report(
    cps: &[SignedCheckpoint],
    chain: &VerifiedChain,
    since: bool,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let last = cps.last().map(|c| &c.checkpoint);
    if json {
        let body = serde_json::json!({ "ok": true, "entries": chain.entries, "head_seq": chain.head_seq, "head_hash": chain.head_hash, "checkpoints": cps.len(), "last_checkpoint": last.map(|c| c.number), "since_checkpoint": since });
        return writeln!(out, "{body}").map_err(io);
    }
    let scope = match (since, last) {
        (true, Some(c)) => format!(
            "{} entries after checkpoint {} (entry {})",
            chain.head_seq - c.head_seq,
            c.number,
            c.head_seq
        ),
        _ => format!("{} entries", chain.entries),
    };
    writeln!(
        out,
        "audit chain verified ({scope}, head {} {}) against {} signed checkpoints",
        chain.head_seq,
        chain.head_hash,
        cps.len()
    )
    .map_err(io)
}
