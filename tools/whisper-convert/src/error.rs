//! The error type of the converter.

use std::path::PathBuf;

/// Everything that can go wrong converting a model. Each variant says what
/// is wrong and where (file, byte offset, variable or token).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// An I/O operation on a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An input directory does not exist or is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },

    /// No `model.bin` or `model.bin.part1` in the input directories.
    #[error(
        "no CTranslate2 model in {searched}: expected model.bin, or model.bin.part1, model.bin.part2, ..."
    )]
    ModelNotFound {
        /// The directories searched.
        searched: String,
    },

    /// A split model has a gap in its part numbers.
    #[error("model.bin.part{missing} is missing (found {}): parts must be numbered 1, 2, 3, ... without gaps", found.display())]
    MissingPart {
        /// The number of the missing part.
        missing: u32,
        /// A later part that exists.
        found: PathBuf,
    },

    /// The same input file name exists twice, or both `model.bin` and parts.
    #[error("ambiguous input: both {} and {} exist", first.display(), second.display())]
    AmbiguousInput {
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },

    /// No `vocabulary.txt` or `vocabulary.json` in the input directories.
    #[error("no vocabulary.txt or vocabulary.json in {searched}")]
    VocabularyNotFound {
        /// The directories searched.
        searched: String,
    },

    /// The model file has a binary version this converter does not read.
    #[error(
        "{file}: unsupported CTranslate2 binary version {found} (this converter reads versions {min} to {max}); is this a CTranslate2 model.bin?"
    )]
    UnsupportedVersion {
        /// The model file.
        file: String,
        /// The version found in the header.
        found: u32,
        /// Oldest supported version.
        min: u32,
        /// Newest supported version.
        max: u32,
    },

    /// The model is a CTranslate2 model, but not a Whisper one.
    #[error("{file}: model specification is {found:?}, expected \"WhisperSpec\"")]
    NotWhisper {
        /// The model file.
        file: String,
        /// The specification name found.
        found: String,
    },

    /// The model file is not well formed at some offset.
    #[error("{file}: at byte {offset}: {what}")]
    Malformed {
        /// The model file.
        file: String,
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        what: String,
    },

    /// A variable has a dtype code this converter does not know.
    #[error("{file}: at byte {offset}: variable {name:?} has unknown dtype code {code}")]
    UnknownDtype {
        /// The model file.
        file: String,
        /// Byte offset of the dtype code.
        offset: u64,
        /// The variable.
        name: String,
        /// The code found.
        code: u8,
    },

    /// The model file ends before the data it announces.
    #[error(
        "{file}: truncated: {what} needs bytes up to {needed} but the model has only {len} bytes (for a split model, check that every part is present and complete)"
    )]
    Truncated {
        /// The model file.
        file: String,
        /// What was being read.
        what: String,
        /// The offset that would have been needed.
        needed: u64,
        /// The real length.
        len: u64,
    },

    /// A variable's byte size does not match its shape and dtype.
    #[error(
        "{file}: variable {name:?} declares {declared} bytes but shape {shape:?} of {dtype} needs {expected}"
    )]
    SizeMismatch {
        /// The model file.
        file: String,
        /// The variable.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Its dtype name.
        dtype: &'static str,
        /// The byte count stored in the file.
        declared: u64,
        /// The byte count the shape needs.
        expected: u64,
    },

    /// A variable whisper.cpp needs is not in the model.
    #[error("{file}: required variable {name:?} is missing")]
    MissingTensor {
        /// The model file.
        file: String,
        /// The variable.
        name: String,
    },

    /// A variable has another shape than the hyper-parameters imply.
    #[error("{file}: variable {name:?} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The model file.
        file: String,
        /// The variable.
        name: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The shape expected.
        expected: Vec<usize>,
    },

    /// A variable's dtype cannot be converted (e.g. an int8 quantized model).
    #[error(
        "{file}: variable {name:?} is stored as {dtype}; only float32, float16 and bfloat16 weights can be converted (quantized CTranslate2 models are not supported)"
    )]
    UnsupportedDtype {
        /// The model file.
        file: String,
        /// The variable.
        name: String,
        /// Its dtype name.
        dtype: &'static str,
    },

    /// The model's parts do not fit together.
    #[error("{file}: {what}")]
    Inconsistent {
        /// The model file.
        file: String,
        /// What does not fit.
        what: String,
    },

    /// The vocabulary file is unusable.
    #[error("{}: {what}", path.display())]
    Vocabulary {
        /// The vocabulary file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },

    /// A token is not a GPT-2 byte-level string.
    #[error("{}: token {id} ({token:?}) contains {ch:?}, which is not a GPT-2 byte-level character", path.display())]
    BadToken {
        /// The vocabulary file.
        path: PathBuf,
        /// The token id (its line, counting from 0).
        id: usize,
        /// The token.
        token: String,
        /// The offending character.
        ch: char,
    },
}
