//! From a CTranslate2 index to whisper.cpp: hyper-parameters and the list
//! of tensors to write, each a contiguous range of one CTranslate2
//! variable (fused attention projections are split by rows).

use std::collections::BTreeSet;

use crate::ConvertError;
use crate::ct2::{DType, Index, Variable};
use crate::ggml::{GgmlType, HParams};

/// One tensor of the output and where its data comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    /// whisper.cpp name, e.g. `encoder.blocks.0.attn.query.weight`.
    pub name: String,
    /// The CTranslate2 variable the data comes from.
    pub source: String,
    /// Byte offset of the first element in the model.
    pub offset: u64,
    /// Number of elements.
    pub count: usize,
    /// Element type in the model.
    pub from: DType,
    /// Output shape, outermost first.
    pub shape: Vec<usize>,
    /// Output element type.
    pub ty: GgmlType,
}

struct Ctx<'a> {
    index: &'a Index,
    file: &'a str,
}

impl<'a> Ctx<'a> {
    fn var(&self, name: &str) -> Result<&'a Variable, ConvertError> {
        self.index
            .get(name)
            .ok_or_else(|| ConvertError::MissingTensor {
                file: self.file.to_owned(),
                name: name.to_owned(),
            })
    }

    fn inconsistent(&self, what: String) -> ConvertError {
        ConvertError::Inconsistent {
            file: self.file.to_owned(),
            what,
        }
    }

    /// The variable's shape, which must have `rank` dimensions.
    fn dims(&self, name: &str, rank: usize) -> Result<&'a [usize], ConvertError> {
        let v = self.var(name)?;
        if v.shape.len() != rank {
            return Err(self.inconsistent(format!(
                "variable {name:?} has {} dimensions {:?}, expected {rank}",
                v.shape.len(),
                v.shape
            )));
        }
        Ok(&v.shape)
    }

    /// The variable, checked to have exactly `shape` and a float type.
    fn expect(&self, name: &str, shape: &[usize]) -> Result<&'a Variable, ConvertError> {
        let v = self.var(name)?;
        if v.shape != shape {
            return Err(ConvertError::ShapeMismatch {
                file: self.file.to_owned(),
                name: name.to_owned(),
                found: v.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        if !v.dtype.is_float() {
            return Err(ConvertError::UnsupportedDtype {
                file: self.file.to_owned(),
                name: name.to_owned(),
                dtype: v.dtype.name(),
            });
        }
        Ok(v)
    }

    fn scalar(&self, name: &str) -> Result<usize, ConvertError> {
        let v = self.var(name)?;
        v.scalar_int()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                self.inconsistent(format!(
                    "variable {name:?} should be a positive integer scalar, found shape {:?} of {}",
                    v.shape,
                    v.dtype.name()
                ))
            })
    }

    /// Number of `{side}/layer_{i}/...` blocks, which must be numbered
    /// from 0 without gaps.
    fn layers(&self, side: &str) -> Result<usize, ConvertError> {
        let prefix = format!("{side}/layer_");
        let found: BTreeSet<usize> = self
            .index
            .variables
            .iter()
            .filter_map(|v| v.name.strip_prefix(&prefix))
            .filter_map(|rest| rest.split_once('/'))
            .filter_map(|(n, _)| n.parse().ok())
            .collect();
        let count = found.len();
        if count == 0 {
            return Err(self.inconsistent(format!("no {prefix}N/ variables")));
        }
        if found.last() != Some(&(count - 1)) {
            return Err(self.inconsistent(format!(
                "{side} layers are not numbered 0 to {}: found {found:?}",
                count - 1
            )));
        }
        Ok(count)
    }
}

fn to_u32(ctx: &Ctx<'_>, what: &str, v: usize) -> Result<u32, ConvertError> {
    u32::try_from(v)
        .ok()
        .filter(|&v| i32::try_from(v).is_ok())
        .ok_or_else(|| ctx.inconsistent(format!("{what} = {v} is too large")))
}

