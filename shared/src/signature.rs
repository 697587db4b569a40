//! `X-Hub-Signature-256`: Meta signs every webhook body with the app secret.
//!
//! The header is `sha256=` followed by the hex HMAC-SHA256 of the raw body bytes.
//! Verification is constant-time over the MAC; the hex may be in either case.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The header Meta signs webhook bodies in.
pub const HEADER: &str = "x-hub-signature-256";

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. None of these say anything about the body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not `sha256=` and 64 hex digits")]
    Malformed,
    #[error(
        "the X-Hub-Signature-256 header does not match the body (wrong app secret, or the body was changed)"
    )]
    Mismatch,
}

/// Checks `header` (the raw header value, if any) against `body` with `app_secret`.
pub fn verify(app_secret: &[u8], body: &[u8], header: Option<&[u8]>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim_ascii()
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut expected).map_err(|_| SignatureError::Malformed)?;
    let mut mac = mac(app_secret);
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The header value Meta would send for `body`: used by our tools and tests to
/// sign requests to a local webhook.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac(app_secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"app-secret";
    const BODY: &[u8] = br#"{"object":"whatsapp_business_account","entry":[]}"#;

    #[test]
    fn a_signature_made_with_the_secret_verifies() {
        let header = sign(SECRET, BODY);
        assert!(header.starts_with("sha256=") && header.len() == 7 + 64);
        assert_eq!(verify(SECRET, BODY, Some(header.as_bytes())), Ok(()));
    }

    #[test]
    fn upper_case_hex_and_surrounding_space_are_accepted() {
        let header = sign(SECRET, BODY)
            .to_uppercase()
            .replace("SHA256=", "sha256=");
        assert_eq!(
            verify(SECRET, BODY, Some(format!(" {header} ").as_bytes())),
            Ok(())
        );
    }

    #[test]
    fn known_vector_matches_an_independent_implementation() {
        // Python: hmac.new(b"app-secret", BODY, hashlib.sha256).hexdigest()
        assert_eq!(
            sign(SECRET, BODY),
            "sha256=d3e4f9da0ce6c71ab3dba55929b8eeeee2455349e534924ead19f98d143e904f"
        );
    }

    #[test]
    fn wrong_secret_changed_body_truncated_and_missing_headers_are_refused() {
        let good = sign(SECRET, BODY);
        assert_eq!(
            verify(b"other-secret", BODY, Some(good.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        let mut changed = BODY.to_vec();
        changed[10] ^= 1;
        assert_eq!(
            verify(SECRET, &changed, Some(good.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, BODY, Some(&good.as_bytes()[..good.len() - 2])),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(
                SECRET,
                BODY,
                Some(good.trim_start_matches("sha256=").as_bytes())
            ),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, BODY, Some(b"sha256=zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify(SECRET, BODY, None), Err(SignatureError::Missing));
    }
}
