//! Reading the index of a CTranslate2 `model.bin`.
//!
//! Layout (little-endian): `u32 version`, `str spec`, `u32 revision`,
//! `u32 n_variables`, then per variable `str name`, `u8 ndim`,
//! `u32 dims[ndim]`, `u8 dtype`, `u32 nbytes` and the raw data; then
//! `u32 n_aliases` and `(str alias, str target)` pairs. A `str` is a `u16`
//! length counting a trailing NUL, the UTF-8 bytes, and the NUL.
//!
//! Only the headers are read here; data is skipped and read later, tensor
//! by tensor, from the recorded offsets.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use crate::ConvertError;

/// Oldest binary version read (the per-variable layout above).
pub const MIN_VERSION: u32 = 4;
/// Newest binary version read.
pub const MAX_VERSION: u32 = 6;

/// Element type of a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 8-bit integer (quantized weights).
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    /// Decodes a CTranslate2 dtype code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }

    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
        }
    }

    /// Whether the type is a floating point one the converter can convert.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }
}

/// One variable of the model: where its data is, not the data.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Full name, e.g. `encoder/layer_0/ffn/linear_0/weight`.
    pub name: String,
    /// Dimensions, outermost first (row-major).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Offset of the data in the model.
    pub offset: u64,
    /// Byte length of the data.
    pub nbytes: u64,
    /// The data of scalar (0-dimensional) variables, read while indexing.
    pub scalar: Option<Vec<u8>>,
}

impl Variable {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The value of an integer scalar (any integer dtype), if this is one.
    pub fn scalar_int(&self) -> Option<i64> {
        let data = self.scalar.as_deref()?;
        Some(match self.dtype {
            DType::I8 => i64::from(i8::from_le_bytes(data.try_into().ok()?)),
            DType::I16 => i64::from(i16::from_le_bytes(data.try_into().ok()?)),
            DType::I32 => i64::from(i32::from_le_bytes(data.try_into().ok()?)),
            _ => return None,
        })
    }
}

/// The index of a CTranslate2 model file.
#[derive(Debug, Clone)]
pub struct Index {
    /// Binary format version.
    pub version: u32,
    /// Model specification name, `WhisperSpec` for Whisper.
    pub spec: String,
    /// Specification revision.
    pub revision: u32,
    /// Variables in file order.
    pub variables: Vec<Variable>,
    /// `(alias, target)` pairs: names that refer to another variable.
    pub aliases: Vec<(String, String)>,
    /// Total length of the model in bytes.
    pub len: u64,
    by_name: HashMap<String, usize>,
}

impl Index {
    /// Looks a variable up by name, following aliases.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        let name = self
            .aliases
            .iter()
            .find(|(alias, _)| alias == name)
            .map_or(name, |(_, target)| target.as_str());
        self.by_name.get(name).map(|&i| &self.variables[i])
    }
}

struct Parser<'a, R> {
    reader: &'a mut R,
    pos: u64,
    len: u64,
    file: &'a str,
}