/// Determines the hyper-parameters from the variables' shapes and the
/// head-count scalars.
pub fn hparams(index: &Index, file: &str) -> Result<HParams, ConvertError> {
    let ctx = Ctx { index, file };
    let emb = ctx.dims("decoder/embeddings/weight", 2)?;
    let (n_vocab, n_text_state) = (emb[0], emb[1]);
    let n_text_ctx = ctx.dims("decoder/position_encodings/encodings", 2)?[0];
    let epe = ctx.dims("encoder/position_encodings/encodings", 2)?;
    let (n_audio_ctx, n_audio_state) = (epe[0], epe[1]);
    let n_mels = ctx.dims("encoder/conv1/weight", 3)?[1];
    let n_audio_head = ctx.scalar("encoder/num_heads")?;
    let n_text_head = ctx.scalar("decoder/num_heads")?;
    for (state, heads, side) in [
        (n_audio_state, n_audio_head, "encoder"),
        (n_text_state, n_text_head, "decoder"),
    ] {
        if state % heads != 0 {
            return Err(ctx.inconsistent(format!(
                "{side} width {state} is not a multiple of its {heads} heads"
            )));
        }
    }
    let n_audio_layer = ctx.layers("encoder")?;
    let n_text_layer = ctx.layers("decoder")?;
    Ok(HParams {
        n_vocab: to_u32(&ctx, "n_vocab", n_vocab)?,
        n_audio_ctx: to_u32(&ctx, "n_audio_ctx", n_audio_ctx)?,
        n_audio_state: to_u32(&ctx, "n_audio_state", n_audio_state)?,
        n_audio_head: to_u32(&ctx, "n_audio_head", n_audio_head)?,
        n_audio_layer: to_u32(&ctx, "n_audio_layer", n_audio_layer)?,
        n_text_ctx: to_u32(&ctx, "n_text_ctx", n_text_ctx)?,
        n_text_state: to_u32(&ctx, "n_text_state", n_text_state)?,
        n_text_head: to_u32(&ctx, "n_text_head", n_text_head)?,
        n_text_layer: to_u32(&ctx, "n_text_layer", n_text_layer)?,
        n_mels: to_u32(&ctx, "n_mels", n_mels)?,
        ftype: 1,
    })
}

/// A linear layer whose projections are stacked by rows: `parts` blocks
/// of `n` rows of `n_in` inputs.
#[derive(Clone, Copy)]
struct Fused<'s> {
    source: &'s str,
    parts: usize,
    n: usize,
    n_in: usize,
}

struct Planner<'a> {
    ctx: Ctx<'a>,
    out: Vec<OutputTensor>,
}

