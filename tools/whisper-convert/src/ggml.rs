//! Writing the GGML model file whisper.cpp loads.
//!
//! Layout (little-endian): magic `0x67676d6c`; eleven `i32`
//! hyper-parameters; the mel filters (`i32 n_mels`, `i32 n_bins`, then
//! `f32` values); the vocabulary (`i32 count`, then per token `i32 length`
//! and raw bytes); then tensors, each `i32 n_dims`, `i32 name length`,
//! `i32 type` (0 f32, 1 f16, 6 q5_0, 8 q8_0), the dimensions innermost first, the
//! name and the data.
//!
//! # q8_0
//!
//! GGML's 8-bit block quantisation, which whisper.cpp loads for the weight
//! matrices when the header's `ftype` says so: each run of 32 consecutive
//! values of a row is stored as one f16 scale `d` (the block's largest
//! magnitude over 127) followed by the 32 values divided by `d`, rounded to
//! `i8`. A value is read back as `d * q`: within `d / 2` of the original,
//! plus the rounding of `d` itself to f16.
//!
//! # q5_0
//!
//! GGML's 5-bit blocks of 32 values: an f16 scale `d` (the block's value of largest
//! magnitude, with its sign, over -16), four bytes holding each value's fifth bit, then
//! sixteen bytes of low nibbles (value `j` in the low half of byte `j`, value `16 + j` in
//! the high half). A value is read back as `d * (q - 16)`, with `q` from 0 to 31.

use std::io::{self, Read, Write};

use crate::ct2::DType;
use crate::precision::{bf16_to_f32, f16_to_f32, f32_to_f16};

/// The file magic, `"ggml"` as a big-endian integer.
pub const MAGIC: u32 = 0x6767_6d6c;

/// Element type of a tensor in the GGML file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float (type 0).
    F32,
    /// IEEE half precision (type 1).
    F16,
    /// 8-bit blocks of [`Q8_BLOCK`] values with an f16 scale (type 8).
    Q8_0,
    /// 5-bit blocks of [`Q5_BLOCK`] values with an f16 scale (type 6).
    Q5_0,
}

/// Values per q5_0 block.
pub const Q5_BLOCK: usize = 32;

/// Bytes per q5_0 block: the f16 scale, the 32 fifth bits, 16 bytes of nibbles.
pub const Q5_BLOCK_BYTES: usize = 2 + 4 + Q5_BLOCK / 2;

/// Values per q8_0 block.
pub const Q8_BLOCK: usize = 32;

/// Bytes per q8_0 block: the f16 scale and one byte per value.
pub const Q8_BLOCK_BYTES: usize = 2 + Q8_BLOCK;

impl GgmlType {
    /// The type code in the file.
    pub fn code(self) -> i32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 8,
            Self::Q5_0 => 6,
        }
    }

    /// Values per block (1 for the float types).
    pub fn block(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q8_0 => Q8_BLOCK,
            Self::Q5_0 => Q5_BLOCK,
        }
    }

    /// Bytes taken by `count` values (a multiple of [`GgmlType::block`]).
    pub fn bytes(self, count: usize) -> usize {
        match self {
            Self::F32 => count * 4,
            Self::F16 => count * 2,
            Self::Q8_0 => count / Q8_BLOCK * Q8_BLOCK_BYTES,
            Self::Q5_0 => count / Q5_BLOCK * Q5_BLOCK_BYTES,
        }
    }
}

/// GGML's file type (`ftype` in the header) for matrices quantised to
/// q8_0 (`GGML_FTYPE_MOSTLY_Q8_0`), with the quantisation format version
/// (2) times 1000 added, as GGML's quantisers write it.
pub const FTYPE_Q8_0: u32 = 2 * 1000 + 7;

/// Appends `values` (a multiple of [`Q8_BLOCK`] long) to `out` as q8_0
/// blocks.
pub fn quantize_q8_0(values: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(values.len() % Q8_BLOCK, 0);
    for block in values.chunks_exact(Q8_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inverse = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        // |v * inverse| <= 127 (up to rounding), so the cast cannot wrap.
        out.extend(block.iter().map(|v| ((v * inverse).round() as i8) as u8));
    }
}

