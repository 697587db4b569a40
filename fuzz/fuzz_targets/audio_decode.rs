//! Any bytes as a voice note or audio file: decoded by the transcriber under small limits
//! with a MIME hint picked by the first byte. See `remedios_fuzz_checks::audio_decode` for the
//! invariants.
//!
//! `transcriber::audio::decode` catches a panic inside a third-party decoder (symphonia,
//! ogg, libopus bindings, rubato) and reports the file as corrupt; libFuzzer's panic hook
//! would abort on that caught panic. Here a panic raised in a crates.io dependency is
//! tolerated (counted, and printed with REMEDIOS_FUZZ_SHOW_PANICS=1); a panic anywhere else
//! (our code, std called from our code) still aborts, and so does any panic that escapes
//! `decode`. Set REMEDIOS_FUZZ_STRICT_PANICS=1 to abort on every panic, caught or not.

#![no_main]

use std::panic::{self, PanicHookInfo};
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;

static TOLERATED: AtomicU64 = AtomicU64::new(0);

fn in_dependency(info: &PanicHookInfo<'_>) -> bool {
    info.location().is_some_and(|l| {
        l.file().contains("/registry/src/") || l.file().contains("/git/checkouts/")
    })
}

fn install_panic_hook() {
    if std::env::var_os("REMEDIOS_FUZZ_STRICT_PANICS").is_some() {
        return; // keep libFuzzer's hook, which aborts
    }
    let show = std::env::var_os("REMEDIOS_FUZZ_SHOW_PANICS").is_some();
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if in_dependency(info) {
            let n = TOLERATED.fetch_add(1, Ordering::Relaxed) + 1;
            if show || n == 1 {
                eprintln!("tolerated panic #{n} in a dependency (caught by decode): {info}");
            }
            return;
        }
        default_hook(info);
        std::process::abort();
    }));
}

fuzz_target!(init: install_panic_hook(), |data: &[u8]| {
    let _ = remedios_fuzz_checks::audio_decode(data);
});
