//! A business's own knowledge (`KNOWLEDGE=on`): its Markdown and plain-text material under
//! `knowledge/` in the bucket, cut into passages, indexed for BM25 with stemming and stop
//! words per language (English, Spanish; the [`bm25`] crate, Snowball stemmers), and the
//! passages most relevant to a question put into the prompt.
//!
//! The index ([`Index`]) is built from the material and stored next to it
//! (`knowledge-index/index.json`) with the ETag of every file it was built from. At cold
//! start the responder lists the material: when the stored index names exactly those files
//! with those ETags it is loaded, else it is rebuilt and stored again. `remedios knowledge
//! build` does the same by hand (after uploading a folder, for the local stack).
//!
//! One bad file never costs the rest: a file that is not UTF-8 text, is over
//! [`MAX_FILE_BYTES`], or would take the material over [`MAX_TOTAL_BYTES`] (files count in
//! name order) is skipped with a warning and the `KnowledgeFilesSkipped` metric at every
//! load, and the index is built from the others ([`admit`], which `remedios knowledge build`
//! applies too). Windows line endings are read as Unix ones.
//!
//! Retrieval needs no embedding server (GPT4All serves none). A host with `/v1/embeddings`
//! (llama.cpp's server, Ollama) could add a dense side later: [`Knowledge::search`] is the
//! one place that ranks passages.

use std::collections::BTreeMap;
use std::time::Instant;

use bm25::{Embedder, EmbedderBuilder, Embedding, Language, Scorer, TokenEmbedding};
use remedios_shared::keys;
use remedios_shared::metrics::{Metrics, Unit};
use remedios_shared::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{info, warn};

use crate::texts::Lang;

/// The stored layout version of the index.
pub const INDEX_VERSION: u32 = 1;
/// A passage is cut near this many characters (at a paragraph, else a sentence).
pub const PASSAGE_CHARS: usize = 700;
/// Material files larger than this are skipped (a PDF exported as text, a data dump).
pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;
/// All material together: files past this total (in name order) are skipped. About 30,000
/// passages; the index of that much loads in a few seconds and fits the responder's memory.
pub const MAX_TOTAL_BYTES: usize = 20 * 1024 * 1024;
/// The file name endings that are material.
pub const MATERIAL_EXTENSIONS: [&str; 4] = ["md", "markdown", "txt", "text"];

/// Why the knowledge could not be had: the bucket could not be read (material that
/// cannot be used is skipped, never an error).
#[derive(Debug, Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a material file was left out of the index.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Skip {
    #[error("it is {bytes} bytes; a material file may have at most {MAX_FILE_BYTES}")]
    TooBig { bytes: usize },
    #[error("it is not UTF-8 text: save it as UTF-8 Markdown or plain text")]
    NotText,
    #[error(
        "the files before it (in name order) already hold {before} bytes; all material together may have at most {MAX_TOTAL_BYTES}"
    )]
    OverTotal { before: usize },
}

/// The rules a material file must pass, `total` being the bytes of the files admitted
/// before it (in name order): its text (line endings made `\n`), or why it is skipped.
pub fn admit(bytes: &[u8], total: usize) -> Result<String, Skip> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Skip::TooBig { bytes: bytes.len() });
    }
    if total + bytes.len() > MAX_TOTAL_BYTES {
        return Err(Skip::OverTotal { before: total });
    }
    // NUL is valid UTF-8 but no text has it: UTF-16 of ASCII, a binary file.
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| !t.contains('\0'))
        .ok_or(Skip::NotText)?;
    Ok(text.replace("\r\n", "\n"))
}

/// One passage of the material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// The file it comes from, relative to `knowledge/`.
    pub source: String,
    /// The heading it is under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    pub text: String,
    pub lang: IndexLang,
}

/// The languages the index stems for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexLang {
    En,
    Es,
}

impl IndexLang {
    fn of(text: &str) -> Self {
        match Lang::of_text(text) {
            Some(Lang::Es) => IndexLang::Es,
            _ => IndexLang::En,
        }
    }

    fn stemmer(self) -> Language {
        match self {
            IndexLang::En => Language::English,
            IndexLang::Es => Language::Spanish,
        }
    }
}

/// The stored index: the passages and their BM25 vectors, per language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub v: u32,
    pub built_at_ms: i64,
    /// Each material file (relative to `knowledge/`) with the ETag it was read at, the
    /// skipped ones included (so an unchanged bucket is not indexed again).
    pub material: BTreeMap<String, String>,
    /// The files left out, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, Skip>,
    pub passages: Vec<Passage>,
    pub sides: Vec<Side>,
}

/// The vectors of one language's passages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub lang: IndexLang,
    /// The average passage length in tokens, which the query's embedder needs.
    pub avgdl: f32,
    /// (passage number, its sparse vector as (token, weight) pairs).
    pub vectors: Vec<(usize, Vec<(u32, f32)>)>,
}