impl Planner<'_> {
    /// Rows `first..first + rows` of `source` (whose shape must be
    /// `src_shape`) become `name` with shape `out_shape`.
    #[allow(clippy::too_many_arguments)]
    fn rows(
        &mut self,
        name: String,
        source: &str,
        src_shape: &[usize],
        first: usize,
        rows: usize,
        out_shape: &[usize],
        ty: GgmlType,
    ) -> Result<(), ConvertError> {
        let v = self.ctx.expect(source, src_shape)?;
        let row_len: usize = src_shape.iter().skip(1).product();
        let count: usize = out_shape.iter().product();
        debug_assert_eq!(count, rows * row_len);
        let offset = v.offset + (first * row_len * v.dtype.size()) as u64;
        self.out.push(OutputTensor {
            name,
            source: v.name.clone(),
            offset,
            count,
            from: v.dtype,
            shape: out_shape.to_vec(),
            ty,
        });
        Ok(())
    }

    /// All of `source` becomes `name`.
    fn whole(
        &mut self,
        name: &str,
        source: &str,
        shape: &[usize],
        ty: GgmlType,
    ) -> Result<(), ConvertError> {
        let rows = shape.first().copied().unwrap_or(1);
        self.rows(name.to_owned(), source, shape, 0, rows, shape, ty)
    }

    /// A layer norm: `gamma` and `beta` become `.weight` and `.bias`.
    fn norm(&mut self, name: &str, source: &str, n: usize) -> Result<(), ConvertError> {
        self.whole(
            &format!("{name}.weight"),
            &format!("{source}/gamma"),
            &[n],
            GgmlType::F32,
        )?;
        self.whole(
            &format!("{name}.bias"),
            &format!("{source}/beta"),
            &[n],
            GgmlType::F32,
        )
    }

    /// A linear layer `[n_out, n_in]` with bias.
    fn linear(
        &mut self,
        name: &str,
        source: &str,
        n_out: usize,
        n_in: usize,
    ) -> Result<(), ConvertError> {
        self.whole(
            &format!("{name}.weight"),
            &format!("{source}/weight"),
            &[n_out, n_in],
            GgmlType::F16,
        )?;
        self.whole(
            &format!("{name}.bias"),
            &format!("{source}/bias"),
            &[n_out],
            GgmlType::F32,
        )
    }

    /// Part `part` of a fused linear layer. Keys have no bias in
    /// whisper.cpp (the fused bias has zeros there; a key bias would not
    /// change attention anyway).
    fn split(
        &mut self,
        name: &str,
        fused: &Fused<'_>,
        part: usize,
        with_bias: bool,
    ) -> Result<(), ConvertError> {
        let Fused {
            source,
            parts,
            n,
            n_in,
        } = *fused;
        self.rows(
            format!("{name}.weight"),
            &format!("{source}/weight"),
            &[parts * n, n_in],
            part * n,
            n,
            &[n, n_in],
            GgmlType::F16,
        )?;
        if with_bias {
            self.rows(
                format!("{name}.bias"),
                &format!("{source}/bias"),
                &[parts * n],
                part * n,
                n,
                &[n],
                GgmlType::F32,
            )?;
        }
        Ok(())
    }

    fn self_attention(&mut self, block: &str, layer: &str, n: usize) -> Result<(), ConvertError> {
        let fused = format!("{layer}/self_attention/linear_0");
        self.norm(
            &format!("{block}.attn_ln"),
            &format!("{layer}/self_attention/layer_norm"),
            n,
        )?;
        let qkv = Fused {
            source: &fused,
            parts: 3,
            n,
            n_in: n,
        };
        self.split(&format!("{block}.attn.query"), &qkv, 0, true)?;
        self.split(&format!("{block}.attn.key"), &qkv, 1, false)?;
        self.split(&format!("{block}.attn.value"), &qkv, 2, true)?;
        self.linear(
            &format!("{block}.attn.out"),
            &format!("{layer}/self_attention/linear_1"),
            n,
            n,
        )
    }

    fn mlp(&mut self, block: &str, layer: &str, n: usize) -> Result<(), ConvertError> {
        self.norm(
            &format!("{block}.mlp_ln"),
            &format!("{layer}/ffn/layer_norm"),
            n,
        )?;
        self.linear(
            &format!("{block}.mlp.0"),
            &format!("{layer}/ffn/linear_0"),
            4 * n,
            n,
        )?;
        self.linear(
            &format!("{block}.mlp.2"),
            &format!("{layer}/ffn/linear_1"),
            n,
            4 * n,
        )
    }
}

