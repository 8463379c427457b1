//! The jobs folder: which files are job files, and which are ignored and why.
//!
//! A job file is a regular file (or a link to one) named `*.toml` directly in the
//! folder. Everything else is named in a note, so that a reviewer sees a job that will
//! never run because it sits in a sub-folder or lost its extension.

use std::fs;
use std::path::{Path, PathBuf};

use super::JobsError;

/// A file in the jobs folder that is not read, and why, in plain words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub path: PathBuf,
    pub why: &'static str,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is ignored: {}", self.path.display(), self.why)
    }
}

/// What the jobs folder holds.
#[derive(Clone, Debug, Default)]
pub struct JobDir {
    /// `*.toml` files, sorted by name.
    pub files: Vec<PathBuf>,
    /// Everything else, sorted by name.
    pub ignored: Vec<Ignored>,
}

/// Reads `dir`. A folder that does not exist, or is not a folder, is an error: a
/// mistyped `--jobs` must not look like "no jobs".
pub fn scan(dir: &Path) -> Result<JobDir, JobsError> {
    let read = |source| JobsError::Read {
        path: dir.display().to_string(),
        source,
    };
    match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(JobsError::Missing(dir.display().to_string()));
        }
        Err(e) => return Err(read(e)),
        Ok(m) if !m.is_dir() => return Err(JobsError::NotAFolder(dir.display().to_string())),
        Ok(_) => {}
    }
    let mut found = JobDir::default();
    for entry in fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        match classify(&path) {
            None => found.files.push(path),
            Some(why) => found.ignored.push(Ignored { path, why }),
        }
    }
    found.files.sort();
    found.ignored.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// `None` for a job file, else why the entry is not one.
fn classify(path: &Path) -> Option<&'static str> {
    let link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let Ok(meta) = fs::metadata(path) else {
        return Some(if link {
            "a link to something that does not exist"
        } else {
            "it cannot be read"
        });
    };
    if meta.is_dir() {
        return Some("a sub-folder (only files directly in the jobs folder are read)");
    }
    if !meta.is_file() {
        return Some("not a regular file");
    }
    if path.extension().is_none_or(|e| e != "toml") {
        return Some("not a .toml file");
    }
    None
}