impl Index {
    /// Cuts `files` (name, text) into passages and embeds them.
    pub fn build(
        files: &[(String, String)],
        material: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Self {
        let passages: Vec<Passage> = files
            .iter()
            .flat_map(|(source, text)| passages_of(source, text))
            .collect();
        let mut sides = Vec::new();
        for lang in [IndexLang::En, IndexLang::Es] {
            let mine: Vec<(usize, String)> = passages
                .iter()
                .enumerate()
                .filter(|(_, p)| p.lang == lang)
                .map(|(i, p)| (i, indexed_text(p)))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let corpus: Vec<&str> = mine.iter().map(|(_, t)| t.as_str()).collect();
            let embedder: Embedder =
                EmbedderBuilder::with_fit_to_corpus(lang.stemmer(), &corpus).build();
            let vectors = mine
                .iter()
                .map(|(i, text)| {
                    let pairs = embedder
                        .embed(text)
                        .0
                        .into_iter()
                        .map(|t| (t.index, t.value))
                        .collect();
                    (*i, pairs)
                })
                .collect();
            sides.push(Side {
                lang,
                avgdl: embedder.avgdl(),
                vectors,
            });
        }
        Index {
            v: INDEX_VERSION,
            built_at_ms: now_ms,
            material,
            skipped: BTreeMap::new(),
            passages,
            sides,
        }
    }
}

/// What a passage is indexed by: its heading and its text.
fn indexed_text(p: &Passage) -> String {
    match &p.heading {
        Some(h) => format!("{h}\n{}", p.text),
        None => p.text.clone(),
    }
}

/// Cuts one file into passages of about [`PASSAGE_CHARS`]: at paragraphs, never across a
/// Markdown heading, which goes with every passage under it. The file's language (told
/// from all of it: a short passage alone is too little to tell) is every passage's.
pub fn passages_of(source: &str, text: &str) -> Vec<Passage> {
    let lang = IndexLang::of(text);
    let mut out = Vec::new();
    let mut heading: Option<String> = None;
    let mut current = String::new();
    let flush = |current: &mut String, heading: &Option<String>, out: &mut Vec<Passage>| {
        let text = current.trim();
        if !text.is_empty() {
            out.push(Passage {
                source: source.to_owned(),
                heading: heading.clone(),
                lang,
                text: text.to_owned(),
            });
        }
        current.clear();
    };
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let (title, body) = match paragraph.split_once('\n') {
            Some((first, rest)) if first.starts_with('#') => (Some(first), rest.trim()),
            None if paragraph.starts_with('#') => (Some(paragraph), ""),
            _ => (None, paragraph),
        };
        if let Some(title) = title {
            flush(&mut current, &heading, &mut out);
            heading =
                Some(title.trim_start_matches('#').trim().to_owned()).filter(|h| !h.is_empty());
        }
        for piece in pieces(body) {
            if !current.is_empty() && current.len() + piece.len() > PASSAGE_CHARS {
                flush(&mut current, &heading, &mut out);
            }
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(piece);
        }
    }
    flush(&mut current, &heading, &mut out);
    out
}

/// A paragraph, or its sentences when it is longer than a passage.
fn pieces(paragraph: &str) -> Vec<&str> {
    if paragraph.len() <= PASSAGE_CHARS {
        return vec![paragraph]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
    }
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in paragraph.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n') && i + 1 - start >= PASSAGE_CHARS / 2 {
            out.push(paragraph[start..=i].trim());
            start = i + c.len_utf8();
        }
    }
    out.push(paragraph[start..].trim());
    out.retain(|p| !p.is_empty());
    out
}

/// The loaded index, ready to search.
pub struct Knowledge {
    passages: Vec<Passage>,
    sides: Vec<(IndexLang, Embedder, Scorer<usize>)>,
    /// Which material it was built from (the skipped files included).
    pub material: BTreeMap<String, String>,
    /// The material files left out, and why.
    pub skipped: BTreeMap<String, Skip>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Knowledge({} passages from {} files)",
            self.passages.len(),
            self.material.len()
        )
    }
}

/// A passage found for a question.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<'a> {
    pub passage: &'a Passage,
    pub score: f32,
}

impl Knowledge {
    pub fn from_index(index: Index) -> Self {
        let sides = index
            .sides
            .into_iter()
            .map(|side| {
                let embedder: Embedder = EmbedderBuilder::with_avgdl(side.avgdl)
                    .language_mode(side.lang.stemmer())
                    .build();
                let mut scorer = Scorer::new();
                for (i, pairs) in side.vectors {
                    let embedding = Embedding(
                        pairs
                            .into_iter()
                            .map(|(index, value)| TokenEmbedding { index, value })
                            .collect(),
                    );
                    scorer.upsert(&i, embedding);
                }
                (side.lang, embedder, scorer)
            })
            .collect();
        Knowledge {
            passages: index.passages,
            sides,
            material: index.material,
            skipped: index.skipped,
        }
    }