/// Lists the tensors of the output in whisper.cpp's order, checking every
/// source variable's shape and type against the hyper-parameters.
pub fn output_tensors(
    index: &Index,
    hp: &HParams,
    file: &str,
) -> Result<Vec<OutputTensor>, ConvertError> {
    let mut p = Planner {
        ctx: Ctx { index, file },
        out: Vec::new(),
    };
    let d = hp.n_audio_state as usize;
    let t = hp.n_text_state as usize;
    let (f16, f32) = (GgmlType::F16, GgmlType::F32);

    p.whole(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        &[hp.n_audio_ctx as usize, d],
        f32,
    )?;
    for (conv, n_in) in [("conv1", hp.n_mels as usize), ("conv2", d)] {
        p.whole(
            &format!("encoder.{conv}.weight"),
            &format!("encoder/{conv}/weight"),
            &[d, n_in, 3],
            f16,
        )?;
        // whisper.cpp wants conv biases as (n, 1) so they broadcast over time.
        p.rows(
            format!("encoder.{conv}.bias"),
            &format!("encoder/{conv}/bias"),
            &[d],
            0,
            d,
            &[d, 1],
            f32,
        )?;
    }
    for i in 0..hp.n_audio_layer {
        let (block, layer) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        p.self_attention(&block, &layer, d)?;
        p.mlp(&block, &layer, d)?;
    }
    p.norm("encoder.ln_post", "encoder/layer_norm", d)?;

    p.whole(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        &[hp.n_text_ctx as usize, t],
        f32,
    )?;
    p.whole(
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
        &[hp.n_vocab as usize, t],
        f16,
    )?;
    for i in 0..hp.n_text_layer {
        let (block, layer) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        p.self_attention(&block, &layer, t)?;
        p.norm(
            &format!("{block}.cross_attn_ln"),
            &format!("{layer}/attention/layer_norm"),
            t,
        )?;
        p.linear(
            &format!("{block}.cross_attn.query"),
            &format!("{layer}/attention/linear_0"),
            t,
            t,
        )?;
        let kv = format!("{layer}/attention/linear_1");
        let kv = Fused {
            source: &kv,
            parts: 2,
            n: t,
            n_in: d,
        };
        p.split(&format!("{block}.cross_attn.key"), &kv, 0, false)?;
        p.split(&format!("{block}.cross_attn.value"), &kv, 1, true)?;
        p.linear(
            &format!("{block}.cross_attn.out"),
            &format!("{layer}/attention/linear_2"),
            t,
            t,
        )?;
        p.mlp(&block, &layer, t)?;
    }
    p.norm("decoder.ln", "decoder/layer_norm", t)?;
    Ok(p.out)
}

/// How the weight matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Weights {
    /// f16, as the models are published (whisper.cpp's `ftype` 1).
    #[default]
    F16,
    /// GGML's 8-bit q8_0 blocks (see [`crate::ggml`]): about half the size.
    Q8_0,
    /// GGML's 5-bit q5_0 blocks: about a third of the f16 size.
    Q5_0,
}

impl Weights {
    /// The name used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q5_0 => "q5_0",
        }
    }

    /// Parses [`Weights::name`].
    pub fn parse(name: &str) -> Option<Self> {
        [Self::F16, Self::Q8_0, Self::Q5_0]
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(name))
    }

    /// The header's `ftype` for these weights.
    pub fn ftype(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => crate::ggml::FTYPE_Q8_0,
            Self::Q5_0 => crate::ggml::FTYPE_Q5_0,
        }
    }
}

