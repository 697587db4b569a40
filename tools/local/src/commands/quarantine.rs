//! `remedios quarantine list|replay`: the bodies the webhook could not read.

use super::CliError;
use super::bucket::BucketTarget;
use crate::quarantine as q;
use crate::stack::StackInfo;

#[derive(Debug, clap::Subcommand)]
pub enum QuarantineCommand {
    /// List the kept bodies (their keys under quarantine/).
    List {
        #[command(flatten)]
        target: BucketTarget,
    },
    /// Feed the kept bodies through the webhook again (after deploying a release that
    /// reads them), signed with the app secret; each one taken is removed from quarantine/.
    Replay {
        /// The webhook's URL (the deployed stack's `WebhookUrl` output); with --bucket.
        /// The app secret is read from WHATSAPP_APP_SECRET.
        #[arg(long, requires = "bucket")]
        webhook_url: Option<String>,
        #[command(flatten)]
        target: BucketTarget,
    },
}

pub async fn run(command: QuarantineCommand) -> Result<(), CliError> {
    match command {
        QuarantineCommand::List { target } => {
            let store = target.store().await?;
            let kept = q::kept(&store).await?;
            for key in &kept {
                println!("{key}");
            }
            println!(
                "{} kept bod(ies) in s3://{}/quarantine/",
                kept.len(),
                store.bucket()
            );
            Ok(())
        }
        QuarantineCommand::Replay {
            webhook_url,
            target,
        } => {
            let store = target.store().await?;
            let (url, secret) = match webhook_url {
                Some(url) => {
                    let secret = std::env::var("WHATSAPP_APP_SECRET").map_err(|_| {
                        CliError::Refused(
                            "set WHATSAPP_APP_SECRET to the app secret the deployed webhook checks"
                                .into(),
                        )
                    })?;
                    (url, secret)
                }
                None if target.bucket.is_some() => {
                    return Err(CliError::Refused(
                        "with --bucket, give --webhook-url (the stack's WebhookUrl output)".into(),
                    ));
                }
                None => {
                    let info = StackInfo::load()?;
                    (info.webhook_url, info.app_secret)
                }
            };
            println!("Replaying the kept bodies through {url} ...");
            let done = q::replay(&store, &url, secret.as_bytes(), |key, status| {
                println!("  {key}: HTTP {status}");
            })
            .await?;
            println!(
                "{} read and taken in, {} kept again (still unreadable), {} refused and put back",
                done.accepted.len(),
                done.still_unreadable.len(),
                done.refused.len()
            );
            if done.refused.is_empty() {
                Ok(())
            } else {
                Err(CliError::Refused(
                    "some bodies were refused: check the app secret and the webhook URL".into(),
                ))
            }
        }
    }
}
