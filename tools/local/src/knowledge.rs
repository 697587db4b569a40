//! `remedios knowledge`: a folder of the business's material into the bucket's
//! `knowledge/` prefix, and its index built by the responder's own code
//! ([`responder::knowledge`]), so what the command builds is what a cold start loads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use remedios_shared::keys;
use remedios_shared::store::{Store, StoreError};
use responder::knowledge::{self, KnowledgeError, Loaded, MAX_FILE_BYTES};
use thiserror::Error;

/// Why the material could not be synchronised.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error("cannot read the knowledge folder {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {bytes} bytes; material files must be at most {MAX_FILE_BYTES} bytes")]
    TooBig { path: PathBuf, bytes: u64 },
    #[error("{path} is not UTF-8 text: save it as UTF-8 Markdown or plain text")]
    NotText { path: PathBuf },
    #[error(
        "the knowledge folder {0} holds no Markdown or text files (.md, .markdown, .txt, .text)"
    )]
    Empty(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`sync_folder`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// The files uploaded, relative to the folder (and to `knowledge/`).
    pub uploaded: Vec<String>,
    /// Material in the bucket that the folder no longer has, deleted.
    pub removed: Vec<String>,
}

/// Makes the bucket's material what `dir` holds: every Markdown or text file under it is
/// uploaded to `knowledge/<its path>`, and material the folder no longer has is deleted.
/// Other files (images, PDFs) are left out, and everything is checked before anything is
/// written.
pub async fn sync_folder(store: &Store, dir: &Path) -> Result<Synced, SyncError> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    if files.is_empty() {
        return Err(SyncError::Empty(dir.to_owned()));
    }
    let mut contents = Vec::with_capacity(files.len());
    for (name, path) in &files {
        let bytes = std::fs::read(path).map_err(|source| SyncError::Read {
            path: path.clone(),
            source,
        })?;
        if bytes.len() > MAX_FILE_BYTES {
            return Err(SyncError::TooBig {
                path: path.clone(),
                bytes: bytes.len() as u64,
            });
        }
        if std::str::from_utf8(&bytes).is_err() {
            return Err(SyncError::NotText { path: path.clone() });
        }
        contents.push((name.clone(), bytes));
    }
    let mut uploaded = Vec::new();
    for (name, bytes) in contents {
        let content_type = if name.ends_with(".md") || name.ends_with(".markdown") {
            "text/markdown; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        store
            .put(&format!("{}{name}", keys::KNOWLEDGE), bytes, content_type)
            .await?;
        uploaded.push(name);
    }
    let kept: BTreeSet<&str> = uploaded.iter().map(String::as_str).collect();
    let mut removed = Vec::new();
    for (key, _) in store.list(keys::KNOWLEDGE).await? {
        let name = &key[keys::KNOWLEDGE.len()..];
        if knowledge::is_material(&key) && !kept.contains(name) {
            store.delete(&key).await?;
            removed.push(name.to_owned());
        }
    }
    Ok(Synced { uploaded, removed })
}

/// The material files under `dir`, as (path relative to `root` with `/`, full path), in
/// name order; hidden files and folders are skipped.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), SyncError> {
    let read = |source| SyncError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if knowledge::is_material(&relative) {
            out.push((relative, path));
        }
    }
    Ok(())
}

/// What `remedios knowledge build` reports.
#[derive(Debug)]
pub struct Built {
    pub files: usize,
    pub passages: usize,
    pub loaded: Loaded,
    pub took: std::time::Duration,
}

/// Builds (or confirms) the bucket's index, as a responder's cold start would.
pub async fn build(store: &Store) -> Result<Built, KnowledgeError> {
    let started = std::time::Instant::now();
    let (knowledge, loaded) =
        knowledge::load_or_build(store, remedios_shared::clock::now_ms()).await?;
    Ok(Built {
        files: knowledge.material.len(),
        passages: knowledge.passages().len(),
        loaded,
        took: started.elapsed(),
    })
}
