//! `remedios knowledge build|search`: the business's material into the bucket, indexed.

use std::path::PathBuf;

use super::CliError;
use super::bucket::BucketTarget;
use crate::knowledge as kb;

#[derive(Debug, clap::Subcommand)]
pub enum KnowledgeCommand {
    /// Build the index of the material under knowledge/ in the bucket (what a responder's
    /// cold start would do); with --dir, first make knowledge/ what the folder holds.
    Build {
        /// A folder of Markdown and text files: uploaded, and material it no longer has
        /// deleted from the bucket.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        target: BucketTarget,
    },
    /// Show the passages a question retrieves, with their scores.
    Search {
        question: String,
        /// At most this many passages.
        #[arg(long, default_value_t = 3)]
        limit: usize,
        #[command(flatten)]
        target: BucketTarget,
    },
}

pub async fn run(command: KnowledgeCommand) -> Result<(), CliError> {
    match command {
        KnowledgeCommand::Build { dir, target } => {
            let store = target.store().await?;
            if let Some(dir) = dir {
                println!(
                    "Uploading {} to s3://{}/knowledge/ ...",
                    dir.display(),
                    store.bucket()
                );
                let synced = kb::sync_folder(&store, &dir).await?;
                println!(
                    "  {} file(s) uploaded, {} removed that the folder no longer has",
                    synced.uploaded.len(),
                    synced.removed.len()
                );
                for (name, why) in &synced.skipped {
                    println!("  skipped {name}: {why}");
                }
                for link in &synced.links_not_followed {
                    println!("  not followed: {link} is a link to a folder");
                }
            }
            println!("Indexing the material under knowledge/ ...");
            let built = kb::build(&store).await?;
            let what = match built.loaded {
                responder::knowledge::Loaded::Built => "built and stored",
                responder::knowledge::Loaded::Stored => "already up to date",
            };
            println!(
                "  index {what}: {} passage(s) from {} file(s) in {} ms (knowledge-index/index.json)",
                built.passages,
                built.files,
                built.took.as_millis()
            );
            for (name, why) in &built.skipped {
                println!("  left out of the index: knowledge/{name}: {why}");
            }
            if built.files == 0 {
                println!(
                    "  no material yet: put Markdown or text files under knowledge/, or use --dir"
                );
            }
            println!(
                "Responders load it at their next cold start (or rebuild it there when the material changed)."
            );
            Ok(())
        }
        KnowledgeCommand::Search {
            question,
            limit,
            target,
        } => {
            let store = target.store().await?;
            let (knowledge, _) =
                responder::knowledge::load_or_build(&store, remedios_shared::clock::now_ms())
                    .await?;
            let found = knowledge.search(
                &question,
                limit,
                responder::config::DEFAULT_KNOWLEDGE_MAX_CHARS,
            );
            if found.is_empty() {
                println!(
                    "No passage matches: the question counts as not covered (KNOWLEDGE_UNCOVERED decides)."
                );
            }
            for (i, f) in found.iter().enumerate() {
                println!(
                    "[{}] score {:.2}  {}{}",
                    i + 1,
                    f.score,
                    f.passage.source,
                    f.passage
                        .heading
                        .as_deref()
                        .map(|h| format!(" > {h}"))
                        .unwrap_or_default()
                );
                println!("    {}", f.passage.text.replace('\n', "\n    "));
            }
            Ok(())
        }
    }
}
