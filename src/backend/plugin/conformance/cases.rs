//! The op cases of the conformance suite: every op of the Backend trait over the weight dtypes
//! and a set of shapes (odd sizes, long sequences, both RoPE pairings, GQA, sliding windows,
//! softcaps, mixed prefill/decode batches). Each case runs the same generic code on the CPU
//! backend and on the plugin, from the same seeded inputs.
use super::inputs::{block_elems, host_weight, Inputs};
use crate::backend::plugin::Op;
use candor_models::backend::{
    Activation, AttentionParams, Backend, KvCacheSpec, RopeSpec, RopeStyle, WeightDtype,
};
use candor_models::batch::SeqAttention;
use candor_models::error::Result;
use candor_models::weights::{mxfp4, BlockType, HostWeight, MappedBlocks};

/// NMSE bounds: float ops agree to rounding; the CPU backend's quantized products quantize the
/// activations to 8 bits (as llama.cpp does) while a plugin may not, so they get ggml's bound
/// for quantized matmuls. Products with bf16 weights may round the activations to bf16 as well
/// (the CPU backend's AMX tiles from `quant::AMX_MIN_ROWS` rows, as GPU tensor cores do): each
/// value moves by up to 2⁻⁹ relative, an NMSE of ~1-2e-6, so they get ten times that.
const FLOAT_BOUND: f64 = 1e-6;
const BF16_PRODUCT_BOUND: f64 = 2e-5;
const QUANT_BOUND: f64 = 5e-4;

#[derive(Debug, Clone)]
pub enum Case {
    Embedding {
        dtype: WeightDtype,
        vocab: usize,
        hidden: usize,
        ids: Vec<u32>,
    },
    RmsNorm {
        rows: usize,
        cols: usize,
    },
    AddRmsNorm {
        rows: usize,
        cols: usize,
    },
    /// (ABI 1.2) with a bias or without.
    LayerNorm {
        rows: usize,
        cols: usize,
        bias: bool,
    },
    Linear {
        dtype: WeightDtype,
        m: usize,
        n: usize,
        k: usize,
        bias: bool,
    },
    /// A product with MXFP4 weights (gpt-oss's experts; ABI 1.1), which reach a plugin without
    /// the dtype as Q5_0 blocks.
    LinearMxfp4 {
        m: usize,
        n: usize,
        k: usize,
    },
    Rope {
        style: RopeStyle,
        tokens: usize,
        heads: usize,
        dim: usize,
        first_pos: u32,
        mscale: f32,
    },
    /// Writes K/V for `tokens` positions, then reads them back through decode attention.
    KvWrite {
        tokens: usize,
        kv_heads: usize,
        head_dim: usize,
    },
    Attention(AttnCase),
    Glu {
        act: Activation,
        rows: usize,
        cols: usize,
    },
    Add {
        rows: usize,
        cols: usize,
    },
    Mul {
        rows: usize,
        cols: usize,
    },
    Scale {
        rows: usize,
        cols: usize,
    },
    Softcap {
        rows: usize,
        cols: usize,
    },
    /// (1.5) OLMo's and MPT's clamp of q/k/v.
    Clamp {
        rows: usize,
        cols: usize,
    },
    /// (1.5) Apertus's xIELU.
    Xielu {
        rows: usize,
        cols: usize,
    },
    /// (1.5) BitNet's 8-bit rows.
    QuantizeRows {
        rows: usize,
        cols: usize,
    },
    /// (1.5) Qwen3-Next's sigmoid gate.
    MulSigmoid {
        rows: usize,
        cols: usize,
    },
    Softmax {
        rows: usize,
        cols: usize,
    },
    GatherRows {
        rows: usize,
        cols: usize,
        pick: Vec<u32>,
    },
    Argmax {
        rows: usize,
        cols: usize,
    },
    /// A product per head (DeepSeek's latent attention; ABI 1.1): x `[tokens, heads, k]`, w
    /// `[heads, n, k]` (f32: the matrices made from the model's at load).
    HeadsLinear {
        tokens: usize,
        heads: usize,
        n: usize,
        k: usize,
    },
}

