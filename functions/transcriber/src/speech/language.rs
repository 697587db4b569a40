//! The language to transcribe in: a whisper language code, or detection.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::SpeechError;

/// The language to transcribe in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Language {
    /// Detect the language of each message (multilingual models only; an English-only
    /// model always transcribes English). Costs one more encoder run per message.
    #[default]
    Auto,
    /// Always this language: a whisper language code such as `"en"` or `"es"`.
    Forced(String),
}

impl Language {
    /// Parses a language setting: `""` or `"auto"` is [`Language::Auto`]; otherwise a
    /// whisper language code (`"es"`) or English name (`"spanish"`), case-insensitive,
    /// normalised to the code.
    pub fn parse(value: &str) -> Result<Self, SpeechError> {
        let value = value.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        language_code(value).map(|code| Self::Forced(code.to_owned()))
    }

    /// The forced language code, or `None` for [`Language::Auto`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Auto => None,
            Self::Forced(code) => Some(code),
        }
    }
}

impl FromStr for Language {
    type Err = SpeechError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code().unwrap_or("auto"))
    }
}

/// The whisper code of a language given by code or English name, if whisper knows it.
pub(super) fn language_code(value: &str) -> Result<&'static str, SpeechError> {
    let unknown = || SpeechError::UnknownLanguage {
        language: value.to_owned(),
    };
    // whisper's codes and names are short lowercase ASCII words (some with a space, like
    // "haitian creole"); checking first also keeps NUL bytes away from the C string API.
    let plausible = (2..=24).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphabetic() || b == b' ');
    if !plausible {
        return Err(unknown());
    }
    let lowered = value.to_ascii_lowercase();
    let id = whisper_rs::get_lang_id(&lowered).ok_or_else(unknown)?;
    whisper_rs::get_lang_str(id).ok_or_else(unknown)
}