impl<R: Read + Seek> Parser<'_, R> {
    fn malformed(&self, offset: u64, what: impl Into<String>) -> ConvertError {
        ConvertError::Malformed {
            file: self.file.to_owned(),
            offset,
            what: what.into(),
        }
    }

    fn ensure(&self, n: u64, what: &dyn Fn() -> String) -> Result<(), ConvertError> {
        let needed = self.pos.saturating_add(n);
        if needed > self.len {
            return Err(ConvertError::Truncated {
                file: self.file.to_owned(),
                what: what(),
                needed,
                len: self.len,
            });
        }
        Ok(())
    }

    fn bytes(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<Vec<u8>, ConvertError> {
        self.ensure(n as u64, what)?;
        let mut buf = vec![0; n];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| self.malformed(self.pos, format!("reading {}: {e}", what())))?;
        self.pos += n as u64;
        Ok(buf)
    }

    fn array<const N: usize>(
        &mut self,
        what: &dyn Fn() -> String,
    ) -> Result<[u8; N], ConvertError> {
        let bytes = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8, ConvertError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, ConvertError> {
        let start = self.pos;
        let n = u16::from_le_bytes(self.array(what)?);
        let bytes = self.bytes(usize::from(n), what)?;
        match bytes.split_last() {
            Some((0, text)) => String::from_utf8(text.to_vec())
                .map_err(|_| self.malformed(start, format!("{} is not valid UTF-8", what()))),
            _ => Err(self.malformed(
                start,
                format!("{} (length {n}) does not end with a NUL byte", what()),
            )),
        }
    }

    fn skip(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<(), ConvertError> {
        self.ensure(n, what)?;
        self.pos += n;
        self.reader
            .seek(SeekFrom::Start(self.pos))
            .map_err(|e| self.malformed(self.pos, format!("seeking past {}: {e}", what())))?;
        Ok(())
    }
}

/// Reads the index of a model of `len` bytes from the start of `reader`.
/// `file` names the model in error messages.
pub fn read_index<R: Read + Seek>(
    reader: &mut R,
    len: u64,
    file: &str,
) -> Result<Index, ConvertError> {
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| ConvertError::Malformed {
            file: file.to_owned(),
            offset: 0,
            what: format!("seeking to the start: {e}"),
        })?;
    let mut p = Parser {
        reader,
        pos: 0,
        len,
        file,
    };
    let version = p.u32(&|| "the binary version".into())?;
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        return Err(ConvertError::UnsupportedVersion {
            file: file.to_owned(),
            found: version,
            min: MIN_VERSION,
            max: MAX_VERSION,
        });
    }
    let spec = p.string(&|| "the model specification name".into())?;
    if spec != "WhisperSpec" {
        return Err(ConvertError::NotWhisper {
            file: file.to_owned(),
            found: spec,
        });
    }
    let revision = p.u32(&|| "the specification revision".into())?;
    let count = p.u32(&|| "the variable count".into())?;

    let mut variables: Vec<Variable> = Vec::new();
    let mut by_name = HashMap::new();
    for i in 0..count {
        let name_offset = p.pos;
        let name = p.string(&|| format!("the name of variable {i}"))?;
        let what = |field: &str| {
            let name = name.clone();
            let field = field.to_owned();
            move || format!("the {field} of variable {name:?}")
        };
        let ndim = p.u8(&what("rank"))?;
        let mut shape = Vec::with_capacity(usize::from(ndim));
        for _ in 0..ndim {
            let dim = p.u32(&what("dimensions"))?;
            shape.push(usize::try_from(dim).map_err(|_| {
                p.malformed(
                    name_offset,
                    format!("variable {name:?} has a dimension too large"),
                )
            })?);
        }
        let code_offset = p.pos;
        let code = p.u8(&what("dtype"))?;
        let dtype = DType::from_code(code).ok_or_else(|| ConvertError::UnknownDtype {
            file: file.to_owned(),
            offset: code_offset,
            name: name.clone(),
            code,
        })?;
        let nbytes = u64::from(p.u32(&what("byte count"))?);
        let expected = shape
            .iter()
            .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
            .unwrap_or(u64::MAX);
        if expected != nbytes {
            return Err(ConvertError::SizeMismatch {
                file: file.to_owned(),
                name,
                shape,
                dtype: dtype.name(),
                declared: nbytes,
                expected,
            });
        }
        let offset = p.pos;
        let scalar = if shape.is_empty() {
            Some(p.bytes(dtype.size(), &what("value"))?)
        } else {
            p.skip(nbytes, &what("data"))?;
            None
        };
        if by_name.insert(name.clone(), variables.len()).is_some() {
            return Err(p.malformed(name_offset, format!("variable {name:?} occurs twice")));
        }
        variables.push(Variable {
            name,
            shape,
            dtype,
            offset,
            nbytes,
            scalar,
        });
    }

    let n_aliases = p.u32(&|| "the alias count".into())?;
    let mut aliases = Vec::new();
    for i in 0..n_aliases {
        let alias = p.string(&|| format!("alias {i}"))?;
        let target = p.string(&|| format!("the target of alias {alias:?}"))?;
        aliases.push((alias, target));
    }
    if p.pos != len {
        return Err(p.malformed(
            p.pos,
            format!(
                "{} unexpected bytes after the end of the model (are the parts in the right order, and none repeated?)",
                len - p.pos
            ),
        ));
    }
    Ok(Index {
        version,
        spec,
        revision,
        variables,
        aliases,
        len,
        by_name,
    })
}

/// Writes a CTranslate2 model file; for tests of this crate.
#[cfg(test)]
pub(crate) mod testing {
    /// A variable to write: name, shape, dtype code, raw data.
    pub struct Var {
        pub name: String,
        pub shape: Vec<u32>,
        pub dtype: u8,
        pub data: Vec<u8>,
    }