/// One paged-attention check: `(start_pos, q_len)` per sequence of the batch.
#[derive(Debug, Clone)]
pub struct AttnCase {
    pub seqs: Vec<(usize, usize)>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub window: Option<usize>,
    pub softcap: Option<f32>,
    pub scale: f32,
    /// A sink logit per head (gpt-oss; ABI 1.1).
    pub sinks: bool,
    /// ALiBi slopes per head (BLOOM, MPT; ABI 1.5).
    pub alibi: bool,
    /// Attend over the blocks written moved to others, the originals left in place.
    pub moved: Option<BlockMove>,
}

/// How `AttnCase::moved` moves the blocks written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMove {
    /// `copy_kv_blocks`, as the prefix cache copies a block a prompt goes on from.
    Copied,
    /// Read out (`read_kv_rows`) and written back (`write_kv_rows`), as a saved prompt cache
    /// is restored.
    Restored,
}

impl AttnCase {
    fn new(seqs: Vec<(usize, usize)>, heads: usize, kv_heads: usize, head_dim: usize) -> Self {
        AttnCase {
            seqs,
            heads,
            kv_heads,
            head_dim,
            window: None,
            softcap: None,
            scale: 1.0 / (head_dim as f32).sqrt(),
            sinks: false,
            alibi: false,
            moved: None,
        }
    }
}

const BLOCK_SIZE: usize = 16;

