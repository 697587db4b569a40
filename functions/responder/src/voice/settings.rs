//! Who gets voice replies, and where the engine and the voices are.

use std::path::PathBuf;
use std::str::FromStr;

use remedios_shared::config::{Choice, ConfigError, Env, Flag, Setting, Text, Vars};

use super::VoiceFiles;

pub const VOICE_REPLY: Choice = Choice {
    name: "VOICE_REPLY",
    default: "voice",
    doc: "who gets answers as voice notes: off, voice (a voice note gets one) or always",
};
pub const VOICE_TEXT_COPY: Flag = Flag {
    name: "VOICE_TEXT_COPY",
    default: false,
    doc: "send the answer as text too after a voice reply (each message is billed)",
};
pub const VOICES: Text = Text::optional(
    "VOICES",
    "Piper voices by language, comma-separated: en=/opt/voice/en_US-joe-medium.onnx, or es=s3:voices/es_ES-davefx-medium.onnx from the bucket (its .onnx.json beside it); none: no voice replies",
);

/// Where voices from the bucket must lie (the responder's role reads this prefix only).
pub const VOICES_PREFIX: &str = remedios_shared::keys::VOICES;
/// Where voices from the bucket are copied, once per container.
pub const VOICE_CACHE_DIR: &str = "/tmp/voices";

/// Where a voice is: a file, or an object of the bucket (under [`VOICES_PREFIX`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceSource {
    Path(PathBuf),
    S3(String),
}

impl From<PathBuf> for VoiceSource {
    fn from(path: PathBuf) -> Self {
        VoiceSource::Path(path)
    }
}
pub const VOICE_ENGINE_DIR: Text = Text::optional(
    "VOICE_ENGINE_DIR",
    "the directory with libonnxruntime.so, libespeak-ng.so and espeak-ng-data (default /opt/voice)",
);

/// Where the engine is unless `VOICE_ENGINE_DIR` says otherwise: a layer's.
pub const DEFAULT_ENGINE_DIR: &str = "/opt/voice";

/// The variables of voice replies, for the responder's list.
pub fn settings() -> Vec<Setting> {
    vec![
        VOICE_REPLY.setting(),
        VOICE_TEXT_COPY.setting(),
        VOICES.setting(),
        VOICE_ENGINE_DIR.setting(),
    ]
}

/// Who gets answers as voice notes (`VOICE_REPLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiceMode {
    /// Never.
    Off,
    /// A voice note is answered with a voice note; a text with a text.
    #[default]
    Voice,
    /// Every answer.
    Always,
}

impl FromStr for VoiceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(VoiceMode::Off),
            "voice" => Ok(VoiceMode::Voice),
            "always" => Ok(VoiceMode::Always),
            _ => Err("expected off, voice or always".into()),
        }
    }
}

/// Voice replies, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceSettings {
    pub mode: VoiceMode,
    pub text_copy: bool,
    /// The engine's directory (`VOICE_ENGINE_DIR`).
    pub engine_dir: PathBuf,
    /// The voices by language code, lower case (`VOICES`).
    pub voices: Vec<(String, VoiceSource)>,
    /// Where voices from the bucket are copied ([`VOICE_CACHE_DIR`]).
    pub cache_dir: PathBuf,
    /// Longer answers go as text ([`SPOKEN_MAX_CHARS`]).
    pub max_chars: usize,
    /// The longest speaking an answer may take, the engine's load included
    /// ([`SPEAK_MAX`]); the invocation's deadline may allow less.
    pub time_limit: std::time::Duration,
}

