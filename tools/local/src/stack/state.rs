//! The state file: what `remedios up` started, for `remedios chat`, `dlq` and `stats`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use remedios_emulators::iam::AccessKey;
use remedios_emulators::moto::{self, QueuePair};
use remedios_emulators::paths;

use super::STATE_FILE;

/// Why the running stack's record could not be read.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("no local stack is recorded at {path}: start it with `remedios up` ({source})")]
    Missing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is unreadable: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}
use super::credentials::private_file;

/// What is running where: written to [`STATE_FILE`] for `remedios chat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInfo {
    pub webhook_url: String,
    pub functions_url: String,
    pub moto_url: String,
    /// The Graph API emulator, `None` when the real Graph API is used.
    pub graph_emulator_url: Option<String>,
    pub model_url: String,
    /// Whether the model server is ours (else the configured GPT4All host).
    pub model_local: bool,
    /// The model our server lists (`GPT4ALL_MODEL` for the responder).
    pub model_name: Option<String>,
    pub bucket: String,
    pub inbound: QueuePair,
    pub reply: QueuePair,
    pub app_secret: String,
    pub verify_token: String,
    /// The key of this stack's user tags (`USER_TAG_KEY`: the configured one, else a
    /// random one per `remedios up`).
    pub user_tag_key: String,
    pub phone_number_id: String,
    pub log_dir: PathBuf,
    /// The emulator's admin key: setup, `remedios chat` and `remedios dlq` use it; no
    /// function is given it.
    pub admin_key: AccessKey,
}

impl StackInfo {
    /// The state file of the running stack.
    pub fn path() -> PathBuf {
        paths::cache_dir().join(STATE_FILE)
    }

    /// Reads what `remedios up` recorded.
    pub fn load() -> Result<Self, StateError> {
        let path = Self::path();
        let raw = std::fs::read_to_string(&path).map_err(|source| StateError::Missing {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&raw).map_err(|source| StateError::Unreadable { path, source })
    }

    /// An SDK configuration for the emulator, signed as its admin.
    pub async fn admin_sdk(&self) -> aws_config::SdkConfig {
        moto::sdk_config_with(&self.moto_url, &self.admin_key).await
    }

    pub(super) fn save(&self) -> std::io::Result<()> {
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // It holds the app secret, the tag key and the emulator's admin key.
        private_file(&path, &serde_json::to_string_pretty(self)?)
    }
}
