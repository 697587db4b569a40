//! The secrets both the local stack and `remedios deploy` write: random keys from the
//! kernel, and SecureString parameters in SSM (the emulator's or AWS's), written the same
//! way so that the functions read them the same way.

use aws_sdk_ssm::types::ParameterType;
use thiserror::Error;

/// A secret that could not be had or written.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error("no random numbers from /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
    #[error("cannot write the SSM parameter {parameter}: {detail}")]
    Write {
        parameter: String,
        /// The SDK's error with its causes, as one line.
        detail: String,
        #[source]
        source: Box<
            aws_sdk_ssm::error::SdkError<aws_sdk_ssm::operation::put_parameter::PutParameterError>,
        >,
    },
}

/// 32 random bytes from the kernel, as hex: local secrets and generated deploy secrets.
pub fn random_key() -> Result<String, SecretError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(SecretError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `value` as the SecureString `parameter` (replacing it), encrypted with
/// `kms_key` when given (else AWS's own key for SSM).
pub async fn put_secret(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
    value: &str,
    kms_key: Option<&str>,
) -> Result<(), SecretError> {
    ssm.put_parameter()
        .name(parameter)
        .value(value)
        .r#type(ParameterType::SecureString)
        .set_key_id(kms_key.map(str::to_owned))
        .overwrite(true)
        .send()
        .await
        .map(drop)
        .map_err(|e| SecretError::Write {
            parameter: parameter.to_owned(),
            detail: aws_sdk_ssm::error::DisplayErrorContext(&e).to_string(),
            source: Box::new(e),
        })
}
