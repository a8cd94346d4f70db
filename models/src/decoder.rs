//! The decoder-only transformer forward pass, written once and generic over the Backend.
//! Each architecture contributes a `ModelSpec`; the flags in it select the variant's pieces
//! (biases, q/k norm, sandwich norms, sliding windows, embedding scale, activation).
use crate::backend::{AttentionParams, Backend, KvCacheSpec, QkvHeads, RopeKvWrite, RopeSpec};
use crate::batch::FlatBatch;
use crate::error::{ModelError, Result};
use crate::lora::{BatchLora, LoraAdapter, LoraStack, LoraTarget};
use crate::projection::{members, NormedInput, Projections};
use crate::rope::rope_spec;
use crate::spec::ModelSpec;
use crate::weights::names::layer;
use crate::weights::{require, HostWeight, WeightSource};

struct Layer<B: Backend> {
    attn_norm: B::Weight,
    /// q, k, v (with their biases), joined where the backend allows.
    qkv: Projections<B>,
    q_norm: Option<B::Weight>,
    k_norm: Option<B::Weight>,
    wo: B::Weight,
    post_attn_norm: Option<B::Weight>,
    ffn_norm: B::Weight,
    /// gate, up.
    gate_up: Projections<B>,
    w_down: B::Weight,
    post_ffn_norm: Option<B::Weight>,
    attn: AttentionParams,
    /// Index into `DecoderModel::ropes`.
    rope: usize,
}

/// What one forward pass computed.
pub struct StepOutputs<T> {
    /// `[logit_rows, vocab]`.
    pub logits: T,
    /// `[hidden_rows, hidden_size]`, when the batch asked for hidden states.
    pub hidden: Option<T>,
}

pub struct DecoderModel<B: Backend> {
    spec: ModelSpec,
    embed: B::Weight,
    /// None when the head is tied to the embedding table.
    head: Option<B::Weight>,
    final_norm: B::Weight,
    layers: Vec<Layer<B>>,
    /// [global, local] RoPE variants (local only for families with their own local base).
    ropes: Vec<RopeSpec>,
    /// The LoRA adapters sequences may run with (`SeqInput::adapter`), on the device.
    lora: Option<LoraStack<B>>,
    /// The same in host memory, by slot (None: a slot unloaded): the stacks are rebuilt from
    /// them when an adapter comes or goes.
    lora_slots: Vec<Option<LoraAdapter>>,
}

/// Loads tensors by canonical name and checks them against the shapes the spec implies.
struct Loader<'a, B: Backend> {
    backend: &'a B,
    src: &'a dyn WeightSource,
    norm_offset: f32,
}

impl<B: Backend> Loader<'_, B> {
    fn checked(&self, name: &str, expected: &[usize]) -> Result<HostWeight> {
        let w = require(self.src, name)?;
        let actual = w.shape();
        if actual != expected {
            return Err(ModelError::ShapeMismatch {
                tensor: name.into(),
                expected: expected.to_vec(),
                actual,
            });
        }
        Ok(w)
    }

    fn weight(&self, name: &str, expected: &[usize]) -> Result<B::Weight> {
        self.backend.load_weight(self.checked(name, expected)?)
    }

    fn opt_weight(&self, name: &str, expected: &[usize]) -> Result<Option<B::Weight>> {
        if !self.src.contains(name) {
            return Ok(None);
        }
        self.weight(name, expected).map(Some)
    }

    /// Layer `l`'s gate and up stored as one `[2f, h]` weight (gate rows first), if they are:
    /// `ffn_gate_up` (HF Phi-3's `gate_up_proj`), or a double-height `ffn_up` without a
    /// `ffn_gate` beside it (llama.cpp's phi3 GGUFs).
    fn joined_gate_up(&self, l: usize, f: usize, h: usize) -> Result<Option<B::Weight>> {
        let joined = layer(l, "ffn_gate_up.weight");
        if self.src.contains(&joined) {
            return self.weight(&joined, &[2 * f, h]).map(Some);
        }
        let up = layer(l, "ffn_up.weight");
        if self.src.contains(&layer(l, "ffn_gate.weight")) || !self.src.contains(&up) {
            return Ok(None);
        }
        self.weight(&up, &[2 * f, h]).map(Some)
    }

    /// A norm weight, with the family's offset applied (HF Gemma stores `w` for `1 + w`).
    fn norm(&self, name: &str, dim: usize) -> Result<B::Weight> {
        let w = self.checked(name, &[dim])?;
        let w = if self.norm_offset != 0.0 {
            let off = self.norm_offset as f64;
            w.map_dense(|t| t.affine(1.0, off))?
        } else {
            w
        };
        self.backend.load_weight(w)
    }
}

