//! Text to phonemes with espeak-ng, the phonemizer Piper voices are trained on.
//!
//! The library is loaded at run time from a file (`libespeak-ng.so`, from the PyPI
//! `espeakng-loader` wheel, beside its `espeak-ng-data`), so building the responder needs
//! no espeak. espeak-ng keeps global state: one instance per process, used under a lock.
//!
//! What Piper's own phonemizer does, with the standard API: the text is cut into clauses
//! at punctuation, each clause turned into IPA (`espeak_TextToPhonemes`, IPA mode), the
//! punctuation put back (Piper voices have tokens for it, and it shapes the intonation),
//! and espeak's language-switch marks such as `(fr)` removed.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::sync::Mutex;

use libloading::Library;
use thiserror::Error;

/// `AUDIO_OUTPUT_SYNCHRONOUS`: no audio device, nothing played.
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
/// `espeakCHARS_UTF8`.
const CHARS_UTF8: c_int = 1;
/// `espeakPHONEMES_IPA` in the phoneme mode.
const PHONEMES_IPA: c_int = 0x02;
/// Where espeak's clauses end; kept as Piper keeps them.
const CLAUSE_ENDS: [char; 6] = ['.', ',', ';', ':', '!', '?'];

type Initialize = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetVoiceByName = unsafe extern "C" fn(*const c_char) -> c_int;
type TextToPhonemes = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;

/// Why espeak-ng could not be used.
#[derive(Debug, Error)]
pub enum EspeakError {
    #[error("cannot load espeak-ng from {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("espeak-ng found no espeak-ng-data under {0}")]
    Data(String),
    #[error("espeak-ng has no voice {0:?}")]
    Voice(String),
}

/// espeak-ng, loaded and initialised.
pub struct Espeak {
    /// The functions below point into it: it lives as long as they do.
    _library: Library,
    set_voice: SetVoiceByName,
    to_phonemes: TextToPhonemes,
    /// espeak's global state: the voice set last.
    voice: Mutex<Option<String>>,
}

impl std::fmt::Debug for Espeak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Espeak").finish_non_exhaustive()
    }
}

impl Espeak {
    /// Loads `library` and initialises it with the `espeak-ng-data` directory inside
    /// `data_parent`.
    pub fn load(library: &Path, data_parent: &Path) -> Result<Self, EspeakError> {
        let load_error = |reason: String| EspeakError::Load {
            path: library.display().to_string(),
            reason,
        };
        if !data_parent.join("espeak-ng-data").is_dir() {
            return Err(EspeakError::Data(data_parent.display().to_string()));
        }
        let data = CString::new(data_parent.display().to_string())
            .map_err(|e| EspeakError::Data(e.to_string()))?;
        // SAFETY: loading espeak-ng runs no initialisers beyond the C runtime's, and the
        // symbols are taken with the signatures of espeak-ng's speak_lib.h.
        unsafe {
            let lib = Library::new(library).map_err(|e| load_error(e.to_string()))?;
            let initialize: Initialize = *lib
                .get::<Initialize>(b"espeak_Initialize\0")
                .map_err(|e| load_error(e.to_string()))?;
            let set_voice: SetVoiceByName = *lib
                .get::<SetVoiceByName>(b"espeak_SetVoiceByName\0")
                .map_err(|e| load_error(e.to_string()))?;
            let to_phonemes: TextToPhonemes = *lib
                .get::<TextToPhonemes>(b"espeak_TextToPhonemes\0")
                .map_err(|e| load_error(e.to_string()))?;
            if initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.as_ptr(), 0) < 0 {
                return Err(EspeakError::Data(data_parent.display().to_string()));
            }
            Ok(Espeak {
                _library: lib,
                set_voice,
                to_phonemes,
                voice: Mutex::new(None),
            })
        }
    }

    /// `text` in IPA phonemes, as espeak's `voice` (`en-us`, `es`) says it, with the
    /// clauses' punctuation kept.
    pub fn phonemize(&self, text: &str, voice: &str) -> Result<String, EspeakError> {
        let mut current = self.voice.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_deref() != Some(voice) {
            let name = CString::new(voice).map_err(|_| EspeakError::Voice(voice.to_owned()))?;
            // SAFETY: a NUL-terminated name; espeak copies what it needs.
            if unsafe { (self.set_voice)(name.as_ptr()) } != 0 {
                return Err(EspeakError::Voice(voice.to_owned()));
            }
            *current = Some(voice.to_owned());
        }
        let mut out = String::new();
        for (clause, end) in clauses(text) {
            let spoken = self.clause_phonemes(clause);
            if spoken.is_empty() && end.is_none() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&spoken);
            out.extend(end);
        }
        Ok(out)
    }

    /// One clause in IPA (the caller holds the lock on espeak).
    fn clause_phonemes(&self, clause: &str) -> String {
        let Ok(text) = CString::new(clause.replace('\0', " ")) else {
            return String::new();
        };
        let mut pointer: *const c_void = text.as_ptr().cast();
        let mut pieces: Vec<String> = Vec::new();
        // espeak gives a clause at a time and sets the pointer to NULL at the end; the
        // bound guards against a library that never does.
        for _ in 0..clause.len() + 1 {
            if pointer.is_null() {
                break;
            }
            // SAFETY: `pointer` points into `text`, alive for the loop; the result is a
            // NUL-terminated string owned by espeak, copied before the next call.
            let piece = unsafe { (self.to_phonemes)(&mut pointer, CHARS_UTF8, PHONEMES_IPA) };
            if piece.is_null() {
                break;
            }
            let piece = unsafe { CStr::from_ptr(piece) }.to_string_lossy();
            let piece = without_language_marks(piece.trim());
            if !piece.is_empty() {
                pieces.push(piece);
            }
        }
        pieces.join(" ")
    }
}

/// `text` cut after each punctuation mark that ends a clause: each piece and its mark.
fn clauses(text: &str) -> Vec<(&str, Option<char>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if CLAUSE_ENDS.contains(&c) {
            out.push((&text[start..at], Some(c)));
            start = at + c.len_utf8();
        }
    }
    if !text[start..].trim().is_empty() {
        out.push((&text[start..], None));
    }
    out
}

/// Removes espeak's language-switch marks (`(en)`, `(es-419)`).
fn without_language_marks(phonemes: &str) -> String {
    let mut out = String::with_capacity(phonemes.len());
    let mut rest = phonemes;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..open]);
        match rest[open..].find(')') {
            Some(close) => rest = &rest[open + close + 1..],
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_keep_their_punctuation() {
        assert_eq!(
            clauses("Hello, world. How are you?"),
            [
                ("Hello", Some(',')),
                (" world", Some('.')),
                (" How are you", Some('?'))
            ]
        );
        assert_eq!(clauses("no end"), [("no end", None)]);
        assert!(clauses("  ").is_empty());
    }

    #[test]
    fn language_marks_are_removed() {
        assert_eq!(without_language_marks("(fr)ʃɛʁ(en) fɹɛnd"), "ʃɛʁ fɹɛnd");
        assert_eq!(without_language_marks("həlˈoʊ"), "həlˈoʊ");
        assert_eq!(without_language_marks("a(b"), "a(b");
    }
}
