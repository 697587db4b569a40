//! A clear error for a model file whisper.cpp would choke on: missing, not GGML, cut off.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::SpeechError;

/// The first bytes of a GGML whisper model: the magic number 0x67676d6c ("ggml") stored
/// little-endian.
const GGML_MAGIC: [u8; 4] = *b"lmgg";

/// Opens the model file and checks the GGML magic number, for a clear error before
/// whisper.cpp gets it.
pub(super) fn check_model_file(path: &Path) -> Result<(), SpeechError> {
    let unreadable = |e: std::io::Error| SpeechError::ModelUnreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpeechError::ModelNotFound {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(unreadable(e)),
    };
    if file.metadata().map_err(unreadable)?.is_dir() {
        return Err(SpeechError::NotAWhisperModel {
            path: path.to_owned(),
        });
    }
    let size = file.metadata().map_err(unreadable)?.len();
    let mut magic = [0u8; 4];
    match file.read_exact(&mut magic) {
        Ok(()) if magic == GGML_MAGIC => {}
        Ok(()) => {
            return Err(SpeechError::NotAWhisperModel {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(SpeechError::NotAWhisperModel {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(unreadable(e)),
    }
    // whisper.cpp reads a cut-off file without noticing (it reads zeros past the end), so a
    // half-copied model would "load" and then transcribe garbage: refuse it here.
    let broken = |reason: String| SpeechError::ModelLoad {
        path: path.to_owned(),
        reason,
    };
    let mut header = [0u8; 44];
    if file.read_exact(&mut header).is_err() || size < MIN_MODEL_BYTES {
        return Err(broken(format!(
            "the file is truncated ({size} bytes; the smallest whisper model is over 30 MB)"
        )));
    }
    let field = |i: usize| {
        i32::from_le_bytes([
            header[i * 4],
            header[i * 4 + 1],
            header[i * 4 + 2],
            header[i * 4 + 3],
        ])
    };
    let (n_vocab, n_mels) = (field(0), field(9));
    if !(51_864..=51_866).contains(&n_vocab) || !matches!(n_mels, 80 | 128) {
        return Err(broken(format!(
            "unexpected header (vocabulary {n_vocab}, mel bands {n_mels}): not a whisper GGML model"
        )));
    }
    Ok(())
}

/// Smaller than any whisper GGML model, even tiny quantised to 4 bits (about 31 MB).
const MIN_MODEL_BYTES: u64 = 16 * 1024 * 1024;