/// How long speaking an answer may take at most (a cold start's load included).
pub const SPEAK_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Answers longer than this are not spoken (about 150 s of speech, what fits WhatsApp's
/// 512 KB for a voice note at 24 kbit/s): they go as text at once.
pub const SPOKEN_MAX_CHARS: usize = 2_400;

impl Default for VoiceSettings {
    fn default() -> Self {
        VoiceSettings {
            mode: VoiceMode::default(),
            text_copy: false,
            engine_dir: PathBuf::from(DEFAULT_ENGINE_DIR),
            voices: Vec::new(),
            cache_dir: PathBuf::from(VOICE_CACHE_DIR),
            max_chars: SPOKEN_MAX_CHARS,
            time_limit: SPEAK_MAX,
        }
    }
}

impl VoiceSettings {
    pub fn from_env<V: Vars>(env: &Env<V>) -> Result<Self, ConfigError> {
        let mut voices = Vec::new();
        for entry in VOICES.get(env).unwrap_or_default().split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let Some((lang, path)) = entry.split_once('=') else {
                return Err(ConfigError::new(
                    VOICES.name,
                    format!(
                        "has {entry:?}: write language=path, as en=/opt/voice/en_US-joe-medium.onnx"
                    ),
                ));
            };
            let (lang, path) = (lang.trim().to_ascii_lowercase(), path.trim());
            if lang.is_empty() || !lang.chars().all(|c| c.is_ascii_alphabetic()) || path.is_empty()
            {
                return Err(ConfigError::new(
                    VOICES.name,
                    format!(
                        "has {entry:?}: the language is a code such as en or es, then = and the voice's .onnx file"
                    ),
                ));
            }
            let source = match path.strip_prefix("s3:") {
                Some(key) if key.starts_with(VOICES_PREFIX) && key.ends_with(".onnx") => {
                    VoiceSource::S3(key.to_owned())
                }
                Some(key) => {
                    return Err(ConfigError::new(
                        VOICES.name,
                        format!(
                            "has s3:{key}: a voice in the bucket is a .onnx file under {VOICES_PREFIX} (the responder's role reads only there)"
                        ),
                    ));
                }
                None => VoiceSource::Path(PathBuf::from(path)),
            };
            voices.push((lang, source));
        }
        Ok(VoiceSettings {
            mode: VOICE_REPLY.read(env)?,
            text_copy: VOICE_TEXT_COPY.read(env)?,
            engine_dir: PathBuf::from(
                VOICE_ENGINE_DIR
                    .get(env)
                    .unwrap_or_else(|| DEFAULT_ENGINE_DIR.to_owned()),
            ),
            voices,
            cache_dir: PathBuf::from(VOICE_CACHE_DIR),
            max_chars: SPOKEN_MAX_CHARS,
            time_limit: SPEAK_MAX,
        })
    }

    /// Whether an answer is spoken: to a voice note (`voice_note`) or a text, for a user
    /// who said `/voice on` or `/voice off` (`preference`) or nothing. Without voices,
    /// never.
    pub fn wanted(&self, voice_note: bool, preference: Option<bool>) -> bool {
        if self.voices.is_empty() {
            return false;
        }
        match preference {
            Some(on) => on,
            None => match self.mode {
                VoiceMode::Off => false,
                VoiceMode::Voice => voice_note,
                VoiceMode::Always => true,
            },
        }
    }

    /// The language code of a voice for `lang` (a code such as whisper's `es`, or
    /// `es-MX`), if one is configured.
    pub fn voice_for(&self, lang: &str) -> Option<String> {
        let primary = lang.split(['-', '_']).next()?.to_ascii_lowercase();
        self.voices
            .iter()
            .any(|(l, _)| *l == primary)
            .then_some(primary)
    }

    /// The files of the engine, with `voices` (each voice's file, resolved).
    pub fn files(&self, voices: Vec<(String, PathBuf)>) -> VoiceFiles {
        let dir = &self.engine_dir;
        VoiceFiles {
            onnxruntime: dir.join("libonnxruntime.so"),
            espeak: dir.join("libespeak-ng.so"),
            espeak_data: dir.clone(),
            voices,
        }
    }

    /// The voices' files: those in the bucket copied to [`Self::cache_dir`] first (the
    /// model and its `.onnx.json`), once per container.
    pub async fn voice_files(
        &self,
        store: &remedios_shared::store::Store,
    ) -> Result<Vec<(String, PathBuf)>, remedios_shared::object_file::FetchError> {
        use remedios_shared::object_file::{Named, fetch};
        const VOICE: Named = Named {
            what: "voice",
            setting: "VOICES",
        };
        let mut files = Vec::new();
        for (lang, source) in &self.voices {
            let path = match source {
                VoiceSource::Path(path) => path.clone(),
                VoiceSource::S3(key) => {
                    let (s3, bucket) = (store.client(), store.bucket());
                    fetch(s3, bucket, &format!("{key}.json"), &self.cache_dir, VOICE).await?;
                    fetch(s3, bucket, key, &self.cache_dir, VOICE).await?
                }
            };
            files.push((lang.clone(), path));
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<VoiceSettings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        VoiceSettings::from_env(&Env(vars))
    }

    #[test]
    fn voices_are_read_by_language_and_bad_entries_named() {
        let s = read(&[(
            "VOICES",
            " en=/opt/voice/joe.onnx, ES=s3:voices/es_ES-davefx-medium.onnx ",
        )])
        .expect("read");
        assert_eq!(
            s.voices,
            [
                ("en".to_owned(), PathBuf::from("/opt/voice/joe.onnx").into()),
                (
                    "es".to_owned(),
                    VoiceSource::S3("voices/es_ES-davefx-medium.onnx".into())
                )
            ]
        );
        let e = read(&[("VOICES", "es=s3:models/es.onnx")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("under voices/"), "{e}");
        assert_eq!(s.mode, VoiceMode::Voice);
        assert_eq!(s.engine_dir, PathBuf::from(DEFAULT_ENGINE_DIR));
        assert_eq!(s.voice_for("es-MX").as_deref(), Some("es"));
        assert_eq!(s.voice_for("fr"), None);
        let e = read(&[("VOICES", "en:/x.onnx")]).unwrap_err().to_string();
        assert!(e.contains("VOICES") && e.contains("language=path"), "{e}");
        let e = read(&[("VOICE_REPLY", "sometimes")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("VOICE_REPLY"), "{e}");
    }

    #[test]
    fn who_gets_a_voice_reply() {
        let with = |mode| VoiceSettings {
            mode,
            voices: vec![("en".into(), PathBuf::from("/v.onnx").into())],
            ..VoiceSettings::default()
        };
        let voice = with(VoiceMode::Voice);
        assert!(voice.wanted(true, None));
        assert!(!voice.wanted(false, None));
        assert!(!voice.wanted(true, Some(false)), "/voice off wins");
        assert!(voice.wanted(false, Some(true)), "/voice on wins");
        assert!(with(VoiceMode::Always).wanted(false, None));
        assert!(!with(VoiceMode::Off).wanted(true, None));
        assert!(
            !VoiceSettings::default().wanted(true, Some(true)),
            "no voices, no voice replies"
        );
    }
}