/// Stores the weight matrices of `tensors` as `weights`.
///
/// whisper.cpp gives every 2-D weight matrix (attention and MLP projections,
/// the token embedding) the model's weight type, and keeps the rest as it
/// is in an f16 model: the convolution kernels in f16 (they are 3-D here),
/// and the biases, layer norms and positional embeddings in f32. So exactly
/// the 2-D f16 tensors of the plan change type. Their rows must be whole
/// q8_0 blocks, as they are in every Whisper model.
pub fn set_weights(
    tensors: &mut [OutputTensor],
    weights: Weights,
    file: &str,
) -> Result<(), ConvertError> {
    let ty = match weights {
        Weights::F16 => return Ok(()),
        Weights::Q8_0 => GgmlType::Q8_0,
        Weights::Q5_0 => GgmlType::Q5_0,
    };
    for t in tensors
        .iter_mut()
        .filter(|t| t.ty == GgmlType::F16 && t.shape.len() == 2)
    {
        let row = t.shape[1];
        if !row.is_multiple_of(ty.block()) {
            return Err(ConvertError::Inconsistent {
                file: file.to_owned(),
                what: format!(
                    "{} has rows of {row} values, not a multiple of the {} block of {}: \
                     convert it to f16 instead",
                    t.name,
                    weights.name(),
                    ty.block()
                ),
            });
        }
        t.ty = ty;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ct2::read_index;
    use crate::ct2::testing::{Var, f16_var, fake_whisper, model_bytes};
    use std::io::Cursor;

    const ALIAS: (&str, &str) = ("decoder/projection/weight", "decoder/embeddings/weight");

    fn index_of(vars: &[Var]) -> Index {
        let bytes = model_bytes(6, vars, &[ALIAS]);
        read_index(&mut Cursor::new(&bytes), bytes.len() as u64, "model.bin").unwrap()
    }

    fn plan_of(vars: &[Var]) -> Result<Vec<OutputTensor>, ConvertError> {
        let index = index_of(vars);
        let hp = hparams(&index, "model.bin")?;
        output_tensors(&index, &hp, "model.bin")
    }

    fn replace(vars: &mut [Var], var: Var) {
        let slot = vars.iter_mut().find(|v| v.name == var.name).unwrap();
        *slot = var;
    }

    #[test]
    fn hyper_parameters_come_from_shapes_and_scalars() {
        let index = index_of(&fake_whisper(8, 100, 2));
        let hp = hparams(&index, "model.bin").unwrap();
        assert_eq!(
            hp.to_array(),
            [100, 10, 8, 1, 2, 6, 8, 1, 2, 80, 1],
            "{hp:?}"
        );
    }

    #[test]
    fn plans_every_whisper_cpp_tensor_once() {
        let planned = plan_of(&fake_whisper(8, 100, 2)).unwrap();
        // Encoder: 5 + 15 per block + 2; decoder: 2 + 24 per block + 2.
        assert_eq!(planned.len(), (5 + 15 * 2 + 2) + (2 + 24 * 2 + 2));
        let names: std::collections::HashSet<_> = planned.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), planned.len());
        for name in [
            "encoder.conv1.bias",
            "encoder.blocks.1.attn.key.weight",
            "decoder.blocks.1.cross_attn.value.bias",
            "decoder.token_embedding.weight",
            "decoder.ln.weight",
        ] {
            assert!(names.contains(name), "{name}");
        }
        // Keys have no bias.
        assert!(!names.iter().any(|n| n.contains("key.bias")));
        let get = |n: &str| planned.iter().find(|p| p.name == n).unwrap();
        assert_eq!(get("encoder.conv1.bias").shape, [8, 1]);
        assert_eq!(get("encoder.conv1.bias").ty, GgmlType::F32);
        assert_eq!(get("encoder.positional_embedding").ty, GgmlType::F32);
        assert_eq!(get("encoder.conv2.weight").ty, GgmlType::F16);
        // The value projection is the third block of 8 rows of 8 values.
        let fused = get("encoder.blocks.0.attn.query.weight");
        let value = get("encoder.blocks.0.attn.value.weight");
        assert_eq!(value.source, fused.source);
        assert_eq!(value.offset - fused.offset, 2 * 8 * 8 * 2);
        assert_eq!((value.count, value.shape.as_slice()), (64, &[8, 8][..]));
        let kv_bias = get("decoder.blocks.0.cross_attn.value.bias");
        assert_eq!(kv_bias.source, "decoder/layer_0/attention/linear_1/bias");
        assert_eq!((kv_bias.count, kv_bias.ty), (8, GgmlType::F32));
    }

    #[test]
    fn q8_0_applies_to_the_weight_matrices_only() {
        // Width 32: rows of whole blocks.
        let index = index_of(&fake_whisper(32, 100, 1));
        let hp = hparams(&index, "model.bin").unwrap();
        let f16 = output_tensors(&index, &hp, "model.bin").unwrap();
        let mut q8 = f16.clone();
        set_weights(&mut q8, Weights::Q8_0, "model.bin").unwrap();
        let mut quantised = Vec::new();
        for (a, b) in f16.iter().zip(&q8) {
            assert_eq!((&a.name, &a.shape, a.offset), (&b.name, &b.shape, b.offset));
            if b.ty == GgmlType::Q8_0 {
                assert_eq!((a.ty, a.shape.len()), (GgmlType::F16, 2), "{}", a.name);
                quantised.push(b.name.as_str());
            } else {
                assert_eq!(a.ty, b.ty, "{}", a.name);
            }
        }
        // Per encoder block: q, k, v, out, mlp.0, mlp.2; per decoder block: those and
        // the cross-attention's q, k, v, out; and the token embedding.
        assert_eq!(quantised.len(), 6 + 10 + 1, "{quantised:?}");
        for name in [
            "decoder.token_embedding.weight",
            "encoder.blocks.0.mlp.0.weight",
            "decoder.blocks.0.cross_attn.key.weight",
        ] {
            assert!(quantised.contains(&name), "{name}");
        }
        let ty = |name: &str| q8.iter().find(|t| t.name == name).unwrap().ty;
        assert_eq!(ty("encoder.conv1.weight"), GgmlType::F16);
        assert_eq!(ty("encoder.conv2.bias"), GgmlType::F32);
        assert_eq!(ty("encoder.positional_embedding"), GgmlType::F32);
        assert_eq!(ty("decoder.blocks.0.mlp.0.bias"), GgmlType::F32);

        // Width 8 cannot be cut into blocks of 32.
        let mut narrow = plan_of(&fake_whisper(8, 100, 1)).unwrap();
        let err = set_weights(&mut narrow, Weights::Q8_0, "model.bin").unwrap_err();
        assert!(err.to_string().contains("not a multiple"), "{err}");
        assert_eq!(Weights::parse("Q8_0"), Some(Weights::Q8_0));
        assert_eq!(Weights::parse("f16"), Some(Weights::F16));
        assert_eq!(Weights::parse("q4_0"), None);
    }

    #[test]
    fn reports_missing_variables_and_wrong_shapes() {
        let mut vars = fake_whisper(8, 100, 1);
        vars.retain(|v| v.name != "decoder/layer_0/attention/linear_2/weight");
        let err = plan_of(&vars).unwrap_err();
        assert!(matches!(err, ConvertError::MissingTensor { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("decoder/layer_0/attention/linear_2/weight"),
            "{err}"
        );

        let mut vars = fake_whisper(8, 100, 1);
        replace(
            &mut vars,
            f16_var("encoder/layer_0/self_attention/linear_0/weight", &[16, 8]),
        );
        let err = plan_of(&vars).unwrap_err();
        assert!(
            matches!(err, ConvertError::ShapeMismatch { ref expected, .. } if expected == &[24, 8]),
            "{err}"
        );

        let mut vars = fake_whisper(8, 100, 1);
        vars.retain(|v| v.name != "encoder/num_heads");
        let err = plan_of(&vars).unwrap_err();
        assert!(err.to_string().contains("encoder/num_heads"), "{err}");
    }

    #[test]
    fn rejects_quantized_weights_and_layer_gaps() {
        let mut vars = fake_whisper(8, 100, 1);
        replace(
            &mut vars,
            Var {
                name: "encoder/layer_0/ffn/linear_0/weight".into(),
                shape: vec![32, 8],
                dtype: 1,
                data: vec![0; 256],
            },
        );
        let err = plan_of(&vars).unwrap_err();
        assert!(
            matches!(err, ConvertError::UnsupportedDtype { dtype: "int8", .. }),
            "{err}"
        );

        let mut vars = fake_whisper(8, 100, 2);
        vars.retain(|v| !v.name.starts_with("encoder/layer_0/"));
        let err = plan_of(&vars).unwrap_err();
        assert!(err.to_string().contains("not numbered"), "{err}");
    }
}