    pub fn passages(&self) -> &[Passage] {
        &self.passages
    }

    /// The passages most relevant to `question`, best first, at most `limit` and at most
    /// `max_chars` of text together (the first always fits). A passage is relevant when it
    /// shares a stem with the question that is not a stop word (a BM25 score above 0: no
    /// absolute threshold, whose meaning would change with the size of the material). The
    /// question is stemmed as each language's passages were, so a Spanish question finds
    /// Spanish passages.
    pub fn search(&self, question: &str, limit: usize, max_chars: usize) -> Vec<Found<'_>> {
        let mut scored: Vec<(usize, f32)> = Vec::new();
        for (_, embedder, scorer) in &self.sides {
            let query = embedder.embed(question);
            scored.extend(scorer.matches(&query).into_iter().map(|m| (m.id, m.score)));
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut out = Vec::new();
        let mut chars = 0;
        for (i, score) in scored {
            if score <= 0.0 || out.len() >= limit {
                break;
            }
            let Some(passage) = self.passages.get(i) else {
                continue;
            };
            let len = passage.text.chars().count();
            if !out.is_empty() && chars + len > max_chars {
                continue;
            }
            chars += len;
            out.push(Found { passage, score });
        }
        out
    }
}

/// Where the index is kept.
pub fn index_key() -> String {
    format!("{}index.json", keys::KNOWLEDGE_INDEX)
}

/// Whether `key` under `knowledge/` names material.
pub fn is_material(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    !name.starts_with('.')
        && name.rsplit_once('.').is_some_and(|(_, ext)| {
            MATERIAL_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
        })
}

/// What [`load_or_build`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// The stored index matched the material.
    Stored,
    /// The index was built (none stored, or the material changed) and stored.
    Built,
}

/// The knowledge of the bucket: the stored index when it was built from the material as
/// it is now, else a new one built and stored.
pub async fn load_or_build(
    store: &Store,
    now_ms: i64,
) -> Result<(Knowledge, Loaded), KnowledgeError> {
    let started = Instant::now();
    let listed: BTreeMap<String, String> = store
        .list(keys::KNOWLEDGE)
        .await?
        .into_iter()
        .filter(|(key, _)| is_material(key))
        .map(|(key, etag)| (key[keys::KNOWLEDGE.len()..].to_owned(), etag))
        .collect();
    let key = index_key();
    if let Some((index, _)) = store.get_json::<Index>(&key).await.ok().flatten()
        && index.v == INDEX_VERSION
        && index.material == listed
    {
        let knowledge = Knowledge::from_index(index);
        info!(
            passages = knowledge.passages.len(),
            files = listed.len(),
            load_ms = started.elapsed().as_millis() as u64,
            "knowledge index loaded"
        );
        report_skipped(&knowledge.skipped);
        return Ok((knowledge, Loaded::Stored));
    }
    let index = build(store, listed, now_ms).await?;
    store.put_json(&key, &index).await?;
    let knowledge = Knowledge::from_index(index);
    info!(
        passages = knowledge.passages.len(),
        files = knowledge.material.len(),
        build_ms = started.elapsed().as_millis() as u64,
        "knowledge index built from the material and stored"
    );
    report_skipped(&knowledge.skipped);
    Ok((knowledge, Loaded::Built))
}

/// A warning per skipped file and the `KnowledgeFilesSkipped` metric, at every load: an
/// operator sees them until the file is mended or removed.
fn report_skipped(skipped: &BTreeMap<String, Skip>) {
    for (name, why) in skipped {
        warn!(file = %name, reason = %why, "a knowledge file is left out of the index: mend or remove it");
    }
    Metrics::of("responder")
        .value("KnowledgeFilesSkipped", Unit::Count, skipped.len() as f64)
        .emit();
}

/// Reads every listed material file and builds the index.
async fn build(
    store: &Store,
    listed: BTreeMap<String, String>,
    now_ms: i64,
) -> Result<Index, KnowledgeError> {
    let mut files = Vec::with_capacity(listed.len());
    let mut material = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    let mut total = 0;
    for name in listed.keys() {
        let key = format!("{}{name}", keys::KNOWLEDGE);
        let Some(object) = store.get(&key).await? else {
            continue; // deleted since the listing
        };
        material.insert(name.clone(), object.etag);
        match admit(&object.bytes, total) {
            Ok(text) => {
                total += object.bytes.len();
                files.push((name.clone(), text));
            }
            Err(why) => {
                skipped.insert(name.clone(), why);
            }
        }
    }
    let mut index = Index::build(&files, material, now_ms);
    index.skipped = skipped;
    Ok(index)
}

