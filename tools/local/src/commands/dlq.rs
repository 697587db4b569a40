//! `remedios dlq replay`: dead-lettered messages back to their queue after a fix.

use clap::ValueEnum;

use super::CliError;
use crate::dlq::{self, ReplayOptions, Target};
use crate::stack::StackInfo;

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Move the messages of a dead-letter queue back to its source queue (after a fix),
    /// in message-group order, deleting each from the dead-letter queue once resent.
    Replay {
        /// Which queue of the running local stack (from `remedios up`'s record).
        #[arg(long, value_enum, required_unless_present = "queue_url")]
        queue: Option<QueueName>,
        /// The source queue's URL (instead of --queue; e.g. the deployed stack's).
        #[arg(long, conflicts_with = "queue")]
        queue_url: Option<String>,
        /// The dead-letter queue's URL (default: from the source queue's redrive policy).
        #[arg(long, requires = "queue_url")]
        dlq_url: Option<String>,
        /// The SQS endpoint (default with --queue-url: AWS, default credential chain).
        #[arg(long, requires = "queue_url")]
        endpoint_url: Option<String>,
        /// Move at most this many messages.
        #[arg(long)]
        max: Option<usize>,
        /// Show what would be moved; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete, instead of replaying, the messages whose user wrote more than 24 hours
        /// ago: WhatsApp refuses a free-form reply to them (error 131047), so the user
        /// would get nothing anyway.
        #[arg(long)]
        drop_past_window: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QueueName {
    /// The webhook's queue, read by the transcriber.
    Inbound,
    /// The transcriber's queue, read by the responder.
    Reply,
}

pub async fn run(command: DlqCommand) -> Result<(), CliError> {
    match command {
        DlqCommand::Replay {
            queue,
            queue_url,
            dlq_url,
            endpoint_url,
            max,
            dry_run,
            drop_past_window,
        } => {
            let options = ReplayOptions {
                max,
                dry_run,
                drop_past_window,
                ..ReplayOptions::new()
            };
            replay(queue, queue_url, dlq_url, endpoint_url, options).await
        }
    }
}

async fn replay(
    queue: Option<QueueName>,
    queue_url: Option<String>,
    dlq_url: Option<String>,
    endpoint_url: Option<String>,
    options: ReplayOptions,
) -> Result<(), CliError> {
    let (sqs, target) = match (queue, queue_url) {
        (_, Some(queue_url)) => {
            let mut config = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(url) = endpoint_url {
                config = config.endpoint_url(url);
            }
            let sqs = aws_sdk_sqs::Client::new(&config.load().await);
            let dlq_url = match dlq_url {
                Some(url) => url,
                None => dlq::dead_letter_queue_of(&sqs, &queue_url).await?,
            };
            (sqs, Target { queue_url, dlq_url })
        }
        (Some(name), None) => {
            let info = StackInfo::load()?;
            let sdk = info.admin_sdk().await;
            let queue = match name {
                QueueName::Inbound => info.inbound,
                QueueName::Reply => info.reply,
            };
            let target = Target {
                queue_url: queue.url,
                dlq_url: queue.dlq_url,
            };
            (aws_sdk_sqs::Client::new(&sdk), target)
        }
        (None, None) => {
            return Err(CliError::Refused(
                "give --queue inbound|reply or --queue-url".into(),
            ));
        }
    };
    println!(
        "{} {} -> {}",
        if options.dry_run {
            "Would replay"
        } else {
            "Replaying"
        },
        target.dlq_url,
        target.queue_url
    );
    println!(
        "{:<38} {:<22} {:>9} {:>10}  sent",
        "message id", "group", "receives", "body bytes"
    );
    let summary = dlq::replay(&sqs, &target, &options, |p| {
        let sent = match p.sent_at_s {
            Some(at) => {
                let hours = options.now_s.saturating_sub(at) / 3600;
                let flag = match (p.past_window, options.drop_past_window) {
                    (false, _) => "",
                    (true, true) => "  past the 24 h window: dropped",
                    (true, false) => "  past the 24 h window: WhatsApp will refuse its reply",
                };
                format!("{hours} h ago{flag}")
            }
            None => "-".to_owned(),
        };
        println!(
            "{:<38} {:<22} {:>9} {:>10}  {sent}",
            p.message_id,
            p.group.as_deref().unwrap_or("-"),
            p.receive_count,
            p.body_bytes
        );
    })
    .await?;
    let late = summary.seen.iter().filter(|p| p.past_window).count();
    if late > 0 && !options.drop_past_window {
        println!(
            "warning: {late} message(s) were sent more than 24 hours ago: WhatsApp refuses a \
             free-form reply to them (131047), and their users get nothing unless the \
             responder has REENGAGEMENT_TEMPLATE (an approved template sent instead); \
             --drop-past-window deletes them instead"
        );
    }
    if options.dry_run {
        println!(
            "dry run: {} message(s) would be moved, none was",
            summary.seen.len()
        );
        return Ok(());
    }
    println!(
        "moved: {}, dropped (past the window): {}, failed: {}",
        summary.moved,
        summary.dropped,
        summary.failed.len()
    );
    for (id, reason) in &summary.failed {
        println!("  {id}: {reason}");
    }
    if summary.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Refused(
            "some messages stay in the dead-letter queue; fix the cause and run again".into(),
        ))
    }
}