/// Every case of the suite.
pub fn all_cases() -> Vec<Case> {
    use Case::*;
    let dtypes = crate::backend::plugin::ffi::WEIGHT_DTYPES;
    let mut v = Vec::new();
    for dtype in dtypes {
        v.push(Embedding {
            dtype,
            vocab: 37,
            hidden: 256,
            ids: vec![0, 36, 5, 5, 17, 2, 30],
        });
    }
    for (rows, cols) in [(1, 64), (7, 896), (33, 63)] {
        v.push(RmsNorm { rows, cols });
        v.push(AddRmsNorm { rows, cols });
        v.push(LayerNorm {
            rows,
            cols,
            bias: rows > 1,
        });
    }
    for dtype in dtypes {
        let mut shapes = vec![(1, 67, 256, false), (7, 33, 512, true), (33, 5, 256, false)];
        if block_elems(dtype) == 1 {
            shapes.push((5, 9, 63, true));
        }
        for (m, n, k, bias) in shapes {
            v.push(Linear {
                dtype,
                m,
                n,
                k,
                bias,
            });
        }
    }
    for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
        v.push(Rope {
            style,
            tokens: 7,
            heads: 4,
            dim: 64,
            first_pos: 0,
            mscale: 1.0,
        });
        v.push(Rope {
            style,
            tokens: 3,
            heads: 2,
            dim: 128,
            first_pos: 100_000,
            mscale: 1.2,
        });
    }
    v.push(KvWrite {
        tokens: 9,
        kv_heads: 2,
        head_dim: 16,
    });
    v.push(KvWrite {
        tokens: 70,
        kv_heads: 1,
        head_dim: 64,
    });
    v.push(Attention(AttnCase::new(vec![(0, 37)], 4, 2, 32)));
    v.push(Attention(AttnCase::new(
        vec![(0, 20), (40, 1), (17, 3)],
        4,
        4,
        64,
    )));
    v.push(Attention(AttnCase::new(vec![(999, 1)], 8, 2, 64)));
    v.push(Attention(AttnCase::new(vec![(0, 300)], 2, 1, 64)));
    v.push(Attention(AttnCase {
        window: Some(16),
        ..AttnCase::new(vec![(0, 40), (50, 1)], 4, 2, 32)
    }));
    // A large scale pushes scores into the cap's non-linear range.
    v.push(Attention(AttnCase {
        softcap: Some(5.0),
        scale: 2.0,
        ..AttnCase::new(vec![(0, 12), (30, 2)], 4, 2, 16)
    }));
    // gpt-oss's layers: sinks on full attention and on a window, prefill and decode together.
    v.push(Attention(AttnCase {
        sinks: true,
        ..AttnCase::new(vec![(0, 29), (40, 1)], 8, 2, 64)
    }));
    v.push(Attention(AttnCase {
        sinks: true,
        window: Some(16),
        ..AttnCase::new(vec![(0, 40), (50, 1)], 4, 2, 32)
    }));
    // BLOOM's and MPT's ALiBi: 6 heads (the slopes' odd steps), a long prompt beside decode
    // rows deep in their context; and with a window and sinks, which a plugin must combine.
    v.push(Attention(AttnCase {
        alibi: true,
        ..AttnCase::new(vec![(0, 70), (200, 1), (17, 3)], 6, 6, 32)
    }));
    v.push(Attention(AttnCase {
        alibi: true,
        sinks: true,
        window: Some(16),
        ..AttnCase::new(vec![(0, 40), (50, 1)], 4, 2, 32)
    }));
    for moved in [BlockMove::Copied, BlockMove::Restored] {
        v.push(Attention(AttnCase {
            moved: Some(moved),
            ..AttnCase::new(vec![(0, 37), (20, 1)], 4, 2, 32)
        }));
    }
    for (m, n, k) in [(1, 67, 256), (7, 33, 512)] {
        v.push(LinearMxfp4 { m, n, k });
    }
    for act in [
        Activation::Silu,
        Activation::GeluTanh,
        Activation::SwigluOai,
        Activation::GeluErf,
        Activation::Relu2,
        Activation::Relu,
    ] {
        for (rows, cols) in [(1, 128), (7, 333)] {
            v.push(Glu { act, rows, cols });
        }
    }
    for (rows, cols) in [(3, 65), (33, 896)] {
        v.push(Add { rows, cols });
        v.push(Mul { rows, cols });
        v.push(Scale { rows, cols });
        v.push(Softcap { rows, cols });
        v.push(Clamp { rows, cols });
        v.push(Xielu { rows, cols });
        v.push(QuantizeRows { rows, cols });
        v.push(MulSigmoid { rows, cols });
    }
    v.push(Softmax { rows: 1, cols: 512 });
    v.push(Softmax {
        rows: 5,
        cols: 1000,
    });
    v.push(GatherRows {
        rows: 9,
        cols: 64,
        pick: vec![8, 0, 3],
    });
    v.push(Argmax {
        rows: 4,
        cols: 1000,
    });
    // Latent attention's products in small: queries into the latent space, outputs out of it;
    // one token and a prompt's worth.
    for (tokens, heads, n, k) in [(1, 4, 72, 40), (9, 3, 40, 72)] {
        v.push(HeadsLinear {
            tokens,
            heads,
            n,
            k,
        });
    }
    v
}

fn rope_spec(dim: usize, style: RopeStyle, mscale: f32) -> RopeSpec {
    RopeSpec {
        inv_freq: (0..dim / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / dim as f32))
            .collect(),
        style,
        mscale,
    }
}

impl Case {
    pub fn op(&self) -> Op {
        match self {
            Case::Embedding { .. } => Op::Embedding,
            Case::RmsNorm { .. } => Op::RmsNorm,
            Case::AddRmsNorm { .. } => Op::AddRmsNorm,
            Case::LayerNorm { .. } => Op::LayerNorm,
            Case::Linear { .. } | Case::LinearMxfp4 { .. } => Op::Linear,
            Case::Rope { .. } => Op::Rope,
            Case::KvWrite { .. } => Op::KvWrite,
            Case::Attention(_) => Op::PagedAttention,
            Case::Glu { .. } => Op::Glu,
            Case::Add { .. } => Op::Add,
            Case::Mul { .. } => Op::Mul,
            Case::Scale { .. } => Op::Scale,
            Case::Softcap { .. } => Op::Softcap,
            Case::Clamp { .. } => Op::Clamp,
            Case::Xielu { .. } => Op::Xielu,
            Case::QuantizeRows { .. } => Op::QuantizeRows,
            Case::MulSigmoid { .. } => Op::MulSigmoid,
            Case::Softmax { .. } => Op::Softmax,
            Case::GatherRows { .. } => Op::GatherRows,
            Case::Argmax { .. } => Op::Argmax,
            Case::HeadsLinear { .. } => Op::HeadsLinear,
        }
    }

