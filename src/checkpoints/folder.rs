//! The append-only checkpoint folder, outside the store: for checkpoint N, the signed
//! message `checkpoint-<N, 12 digits>.msg` and its raw 64-byte Ed25519 signature
//! `checkpoint-<N>.sig`. Files are only ever created, never rewritten: each is written
//! to a temporary name, synced, then hard-linked into place, which fails if the name is
//! taken. The signature goes in first, so a `.msg` in the folder always has its `.sig`;
//! a `.sig` without its `.msg` (a crash between the two) belongs to no checkpoint and
//! is replaced by the next attempt at that number.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::audit::checkpoint::{CheckpointError, SignedCheckpoint, check_links};

/// Why the folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("checkpoint folder {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("checkpoint folder {path}: {source}")]
    Checkpoint {
        path: String,
        source: CheckpointError,
    },
    #[error(
        "checkpoint folder {path}: checkpoint {number} exists already; another checkpointer wrote it (the chain would fork)"
    )]
    Taken { path: String, number: u64 },
}

/// An append-only folder of checkpoints.
#[derive(Clone, Debug)]
pub struct Folder {
    dir: PathBuf,
}

impl Folder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn io(&self, source: std::io::Error) -> FolderError {
        FolderError::Io {
            path: self.dir.display().to_string(),
            source,
        }
    }

    /// The file name of checkpoint `number` with extension `ext`.
    pub fn file(&self, number: u64, ext: &str) -> PathBuf {
        self.dir.join(format!("checkpoint-{number:012}.{ext}"))
    }

    /// Every checkpoint, oldest first, each signature proven with `key` and the whole
    /// set proven to be one unbroken chain. An empty or missing folder has none.
    pub fn read_all(&self, key: &VerifyingKey) -> Result<Vec<SignedCheckpoint>, FolderError> {
        let mut numbers = self.numbers()?;
        numbers.sort_unstable();
        let mut out = Vec::with_capacity(numbers.len());
        for number in numbers {
            let msg_path = self.file(number, "msg");
            let message = std::fs::read(&msg_path).map_err(|e| self.io(e))?;
            let signature = std::fs::read(self.file(number, "sig")).map_err(|e| self.io(e))?;
            let what = msg_path.display().to_string();
            let cp = SignedCheckpoint::open(&what, message, &signature, key)
                .map_err(|source| self.bad(source))?;
            if cp.checkpoint.number != number {
                return Err(self.bad(CheckpointError::Malformed {
                    what,
                    why: format!("it says number {}", cp.checkpoint.number),
                }));
            }
            out.push(cp);
        }
        check_links(&out).map_err(|source| self.bad(source))?;
        Ok(out)
    }

    fn bad(&self, source: CheckpointError) -> FolderError {
        FolderError::Checkpoint {
            path: self.dir.display().to_string(),
            source,
        }
    }

    fn numbers(&self) -> Result<Vec<u64>, FolderError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry.map_err(|e| self.io(e))?.file_name();
            let number = name
                .to_str()
                .and_then(|n| n.strip_prefix("checkpoint-"))
                .and_then(|n| n.strip_suffix(".msg"))
                .filter(|n| n.len() == 12)
                .and_then(|n| n.parse::<u64>().ok());
            out.extend(number);
        }
        Ok(out)
    }

    /// Adds `cp`; fails with [`FolderError::Taken`] if its number is there already.
    pub fn append(&self, cp: &SignedCheckpoint) -> Result<(), FolderError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
        let number = cp.checkpoint.number;
        if self.file(number, "msg").exists() {
            return Err(self.taken(number));
        }
        let sig = self.synced_temp(&cp.signature)?;
        sig.persist(self.file(number, "sig"))
            .map_err(|e| self.io(e.error))?;
        let msg = self.synced_temp(&cp.message)?;
        match std::fs::hard_link(msg.path(), self.file(number, "msg")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(self.taken(number));
            }
            Err(e) => return Err(self.io(e)),
        }
        // The new names are durable once the directory is.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))
    }

    fn taken(&self, number: u64) -> FolderError {
        FolderError::Taken {
            path: self.dir.display().to_string(),
            number,
        }
    }

    fn synced_temp(&self, bytes: &[u8]) -> Result<tempfile::NamedTempFile, FolderError> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| self.io(e))?;
        tmp.write_all(bytes).map_err(|e| self.io(e))?;
        tmp.as_file().sync_all().map_err(|e| self.io(e))?;
        Ok(tmp)
    }
}