/// q5_0 (`GGML_FTYPE_MOSTLY_Q5_0`), with the quantisation format version (2) times 1000
/// added.
pub const FTYPE_Q5_0: u32 = 2 * 1000 + 8;

/// Appends `values` (a multiple of [`Q5_BLOCK`] long) to `out` as q5_0 blocks, rounding as
/// ggml's reference quantiser does.
pub fn quantize_q5_0(values: &[f32], out: &mut Vec<u8>) {
    debug_assert_eq!(values.len() % Q5_BLOCK, 0);
    for block in values.chunks_exact(Q5_BLOCK) {
        // The value of largest magnitude, with its sign: it maps to -16 exactly.
        let max = block
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -16.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        // From 0 to 31: v * inverse is within [-16, 16] up to rounding.
        let q = |v: f32| ((v * inverse + 16.5) as i32).clamp(0, 31) as u32;
        let mut high = 0u32;
        let mut nibbles = [0u8; Q5_BLOCK / 2];
        for j in 0..Q5_BLOCK / 2 {
            let (a, b) = (q(block[j]), q(block[Q5_BLOCK / 2 + j]));
            nibbles[j] = ((a & 0x0f) | ((b & 0x0f) << 4)) as u8;
            high |= ((a >> 4) & 1) << j;
            high |= ((b >> 4) & 1) << (j + Q5_BLOCK / 2);
        }
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        out.extend_from_slice(&high.to_le_bytes());
        out.extend_from_slice(&nibbles);
    }
}

/// Reads q5_0 blocks back into values (for checks and tests).
pub fn dequantize_q5_0(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(Q5_BLOCK_BYTES)
        .flat_map(|block| {
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let high = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
            let nibbles = &block[6..];
            (0..Q5_BLOCK).map(move |i| {
                let half = Q5_BLOCK / 2;
                let low = if i < half {
                    nibbles[i] & 0x0f
                } else {
                    nibbles[i - half] >> 4
                };
                let q = u32::from(low) | (((high >> i) & 1) << 4);
                d * (q as f32 - 16.0)
            })
        })
        .collect()
}

/// Reads q8_0 blocks back into values (for checks and tests).
pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(Q8_BLOCK_BYTES)
        .flat_map(|block| {
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            block[2..].iter().map(move |&q| d * f32::from(q as i8))
        })
        .collect()
}

/// Whisper's hyper-parameters, in the order of the file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HParams {
    /// Rows of the token embedding: 51864 for English-only models, 51865
    /// (51866 for large-v3) for multilingual ones.
    pub n_vocab: u32,
    /// Encoder positions (1500 for 30 s of audio).
    pub n_audio_ctx: u32,
    /// Encoder width.
    pub n_audio_state: u32,
    /// Encoder attention heads.
    pub n_audio_head: u32,
    /// Encoder blocks.
    pub n_audio_layer: u32,
    /// Decoder positions (448).
    pub n_text_ctx: u32,
    /// Decoder width.
    pub n_text_state: u32,
    /// Decoder attention heads.
    pub n_text_head: u32,
    /// Decoder blocks.
    pub n_text_layer: u32,
    /// Mel bands of the input spectrogram (80; 128 for large-v3).
    pub n_mels: u32,
    /// Weight type: 1 = matrices in f16.
    pub ftype: u32,
}

impl HParams {
    /// The header values in file order.
    pub fn to_array(&self) -> [u32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    /// Whether whisper.cpp treats the model as multilingual.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }

    /// Id of `<|endoftext|>` as whisper.cpp assumes it, which is also the
    /// number of ordinary tokens the file must list.
    pub fn end_of_text_id(&self) -> usize {
        if self.is_multilingual() { 50257 } else { 50256 }
    }

    /// The usual name of the model size, e.g. `base` or `tiny.en`.
    pub fn model_type(&self) -> String {
        let size = match (self.n_audio_layer, self.n_mels) {
            (4, _) => "tiny",
            (6, _) => "base",
            (12, _) => "small",
            (24, _) => "medium",
            (32, 128) => "large-v3",
            (32, _) => "large",
            _ => "unknown",
        };
        if self.is_multilingual() {
            size.to_owned()
        } else {
            format!("{size}.en")
        }
    }
}

/// A writer that counts the bytes written through it.
pub struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Counting<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, count: 0 }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the inner writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn i32_of(v: usize) -> io::Result<[u8; 4]> {
    i32::try_from(v).map(i32::to_le_bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{v} does not fit an i32"),
        )
    })
}