impl<B: Backend> DecoderModel<B> {
    pub fn load(backend: &B, spec: ModelSpec, src: &dyn WeightSource) -> Result<Self> {
        spec.validate()?;
        let ld = Loader {
            backend,
            src,
            norm_offset: spec.norm_weight_offset,
        };
        let (h, q, kv, f, d) = (
            spec.hidden_size,
            spec.q_dim(),
            spec.kv_dim(),
            spec.intermediate_size,
            spec.head_dim,
        );
        let embed = ld.weight("token_embd.weight", &[spec.vocab_size, h])?;
        let head = ld.opt_weight("output.weight", &[spec.vocab_size, h])?;
        let final_norm = ld.norm("output_norm.weight", h)?;

        let mut global = rope_spec(d, spec.rope.theta, &spec.rope.scaling, spec.rope.style);
        if src.contains("rope_freqs.weight") {
            // GGUF Llama-3: per-frequency divisors precomputed by the converter.
            let factors = ld
                .checked("rope_freqs.weight", &[d / 2])?
                .to_f32()?
                .to_vec1::<f32>()?;
            for (f, k) in global.inv_freq.iter_mut().zip(factors) {
                *f /= k;
            }
        }
        let mut ropes = vec![global];
        if let Some(theta) = spec.rope_local_theta {
            ropes.push(rope_spec(
                d,
                theta,
                &crate::spec::RopeScaling::None,
                spec.rope.style,
            ));
        }

        let mut layers = Vec::with_capacity(spec.num_layers);
        for l in 0..spec.num_layers {
            let n = |s: &str| layer(l, s);
            let (bq, bk, bv) = if spec.qkv_bias {
                (
                    ld.opt_weight(&n("attn_q.bias"), &[q])?,
                    ld.opt_weight(&n("attn_k.bias"), &[kv])?,
                    ld.opt_weight(&n("attn_v.bias"), &[kv])?,
                )
            } else {
                (None, None, None)
            };
            let (q_norm, k_norm) = if spec.qk_norm {
                (
                    Some(ld.norm(&n("attn_q_norm.weight"), d)?),
                    Some(ld.norm(&n("attn_k_norm.weight"), d)?),
                )
            } else {
                (None, None)
            };
            let (post_attn_norm, post_ffn_norm) = if spec.sandwich_norms {
                (
                    Some(ld.norm(&n("post_attention_norm.weight"), h)?),
                    Some(ld.norm(&n("post_ffw_norm.weight"), h)?),
                )
            } else {
                (None, None)
            };
            let window = spec.layer_windows[l];
            let qkv = match ld.opt_weight(&n("attn_qkv.weight"), &[q + 2 * kv, h])? {
                Some(joined) if !spec.qkv_bias => {
                    Projections::joined(backend, joined, vec![q, kv, kv])?
                }
                Some(_) => {
                    return Err(ModelError::Config(
                        "joined q/k/v weights with biases are not supported".into(),
                    ))
                }
                None => Projections::new(
                    backend,
                    vec![
                        (ld.weight(&n("attn_q.weight"), &[q, h])?, bq),
                        (ld.weight(&n("attn_k.weight"), &[kv, h])?, bk),
                        (ld.weight(&n("attn_v.weight"), &[kv, h])?, bv),
                    ],
                )?,
            };
            let gate_up = match ld.joined_gate_up(l, f, h)? {
                Some(joined) => Projections::joined(backend, joined, vec![f, f])?,
                None => Projections::new(
                    backend,
                    vec![
                        (ld.weight(&n("ffn_gate.weight"), &[f, h])?, None),
                        (ld.weight(&n("ffn_up.weight"), &[f, h])?, None),
                    ],
                )?,
            };
            layers.push(Layer {
                attn_norm: ld.norm(&n("attn_norm.weight"), h)?,
                qkv,
                q_norm,
                k_norm,
                wo: ld.weight(&n("attn_output.weight"), &[h, q])?,
                post_attn_norm,
                ffn_norm: ld.norm(&n("ffn_norm.weight"), h)?,
                gate_up,
                w_down: ld.weight(&n("ffn_down.weight"), &[h, f])?,
                post_ffn_norm,
                attn: AttentionParams {
                    num_heads: spec.num_heads,
                    num_kv_heads: spec.num_kv_heads,
                    head_dim: d,
                    scale: spec.attn_scale,
                    sliding_window: window,
                    softcap: spec.attn_softcap,
                },
                rope: if window.is_some() && ropes.len() > 1 {
                    1
                } else {
                    0
                },
            });
        }
        Ok(DecoderModel {
            spec,
            embed,
            head,
            final_norm,
            layers,
            ropes,
            lora: None,
            lora_slots: Vec::new(),
        })
    }

