//! `remedios knowledge`: a folder of the business's material into the bucket's
//! `knowledge/` prefix, and its index built by the responder's own code
//! ([`responder::knowledge`]), so what the command builds is what a cold start loads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use remedios_shared::keys;
use remedios_shared::store::{Store, StoreError};
use responder::knowledge::{self, KnowledgeError, Loaded, Skip};
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
    /// Files left out by the rules a responder applies ([`knowledge::admit`]), and why.
    pub skipped: Vec<(String, Skip)>,
    /// Symbolic links to folders, not followed (relative to the folder).
    pub links_not_followed: Vec<String>,
}

/// Makes the bucket's material what `dir` holds: every Markdown or text file under it that
/// passes a responder's rules ([`knowledge::admit`]: UTF-8, size, total) is uploaded to
/// `knowledge/<its path>`, and material the folder no longer has is deleted. Other files
/// (images, PDFs) are left out, files that fail the rules are reported and not uploaded,
/// symbolic links to folders are not followed, and every file is read before anything is
/// written.
pub async fn sync_folder(store: &Store, dir: &Path) -> Result<Synced, SyncError> {
    let mut files = Vec::new();
    let mut links_not_followed = Vec::new();
    walk(dir, dir, &mut files, &mut links_not_followed)?;
    if files.is_empty() {
        return Err(SyncError::Empty(dir.to_owned()));
    }
    let mut contents = Vec::with_capacity(files.len());
    let mut skipped = Vec::new();
    let mut total = 0;
    for (name, path) in &files {
        let bytes = std::fs::read(path).map_err(|source| SyncError::Read {
            path: path.clone(),
            source,
        })?;
        match knowledge::admit(&bytes, total) {
            Ok(_) => {
                total += bytes.len();
                contents.push((name.clone(), bytes));
            }
            Err(why) => skipped.push((name.clone(), why)),
        }
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
    Ok(Synced {
        uploaded,
        removed,
        skipped,
        links_not_followed,
    })
}

/// `path` relative to `root`, with `/` between its parts.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The material files under `dir`, as (path relative to `root` with `/`, full path), in
/// name order; hidden files and folders are skipped, and symbolic links to folders are
/// listed in `links` instead of followed (they may lead outside the folder, or in circles).
fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
    links: &mut Vec<String>,
) -> Result<(), SyncError> {
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
        let kind = entry.file_type().map_err(read)?;
        if kind.is_symlink() && path.is_dir() {
            links.push(relative(root, &path));
            continue;
        }
        if kind.is_dir() {
            walk(root, &path, out, links)?;
            continue;
        }
        let name = relative(root, &path);
        if knowledge::is_material(&name) {
            out.push((name, path));
        }
    }
    Ok(())
}

/// What `remedios knowledge build` reports.
#[derive(Debug)]
pub struct Built {
    /// Material files indexed.
    pub files: usize,
    /// Material files in the bucket left out of the index, and why.
    pub skipped: Vec<(String, Skip)>,
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
        files: knowledge.material.len() - knowledge.skipped.len(),
        passages: knowledge.passages().len(),
        skipped: knowledge.skipped.into_iter().collect(),
        loaded,
        took: started.elapsed(),
    })
}