/// What follows a question with `found` passages, in its user message (nothing when none
/// was found).
pub fn instruction(found: &[Found<'_>]) -> String {
    if found.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "Passages of our own material, to answer from (use only facts they contain, and never \
make up names, numbers, prices or times; if they do not answer the question, say plainly that \
you do not have that information):\n",
    );
    for (i, f) in found.iter().enumerate() {
        out.push_str(&format!("\n[{}] ", i + 1));
        if let Some(h) = &f.passage.heading {
            out.push_str(&format!("{h}: "));
        }
        out.push_str(&f.passage.text);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_bounds_each_file_and_the_total_and_reads_windows_line_endings() {
        assert_eq!(admit(b"# A\r\n\r\nb\r\n", 0), Ok("# A\n\nb\n".to_owned()));
        assert_eq!(admit(&[0xff, 0xfe, b'a', 0], 0), Err(Skip::NotText));
        assert_eq!(
            admit(b"#\0 \0H\0i\0", 0),
            Err(Skip::NotText),
            "UTF-16 without a mark"
        );
        let big = vec![b'a'; MAX_FILE_BYTES + 1];
        assert_eq!(
            admit(&big, 0),
            Err(Skip::TooBig {
                bytes: MAX_FILE_BYTES + 1
            })
        );
        let before = MAX_TOTAL_BYTES - 2;
        assert_eq!(admit(b"abc", before), Err(Skip::OverTotal { before }));
        assert_eq!(admit(b"ab", before), Ok("ab".to_owned()));
    }

    const CLINIC: &str = "# Clínica Sol\n\nA dental clinic in Valencia.\n\n## Opening hours\n\nMonday to Friday, 9:00 to 19:00. Closed on public holidays.\n\n## Parking\n\nPatients park free in the Calle Mayor garage, level -2, with the ticket stamped at reception.\n";
    const CLINICA: &str = "## Aparcamiento\n\nLos pacientes aparcan gratis en el garaje de la Calle Mayor, planta -2, con el ticket sellado en recepción.\n\n## Horario\n\nDe lunes a viernes, de 9:00 a 19:00. Cerrado los festivos.\n";

    fn knowledge() -> Knowledge {
        let files = vec![
            ("clinic.md".to_owned(), CLINIC.to_owned()),
            ("clinica.md".to_owned(), CLINICA.to_owned()),
        ];
        Knowledge::from_index(Index::build(&files, BTreeMap::new(), 0))
    }

    #[test]
    fn markdown_is_cut_at_headings_which_go_with_their_passages() {
        let passages = passages_of("clinic.md", CLINIC);
        let headings: Vec<_> = passages.iter().map(|p| p.heading.as_deref()).collect();
        assert_eq!(
            headings,
            [Some("Clínica Sol"), Some("Opening hours"), Some("Parking")]
        );
        assert!(passages[2].text.starts_with("Patients park free"));
        let long = "A sentence that goes on for a while. ".repeat(100);
        let cut = passages_of("long.txt", &long);
        assert!(cut.len() > 3);
        assert!(
            cut.iter().all(|p| p.text.len() <= PASSAGE_CHARS + 40),
            "{cut:?}"
        );
    }

    #[test]
    fn questions_find_their_passage_in_their_language_with_stemming() {
        let k = knowledge();
        let found = k.search("Where can I park my car?", 2, 2000);
        assert_eq!(
            found[0].passage.heading.as_deref(),
            Some("Parking"),
            "{found:?}"
        );
        let found = k.search("¿Dónde puedo aparcar el coche?", 2, 2000);
        assert_eq!(
            found[0].passage.heading.as_deref(),
            Some("Aparcamiento"),
            "{found:?}"
        );
        assert_eq!(found[0].passage.lang, IndexLang::Es);
        let found = k.search("What are your opening hours on Monday?", 1, 2000);
        assert_eq!(found[0].passage.heading.as_deref(), Some("Opening hours"));
        assert!(
            k.search("Who won the football world cup?", 3, 2000)
                .is_empty()
        );
    }

    #[test]
    fn an_index_survives_its_json_and_only_text_files_are_material() {
        let files = vec![("clinic.md".to_owned(), CLINIC.to_owned())];
        let index = Index::build(
            &files,
            BTreeMap::from([("clinic.md".into(), "\"e1\"".into())]),
            5,
        );
        let back: Index = serde_json::from_str(&serde_json::to_string(&index).unwrap()).unwrap();
        assert_eq!(back, index);
        assert!(is_material("knowledge/faq.md") && is_material("knowledge/a/b.TXT"));
        assert!(!is_material("knowledge/logo.png") && !is_material("knowledge/.DS_Store"));
    }
}
