//! `remedios quarantine replay`: the signed bodies the webhook kept because it could not
//! read them (`quarantine/{date}/{sha256}.json`), fed through the webhook again once a
//! release reads them.
//!
//! Each body is taken out of the quarantine, signed with the app secret as Meta signs it,
//! and POSTed to the webhook's URL. A body the webhook accepts (HTTP 200) has its messages
//! enqueued like any other (a message answered before is not answered again: the reply
//! ledger remembers it); one that still does not parse, the webhook keeps again (under
//! today's date), and the replay reports it. A body refused (a wrong secret, the webhook
//! down) is put back where it was. State objects moved aside (`quarantine/state/`) are not
//! notifications and are left alone.

use remedios_shared::keys;
use remedios_shared::signature;
use remedios_shared::store::{Store, StoreError};
use thiserror::Error;

/// Why replaying stopped.
#[derive(Debug, Error)]
pub enum QuarantineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the webhook at {url} could not be reached: {detail}")]
    Unreachable { url: String, detail: String },
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Bodies the webhook took (200) and read whole.
    pub accepted: Vec<String>,
    /// Bodies the webhook took (200) but kept in quarantine again: still not readable.
    pub still_unreadable: Vec<String>,
    /// Bodies it refused, with its HTTP status; kept.
    pub refused: Vec<(String, u16)>,
}

/// The keys of the quarantined notification bodies, oldest date first.
pub async fn kept(store: &Store) -> Result<Vec<String>, StoreError> {
    let state = format!("{}state/", keys::QUARANTINE);
    let mut names: Vec<String> = store
        .list(keys::QUARANTINE)
        .await?
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| !key.starts_with(&state))
        .collect();
    names.sort();
    Ok(names)
}

/// Feeds every quarantined body through the webhook at `webhook_url`, signed with
/// `app_secret`; `progress` is told each key and its status.
pub async fn replay(
    store: &Store,
    webhook_url: &str,
    app_secret: &[u8],
    progress: impl Fn(&str, u16),
) -> Result<Replayed, QuarantineError> {
    let http = reqwest::Client::new();
    let mut replayed = Replayed::default();
    for key in kept(store).await? {
        let Some(object) = store.get(&key).await? else {
            continue; // replayed by another run meanwhile
        };
        // Out first: the webhook may keep it again under the same name (same day, same
        // content), which must not then be deleted.
        store.delete(&key).await?;
        let content_type = object.content_type.as_deref().unwrap_or("application/json");
        let answered = http
            .post(webhook_url)
            .header("Content-Type", "application/json")
            .header(
                "X-Hub-Signature-256",
                signature::sign(app_secret, &object.bytes),
            )
            .body(object.bytes.to_vec())
            .send()
            .await;
        let status = match answered {
            Ok(answer) => answer.status().as_u16(),
            Err(e) => {
                store.put(&key, object.bytes.to_vec(), content_type).await?;
                return Err(QuarantineError::Unreachable {
                    url: webhook_url.to_owned(),
                    detail: e.to_string(),
                });
            }
        };
        progress(&key, status);
        if status != 200 {
            store.put(&key, object.bytes.to_vec(), content_type).await?;
            replayed.refused.push((key, status));
            continue;
        }
        let name = key.rsplit('/').next().unwrap_or(&key).to_owned();
        let kept_again = kept(store)
            .await?
            .iter()
            .any(|k| k.ends_with(&format!("/{name}")));
        if kept_again {
            replayed.still_unreadable.push(key);
        } else {
            replayed.accepted.push(key);
        }
    }
    Ok(replayed)
}