    pub fn dtype(&self) -> String {
        match self {
            Case::Embedding { dtype, .. } | Case::Linear { dtype, .. } => dtype.to_string(),
            Case::LinearMxfp4 { .. } => "MXFP4".into(),
            Case::Rope { style, .. } => match style {
                RopeStyle::Neox => "F32 neox".into(),
                RopeStyle::Interleaved => "F32 interleaved".into(),
            },
            Case::Glu { act, .. } => format!("F32 {act:?}"),
            Case::Argmax { .. } => "F32→U32".into(),
            _ => "F32".into(),
        }
    }

    pub fn shape(&self) -> String {
        match self {
            Case::Embedding {
                vocab, hidden, ids, ..
            } => {
                format!("table [{vocab}, {hidden}], {} ids", ids.len())
            }
            Case::Linear { m, n, k, bias, .. } => {
                format!(
                    "[{m}, {k}] x [{n}, {k}]ᵀ{}",
                    if *bias { " + bias" } else { "" }
                )
            }
            Case::LinearMxfp4 { m, n, k } => format!("[{m}, {k}] x [{n}, {k}]ᵀ"),
            Case::Rope {
                tokens,
                heads,
                dim,
                first_pos,
                mscale,
                ..
            } => {
                format!("[{tokens}, {heads}, {dim}] from pos {first_pos}, mscale {mscale}")
            }
            Case::KvWrite {
                tokens,
                kv_heads,
                head_dim,
            } => {
                format!("{tokens} tokens x [{kv_heads}, {head_dim}]")
            }
            Case::Attention(a) => {
                let s: Vec<String> = a.seqs.iter().map(|(p, q)| format!("{p}+{q}")).collect();
                let mut d = format!(
                    "seqs {} h{}/kv{} d{}",
                    s.join(","),
                    a.heads,
                    a.kv_heads,
                    a.head_dim
                );
                if let Some(w) = a.window {
                    d.push_str(&format!(" window {w}"));
                }
                if let Some(c) = a.softcap {
                    d.push_str(&format!(" softcap {c}"));
                }
                if a.sinks {
                    d.push_str(" sinks");
                }
                if a.alibi {
                    d.push_str(" alibi");
                }
                match a.moved {
                    Some(BlockMove::Copied) => d.push_str(" copied blocks"),
                    Some(BlockMove::Restored) => d.push_str(" blocks restored from their rows"),
                    None => {}
                }
                d
            }
            Case::GatherRows { rows, cols, pick } => format!("[{rows}, {cols}] rows {pick:?}"),
            Case::HeadsLinear {
                tokens,
                heads,
                n,
                k,
            } => format!("[{tokens}, {heads}, {k}] x [{heads}, {n}, {k}]ᵀ per head"),
            Case::LayerNorm { rows, cols, bias } => {
                format!("[{rows}, {cols}]{}", if *bias { " + bias" } else { "" })
            }
            Case::RmsNorm { rows, cols }
            | Case::AddRmsNorm { rows, cols }
            | Case::Glu { rows, cols, .. }
            | Case::Add { rows, cols }
            | Case::Mul { rows, cols }
            | Case::Scale { rows, cols }
            | Case::Softcap { rows, cols }
            | Case::Clamp { rows, cols }
            | Case::Xielu { rows, cols }
            | Case::QuantizeRows { rows, cols }
            | Case::MulSigmoid { rows, cols }
            | Case::Softmax { rows, cols }
            | Case::Argmax { rows, cols } => format!("[{rows}, {cols}]"),
        }
    }

