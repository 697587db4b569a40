//! Where a reply goes: the sender's phone number, else their business-scoped user id.

use remedios_shared::envelope::InboundMessage;
use remedios_shared::graph::Recipient;

/// The recipient of a reply to `message`: `to` with the WhatsApp id, or `recipient` with
/// the business-scoped user id when no phone number was given. With `normalize`, the
/// mobile digit of Mexican (`521…`) and Argentinian (`549…`) numbers is dropped, as
/// Meta's test-mode allowed list spells them.
pub fn recipient_of(message: &InboundMessage, normalize: bool) -> Recipient {
    match (&message.sender.wa_id, &message.sender.user_id) {
        (Some(wa_id), _) => Recipient::Phone(if normalize {
            normalize_test_number(wa_id)
        } else {
            wa_id.clone()
        }),
        (None, Some(user_id)) => Recipient::UserId(user_id.clone()),
        (None, None) => Recipient::Phone(String::new()),
    }
}

/// `5215512345678` → `525512345678`, `5491112345678` → `541112345678`; others unchanged.
pub fn normalize_test_number(wa_id: &str) -> String {
    let digits = wa_id.trim_start_matches('+');
    let all_digits = digits.chars().all(|c| c.is_ascii_digit());
    match digits.get(..3) {
        Some("521" | "549") if all_digits && digits.len() == 13 => {
            format!("{}{}", &digits[..2], &digits[3..])
        }
        _ => wa_id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_numbers_lose_their_mobile_digit_only_when_asked() {
        assert_eq!(normalize_test_number("5215512345678"), "525512345678");
        assert_eq!(normalize_test_number("5491112345678"), "541112345678");
        assert_eq!(normalize_test_number("15551234567"), "15551234567");
        assert_eq!(normalize_test_number("521551234567"), "521551234567");
    }
}
