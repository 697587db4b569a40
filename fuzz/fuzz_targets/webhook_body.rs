//! A correctly signed webhook body with any content: planned by the webhook (with and
//! without an allow-list), every queue message checked to decode back. See
//! `remedios_fuzz_checks::webhook_body` for the invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    remedios_fuzz_checks::webhook_body(data);
});
