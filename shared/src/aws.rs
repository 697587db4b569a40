//! AWS clients, built once per container from the environment.
//!
//! The SDK's own environment variables apply (`AWS_REGION`, credentials, and
//! `AWS_ENDPOINT_URL` to point every client at a local emulator).

use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::AwsSettings;

/// Loads the SDK configuration from the environment (in Lambda, the function role).
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// An S3 client for `sdk`, with path-style addressing when `settings` ask for it.
pub fn s3(sdk: &SdkConfig, settings: &AwsSettings) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(settings.s3_force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An SQS client for `sdk`.
pub fn sqs(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk)
}

/// An SSM client for `sdk`.
pub fn ssm(sdk: &SdkConfig) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(sdk)
}
