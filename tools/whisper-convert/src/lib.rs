//! Converts a CTranslate2 (faster-whisper) Whisper model into the GGML model
//! file whisper.cpp (and so the `whisper-rs` crate) loads.
//!
//! ```no_run
//! use std::path::Path;
//!
//! let summary = whisper_convert::convert(
//!     Path::new("faster-whisper-tiny.en"),
//!     Path::new("ggml-tiny.en.bin"),
//!     |_progress| {},
//! )?;
//! println!("{summary}");
//! # Ok::<(), whisper_convert::ConvertError>(())
//! ```
//!
//! The input directory holds `model.bin` (or `model.bin.part1`,
//! `model.bin.part2`, ..., read as one stream without joining them on disk)
//! and `vocabulary.txt` or `vocabulary.json`. The hyper-parameters come from
//! the variables themselves (e.g. `n_vocab` is the number of rows of the
//! token embedding), so `config.json` is not needed.
//!
//! The conversion reads the model's index first, checks every variable the
//! output needs (presence, shape, type) and the vocabulary, and only then
//! writes: tensor by tensor, a chunk at a time, into a temporary file next
//! to the output that is renamed over it at the end. Peak memory is a few
//! megabytes whatever the model size.

#![warn(missing_docs)]

pub mod ct2;
mod error;
pub mod ggml;
pub mod mel;
pub mod precision;
pub mod source;
pub mod tensors;
pub mod vocab;

use std::fmt;
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::ConvertError;
pub use ggml::HParams;
pub use source::ModelFiles;
pub use tensors::Weights;

/// How to convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Options {
    /// How the weight matrices are stored: f16 (as published) or quantised.
    pub weights: Weights,
}

impl Options {
    /// Options with the weight matrices stored as `weights`.
    pub fn with_weights(weights: Weights) -> Self {
        Self { weights }
    }
}

/// What the conversion is doing, reported to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// The model's index was read and checked.
    Indexed {
        /// Number of CTranslate2 variables.
        variables: usize,
        /// Size of the model in bytes (all parts).
        input_bytes: u64,
        /// Number of tensors that will be written.
        tensors: usize,
    },
    /// A tensor is about to be written.
    Tensor {
        /// Its position, from 0.
        index: usize,
        /// Number of tensors.
        total: usize,
        /// Its whisper.cpp name.
        name: &'a str,
    },
}