    /// Serve `adapters` beside the base weights: a sequence naming adapter `i` runs with
    /// `adapters[i]`. Replaces those attached before; each must fit the model.
    pub fn attach_lora(&mut self, backend: &B, adapters: &[LoraAdapter]) -> Result<()> {
        self.use_lora_slots(backend, adapters.iter().cloned().map(Some).collect())
    }

    /// Put `adapter` in slot `slot` (a new slot is the next one; None empties it), while the
    /// model serves: the stacks are rebuilt. On error (an adapter that does not fit) nothing
    /// changes.
    pub fn set_lora_slot(
        &mut self,
        backend: &B,
        slot: usize,
        adapter: Option<LoraAdapter>,
    ) -> Result<()> {
        let mut slots = self.lora_slots.clone();
        if slot > slots.len() {
            return Err(ModelError::InvalidBatch(format!(
                "LoRA slot {slot} is past the next one ({})",
                slots.len()
            )));
        }
        if slot == slots.len() {
            slots.push(None);
        }
        slots[slot] = adapter;
        self.use_lora_slots(backend, slots)
    }

    /// Serve `slots` from now on: their stacks built first, so nothing changes on error.
    fn use_lora_slots(&mut self, backend: &B, slots: Vec<Option<LoraAdapter>>) -> Result<()> {
        let stack = LoraStack::build(backend, &self.spec, &slots)?;
        self.lora = Some(stack).filter(|s| !s.is_empty());
        self.lora_slots = slots;
        Ok(())
    }

    /// LoRA slots so far (loaded or emptied).
    pub fn lora_slots(&self) -> usize {
        self.lora_slots.len()
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Projection groups (q/k/v, gate/up) of all layers that run as one joined product.
    pub fn joined_projection_groups(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.qkv.is_joined() as usize + l.gate_up.is_joined() as usize)
            .sum()
    }

    pub fn kv_cache_spec(&self, num_blocks: usize, block_size: usize) -> KvCacheSpec {
        KvCacheSpec {
            num_layers: self.spec.num_layers,
            num_blocks,
            block_size,
            num_kv_heads: self.spec.num_kv_heads,
            head_dim: self.spec.head_dim,
        }
    }

    /// The q/k/v products' heads.
    fn qkv_heads(&self) -> QkvHeads {
        QkvHeads {
            heads: self.spec.num_heads,
            kv_heads: self.spec.num_kv_heads,
            head_dim: self.spec.head_dim,
        }
    }

    /// One batched forward over all sequences of `batch`; returns `[logit_rows, vocab]`.
    pub fn forward(&self, b: &B, kv: &mut B::KvCache, batch: &FlatBatch) -> Result<B::Tensor> {
        Ok(self.forward_outputs(b, kv, batch)?.logits)
    }

