//! Whisper's vocabulary: GPT-2 byte-level token strings back to raw bytes.
//!
//! GPT-2 (and Whisper) tokens are byte sequences. To store them as text,
//! each byte is shown as one printable character: the 188 bytes that are
//! printable Latin-1 (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves and
//! the other 68 bytes, in increasing order, are shown as U+0100, U+0101, ...
//! (so a space is `Ġ`, U+0120, and a newline is `Ċ`, U+010A).
//! whisper.cpp wants the raw bytes.

use std::path::Path;

use crate::ConvertError;

/// The special token that ends the ordinary (byte-level) tokens.
pub const END_OF_TEXT: &str = "<|endoftext|>";

const fn is_printable_byte(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff)
}

/// The bytes that are not shown as themselves, in increasing order: the
/// `n`-th is shown as the character U+0100 + n.
const SHIFTED: [u8; 68] = {
    let mut table = [0u8; 68];
    let mut n = 0;
    let mut b = 0;
    while b < 256 {
        if !is_printable_byte(b as u8) {
            table[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    table
};

/// Returns the byte a GPT-2 byte-level character stands for, or `None` if
/// the character is not part of that alphabet.
pub fn char_to_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    match u8::try_from(code) {
        Ok(b) if is_printable_byte(b) => Some(b),
        Ok(_) => None,
        Err(_) => {
            let n = usize::try_from(code.checked_sub(0x100)?).ok()?;
            SHIFTED.get(n).copied()
        }
    }
}

/// Returns the GPT-2 byte-level character that stands for `b`.
pub fn byte_to_char(b: u8) -> char {
    if is_printable_byte(b) {
        return char::from(b);
    }
    // SHIFTED has every non-printable byte, so the search always succeeds.
    let n = SHIFTED.iter().position(|&s| s == b).unwrap_or(0);
    char::from_u32(0x100 + n as u32).unwrap_or('\u{100}')
}

/// Decodes one byte-level token string into its bytes. On failure, returns
/// the first character that is not in the byte-level alphabet.
pub fn decode_token(token: &str) -> Result<Vec<u8>, char> {
    token.chars().map(|c| char_to_byte(c).ok_or(c)).collect()
}

/// Reads a CTranslate2 vocabulary: `vocabulary.json` (a JSON array of
/// strings) or `vocabulary.txt` (one token per line, `\n` separated).
/// The index of a token is its id.
pub fn read_vocabulary(path: &Path) -> Result<Vec<String>, ConvertError> {
    let bytes = std::fs::read(path).map_err(|source| ConvertError::Io {
        action: "reading the vocabulary",
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |what: String| ConvertError::Vocabulary {
        path: path.to_path_buf(),
        what,
    };
    if path.extension().is_some_and(|e| e == "json") {
        return serde_json::from_slice::<Vec<String>>(&bytes)
            .map_err(|e| bad(format!("not a JSON array of strings: {e}")));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    if body.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    // Byte-level tokens never contain a raw CR, so a trailing one is a CRLF
    // line ending.
    Ok(body
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line).to_owned())
        .collect())
}

/// Returns the id of `<|endoftext|>`, which is also the number of ordinary
/// tokens before it.
pub fn end_of_text_id(tokens: &[String], path: &Path) -> Result<usize, ConvertError> {
    tokens
        .iter()
        .position(|t| t == END_OF_TEXT)
        .ok_or_else(|| ConvertError::Vocabulary {
            path: path.to_path_buf(),
            what: format!("no {END_OF_TEXT} token"),
        })
}

/// Decodes the ordinary tokens (all ids below `<|endoftext|>`) to bytes.
pub fn ordinary_token_bytes(tokens: &[String], path: &Path) -> Result<Vec<Vec<u8>>, ConvertError> {
    let eot = end_of_text_id(tokens, path)?;
    tokens[..eot]
        .iter()
        .enumerate()
        .map(|(id, token)| {
            decode_token(token).map_err(|ch| ConvertError::BadToken {
                path: path.to_path_buf(),
                id,
                token: token.clone(),
                ch,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_is_a_bijection_on_bytes() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c), "byte {b} shares character {c:?}");
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(seen.len(), 256);
        // The shifted characters are exactly U+0100..U+0143.
        assert_eq!(byte_to_char(0), '\u{100}');
        assert_eq!(byte_to_char(0xad), '\u{143}');
    }

    #[test]
    fn well_known_characters() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'\t'), 'ĉ');
        assert_eq!(char_to_byte('a'), Some(b'a'));
        assert_eq!(char_to_byte('é'), Some(0xe9));
        // Characters outside the alphabet.
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('\u{ad}'), None);
        assert_eq!(char_to_byte('\u{144}'), None);
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn decodes_tokens_to_bytes() {
        assert_eq!(decode_token("Ġhello").as_deref(), Ok(&b" hello"[..]));
        assert_eq!(decode_token("ĊĊ").as_deref(), Ok(&b"\n\n"[..]));
        // A right single quote, U+2019, is E2 80 99 in UTF-8.
        assert_eq!(decode_token("âĢĻ").as_deref(), Ok("\u{2019}".as_bytes()));
        // Spanish "ñ" is C3 B1.
        assert_eq!(decode_token("Ã±").as_deref(), Ok("ñ".as_bytes()));
        // Tokens may be partial UTF-8 sequences: only the bytes matter.
        assert_eq!(decode_token("Ã").as_deref(), Ok(&[0xc3u8][..]));
        assert_eq!(decode_token("").as_deref(), Ok(&[][..]));
        assert_eq!(decode_token("a€b"), Err('€'));
    }

    #[test]
    fn reads_text_vocabulary_with_empty_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocabulary.txt");
        std::fs::write(&path, "!\nĠa\n\n<|endoftext|>\n<|en|>\n").unwrap();
        let tokens = read_vocabulary(&path).unwrap();
        assert_eq!(tokens, ["!", "Ġa", "", "<|endoftext|>", "<|en|>"]);
        assert_eq!(end_of_text_id(&tokens, &path).unwrap(), 3);
        let bytes = ordinary_token_bytes(&tokens, &path).unwrap();
        assert_eq!(bytes, [b"!".to_vec(), b" a".to_vec(), Vec::new()]);
    }

    #[test]
    fn reads_json_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocabulary.json");
        std::fs::write(&path, r#"["Ġx", "<|endoftext|>"]"#).unwrap();
        let tokens = read_vocabulary(&path).unwrap();
        assert_eq!(
            ordinary_token_bytes(&tokens, &path).unwrap(),
            [b" x".to_vec()]
        );
        std::fs::write(&path, r#"{"not": "a list"}"#).unwrap();
        let err = read_vocabulary(&path).unwrap_err().to_string();
        assert!(err.contains("not a JSON array"), "{err}");
    }

    #[test]
    fn reports_bad_tokens_and_missing_end_of_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocabulary.txt");
        std::fs::write(&path, "ok\nbad token\n<|endoftext|>\n").unwrap();
        let tokens = read_vocabulary(&path).unwrap();
        let err = ordinary_token_bytes(&tokens, &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("token 1") && err.contains("' '"), "{err}");
        std::fs::write(&path, "a\nb\n").unwrap();
        let tokens = read_vocabulary(&path).unwrap();
        let err = end_of_text_id(&tokens, &path).unwrap_err().to_string();
        assert!(err.contains("<|endoftext|>"), "{err}");
        std::fs::write(&path, [0xffu8, b'\n']).unwrap();
        let err = read_vocabulary(&path).unwrap_err().to_string();
        assert!(err.contains("UTF-8"), "{err}");
    }
}
