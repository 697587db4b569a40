//! Handing a conversation to a person: what the webhook and the responder share.
//!
//! The webhook marks what staff write ([`Origin::Staff`](crate::envelope::Origin)) and
//! what a person sends from the WhatsApp Business app ([`Origin::Echo`](crate::envelope::Origin));
//! the responder keeps each conversation's state and relays between staff and users.

use crate::config::Text;

/// The staff who answer users who ask for a person, from their own WhatsApp.
pub const STAFF_NUMBERS: Text = Text::optional(
    "STAFF_NUMBERS",
    "staff phone numbers or user ids (comma-separated) who get hand-over notifications and answer users by quoting them",
);