    /// One batched forward; returns the logits of `batch.logit_rows` and, when the batch asks
    /// for any, the final hidden states (after the final norm, as transformers'
    /// `last_hidden_state`) of `batch.hidden_rows`: `[hidden_rows, hidden_size]`.
    pub fn forward_outputs(
        &self,
        b: &B,
        kv: &mut B::KvCache,
        batch: &FlatBatch,
    ) -> Result<StepOutputs<B::Tensor>> {
        let s = &self.spec;
        let eps = s.rms_eps;
        // The masks that give each sequence its adapter's updates; None when no sequence of
        // this batch uses one (the base model's fused path then runs unchanged).
        let lora = match &self.lora {
            Some(stack) => stack.for_batch(b, batch)?,
            None if batch.adapters.iter().any(Option::is_some) => {
                return Err(ModelError::InvalidBatch(
                    "a sequence asks for a LoRA adapter; the model has none".into(),
                ))
            }
            None => None,
        };
        let mut x = b.embedding(&self.embed, &batch.ids)?;
        if let Some(scale) = s.embed_scale {
            x = b.scale(&x, scale)?;
        }
        // The previous layer's FFN output: added to the residual stream by the next layer's
        // fused add + norm rather than by an add of its own (one op per layer fewer).
        let mut pending: Option<B::Tensor> = None;
        for (li, layer) in self.layers.iter().enumerate() {
            let down = pending.take();
            let attn_in = NormedInput {
                x: down.as_ref().unwrap_or(&x),
                residual: down.as_ref().map(|_| &x),
                norm: &layer.attn_norm,
                eps,
            };
            let kv_write = RopeKvWrite {
                positions: &batch.positions,
                rope: &self.ropes[layer.rope],
                cache: &mut *kv,
                layer: li,
                slots: &batch.slots,
            };
            let (stream, q) = match (&lora, &layer.q_norm, &layer.k_norm) {
                // Neither LoRA nor per-head norms: the norm, product, RoPE and KV write as one.
                (None, None, _) | (None, _, None) => {
                    layer
                        .qkv
                        .apply_normed_rope_write_kv(b, &attn_in, self.qkv_heads(), kv_write)?
                }
                _ => {
                    let (stream, qkv) = match &lora {
                        Some(lora) => layer.qkv.apply_normed_then(
                            b,
                            &attn_in,
                            Some(s.head_dim),
                            |i, h, y| lora.add(b, li, LoraTarget::QKV[i], h, y),
                        )?,
                        None => layer.qkv.apply_normed(b, &attn_in, Some(s.head_dim))?,
                    };
                    let [q, k, v] = members(qkv)?;
                    // Per-head norms of q and k (qwen3, gemma3) come between the product and
                    // RoPE.
                    let (q, k) = match (&layer.q_norm, &layer.k_norm) {
                        (Some(qn), Some(kn)) => {
                            (b.rms_norm(&q, qn, eps)?, b.rms_norm(&k, kn, eps)?)
                        }
                        _ => (q, k),
                    };
                    (stream, b.rope_qk_write_kv(&q, &k, &v, kv_write)?)
                }
            };
            x = stream;
            let attn = b.paged_attention(&q, kv, li, &batch.seqs, batch.block_size, &layer.attn)?;
            let mut o = b.linear(&attn, &layer.wo, None)?;
            if let Some(lora) = &lora {
                o = lora.add(b, li, LoraTarget::O, &attn, o)?;
            }
            if let Some(pn) = &layer.post_attn_norm {
                o = b.rms_norm(&o, pn, eps)?;
            }
            let ffn_in = NormedInput {
                x: &o,
                residual: Some(&x),
                norm: &layer.ffn_norm,
                eps,
            };
            let (stream, gate_up) = match &lora {
                Some(lora) => layer
                    .gate_up
                    .apply_normed_then(b, &ffn_in, None, |i, h, y| {
                        lora.add(b, li, LoraTarget::GATE_UP[i], h, y)
                    })?,
                None => layer.gate_up.apply_normed(b, &ffn_in, None)?,
            };
            x = stream;
            let [gate, up] = members(gate_up)?;
            let mut down = match &lora {
                Some(lora) => down_with_lora(b, lora, li, &gate, &up, s.activation, &layer.w_down)?,
                None => b.glu_linear(&gate, &up, s.activation, &layer.w_down)?,
            };
            if let Some(pn) = &layer.post_ffn_norm {
                down = b.rms_norm(&down, pn, eps)?;
            }
            pending = Some(down);
        }
        if let Some(down) = pending {
            x = b.add(&x, &down)?;
        }
        let hidden = match batch.hidden_rows.is_empty() {
            true => None,
            false => {
                let h = b.gather_rows(&x, &batch.hidden_rows)?;
                Some(b.rms_norm(&h, &self.final_norm, eps)?)
            }
        };
        if batch.logit_rows.is_empty() {
            // A prefill chunk that wants no logits: the step only filled the KV cache.
            let logits = b.upload(&[], &[0, s.vocab_size])?;
            return Ok(StepOutputs { logits, hidden });
        }
        let x = b.gather_rows(&x, &batch.logit_rows)?;
        let x = b.rms_norm(&x, &self.final_norm, eps)?;
        let logits = b.linear(&x, self.head.as_ref().unwrap_or(&self.embed), None)?;
        let logits = match s.final_softcap {
            Some(cap) => b.softcap(&logits, cap)?,
            None => logits,
        };
        Ok(StepOutputs { logits, hidden })
    }
}

/// The FFN's down projection with the batch's LoRA updates: the GLU apart (the update reads
/// it), then the product and the update.
fn down_with_lora<B: Backend>(
    b: &B,
    lora: &BatchLora<'_, B>,
    layer: usize,
    gate: &B::Tensor,
    up: &B::Tensor,
    act: crate::backend::Activation,
    w: &B::Weight,
) -> Result<B::Tensor> {
    let m = b.glu(gate, up, act)?;
    let y = b.linear(&m, w, None)?;
    lora.add(b, layer, LoraTarget::Down, &m, y)
}