    /// The NMSE bound of this case.
    pub fn bound(&self) -> f64 {
        match self {
            Case::Linear { dtype, .. } if block_elems(*dtype) > 1 => QUANT_BOUND,
            Case::LinearMxfp4 { .. } => QUANT_BOUND,
            Case::Linear {
                dtype: WeightDtype::BF16,
                ..
            } => BF16_PRODUCT_BOUND,
            _ => FLOAT_BOUND,
        }
    }

    /// Whether a row of `dtype` weights can hold this case's width (whole blocks); cases that
    /// cannot are not generated, but a custom list might hold them.
    fn weight_fits(dtype: WeightDtype, cols: usize) -> bool {
        cols.is_multiple_of(block_elems(dtype))
    }

    /// Run the case on `b` from the inputs of `seed`; the output flattened to f32.
    pub fn run<B: Backend>(&self, b: &B, seed: u64) -> Result<Vec<f32>> {
        let mut r = Inputs::new(seed);
        let up = |b: &B, v: &[f32], shape: &[usize]| b.upload(v, shape);
        match self {
            Case::Embedding {
                dtype,
                vocab,
                hidden,
                ids,
            } => {
                if !Self::weight_fits(*dtype, *hidden) {
                    return Err(candor_models::ModelError::Backend(
                        "row is not whole blocks".into(),
                    ));
                }
                let table = b.load_weight(host_weight(
                    &r.values(vocab * hidden, 1.0),
                    &[*vocab, *hidden],
                    *dtype,
                )?)?;
                b.download(&b.embedding(&table, ids)?)
            }
            Case::RmsNorm { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 3.0), &[*rows, *cols])?;
                let w = b.load_weight(host_weight(
                    &r.around_one(*cols),
                    &[*cols],
                    WeightDtype::F32,
                )?)?;
                b.download(&b.rms_norm(&x, &w, 1e-6)?)
            }
            Case::LayerNorm { rows, cols, bias } => {
                // Rows away from zero mean: the centring is part of what is checked.
                let x: Vec<f32> = r.values(rows * cols, 3.0).iter().map(|v| v + 5.0).collect();
                let x = up(b, &x, &[*rows, *cols])?;
                let weight =
                    |v: Vec<f32>| b.load_weight(host_weight(&v, &[*cols], WeightDtype::F32)?);
                let w = weight(r.around_one(*cols))?;
                let bias = match bias {
                    true => Some(weight(r.values(*cols, 0.5))?),
                    false => None,
                };
                b.download(&b.layer_norm(&x, &w, bias.as_ref(), 1e-5)?)
            }
            Case::AddRmsNorm { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 1.0), &[*rows, *cols])?;
                let res = up(b, &r.values(rows * cols, 1.0), &[*rows, *cols])?;
                let w = b.load_weight(host_weight(
                    &r.around_one(*cols),
                    &[*cols],
                    WeightDtype::F32,
                )?)?;
                let (sum, norm) = b.add_rms_norm(&x, &res, &w, 1e-5)?;
                let mut out = b.download(&sum)?;
                out.extend(b.download(&norm)?);
                Ok(out)
            }
            Case::Linear {
                dtype,
                m,
                n,
                k,
                bias,
            } => {
                let x = up(b, &r.values(m * k, 1.0), &[*m, *k])?;
                let w = b.load_weight(host_weight(&r.values(n * k, 0.5), &[*n, *k], *dtype)?)?;
                let bias = if *bias {
                    Some(b.load_weight(host_weight(
                        &r.values(*n, 1.0),
                        &[*n],
                        WeightDtype::F32,
                    )?)?)
                } else {
                    None
                };
                b.download(&b.linear(&x, &w, bias.as_ref())?)
            }
            Case::LinearMxfp4 { m, n, k } => {
                let x = up(b, &r.values(m * k, 1.0), &[*m, *k])?;
                let blocks = mxfp4::quantize_ggml(&r.values(n * k, 0.5));
                let w = MappedBlocks::owned(&blocks, BlockType::Mxfp4, vec![*n, *k])?;
                let w = b.load_weight(HostWeight::Mapped(w))?;
                b.download(&b.linear(&x, &w, None)?)
            }
            Case::Rope {
                style,
                tokens,
                heads,
                dim,
                first_pos,
                mscale,
            } => {
                let x = up(
                    b,
                    &r.values(tokens * heads * dim, 1.0),
                    &[*tokens, *heads, *dim],
                )?;
                let positions: Vec<u32> = (0..*tokens as u32).map(|i| first_pos + i * 7).collect();
                b.download(&b.rope(&x, &positions, &rope_spec(*dim, *style, *mscale))?)
            }
            Case::KvWrite {
                tokens,
                kv_heads,
                head_dim,
            } => attention(
                b,
                &mut r,
                &AttnCase::new(vec![(tokens - 1, 1)], *kv_heads, *kv_heads, *head_dim),
            ),
            Case::Attention(a) => attention(b, &mut r, a),
            Case::Glu { act, rows, cols } => {
                // The clamped SwiGLU's inputs reach past its limits (±7) on both sides.
                let (gs, us) = match act {
                    Activation::SwigluOai => (10.0, 10.0),
                    _ => (4.0, 1.0),
                };
                let g = up(b, &r.values(rows * cols, gs), &[*rows, *cols])?;
                let u = up(b, &r.values(rows * cols, us), &[*rows, *cols])?;
                b.download(&b.glu(&g, &u, *act)?)
            }
            Case::Add { rows, cols } | Case::Mul { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 1.0), &[*rows, *cols])?;
                let y = up(b, &r.values(rows * cols, 1.0), &[*rows, *cols])?;
                let z = if matches!(self, Case::Add { .. }) {
                    b.add(&x, &y)?
                } else {
                    b.mul(&x, &y)?
                };
                b.download(&z)
            }
            Case::Scale { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 1.0), &[*rows, *cols])?;
                b.download(&b.scale(&x, 0.37)?)
            }
            Case::Softcap { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 60.0), &[*rows, *cols])?;
                b.download(&b.softcap(&x, 30.0)?)
            }
            // About half the values past the limit, on both sides.
            Case::Clamp { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 8.0), &[*rows, *cols])?;
                b.download(&b.clamp(&x, 4.0)?)
            }
            // Apertus-like numbers: both branches, and values below eps.
            Case::Xielu { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 6.0), &[*rows, *cols])?;
                let p = candor_models::xielu::XieluParams::from_stored(0.8, 0.8, 0.5, -1e-6);
                b.download(&b.xielu(&x, &p)?)
            }
            Case::QuantizeRows { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 3.0), &[*rows, *cols])?;
                b.download(&b.quantize_rows(&x, 8)?)
            }
            Case::MulSigmoid { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 3.0), &[*rows, *cols])?;
                let gate = up(b, &r.values(rows * cols, 6.0), &[*rows, *cols])?;
                b.download(&b.mul_sigmoid(&x, &gate)?)
            }
            Case::Softmax { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 8.0), &[*rows, *cols])?;
                b.download(&b.softmax(&x)?)
            }
            Case::GatherRows { rows, cols, pick } => {
                let x = up(b, &r.values(rows * cols, 1.0), &[*rows, *cols])?;
                b.download(&b.gather_rows(&x, pick)?)
            }
            Case::Argmax { rows, cols } => {
                let x = up(b, &r.values(rows * cols, 1.0), &[*rows, *cols])?;
                Ok(b.argmax(&x)?.into_iter().map(|i| i as f32).collect())
            }
            Case::HeadsLinear {
                tokens,
                heads,
                n,
                k,
            } => {
                let x = up(
                    b,
                    &r.values(tokens * heads * k, 1.0),
                    &[*tokens, *heads, *k],
                )?;
                let w = b.load_weight(host_weight(
                    &r.values(heads * n * k, 0.5),
                    &[*heads, *n, *k],
                    WeightDtype::F32,
                )?)?;
                b.download(&b.heads_linear(&x, &w)?)
            }
        }
    }
}