/// Writes the magic and the hyper-parameters.
pub fn write_header(w: &mut impl Write, hp: &HParams) -> io::Result<()> {
    w.write_all(&MAGIC.to_le_bytes())?;
    for v in hp.to_array() {
        w.write_all(&i32_of(v as usize)?)?;
    }
    Ok(())
}

/// Writes the mel filter bank, `n_mels` rows of `filters.len() / n_mels`.
pub fn write_mel_filters(w: &mut impl Write, n_mels: usize, filters: &[f32]) -> io::Result<()> {
    let bins = filters.len().checked_div(n_mels).unwrap_or(0);
    w.write_all(&i32_of(n_mels)?)?;
    w.write_all(&i32_of(bins)?)?;
    let mut buf = Vec::with_capacity(filters.len() * 4);
    for v in filters {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    w.write_all(&buf)
}

/// Writes the vocabulary: count, then each token's length and bytes.
pub fn write_vocabulary(w: &mut impl Write, tokens: &[Vec<u8>]) -> io::Result<()> {
    w.write_all(&i32_of(tokens.len())?)?;
    for token in tokens {
        w.write_all(&i32_of(token.len())?)?;
        w.write_all(token)?;
    }
    Ok(())
}

/// Writes a tensor header; `shape` is outermost first (as in PyTorch) and
/// is written innermost first, as GGML counts dimensions.
pub fn write_tensor_header(
    w: &mut impl Write,
    name: &str,
    shape: &[usize],
    ty: GgmlType,
) -> io::Result<()> {
    w.write_all(&i32_of(shape.len())?)?;
    w.write_all(&i32_of(name.len())?)?;
    w.write_all(&ty.code().to_le_bytes())?;
    for &d in shape.iter().rev() {
        w.write_all(&i32_of(d)?)?;
    }
    w.write_all(name.as_bytes())
}

/// Elements converted per chunk.
const CHUNK: usize = 1 << 16;

/// Why [`copy_converted`] failed.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the input failed (or it ended early).
    Read(io::Error),
    /// Writing the output failed.
    Write(io::Error),
    /// The input type is not a float type.
    Type(DType),
}