    pub fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// A float16 variable whose element `k` is `k % 1024` (exact in f16).
    pub fn f16_var(name: &str, shape: &[u32]) -> Var {
        let n: u32 = shape.iter().product();
        Var {
            name: name.to_owned(),
            shape: shape.to_vec(),
            dtype: 4,
            data: (0..n)
                .flat_map(|k| crate::precision::f32_to_f16((k % 1024) as f32).to_le_bytes())
                .collect(),
        }
    }

    /// The variables of a small but complete CTranslate2 Whisper model:
    /// encoder and decoder width `d`, one head, `layers` blocks each,
    /// `n_vocab` tokens, 80 mels, 10 audio and 6 text positions.
    pub fn fake_whisper(d: u32, n_vocab: u32, layers: u32) -> Vec<Var> {
        let mut v = vec![
            Var {
                name: "encoder/num_heads".into(),
                shape: vec![],
                dtype: 2,
                data: 1i16.to_le_bytes().to_vec(),
            },
            Var {
                name: "decoder/num_heads".into(),
                shape: vec![],
                dtype: 2,
                data: 1i16.to_le_bytes().to_vec(),
            },
            Var {
                name: "decoder/scale_embeddings".into(),
                shape: vec![],
                dtype: 1,
                data: vec![0],
            },
            f16_var("encoder/conv1/weight", &[d, 80, 3]),
            f16_var("encoder/conv1/bias", &[d]),
            f16_var("encoder/conv2/weight", &[d, d, 3]),
            f16_var("encoder/conv2/bias", &[d]),
            f16_var("encoder/position_encodings/encodings", &[10, d]),
            f16_var("encoder/layer_norm/gamma", &[d]),
            f16_var("encoder/layer_norm/beta", &[d]),
            f16_var("decoder/embeddings/weight", &[n_vocab, d]),
            f16_var("decoder/position_encodings/encodings", &[6, d]),
            f16_var("decoder/layer_norm/gamma", &[d]),
            f16_var("decoder/layer_norm/beta", &[d]),
        ];
        let linear = |v: &mut Vec<Var>, name: String, n_out: u32, n_in: u32| {
            v.push(f16_var(&format!("{name}/weight"), &[n_out, n_in]));
            v.push(f16_var(&format!("{name}/bias"), &[n_out]));
        };
        let norm = |v: &mut Vec<Var>, name: String| {
            v.push(f16_var(&format!("{name}/gamma"), &[d]));
            v.push(f16_var(&format!("{name}/beta"), &[d]));
        };
        for side in ["encoder", "decoder"] {
            for i in 0..layers {
                let l = format!("{side}/layer_{i}");
                norm(&mut v, format!("{l}/self_attention/layer_norm"));
                linear(&mut v, format!("{l}/self_attention/linear_0"), 3 * d, d);
                linear(&mut v, format!("{l}/self_attention/linear_1"), d, d);
                norm(&mut v, format!("{l}/ffn/layer_norm"));
                linear(&mut v, format!("{l}/ffn/linear_0"), 4 * d, d);
                linear(&mut v, format!("{l}/ffn/linear_1"), d, 4 * d);
                if side == "decoder" {
                    norm(&mut v, format!("{l}/attention/layer_norm"));
                    linear(&mut v, format!("{l}/attention/linear_0"), d, d);
                    linear(&mut v, format!("{l}/attention/linear_1"), 2 * d, d);
                    linear(&mut v, format!("{l}/attention/linear_2"), d, d);
                }
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn model_bytes(version: u32, vars: &[Var], aliases: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&version.to_le_bytes());
        put_str(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for v in vars {
            put_str(&mut out, &v.name);
            out.push(v.shape.len() as u8);
            for d in &v.shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.push(v.dtype);
            out.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&v.data);
        }
        out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
        for (a, t) in aliases {
            put_str(&mut out, a);
            put_str(&mut out, t);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use std::io::Cursor;

    fn sample() -> Vec<u8> {
        model_bytes(
            6,
            &[
                Var {
                    name: "decoder/num_heads".into(),
                    shape: vec![],
                    dtype: 2,
                    data: 6i16.to_le_bytes().to_vec(),
                },
                Var {
                    name: "decoder/embeddings/weight".into(),
                    shape: vec![2, 3],
                    dtype: 4,
                    data: vec![7; 12],
                },
            ],
            &[("decoder/projection/weight", "decoder/embeddings/weight")],
        )
    }

    fn index(bytes: &[u8]) -> Result<Index, ConvertError> {
        read_index(&mut Cursor::new(bytes), bytes.len() as u64, "model.bin")
    }

    #[test]
    fn reads_strings_with_their_nul() {
        let mut bytes = Vec::new();
        put_str(&mut bytes, "WhisperSpec");
        assert_eq!(&bytes[..2], &12u16.to_le_bytes());
        assert_eq!(bytes.last(), Some(&0));
        let len = bytes.len() as u64;
        let mut cursor = Cursor::new(bytes);
        let mut p = Parser {
            reader: &mut cursor,
            pos: 0,
            len,
            file: "f",
        };
        assert_eq!(p.string(&|| "s".into()).unwrap(), "WhisperSpec");
        assert_eq!(p.pos, len);

        // Missing NUL terminator.
        let mut cursor = Cursor::new(vec![2, 0, b'a', b'b']);
        let mut p = Parser {
            reader: &mut cursor,
            pos: 0,
            len: 4,
            file: "f",
        };
        let err = p.string(&|| "the name".into()).unwrap_err().to_string();
        assert!(err.contains("NUL") && err.contains("at byte 0"), "{err}");

        // Length beyond the end.
        let mut cursor = Cursor::new(vec![9, 0, b'a', 0]);
        let mut p = Parser {
            reader: &mut cursor,
            pos: 0,
            len: 4,
            file: "f",
        };
        let err = p.string(&|| "the name".into()).unwrap_err();
        assert!(
            matches!(
                err,
                ConvertError::Truncated {
                    needed: 11,
                    len: 4,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn indexes_variables_scalars_and_aliases() {
        let bytes = sample();
        let idx = index(&bytes).unwrap();
        assert_eq!(
            (idx.version, idx.spec.as_str(), idx.revision),
            (6, "WhisperSpec", 3)
        );
        assert_eq!(idx.variables.len(), 2);
        assert_eq!(
            idx.get("decoder/num_heads").and_then(Variable::scalar_int),
            Some(6)
        );
        let emb = idx.get("decoder/projection/weight").unwrap();
        assert_eq!(emb.name, "decoder/embeddings/weight");
        assert_eq!(
            (emb.shape.as_slice(), emb.dtype, emb.nbytes),
            (&[2, 3][..], DType::F16, 12)
        );
        assert_eq!(&bytes[emb.offset as usize..][..12], &[7; 12]);
        assert!(idx.get("nope").is_none());
    }

    #[test]
    fn rejects_bad_version_spec_dtype_and_sizes() {
        let mut bytes = sample();
        bytes[0] = 9;
        let err = index(&bytes).unwrap_err();
        assert!(
            matches!(err, ConvertError::UnsupportedVersion { found: 9, .. }),
            "{err}"
        );

        let bytes = {
            let mut b = Vec::new();
            b.extend_from_slice(&6u32.to_le_bytes());
            put_str(&mut b, "TransformerSpec");
            b
        };
        let err = index(&bytes).unwrap_err();
        assert!(err.to_string().contains("TransformerSpec"), "{err}");

        let mut var = Var {
            name: "x".into(),
            shape: vec![2],
            dtype: 9,
            data: vec![0; 4],
        };
        let err = index(&model_bytes(6, std::slice::from_ref(&var), &[])).unwrap_err();
        assert!(
            matches!(err, ConvertError::UnknownDtype { code: 9, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("\"x\""), "{err}");

        var.dtype = 0; // float32: 2 elements need 8 bytes, not 4
        let err = index(&model_bytes(6, std::slice::from_ref(&var), &[])).unwrap_err();
        assert!(
            matches!(
                err,
                ConvertError::SizeMismatch {
                    expected: 8,
                    declared: 4,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn reports_truncation_and_trailing_bytes() {
        let bytes = sample();
        for cut in [3, 10, 30, bytes.len() - 20, bytes.len() - 1] {
            let err = index(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, ConvertError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
            assert!(err.to_string().contains("truncated"), "{err}");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&bytes);
        let err = index(&longer).unwrap_err().to_string();
        assert!(err.contains("unexpected bytes"), "{err}");
    }
}