/// What a conversion produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The usual model name, e.g. `tiny.en` or `base`.
    pub model_type: String,
    /// The hyper-parameters written.
    pub hparams: HParams,
    /// Number of vocabulary entries written (the ordinary tokens).
    pub tokens: usize,
    /// Number of tensors written.
    pub tensors: usize,
    /// How the weight matrices were stored.
    pub weights: Weights,
    /// Size of the CTranslate2 model (all parts).
    pub input_bytes: u64,
    /// Size of the GGML file.
    pub bytes_written: u64,
    /// The GGML file.
    pub output: PathBuf,
    /// How long the conversion took.
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hp = &self.hparams;
        write!(
            f,
            "{}: n_vocab {}, {} encoder + {} decoder layers, width {}, {} weights, {} tensors, {} bytes written to {} in {:.2} s",
            self.model_type,
            hp.n_vocab,
            hp.n_audio_layer,
            hp.n_text_layer,
            hp.n_audio_state,
            self.weights.name(),
            self.tensors,
            self.bytes_written,
            self.output.display(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Converts the CTranslate2 model in directory `input` into the GGML file
/// `output`, calling `progress` as it goes.
pub fn convert(
    input: &Path,
    output: &Path,
    progress: impl FnMut(Progress<'_>),
) -> Result<Summary, ConvertError> {
    convert_files(&ModelFiles::discover(input)?, output, progress)
}

/// Converts the model made of `files` into the GGML file `output` with f16
/// weights, calling `progress` as it goes. `output` is replaced atomically:
/// it is either the complete new file or left as it was.
pub fn convert_files(
    files: &ModelFiles,
    output: &Path,
    progress: impl FnMut(Progress<'_>),
) -> Result<Summary, ConvertError> {
    convert_files_with(files, output, &Options::default(), progress)
}

/// [`convert_files`] with [`Options`], e.g. q8_0 weights.
pub fn convert_files_with(
    files: &ModelFiles,
    output: &Path,
    options: &Options,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Summary, ConvertError> {
    let started = Instant::now();
    let file = files.describe_model();
    let concat = source::ConcatReader::open(&files.model_parts)?;
    let input_bytes = concat.len();
    let mut reader = BufReader::with_capacity(1 << 20, concat);
    let index = ct2::read_index(&mut reader, input_bytes, &file)?;
    let mut hp = tensors::hparams(&index, &file)?;
    let mut tensors = tensors::output_tensors(&index, &hp, &file)?;
    tensors::set_weights(&mut tensors, options.weights, &file)?;
    hp.ftype = options.weights.ftype();
    progress(Progress::Indexed {
        variables: index.variables.len(),
        input_bytes,
        tensors: tensors.len(),
    });

    let vocab_path = &files.vocabulary;
    let vocabulary = vocab::read_vocabulary(vocab_path)?;
    if vocabulary.len() != hp.n_vocab as usize {
        return Err(ConvertError::Vocabulary {
            path: vocab_path.clone(),
            what: format!(
                "has {} tokens but the model's token embedding has {} rows (is it the vocabulary of another model?)",
                vocabulary.len(),
                hp.n_vocab
            ),
        });
    }
    let eot = vocab::end_of_text_id(&vocabulary, vocab_path)?;
    if eot != hp.end_of_text_id() {
        return Err(ConvertError::Vocabulary {
            path: vocab_path.clone(),
            what: format!(
                "{} has id {eot}, but whisper.cpp expects {} for a model of {} tokens",
                vocab::END_OF_TEXT,
                hp.end_of_text_id(),
                hp.n_vocab
            ),
        });
    }
    let tokens = vocab::ordinary_token_bytes(&vocabulary, vocab_path)?;
    let filters = mel::mel_filters(mel::SAMPLE_RATE, mel::N_FFT, hp.n_mels as usize);

    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".whisper-convert-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|source| ConvertError::Io {
            action: "creating a temporary file in",
            path: dir.to_path_buf(),
            source,
        })?;
    let tmp_path = tmp.path().to_path_buf();
    let write_err = |source| ConvertError::Io {
        action: "writing",
        path: tmp_path.clone(),
        source,
    };

    let bytes_written = {
        let mut w = ggml::Counting::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
        ggml::write_header(&mut w, &hp).map_err(write_err)?;
        ggml::write_mel_filters(&mut w, hp.n_mels as usize, &filters).map_err(write_err)?;
        ggml::write_vocabulary(&mut w, &tokens).map_err(write_err)?;
        for (i, t) in tensors.iter().enumerate() {
            progress(Progress::Tensor {
                index: i,
                total: tensors.len(),
                name: &t.name,
            });
            ggml::write_tensor_header(&mut w, &t.name, &t.shape, t.ty).map_err(write_err)?;
            let read_err = |e: std::io::Error| ConvertError::Malformed {
                file: file.clone(),
                offset: t.offset,
                what: format!("reading the data of {:?}: {e}", t.source),
            };
            reader.seek(SeekFrom::Start(t.offset)).map_err(read_err)?;
            ggml::copy_converted(&mut reader, &mut w, t.from, t.ty, t.count).map_err(
                |e| match e {
                    ggml::CopyError::Read(e) => read_err(e),
                    ggml::CopyError::Write(e) => write_err(e),
                    ggml::CopyError::Type(dtype) => ConvertError::UnsupportedDtype {
                        file: file.clone(),
                        name: t.source.clone(),
                        dtype: dtype.name(),
                    },
                },
            )?;
        }
        w.flush().map_err(write_err)?;
        w.count()
    };
    tmp.as_file().sync_all().map_err(write_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Temporary files are private (0600); a model is an ordinary file.
        std::fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(0o644))
            .map_err(write_err)?;
    }
    tmp.persist(output).map_err(|e| ConvertError::Io {
        action: "renaming the temporary file to",
        path: output.to_path_buf(),
        source: e.error,
    })?;

    Ok(Summary {
        model_type: hp.model_type(),
        hparams: hp,
        tokens: tokens.len(),
        tensors: tensors.len(),
        weights: options.weights,
        input_bytes,
        bytes_written,
        output: output.to_path_buf(),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ct2::testing::{fake_whisper, model_bytes};
    use crate::precision::f16_to_f32;

    /// A parsed GGML file.
    struct Ggml {
        header: Vec<i32>,
        mel_shape: (i32, i32),
        tokens: Vec<Vec<u8>>,
        tensors: Vec<(String, i32, Vec<i32>, Vec<f32>)>,
    }

    fn parse(bytes: &[u8]) -> Ggml {
        let mut pos = 0;
        let i32_at = |pos: &mut usize| {
            let v = i32::from_le_bytes(bytes[*pos..*pos + 4].try_into().unwrap());
            *pos += 4;
            v
        };
        let header: Vec<i32> = (0..12).map(|_| i32_at(&mut pos)).collect();
        let mel_shape = (i32_at(&mut pos), i32_at(&mut pos));
        pos += (mel_shape.0 * mel_shape.1 * 4) as usize;
        let n_tokens = i32_at(&mut pos);
        let tokens = (0..n_tokens)
            .map(|_| {
                let len = i32_at(&mut pos) as usize;
                pos += len;
                bytes[pos - len..pos].to_vec()
            })
            .collect();
        let mut tensors = Vec::new();
        while pos < bytes.len() {
            let n_dims = i32_at(&mut pos);
            let name_len = i32_at(&mut pos) as usize;
            let ty = i32_at(&mut pos);
            let dims: Vec<i32> = (0..n_dims).map(|_| i32_at(&mut pos)).collect();
            let name = String::from_utf8(bytes[pos..pos + name_len].to_vec()).unwrap();
            pos += name_len;
            let n = dims.iter().product::<i32>() as usize;
            let size = match ty {
                0 => n * 4,
                1 => n * 2,
                8 => ggml::GgmlType::Q8_0.bytes(n),
                6 => ggml::GgmlType::Q5_0.bytes(n),
                _ => panic!("unexpected tensor type {ty}"),
            };
            let data = &bytes[pos..pos + size];
            let values = match ty {
                0 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                1 => data
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                6 => ggml::dequantize_q5_0(data),
                _ => ggml::dequantize_q8_0(data),
            };
            pos += size;
            tensors.push((name, ty, dims, values));
        }
        Ggml {
            header,
            mel_shape,
            tokens,
            tensors,
        }
    }

    /// Writes a fake English-only model (51864 tokens) split in `parts`.
    fn write_fake_model(dir: &Path, parts: usize) {
        let bytes = model_bytes(
            6,
            &fake_whisper(8, 51864, 1),
            &[("decoder/projection/weight", "decoder/embeddings/weight")],
        );
        if parts == 1 {
            std::fs::write(dir.join("model.bin"), &bytes).unwrap();
        } else {
            let size = bytes.len().div_ceil(parts);
            for (i, chunk) in bytes.chunks(size).enumerate() {
                std::fs::write(dir.join(format!("model.bin.part{}", i + 1)), chunk).unwrap();
            }
        }
        let mut vocab = String::new();
        for i in 0..51864 {
            match i {
                50256 => vocab.push_str("<|endoftext|>\n"),
                0 => vocab.push_str("Ġhi\n"),
                i => vocab.push_str(&format!("t{i}\n")),
            }
        }
        std::fs::write(dir.join("vocabulary.txt"), vocab).unwrap();
    }

    #[test]
    fn converts_a_split_model_end_to_end() {
        let input = tempfile::tempdir().unwrap();
        write_fake_model(input.path(), 3);
        let out_dir = tempfile::tempdir().unwrap();
        let output = out_dir.path().join("ggml-fake.bin");
        let mut events = Vec::new();
        let summary = convert(input.path(), &output, |p| {
            events.push(format!("{p:?}"));
        })
        .unwrap();
        assert_eq!(summary.model_type, "unknown.en");
        assert_eq!(summary.tokens, 50256);
        assert_eq!(events.len(), 1 + summary.tensors);
        assert!(events[0].starts_with("Indexed"));

        let bytes = std::fs::read(&output).unwrap();
        assert_eq!(bytes.len() as u64, summary.bytes_written);
        let g = parse(&bytes);
        assert_eq!(g.header[0] as u32, ggml::MAGIC);
        assert_eq!(g.header[1..], [51864, 10, 8, 1, 1, 6, 8, 1, 1, 80, 1]);
        assert_eq!(g.mel_shape, (80, 201));
        assert_eq!(g.tokens.len(), 50256);
        assert_eq!(g.tokens[0], b" hi");
        assert_eq!(g.tokens[7], b"t7");
        assert_eq!(g.tensors.len(), summary.tensors);

        let tensor = |name: &str| g.tensors.iter().find(|t| t.0 == name).unwrap();
        // Fused rows 8..16 (values 64..128) are the key projection.
        let key = tensor("encoder.blocks.0.attn.key.weight");
        assert_eq!((key.1, key.2.as_slice()), (1, &[8, 8][..]));
        assert_eq!(key.3, (64..128).map(|v| v as f32).collect::<Vec<_>>());
        let value_bias = tensor("decoder.blocks.0.cross_attn.value.bias");
        assert_eq!(
            (value_bias.1, value_bias.3.as_slice()),
            (0, &[8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0][..])
        );
        // Conv biases are (n, 1): dims innermost first are [1, n].
        assert_eq!(tensor("encoder.conv1.bias").2, [1, 8]);
        assert_eq!(tensor("encoder.conv1.weight").2, [3, 80, 8]);
        let pe = tensor("decoder.positional_embedding");
        assert_eq!((pe.1, pe.2.as_slice(), pe.3[47]), (0, &[8, 6][..], 47.0));

        // Only the output is left in its directory: no temporary files.
        let names: Vec<_> = std::fs::read_dir(out_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ggml-fake.bin"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&output).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }

        // The same model in one piece gives the same file.
        let whole = tempfile::tempdir().unwrap();
        write_fake_model(whole.path(), 1);
        let again = out_dir.path().join("again.bin");
        convert(whole.path(), &again, |_| {}).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), bytes);
    }

    #[test]
    fn q8_0_weights_read_back_close_to_the_f16_ones() {
        // A model of width 32, so that rows are whole q8_0 blocks.
        let input = tempfile::tempdir().unwrap();
        let bytes = model_bytes(
            6,
            &fake_whisper(32, 51864, 1),
            &[("decoder/projection/weight", "decoder/embeddings/weight")],
        );
        std::fs::write(input.path().join("model.bin"), &bytes).unwrap();
        let mut vocab = String::new();
        for i in 0..51864 {
            match i {
                50256 => vocab.push_str("<|endoftext|>\n"),
                i => vocab.push_str(&format!("t{i}\n")),
            }
        }
        std::fs::write(input.path().join("vocabulary.txt"), vocab).unwrap();
        let files = ModelFiles::discover(input.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let (f16_path, q8_path) = (out.path().join("f16.bin"), out.path().join("q8.bin"));
        let f16 = convert_files(&files, &f16_path, |_| {}).unwrap();
        let q8 = convert_files_with(
            &files,
            &q8_path,
            &Options::with_weights(Weights::Q8_0),
            |_| {},
        )
        .unwrap();
        assert_eq!((f16.weights, q8.weights), (Weights::F16, Weights::Q8_0));
        assert!(q8.to_string().contains("q8_0 weights"), "{q8}");
        assert!(q8.bytes_written < f16.bytes_written);
        let (f16, q8) = (
            parse(&std::fs::read(&f16_path).unwrap()),
            parse(&std::fs::read(&q8_path).unwrap()),
        );
        assert_eq!(f16.header[11], 1);
        assert_eq!(q8.header[11], 2007);
        assert_eq!(f16.header[..11], q8.header[..11]);
        assert_eq!(f16.tokens, q8.tokens);
        assert_eq!(f16.tensors.len(), q8.tensors.len());
        let mut quantised = 0;
        for (a, b) in f16.tensors.iter().zip(&q8.tensors) {
            assert_eq!((&a.0, &a.2), (&b.0, &b.2));
            assert_eq!(a.3.len(), b.3.len(), "{}", a.0);
            if b.1 == 8 {
                quantised += 1;
                assert_eq!((a.1, a.2.len()), (1, 2), "{}", a.0);
                // Each value within half a step (the block's largest magnitude / 127),
                // plus the step's own f16 rounding times up to 127.
                for (x, y) in a.3.chunks(32).zip(b.3.chunks(32)) {
                    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    for (v, q) in x.iter().zip(y) {
                        assert!((v - q).abs() <= amax / 127.0 * 0.57, "{}: {v} {q}", a.0);
                    }
                }
            } else {
                assert_eq!(a, b);
            }
        }
        assert_eq!(quantised, 6 + 10 + 1);
    }

    #[test]
    fn failures_leave_no_output_behind() {
        let input = tempfile::tempdir().unwrap();
        write_fake_model(input.path(), 2);
        // Lose the end of the last part.
        let last = input.path().join("model.bin.part2");
        let data = std::fs::read(&last).unwrap();
        std::fs::write(&last, &data[..data.len() - 1000]).unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        let output = out_dir.path().join("out.bin");
        let err = convert(input.path(), &output, |_| {}).unwrap_err();
        assert!(matches!(err, ConvertError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("model.bin.part1 + "), "{err}");
        assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);

        // A vocabulary of another size.
        let input = tempfile::tempdir().unwrap();
        write_fake_model(input.path(), 1);
        std::fs::write(input.path().join("vocabulary.txt"), "a\n<|endoftext|>\n").unwrap();
        let err = convert(input.path(), &output, |_| {}).unwrap_err();
        assert!(
            err.to_string()
                .contains("has 2 tokens but the model's token embedding has 51864 rows"),
            "{err}"
        );

        // An output directory that does not exist.
        write_fake_model(input.path(), 1);
        let err = convert(
            input.path(),
            &out_dir.path().join("no/such/dir/x.bin"),
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, ConvertError::Io { .. }), "{err}");
        assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
    }
}
