//! The stack's secrets and identities: the webhook's app secret and verify token, the
//! secrets the functions read from SSM, and each function's own principal and profile
//! on the emulator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use remedios_emulators::iam::{self, Principal};
use remedios_emulators::moto::Moto;

use super::{
    EMULATOR_TOKEN, FUNCTIONS, LOCAL_APP_SECRET, LOCAL_VERIFY_TOKEN, Options, StackError, StackInfo,
};
use crate::secrets::random_key;

/// The variables that would give every function the same AWS identity: none reaches
/// them, each has its own profile.
pub(super) const CREDENTIAL_VARS: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
];

/// With real WhatsApp connected (`WHATSAPP_ACCESS_TOKEN`), the stack signs and answers for
/// a real number, and its `/webhook` may be reachable through ngrok: the constant local
/// secrets, published in this repository, would let anyone who finds the URL make it send
/// real messages. So the app secret must be Meta's own, and a verify token given must not be
/// the local one.
pub fn refuse_public_secrets(options: &Options) -> Result<(), StackError> {
    if !options.real_whatsapp() {
        return Ok(());
    }
    match options.var("WHATSAPP_APP_SECRET") {
        None => Err(StackError::Prerequisite(
            "WHATSAPP_ACCESS_TOKEN is set (real WhatsApp) but WHATSAPP_APP_SECRET is not: set it to \
             your Meta app's secret (App settings > Basic), which signs Meta's calls"
                .into(),
        )),
        Some(LOCAL_APP_SECRET) => Err(StackError::Prerequisite(
            "WHATSAPP_APP_SECRET is the public local secret; with real WhatsApp use your Meta \
             app's secret (App settings > Basic)"
                .into(),
        )),
        Some(_) if options.var("WHATSAPP_VERIFY_TOKEN") == Some(LOCAL_VERIFY_TOKEN) => {
            Err(StackError::Prerequisite(
                "WHATSAPP_VERIFY_TOKEN is the public local token; with real WhatsApp leave it unset \
                 (a random one is made and kept) or choose your own"
                    .into(),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// The app secret and verify token of the stack's `/webhook`: the local constants with the
/// emulator; with real WhatsApp the given app secret and, unless one is given, a random
/// verify token kept in `keep_dir/verify-token` (Meta's dashboard holds it across restarts).
pub fn webhook_secrets(options: &Options, keep_dir: &Path) -> Result<(String, String), StackError> {
    refuse_public_secrets(options)?;
    let app_secret = options
        .var("WHATSAPP_APP_SECRET")
        .unwrap_or(LOCAL_APP_SECRET)
        .to_owned();
    if let Some(token) = options.var("WHATSAPP_VERIFY_TOKEN") {
        return Ok((app_secret, token.to_owned()));
    }
    if !options.real_whatsapp() {
        return Ok((app_secret, LOCAL_VERIFY_TOKEN.to_owned()));
    }
    let kept = keep_dir.join("verify-token");
    let spawn = |what: &str, source| StackError::Spawn {
        what: format!("{what} {}", kept.display()),
        source,
    };
    let token = match std::fs::read_to_string(&kept) {
        Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
        _ => {
            let token = random_key()?;
            std::fs::create_dir_all(keep_dir).map_err(|e| spawn("the folder of", e))?;
            private_file(&kept, &token).map_err(|e| spawn("writing", e))?;
            token
        }
    };
    Ok((app_secret, token))
}

/// The functions' principals on the emulator, each with exactly its role's statements
/// in the template, over the stack's queues and bucket. The principal of
/// `WebhookFunction` is `webhook`, its binary's name and its profile's.
pub(super) fn function_principals(
    resources: &remedios_template::LocalResources,
    bucket: &str,
) -> Result<Vec<Principal>, StackError> {
    let arns = [
        (
            "InboundQueue.Arn",
            iam::queue_arn(&resources.inbound.queue_name()),
        ),
        (
            "ReplyQueue.Arn",
            iam::queue_arn(&resources.reply.queue_name()),
        ),
        ("Bucket.Arn", iam::bucket_arn(bucket)),
    ];
    [
        remedios_template::WEBHOOK_FUNCTION,
        remedios_template::TRANSCRIBER_FUNCTION,
        remedios_template::RESPONDER_FUNCTION,
    ]
    .into_iter()
    .map(|function| {
        iam::function_principal(function, &arns).map_err(|e| StackError::Template(e.to_string()))
    })
    .collect()
}

/// Writes the functions' profiles: `credentials` with each one's key, and the config
/// file beside it with their region (both readable by the owner only, like `~/.aws`).
pub(super) fn write_credentials(moto: &Moto, credentials: &Path) -> Result<(), StackError> {
    let mut keys =
        String::from("# Written by `remedios up`: each function's key on the emulator.\n");
    let mut config = String::from("# Written by `remedios up`.\n");
    for function in FUNCTIONS {
        let key = moto.access_key(function)?;
        keys.push_str(&format!(
            "[{function}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key.id, key.secret
        ));
        config.push_str(&format!("[profile {function}]\nregion = {}\n", iam::REGION));
    }
    for (path, text) in [
        (credentials.to_owned(), keys),
        (config_file(credentials), config),
    ] {
        private_file(&path, &text).map_err(|source| StackError::Spawn {
            what: format!("the credentials file {}", path.display()),
            source,
        })?;
    }
    Ok(())
}

/// The AWS config file written beside `credentials`.
pub(super) fn config_file(credentials: &Path) -> PathBuf {
    credentials.with_file_name("aws-config")
}

/// Writes `text` to `path` readable and writable by its owner only (0600), a file that
/// existed with wider permissions included: before anything is written.
pub(super) fn private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

/// The stack's secrets by variable: the app secret and verify token it signs with, the
/// access token (the emulator's, or the user's for real WhatsApp), the model host's key
/// when one is set.
pub(super) fn secret_values<'a>(
    options: &'a Options,
    info: &'a StackInfo,
) -> BTreeMap<&'static str, &'a str> {
    let mut secrets = BTreeMap::from([
        ("WHATSAPP_APP_SECRET", info.app_secret.as_str()),
        ("USER_TAG_KEY", info.user_tag_key.as_str()),
        ("WHATSAPP_VERIFY_TOKEN", info.verify_token.as_str()),
    ]);
    let token = match info.graph_emulator_url {
        Some(_) => Some(EMULATOR_TOKEN),
        None => options.var("WHATSAPP_ACCESS_TOKEN"),
    };
    if let Some(token) = token {
        secrets.insert("WHATSAPP_ACCESS_TOKEN", token);
    }
    if let Some(key) = options.var("GPT4ALL_API_KEY") {
        secrets.insert("GPT4ALL_API_KEY", key);
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_files_are_owner_only_even_when_they_existed_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let fresh = dir.path().join("fresh");
        private_file(&fresh, "secret").expect("written");
        let old = dir.path().join("stack.json");
        std::fs::write(&old, "{}").expect("an old file");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("0644");
        private_file(&old, "secret").expect("rewritten");
        for path in [&fresh, &old] {
            let mode = std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
            assert_eq!(std::fs::read_to_string(path).expect("read"), "secret");
        }
    }
}