/// Fill a paged cache with K/V for every position of each sequence (blocks handed out in
/// reverse order, so tables are scattered), then attend from the sequences' query rows.
fn attention<B: Backend>(b: &B, r: &mut Inputs, a: &AttnCase) -> Result<Vec<f32>> {
    let (heads, kv_heads, head_dim) = (a.heads, a.kv_heads, a.head_dim);
    let blocks_per: Vec<usize> = a
        .seqs
        .iter()
        .map(|(p, q)| (p + q).div_ceil(BLOCK_SIZE))
        .collect();
    let written: usize = blocks_per.iter().sum();
    // Moved blocks (`moved`) go to the blocks below the ones written.
    let copies = if a.moved.is_some() { written } else { 0 };
    let num_blocks = written + copies + 1;
    let spec = KvCacheSpec {
        num_layers: 1,
        num_blocks,
        block_size: BLOCK_SIZE,
        num_kv_heads: kv_heads,
        head_dim,
        key_offsets: vec![],
    };
    let mut cache = b.alloc_kv_cache(&spec)?;
    let mut next = num_blocks;
    let mut spare = copies;
    let mut metas = Vec::new();
    let mut q_start = 0;
    for (&(start_pos, q_len), &nb) in a.seqs.iter().zip(&blocks_per) {
        let table: Vec<u32> = (0..nb)
            .map(|_| {
                next -= 1;
                next as u32
            })
            .collect();
        let ctx = start_pos + q_len;
        let slots: Vec<u32> = (0..ctx)
            .map(|p| (table[p / BLOCK_SIZE] as usize * BLOCK_SIZE + p % BLOCK_SIZE) as u32)
            .collect();
        let row = kv_heads * head_dim;
        let k = b.upload(&r.values(ctx * row, 1.0), &[ctx, kv_heads, head_dim])?;
        let v = b.upload(&r.values(ctx * row, 1.0), &[ctx, kv_heads, head_dim])?;
        b.kv_write(&mut cache, 0, &k, &v, &slots)?;
        let block_table = match a.moved {
            None => table,
            Some(how) => {
                let moved: Vec<(u32, u32)> = table
                    .iter()
                    .map(|&src| {
                        spare -= 1;
                        (src, spare as u32)
                    })
                    .collect();
                let to: Vec<u32> = moved.iter().map(|&(_, dst)| dst).collect();
                match how {
                    BlockMove::Copied => b.copy_kv_blocks(&mut cache, &moved)?,
                    BlockMove::Restored => {
                        let rows = b.read_kv_rows(&cache, &slots)?;
                        let new_slots: Vec<u32> = (0..ctx)
                            .map(|p| {
                                (to[p / BLOCK_SIZE] as usize * BLOCK_SIZE + p % BLOCK_SIZE) as u32
                            })
                            .collect();
                        b.write_kv_rows(&mut cache, &new_slots, &rows)?;
                    }
                }
                to
            }
        };
        metas.push(SeqAttention {
            q_start,
            q_len,
            start_pos,
            block_table,
        });
        q_start += q_len;
    }
    let q = b.upload(
        &r.values(q_start * heads * head_dim, 1.0),
        &[q_start, heads, head_dim],
    )?;
    let params = AttentionParams {
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        scale: a.scale,
        sliding_window: a.window,
        softcap: a.softcap,
        // Large enough to take a real share of each softmax.
        sinks: a.sinks.then(|| r.values(heads, 3.0).into()),
        alibi: a
            .alibi
            .then(|| candor_models::alibi::Alibi::STANDARD.slopes(heads).into()),
    };
    b.download(&b.paged_attention(&q, &cache, 0, &metas, BLOCK_SIZE, &params)?)
}
