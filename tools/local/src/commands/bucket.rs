//! `--bucket`: which bucket a subcommand works on, the running local stack's or a
//! deployed one's.

use remedios_shared::store::Store;

use super::CliError;
use crate::stack::StackInfo;

/// Which bucket: the running local stack's (default) or a deployed stack's.
#[derive(Debug, clap::Args)]
pub struct BucketTarget {
    /// A deployed stack's bucket (the default AWS credential chain signs); without it, the
    /// running local stack's.
    #[arg(long)]
    pub bucket: Option<String>,
    /// The S3 endpoint with --bucket (default: AWS).
    #[arg(long, requires = "bucket")]
    pub endpoint_url: Option<String>,
}

impl BucketTarget {
    /// The bucket it names, as the local stack's admin or the default credential chain.
    pub async fn store(&self) -> Result<Store, CliError> {
        match &self.bucket {
            Some(bucket) => {
                let mut config = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(url) = &self.endpoint_url {
                    config = config.endpoint_url(url);
                }
                let sdk = config.load().await;
                let s3 = aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(self.endpoint_url.is_some())
                    .build();
                Ok(Store::new(aws_sdk_s3::Client::from_conf(s3), bucket))
            }
            None => {
                let info = StackInfo::load()?;
                let sdk = info.admin_sdk().await;
                Ok(Store::new(
                    remedios_emulators::moto::s3_client(&sdk),
                    &info.bucket,
                ))
            }
        }
    }
}