/// Streams `count` elements of type `from` from `r` to `w`, converted to
/// `to`, a chunk at a time. `from` must be a float type; for q8_0, `count`
/// must be a multiple of [`Q8_BLOCK`] (the planner only quantises such
/// tensors).
pub fn copy_converted(
    r: &mut impl Read,
    w: &mut impl Write,
    from: DType,
    to: GgmlType,
    count: usize,
) -> Result<(), CopyError> {
    let widen: fn(&[u8]) -> f32 = match from {
        DType::F32 => |e| f32::from_le_bytes([e[0], e[1], e[2], e[3]]),
        DType::F16 => |e| f16_to_f32(u16::from_le_bytes([e[0], e[1]])),
        DType::BF16 => |e| bf16_to_f32(u16::from_le_bytes([e[0], e[1]])),
        DType::I8 | DType::I16 | DType::I32 => return Err(CopyError::Type(from)),
    };
    if !count.is_multiple_of(to.block()) {
        return Err(CopyError::Write(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{count} values do not fill whole blocks of {}", to.block()),
        )));
    }
    let in_size = from.size();
    // CHUNK is a multiple of every block size.
    let mut input = vec![0u8; CHUNK.min(count) * in_size];
    let mut output = Vec::with_capacity(to.bytes(CHUNK.min(count)));
    let mut values = Vec::new();
    let mut left = count;
    while left > 0 {
        let n = left.min(CHUNK);
        let input = &mut input[..n * in_size];
        r.read_exact(input).map_err(CopyError::Read)?;
        let data: &[u8] = match (from, to) {
            (DType::F16, GgmlType::F16) | (DType::F32, GgmlType::F32) => input,
            _ => {
                output.clear();
                let widened = input.chunks_exact(in_size).map(widen);
                match to {
                    GgmlType::F32 => {
                        widened.for_each(|x| output.extend_from_slice(&x.to_le_bytes()))
                    }
                    GgmlType::F16 => {
                        widened.for_each(|x| output.extend_from_slice(&f32_to_f16(x).to_le_bytes()))
                    }
                    GgmlType::Q8_0 => {
                        values.clear();
                        values.extend(widened);
                        quantize_q8_0(&values, &mut output);
                    }
                    GgmlType::Q5_0 => {
                        values.clear();
                        values.extend(widened);
                        quantize_q5_0(&values, &mut output);
                    }
                }
                &output
            }
        };
        w.write_all(data).map_err(CopyError::Write)?;
        left -= n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16s(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|&v| f32_to_f16(v).to_le_bytes())
            .collect()
    }

    #[test]
    fn converts_between_float_types() {
        let values = [1.0f32, -2.5, 0.0, 65504.0];
        let mut out = Vec::new();
        copy_converted(
            &mut &f16s(&values)[..],
            &mut out,
            DType::F16,
            GgmlType::F32,
            4,
        )
        .unwrap();
        let back: Vec<f32> = out
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, values);

        let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        copy_converted(&mut &f32_bytes[..], &mut out, DType::F32, GgmlType::F16, 4).unwrap();
        assert_eq!(out, f16s(&values));

        // bfloat16 1.0 and -5.0
        let mut out = Vec::new();
        copy_converted(
            &mut &[0x80, 0x3f, 0xa0, 0xc0][..],
            &mut out,
            DType::BF16,
            GgmlType::F16,
            2,
        )
        .unwrap();
        assert_eq!(out, f16s(&[1.0, -5.0]));

        let mut out = Vec::new();
        let err = copy_converted(&mut &[1u8, 2][..], &mut out, DType::I8, GgmlType::F16, 2);
        assert!(matches!(err, Err(CopyError::Type(DType::I8))), "{err:?}");
    }

    #[test]
    fn streams_more_than_one_chunk_and_reports_short_input() {
        let count = CHUNK * 2 + 3;
        let input: Vec<u8> = (0..count)
            .flat_map(|i| f32_to_f16(i as f32).to_le_bytes())
            .collect();
        let mut out = Vec::new();
        copy_converted(&mut &input[..], &mut out, DType::F16, GgmlType::F16, count).unwrap();
        assert_eq!(out, input);
        let mut out = Vec::new();
        let err = copy_converted(&mut &input[..10], &mut out, DType::F16, GgmlType::F16, 6);
        assert!(
            matches!(err, Err(CopyError::Read(ref e)) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err:?}"
        );
    }

    #[test]
    fn q5_0_round_trips_within_half_a_step_and_matches_ggmls_layout() {
        // 0, 1, ..., 31 less 16, times 0.25: the largest magnitude is -4.0 (value 0).
        let values: Vec<f32> = (0..64).map(|i| ((i % 32) as f32 - 16.0) * 0.25).collect();
        let mut out = Vec::new();
        quantize_q5_0(&values, &mut out);
        assert_eq!(GgmlType::Q5_0.bytes(64), out.len());
        assert_eq!(out.len(), 2 * 22);
        // d = -4.0 / -16 = 0.25; value i maps to q = 16 - (i - 16) = 32 - i, clamped to 31.
        assert_eq!(f16_to_f32(u16::from_le_bytes([out[0], out[1]])), 0.25);
        let back = dequantize_q5_0(&out);
        for (v, b) in values.iter().zip(&back) {
            assert!((v - b).abs() <= 0.125 + 1e-6, "{v} -> {b}");
        }
        let noisy: Vec<f32> = (0..320)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0)
            .collect();
        let mut out = Vec::new();
        quantize_q5_0(&noisy, &mut out);
        for (block, back) in noisy.chunks(32).zip(dequantize_q5_0(&out).chunks(32)) {
            let step = block.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 16.0;
            for (v, b) in block.iter().zip(back) {
                // The top code is 31, not 32: a value of the other sign than the block's
                // largest, and nearly as large, is held at 15 steps (as in ggml).
                let bound = if v.abs() < 15.0 * step { 0.5 } else { 1.0 };
                assert!(
                    (v - b).abs() <= step * (bound + 1e-2),
                    "{v} -> {b} (step {step})"
                );
            }
        }
        let mut zeros = Vec::new();
        quantize_q5_0(&[0.0; 32], &mut zeros);
        assert!(dequantize_q5_0(&zeros).iter().all(|v| *v == 0.0));
    }

    #[test]
    fn q8_0_round_trips_within_half_a_step() {
        // Two blocks: mixed values, and all zeros (scale 0).
        let mut values: Vec<f32> = (0..32).map(|i| (i as f32 - 13.5) * 0.037).collect();
        values[7] = -1.75; // the largest magnitude: scale 1.75 / 127
        values.extend([0.0f32; 32]);
        let mut out = Vec::new();
        quantize_q8_0(&values, &mut out);
        assert_eq!(out.len(), 2 * Q8_BLOCK_BYTES);
        assert_eq!(GgmlType::Q8_0.bytes(64), out.len());
        // The largest value is stored as -127.
        assert_eq!(out[2 + 7] as i8, -127);
        let back = dequantize_q8_0(&out);
        let step = f16_to_f32(u16::from_le_bytes([out[0], out[1]]));
        assert!((step - 1.75 / 127.0).abs() < 1e-5, "{step}");
        // Half a step, plus the scale's own f16 rounding (2^-11 of it) times up to 127.
        let tolerance = step * (0.5 + 127.0 / 2048.0);
        for (v, b) in values.iter().zip(&back) {
            assert!((v - b).abs() <= tolerance, "{v} -> {b}");
        }
        assert!(back[32..].iter().all(|&b| b == 0.0));

        // Through copy_converted, from f16, across chunk boundaries.
        let count = CHUNK + 64;
        let input: Vec<f32> = (0..count)
            .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
            .collect();
        let mut out = Vec::new();
        copy_converted(
            &mut &f16s(&input)[..],
            &mut out,
            DType::F16,
            GgmlType::Q8_0,
            count,
        )
        .unwrap();
        assert_eq!(out.len(), GgmlType::Q8_0.bytes(count));
        let back = dequantize_q8_0(&out);
        let worst = input
            .iter()
            .map(|&v| f16_to_f32(f32_to_f16(v)))
            .collect::<Vec<_>>()
            .iter()
            .zip(&back)
            .map(|(v, b)| (v - b).abs())
            .fold(0.0f32, f32::max);
        // Blocks' largest magnitude is at most 0.96: a step of at most 0.96 / 127.
        assert!(worst <= 0.96 / 127.0 * 0.57, "worst error {worst}");

        let err = copy_converted(
            &mut &f16s(&input)[..],
            &mut out,
            DType::F16,
            GgmlType::Q8_0,
            33,
        );
        assert!(matches!(err, Err(CopyError::Write(_))), "{err:?}");
    }

    #[test]
    fn tensor_header_reverses_dimensions() {
        let mut out = Vec::new();
        write_tensor_header(&mut out, "ab", &[3, 5, 7], GgmlType::F16).unwrap();
        let ints: Vec<i32> = out[..24]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(ints, [3, 2, 1, 7, 5, 3]);
        assert_eq!(&out[24..], b"ab");
    }

    #[test]
    fn model_types() {
        let mut hp = HParams {
            n_vocab: 51864,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
            n_mels: 80,
            ftype: 1,
        };
        assert_eq!(hp.model_type(), "tiny.en");
        assert_eq!(hp.end_of_text_id(), 50256);
        hp.n_vocab = 51865;
        hp.n_audio_layer = 6;
        assert_eq!(hp.model_type(), "base");
        assert_eq!(hp.end_of_text_id(), 50257);
        hp.n_audio_layer = 32;
        hp.n_mels = 128;
        hp.n_vocab = 51866;
        assert_eq!(hp.model_type(), "large-v3");
    }
}
