//! The decoder-only transformer forward pass, written once and generic over the Backend.
//! Each architecture contributes a `ModelSpec`; the flags in it select the variant's pieces
//! (biases, q/k norm, sandwich norms, sliding windows, embedding scale, activation).
use crate::attention_heads::{global_rope, heads_attention, heads_q, norm_qk, QkNorms};
use crate::backend::{AttentionParams, Backend, KvCacheSpec, RopeKvWrite, RopeSpec};
use crate::batch::FlatBatch;
use crate::error::{ModelError, Result};
use crate::gated_delta_net::GatedDeltaNetLayer;
use crate::kimi_delta::KimiDeltaLayer;
use crate::layer_loader::Loader;
use crate::lora::{BatchLora, LoraAdapter, LoraStack, LoraTarget};
use crate::mamba1::Mamba1Layer;
use crate::mamba2::Mamba2Layer;
use crate::mla::{CacheForm, LatentAttentionWeights};
use crate::moe::{Ffn, Mlp};
use crate::projection::{members, NormedInput, Projections};
use crate::query_temperature::QueryTemperatures;
use crate::rope::rope_spec;
use crate::sequence_state::{SequenceState, SequenceStates};
use crate::short_conv::{conv_taps, ConvTaps, ShortConvLayer};
use crate::spec::{Arch, LayerParts, ModelSpec};
use crate::weights::names::layer;
use crate::weights::scaled::ScaledSource;
use crate::weights::unpermuted::UnpermutedSource;
use crate::weights::WeightSource;

struct Layer<B: Backend> {
    /// The norms of the residual stream before attention and the FFN; None where the model
    /// norms only their outputs (OLMo 2).
    attn_norm: Option<B::Weight>,
    /// The LayerNorms' biases, where the model has them (StarCoder2).
    attn_norm_bias: Option<B::Weight>,
    ffn_norm_bias: Option<B::Weight>,
    /// The layer's mixing of tokens; None in a layer that is an FFN only (Nemotron-H).
    mixer: Option<Mixer<B>>,
    /// A Mamba-2 mixer beside the attention, on the same normed input, its output added to
    /// the attention's (Falcon-H1).
    parallel: Option<Mixer<B>>,
    post_attn_norm: Option<B::Weight>,
    /// BitNet's RMSNorm of the attention's output before `wo` (`ModelSpec::sub_norms`).
    attn_sub_norm: Option<B::Weight>,
    ffn_norm: Option<B::Weight>,
    /// None in a layer that is a mixer only (Nemotron-H).
    ffn: Option<Ffn<B>>,
    post_ffn_norm: Option<B::Weight>,
    attn: AttentionParams,
    /// Index into `DecoderModel::ropes`.
    rope: usize,
    /// Where the layer's rows start in the paged cache (`ModelSpec::cache_layers`).
    cache_layer: usize,
    /// The layer's queries take the model's temperatures (`ModelSpec::attn_temperature`).
    tempered: bool,
    /// The layer attends within chunks (`ModelSpec::attention_chunk`).
    chunked: bool,
}

/// A layer's mixing of tokens and the product that brings it back to the stream.
struct Mixer<B: Backend> {
    attention: Attention<B>,
    /// The output projection (for latent attention, with zero columns for the values'
    /// padding), and its bias where the model has one (gpt-oss).
    wo: B::Weight,
    wo_bias: Option<B::Weight>,
}

/// What a forward pass's attention layers share beside the batch: the queries' temperatures,
/// and the sequences cut at chunk boundaries for the layers that attend within chunks.
pub(crate) struct AttentionExtras<T> {
    temps: QueryTemperatures<T>,
    chunked: Option<Vec<crate::batch::SeqAttention>>,
}

/// How a layer makes its queries, keys and values.
pub(crate) enum Attention<B: Backend> {
    /// q, k, v projections (with their biases), joined where the backend allows, and the
    /// per-head norms of q and k some families have.
    Heads {
        qkv: Projections<B>,
        qk_norms: Option<QkNorms<B>>,
        /// What a quantized cache may subtract from this layer's keys (`key_offset`).
        k_offset: Option<Vec<f32>>,
    },
    /// DeepSeek's latent attention.
    Latent(Box<LatentAttentionWeights<B>>),
    /// No attention: LFM2's gated short convolution (its `out_proj` is the layer's `wo`).
    ShortConv(Box<ShortConvLayer<B>>),
    /// No attention: gated DeltaNet linear attention over the sequence's recurrent state
    /// (its `out_proj` is the layer's `wo`).
    GatedDeltaNet(Box<GatedDeltaNetLayer<B>>),
    /// No attention: Mamba-1's selective scan over the sequence's recurrent state (its
    /// `out_proj` is the layer's `wo`).
    Mamba1(Box<Mamba1Layer<B>>),
    /// No attention: Kimi Delta Attention (the gated delta rule with a decay per key
    /// channel) over the sequence's recurrent state (its `o_proj` is the layer's `wo`).
    KimiDelta(Box<KimiDeltaLayer<B>>),
    /// No attention: Mamba-2's state-space model over the sequence's recurrent state (its
    /// `out_proj` is the layer's `wo`).
    Mamba2(Box<Mamba2Layer<B>>),
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
    /// The learned position table (GPT-2's `wpe`), where positions enter so.
    position_embed: Option<B::Weight>,
    /// None when the head is tied to the embedding table.
    head: Option<B::Weight>,
    /// The LM head's bias, where the model has one (Phi).
    head_bias: Option<B::Weight>,
    /// None where the last block's own norm ends the stream (`spec.post_residual_norms`).
    final_norm: Option<B::Weight>,
    final_norm_bias: Option<B::Weight>,
    /// Narrow embeddings' widening and the last hidden states' narrowing
    /// (`spec.embed_width`: `project_in`, `project_out`).
    embed_projections: Option<[B::Weight; 2]>,
    /// The norm of the token embeddings and its bias (`spec.embed_norm`: BLOOM's).
    embed_norm: Option<(B::Weight, Option<B::Weight>)>,
    layers: Vec<Layer<B>>,
    /// [global, local] RoPE variants (local only for families with their own local base).
    ropes: Vec<RopeSpec>,
    /// The LoRA adapters sequences may run with (`SeqInput::lora`), on the device.
    lora: Option<LoraStack<B>>,
    /// The same in host memory, by slot (None: a slot unloaded): the stacks are rebuilt from
    /// them when an adapter comes or goes.
    lora_slots: Vec<Option<LoraAdapter>>,
    /// Each sequence's recurrent state, for a model with gated DeltaNet or Mamba-2 layers.
    states: Option<SequenceStates>,
}

impl<B: Backend> DecoderModel<B> {
    pub fn load(backend: &B, mut spec: ModelSpec, src: &dyn WeightSource) -> Result<Self> {
        spec.validate()?;
        if let Some(a) = &spec.latent_attention {
            // The cache's heads follow the form this backend runs latent attention in.
            let (kv_heads, head_dim) =
                CacheForm::for_backend(backend, a).cache_heads(a, spec.num_heads);
            (spec.num_kv_heads, spec.head_dim) = (kv_heads, head_dim);
        }
        // Multipliers a checkout keeps apart from its weights, folded in as they load.
        let scales = spec.weight_scales.clone();
        let scaled = ScaledSource::new(src, &scales);
        let src: &dyn WeightSource = match scales.is_empty() {
            true => src,
            false => &scaled,
        };
        let heads = (spec.num_heads, spec.num_kv_heads, spec.head_dim);
        let unpermuted = UnpermutedSource::new(src, heads);
        let src: &dyn WeightSource = match spec.qk_rows_permuted {
            true => &unpermuted,
            false => src,
        };
        let ld = Loader {
            backend,
            src,
            norm_offset: spec.norm_weight_offset,
            unit_norms: spec.weightless_norms,
        };
        let (h, q, f, d) = (
            spec.hidden_size,
            spec.q_dim(),
            spec.intermediate_size,
            spec.head_dim,
        );
        let embed_width = spec.embed_width.unwrap_or(h);
        let embed = ld.weight("token_embd.weight", &[spec.vocab_size, embed_width])?;
        let head = ld.opt_weight("output.weight", &[spec.vocab_size, embed_width])?;
        let embed_projections = match spec.embed_width {
            Some(w) => Some([
                ld.weight("token_embd_proj.weight", &[h, w])?,
                ld.weight("output_proj.weight", &[w, h])?,
            ]),
            None => None,
        };
        let head_bias = ld.opt_weight("output.bias", &[spec.vocab_size])?;
        let position_embed = match spec.learned_positions {
            true => Some(ld.weight(
                "position_embd.weight",
                &[spec.max_position + spec.learned_position_offset, h],
            )?),
            false => None,
        };
        // LFM2's GGUFs name the norm after the last layer as llama.cpp does for that model
        // (`token_embd_norm`, its checkouts' `embedding_norm`).
        let final_norm_name = match src.contains("output_norm.weight") {
            false if matches!(spec.arch, Arch::Lfm2 | Arch::Lfm2Moe) => "token_embd_norm.weight",
            _ => "output_norm.weight",
        };
        let final_norm = match spec.post_residual_norms {
            true => None,
            false => Some(ld.norm(final_norm_name, h)?),
        };
        let norm_bias = |name: &str| match spec.norm_bias {
            true => ld.weight(name, &[h]).map(Some),
            false => Ok(None),
        };
        let final_norm_bias = match final_norm {
            Some(_) => norm_bias("output_norm.bias")?,
            None => None,
        };
        let embed_norm = match spec.embed_norm {
            true => Some((
                ld.norm("token_embd_norm.weight", h)?,
                norm_bias("token_embd_norm.bias")?,
            )),
            false => None,
        };
        let alibi: Option<std::sync::Arc<[f32]>> =
            spec.alibi.map(|a| a.slopes(spec.num_heads).into());

        let ropes = match &spec.latent_attention {
            Some(a) => vec![crate::mla::rope(&spec, a, CacheForm::of_spec(&spec, a)).0],
            None => {
                let mut global = global_rope(&spec).0;
                if src.contains("rope_freqs.weight") && spec.rotary_dim.is_none() {
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
                if spec.unrotated_layers.contains(&true) {
                    ropes.push(unrotated(d, spec.rope.style));
                }
                ropes
            }
        };

        let cache_layers = spec.cache_layers();
        let mut layers = Vec::with_capacity(spec.num_layers);
        let mut state_sizes = Vec::new();
        for l in 0..spec.num_layers {
            let conv = spec.short_conv.as_ref().is_some_and(|c| c.layers[l]);
            let linear = spec.linear_attention.as_ref().filter(|a| a.layers[l]);
            let mamba = spec.mamba.as_ref().filter(|m| m.layers[l]);
            // A Mamba-2 mixer beside attention (Falcon-H1) is not the layer's mixing.
            let (mamba, parallel) = match spec.parallel_mamba {
                true => (None, mamba),
                false => (mamba, None),
            };
            let mamba1 = spec.mamba1.as_ref().filter(|m| m.layers[l]);
            let n = |s: &str| layer(l, s);
            let (pre_norms, sandwich_norms) = spec.norm_placement(l);
            let (post_attn_norm, post_ffn_norm) = if sandwich_norms {
                (
                    Some(ld.norm(&n("post_attention_norm.weight"), h)?),
                    Some(ld.norm(&n("post_ffw_norm.weight"), h)?),
                )
            } else {
                (None, None)
            };
            let parts = spec.layer_parts(l);
            // A recurrent layer's place in each sequence's state.
            let index = state_sizes.len();
            if let Some(sizes) = spec.recurrent_state_sizes(l) {
                state_sizes.push(sizes);
            }
            // The layer's mixing, its output product, and the name its output bias has.
            let mixing = match (mamba1, mamba, linear) {
                _ if parts == LayerParts::FfnOnly => None,
                _ if conv => Some((
                    Attention::ShortConv(Box::new(ShortConvLayer::load(&ld, l, &spec)?)),
                    ld.weight(&n("shortconv.out_proj.weight"), &[h, h])?,
                    "shortconv.out_proj.bias",
                )),
                (Some(dims), _, _) => Some((
                    Attention::Mamba1(Box::new(Mamba1Layer::load(&ld, l, &spec, index)?)),
                    ld.weight(&n("ssm_out.weight"), &[h, dims.inner])?,
                    "ssm_out.bias",
                )),
                (None, Some(dims), _) => Some((
                    Attention::Mamba2(Box::new(Mamba2Layer::load(&ld, l, &spec, index)?)),
                    ld.weight(&n("ssm_out.weight"), &[h, dims.inner()])?,
                    "ssm_out.bias",
                )),
                (None, None, Some(dims)) if dims.channel_decay => Some((
                    Attention::KimiDelta(Box::new(KimiDeltaLayer::load(&ld, l, &spec, index)?)),
                    ld.weight(
                        &n("attn_output.weight"),
                        &[h, dims.value_heads * dims.value_dim],
                    )?,
                    "attn_output.bias",
                )),
                (None, None, Some(dims)) => Some((
                    Attention::GatedDeltaNet(Box::new(GatedDeltaNetLayer::load(
                        &ld, l, &spec, index,
                    )?)),
                    ld.weight(
                        &n("ssm_out.weight"),
                        &[h, dims.value_heads * dims.value_dim],
                    )?,
                    "ssm_out.bias",
                )),
                (None, None, None) => Some(match spec.latent_attention {
                    Some(_) => (
                        Attention::Latent(Box::new(LatentAttentionWeights::load(&ld, l, &spec)?)),
                        LatentAttentionWeights::load_output(&ld, l, &spec)?,
                        "attn_output.bias",
                    ),
                    None => (
                        heads_attention(&ld, l, &spec)?,
                        ld.weight(&n("attn_output.weight"), &[h, q])?,
                        "attn_output.bias",
                    ),
                }),
            };
            // The norm before the FFN: llama.cpp names Falcon's second norm `attn_norm_2`, and
            // Qwen3-Next's and Qwen3.5's `post_attention_norm` (their one norm after
            // attention, before the FFN).
            let ffn_norm = if parts == LayerParts::FfnOnly {
                // Its one norm: llama.cpp names every Nemotron-H layer's `attn_norm`.
                "attn_norm"
            } else if src.contains(&n("attn_norm_2.weight")) {
                "attn_norm_2"
            } else if !sandwich_norms
                && !src.contains(&n("ffn_norm.weight"))
                && src.contains(&n("post_attention_norm.weight"))
            {
                "post_attention_norm"
            } else {
                "ffn_norm"
            };
            let window = spec.layer_windows[l];
            let sinks = match spec.attn_sinks {
                true => {
                    let s = ld.checked(&n("attn_sinks.weight"), &[spec.num_heads])?;
                    Some(s.to_f32()?.to_vec1::<f32>()?.into())
                }
                false => None,
            };
            layers.push(Layer {
                attn_norm_bias: norm_bias(&n("attn_norm.bias"))?,
                ffn_norm_bias: match spec.parallel_block && !spec.parallel_ffn_norm {
                    true => None,
                    false => norm_bias(&n(&format!("{ffn_norm}.bias")))?,
                },
                attn_norm: match pre_norms && parts != LayerParts::FfnOnly {
                    true => Some(ld.norm(&n("attn_norm.weight"), h)?),
                    false => None,
                },
                mixer: match mixing {
                    Some((attention, wo, bias)) => Some(Mixer {
                        attention,
                        wo,
                        wo_bias: ld.opt_weight(&n(bias), &[h])?,
                    }),
                    None => None,
                },
                parallel: match parallel {
                    Some(dims) => Some(Mixer {
                        attention: Attention::Mamba2(Box::new(Mamba2Layer::load(
                            &ld, l, &spec, index,
                        )?)),
                        wo: ld.weight(&n("ssm_out.weight"), &[h, dims.inner()])?,
                        wo_bias: ld.opt_weight(&n("ssm_out.bias"), &[h])?,
                    }),
                    None => None,
                },
                post_attn_norm,
                attn_sub_norm: match spec.sub_norms {
                    true => Some(ld.norm(&n("attn_sub_norm.weight"), q)?),
                    false => None,
                },
                // A parallel block's FFN reads the attention's normed input (GPT-NeoX's: a norm
                // of its own).
                ffn_norm: match pre_norms
                    && (!spec.parallel_block || spec.parallel_ffn_norm)
                    && parts != LayerParts::MixerOnly
                {
                    true => Some(ld.norm(&n(&format!("{ffn_norm}.weight")), h)?),
                    false => None,
                },
                ffn: match parts {
                    LayerParts::MixerOnly => None,
                    LayerParts::Both | LayerParts::FfnOnly => Some(
                        Ffn::load(
                            &ld,
                            l,
                            spec.experts.as_ref(),
                            (f, h),
                            spec.gated_ffn,
                            spec.xielu.get(l).copied(),
                        )?
                        .with_bitnet(
                            match spec.sub_norms {
                                true => {
                                    Some((ld.norm(&n("ffn_sub_norm.weight"), f)?, spec.rms_eps))
                                }
                                false => None,
                            },
                            spec.activation_bits,
                        )?,
                    ),
                },
                post_ffn_norm,
                attn: AttentionParams {
                    num_heads: spec.num_heads,
                    num_kv_heads: spec.num_kv_heads,
                    head_dim: d,
                    scale: spec.attn_scale,
                    sliding_window: window,
                    softcap: spec.attn_softcap,
                    sinks,
                    alibi: alibi.clone(),
                },
                rope: if spec.unrotated_layers.get(l) == Some(&true) {
                    ropes.len() - 1
                } else if window.is_some() && spec.rope_local_theta.is_some() {
                    1
                } else {
                    0
                },
                cache_layer: cache_layers.first[l],
                tempered: spec.attn_temperature.is_some_and(|t| {
                    !t.unrotated_only || spec.unrotated_layers.get(l) == Some(&true)
                }),
                chunked: spec.attention_chunk.is_some()
                    && spec.unrotated_layers.get(l) != Some(&true),
            });
        }
        let states = match spec.keeps_sequence_state() {
            true => Some(SequenceStates::new(state_sizes)),
            false => None,
        };
        Ok(DecoderModel {
            spec,
            embed,
            position_embed,
            head,
            head_bias,
            final_norm,
            final_norm_bias,
            embed_projections,
            embed_norm,
            layers,
            ropes,
            lora: None,
            lora_slots: Vec::new(),
            states,
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
        let plain = self.spec.latent_attention.is_none()
            && self.spec.experts.is_none()
            && self.spec.rotary_dim.is_none()
            && self.spec.pre_norms
            && self.spec.post_norm_layers.is_empty()
            && self.spec.short_conv.is_none()
            && !self.spec.keeps_sequence_state()
            && !self.spec.attn_output_gate
            && !self.spec.unfused_blocks();
        if !plain && slots.iter().any(Option::is_some) {
            return Err(ModelError::Config(
                "LoRA adapters on latent-attention, mixture-of-experts, partial-RoPE, \
                 post-norm-only, LayerNorm, short-convolution, linear-attention or gated-output \
                 models are not supported"
                    .into(),
            ));
        }
        let stack = LoraStack::build(backend, &self.spec, &slots)?;
        self.lora = Some(stack).filter(|s| !s.is_empty());
        self.lora_slots = slots;
        Ok(())
    }

    /// Serve contexts of up to `tokens`: a LongRoPE model takes its long factors past its
    /// original context, its short ones within it (the weights do not change: the attention
    /// factor is the same for both). Call before the first forward pass; the cache must not
    /// hold keys rotated the other way.
    pub fn use_context(&mut self, tokens: usize) {
        if !matches!(
            self.spec.rope.scaling,
            crate::spec::RopeScaling::LongRope { .. }
        ) {
            return;
        }
        self.spec.rope.scaling = self.spec.rope.scaling.for_context(tokens);
        if let Some(global) = self.ropes.first_mut() {
            *global = global_rope(&self.spec).0;
        }
    }

    /// LoRA slots so far (loaded or emptied).
    pub fn lora_slots(&self) -> usize {
        self.lora_slots.len()
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Host memory the sequences' recurrent states hold (`SequenceStates::bytes`); 0 for a
    /// model without.
    pub fn state_bytes(&self) -> usize {
        self.states.as_ref().map_or(0, SequenceStates::bytes)
    }

    /// A copy of the recurrent state in sequence slot `slot` (`SequenceStates::snapshot`);
    /// None for a model without, or an empty slot.
    pub fn snapshot_state(&self, slot: u32) -> Option<SequenceState> {
        self.states.as_ref()?.snapshot(slot)
    }

    /// The recurrent state out of sequence slot `slot`, leaving it empty
    /// (`SequenceStates::remove`).
    pub fn remove_state(&self, slot: u32) -> Option<SequenceState> {
        self.states.as_ref()?.remove(slot)
    }

    /// `state` into sequence slot `slot`, its next step continuing from `state.pos`
    /// (`SequenceStates::restore`). Refused by a model without recurrent states.
    pub fn restore_state(&self, slot: u32, state: SequenceState) -> Result<()> {
        match &self.states {
            Some(states) => states.restore(slot, state),
            None => Err(ModelError::InvalidBatch(
                "the model keeps no recurrent state to restore".into(),
            )),
        }
    }

    /// Projection groups (q/k/v, gate/up) of all layers that run as one joined product.
    pub fn joined_projection_groups(&self) -> usize {
        self.layers
            .iter()
            .map(|l| {
                let attention = match l.mixer.as_ref().map(|m| &m.attention) {
                    Some(Attention::Heads { qkv, .. }) => qkv.is_joined() as usize,
                    Some(Attention::Latent(a)) => a.joined_groups(),
                    Some(Attention::ShortConv(c)) => c.is_joined() as usize,
                    Some(Attention::GatedDeltaNet(g)) => g.is_joined() as usize,
                    Some(Attention::KimiDelta(k)) => k.is_joined() as usize,
                    Some(Attention::Mamba2(_) | Attention::Mamba1(_)) | None => 0,
                };
                attention + l.ffn.as_ref().is_some_and(Ffn::is_joined) as usize
            })
            .sum()
    }

    pub fn kv_cache_spec(&self, num_blocks: usize, block_size: usize) -> KvCacheSpec {
        let cache_layers = self.spec.cache_layers();
        let mut key_offsets = vec![None; cache_layers.total];
        for l in &self.layers {
            if let Some(Attention::Heads { k_offset, .. }) = l.mixer.as_ref().map(|m| &m.attention)
            {
                key_offsets[l.cache_layer].clone_from(k_offset);
            }
        }
        KvCacheSpec {
            num_layers: cache_layers.total,
            num_blocks,
            block_size,
            num_kv_heads: self.spec.num_kv_heads,
            head_dim: self.spec.head_dim,
            key_offsets,
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
            None if !batch.adapters.iter().all(crate::lora::LoraMix::is_base) => {
                return Err(ModelError::InvalidBatch(
                    "a sequence asks for a LoRA adapter; the model has none".into(),
                ))
            }
            None => None,
        };
        // Every short-convolution layer reads the same positions (its own cache layers).
        let conv_taps = match &s.short_conv {
            Some(c) => Some(conv_taps(batch, c.kernel)?),
            None => None,
        };
        let extras = AttentionExtras {
            temps: QueryTemperatures::new(s.attn_temperature, &batch.positions),
            chunked: match s.attention_chunk {
                Some(chunk) => Some(crate::chunked_attention::chunk_seqs(
                    &batch.seqs,
                    chunk,
                    batch.block_size,
                )?),
                None => None,
            },
        };
        // Each sequence's recurrent state, taken out of its slot for this step and put back
        // once every layer has run (a failed step leaves the slots empty).
        let mut states: Vec<SequenceState> = match &self.states {
            Some(states) => states.take(batch)?,
            None => Vec::new(),
        };
        let mut x = b.embedding(&self.embed, &batch.ids)?;
        if let Some([widen, _]) = &self.embed_projections {
            x = b.linear(&x, widen, None)?;
        }
        if let Some(table) = &self.position_embed {
            if let Some(&p) = batch
                .positions
                .iter()
                .find(|&&p| p as usize >= s.max_position)
            {
                return Err(ModelError::InvalidBatch(format!(
                    "position {p} past the model's {} learned positions",
                    s.max_position
                )));
            }
            let rows: std::borrow::Cow<[u32]> = match s.learned_position_offset as u32 {
                0 => batch.positions.as_slice().into(),
                offset => batch.positions.iter().map(|&p| p + offset).collect(),
            };
            x = b.add(&x, &b.embedding(table, &rows)?)?;
        }
        if let Some(scale) = s.embed_scale {
            x = b.scale(&x, scale)?;
        }
        if let Some((w, bias)) = &self.embed_norm {
            x = self.norm(b, &x, w, bias.as_ref())?;
        }
        // The previous layer's FFN output: added to the residual stream by the next layer's
        // fused add + norm rather than by an add of its own (one op per layer fewer).
        let mut pending: Option<B::Tensor> = None;
        for (li, layer) in self.layers.iter().enumerate() {
            let down = pending.take();
            if s.unfused_blocks() {
                let stream = match &down {
                    Some(d) => b.add(&x, d)?,
                    None => x,
                };
                let (stream, out) = self.unfused_block(b, layer, stream, kv, batch, &extras)?;
                (x, pending) = (stream, out);
                continue;
            }
            let Some(mixer) = &layer.mixer else {
                // A layer of an FFN only (Nemotron-H): it reads the stream as it stands.
                let ffn = layer.ffn.as_ref().ok_or_else(layer_of_nothing)?;
                let (stream, out) =
                    self.ffn_step(b, layer, li, ffn, lora.as_ref(), down.as_ref(), &x)?;
                (x, pending) = (stream, Some(out));
                continue;
            };
            let kv_write = self.kv_write(layer, batch, kv);
            // The layer's mixing of tokens up to its output product: attention, or LFM2's
            // short convolution.
            let (stream, mixed) = match (&layer.attn_norm, &mixer.attention) {
                (Some(norm), attention) => {
                    let attn_in = NormedInput {
                        x: down.as_ref().unwrap_or(&x),
                        residual: down.as_ref().map(|_| &x),
                        norm,
                        eps,
                    };
                    match attention {
                        Attention::Latent(latent) => {
                            let (stream, [q, k, v]) = latent.q_k_v(b, &attn_in)?;
                            let q = b.rope_qk_write_kv(&q, &k, &v, kv_write)?;
                            let attn = attend(b, &q, kv, layer, batch, &extras)?;
                            (stream, latent.attention_output(b, attn)?)
                        }
                        Attention::Heads { qkv, qk_norms, .. } => {
                            let (stream, q, gate) = heads_q(
                                b,
                                s,
                                li,
                                qkv,
                                qk_norms.as_ref(),
                                lora.as_ref(),
                                &attn_in,
                                kv_write,
                            )?;
                            let out = attend(b, &q, kv, layer, batch, &extras)?;
                            match gate {
                                Some(gate) => (stream, b.mul_sigmoid(&out, &gate)?),
                                None => (stream, out),
                            }
                        }
                        Attention::GatedDeltaNet(delta) => {
                            delta.mix(b, &attn_in, batch, &mut states)?
                        }
                        Attention::Mamba2(mamba) => mamba.mix(b, &attn_in, batch, &mut states)?,
                        Attention::Mamba1(mamba) => mamba.mix(b, &attn_in, batch, &mut states)?,
                        Attention::KimiDelta(kda) => kda.mix(b, &attn_in, batch, &mut states)?,
                        Attention::ShortConv(conv) => {
                            let (slots, index) =
                                conv_taps.as_ref().ok_or_else(conv_without_taps)?;
                            let taps = ConvTaps {
                                first_layer: layer.cache_layer,
                                layers: s.conv_cache_span(),
                                slots,
                                index,
                            };
                            conv.mix(b, &attn_in, kv_write, taps)?
                        }
                    }
                }
                // No norm before attention (OLMo 2): the projections read the stream itself.
                (None, Attention::Heads { qkv, qk_norms, .. }) => {
                    let stream = match &down {
                        Some(d) => b.add(&x, d)?,
                        None => x.clone(),
                    };
                    let [q, k, v] = members(qkv.apply(b, &stream, Some(s.head_dim))?)?;
                    let (q, k) = norm_qk(b, s, q, k, qk_norms.as_ref())?;
                    let q = b.rope_qk_write_kv(&q, &k, &v, kv_write)?;
                    (stream, attend(b, &q, kv, layer, batch, &extras)?)
                }
                (None, Attention::Latent(_)) => {
                    return Err(ModelError::Config(
                        "latent attention without a norm before it is not supported".into(),
                    ))
                }
                (
                    None,
                    Attention::ShortConv(_)
                    | Attention::GatedDeltaNet(_)
                    | Attention::KimiDelta(_)
                    | Attention::Mamba2(_)
                    | Attention::Mamba1(_),
                ) => {
                    return Err(ModelError::Config(
                        "a short convolution or linear attention needs its norm before it".into(),
                    ))
                }
            };
            x = stream;
            let mut o = b.linear(&mixed, &mixer.wo, mixer.wo_bias.as_ref())?;
            if let Some(lora) = &lora {
                o = lora.add(b, li, LoraTarget::O, &mixed, o)?;
            }
            if let Some(parallel) = &layer.parallel {
                // Falcon-H1's Mamba-2 beside the attention: the same norm of the same stream.
                let (Some(norm), Attention::Mamba2(mamba)) =
                    (&layer.attn_norm, &parallel.attention)
                else {
                    return Err(ModelError::Config(
                        "a parallel mixer other than a normed Mamba-2 is not supported".into(),
                    ));
                };
                let input = NormedInput {
                    x: &x,
                    residual: None,
                    norm,
                    eps,
                };
                let (_, y) = mamba.mix(b, &input, batch, &mut states)?;
                let m = b.linear(&y, &parallel.wo, parallel.wo_bias.as_ref())?;
                o = b.add(&o, &m)?;
            }
            let o = self.scaled_output(b, o, layer.post_attn_norm.as_ref())?;
            let Some(ffn) = &layer.ffn else {
                // A layer of a mixer only (Nemotron-H): the next layer adds its output.
                pending = Some(o);
                continue;
            };
            let (stream, out) = self.ffn_step(b, layer, li, ffn, lora.as_ref(), Some(&o), &x)?;
            (x, pending) = (stream, Some(out));
        }
        if let Some(down) = pending {
            x = b.add(&x, &down)?;
        }
        if let Some(slots) = &self.states {
            slots.finish(batch, states);
        }
        let hidden = match batch.hidden_rows.is_empty() {
            true => None,
            false => {
                let h = b.gather_rows(&x, &batch.hidden_rows)?;
                Some(self.final_hidden(b, h)?)
            }
        };
        if batch.logit_rows.is_empty() {
            // A prefill chunk that wants no logits: the step only filled the KV cache.
            let logits = b.upload(&[], &[0, s.vocab_size])?;
            return Ok(StepOutputs { logits, hidden });
        }
        let x = b.gather_rows(&x, &batch.logit_rows)?;
        let x = self.final_hidden(b, x)?;
        let head = self.head.as_ref().unwrap_or(&self.embed);
        let mut logits = b.linear(&x, head, self.head_bias.as_ref())?;
        if let Some(divisor) = s.logit_divisor {
            logits = b.scale(&logits, 1.0 / divisor)?;
        }
        let logits = match s.final_softcap {
            Some(cap) => b.softcap(&logits, cap)?,
            None => logits,
        };
        Ok(StepOutputs { logits, hidden })
    }

    /// A layer's FFN over the residual stream `stream` with `added` (the mixer's output, or
    /// the previous layer's where this layer has no mixer) joining it: the stream's next value
    /// and what the FFN adds to it, post-normed and scaled where the model says.
    #[allow(clippy::too_many_arguments)]
    fn ffn_step(
        &self,
        b: &B,
        layer: &Layer<B>,
        li: usize,
        ffn: &Ffn<B>,
        lora: Option<&BatchLora<'_, B>>,
        added: Option<&B::Tensor>,
        stream: &B::Tensor,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let s = &self.spec;
        let (stream, down) = match &layer.ffn_norm {
            // No norm before the FFN (OLMo 2): it reads the stream itself.
            None => {
                let stream = match added {
                    Some(a) => b.add(a, stream)?,
                    None => stream.clone(),
                };
                let down = ffn.forward(b, &stream, s.activation)?;
                (stream, down)
            }
            Some(norm) => {
                let ffn_in = NormedInput {
                    x: added.unwrap_or(stream),
                    residual: added.map(|_| stream),
                    norm,
                    eps: s.rms_eps,
                };
                normed_ffn(b, s, li, ffn, lora, &ffn_in)?
            }
        };
        Ok((
            stream,
            self.scaled_output(b, down, layer.post_ffn_norm.as_ref())?,
        ))
    }

    /// A sublayer's output as it joins the stream: after its post-norm and the model's
    /// residual scale, where it has them.
    fn scaled_output(
        &self,
        b: &B,
        mut out: B::Tensor,
        post_norm: Option<&B::Weight>,
    ) -> Result<B::Tensor> {
        if let Some(pn) = post_norm {
            out = b.rms_norm(&out, pn, self.spec.rms_eps)?;
        }
        if let Some(r) = self.spec.residual_scale {
            out = b.scale(&out, r)?;
        }
        Ok(out)
    }

    /// Where a layer's rotated keys and values (or convolution inputs) go in this batch.
    fn kv_write<'a>(
        &'a self,
        layer: &Layer<B>,
        batch: &'a FlatBatch,
        kv: &'a mut B::KvCache,
    ) -> RopeKvWrite<'a, B::KvCache> {
        RopeKvWrite {
            positions: &batch.positions,
            rope: &self.ropes[layer.rope],
            cache: kv,
            layer: layer.cache_layer,
            slots: &batch.slots,
        }
    }

    /// What a product reads of `x`: `x` quantized per token where the model's products take
    /// their inputs so (BitNet: `ModelSpec::activation_bits`), else `x` itself.
    fn product_input<'x>(
        &self,
        b: &B,
        x: &'x B::Tensor,
    ) -> Result<std::borrow::Cow<'x, B::Tensor>> {
        match self.spec.activation_bits {
            Some(bits) => Ok(std::borrow::Cow::Owned(b.quantize_rows(x, bits)?)),
            None => Ok(std::borrow::Cow::Borrowed(x)),
        }
    }

    /// The last hidden states as the head reads them (and transformers returns them): after
    /// the final norm where the model has one, narrowed to the embeddings' width where they are
    /// narrower.
    fn final_hidden(&self, b: &B, x: B::Tensor) -> Result<B::Tensor> {
        let x = match &self.final_norm {
            Some(w) => self.norm(b, &x, w, self.final_norm_bias.as_ref())?,
            None => x,
        };
        match &self.embed_projections {
            Some([_, narrow]) => b.linear(&x, narrow, None),
            None => Ok(x),
        }
    }

    /// The model's norm of `x` (RMSNorm, or LayerNorm where the spec says, with its bias),
    /// unfused.
    fn norm(
        &self,
        b: &B,
        x: &B::Tensor,
        w: &B::Weight,
        bias: Option<&B::Weight>,
    ) -> Result<B::Tensor> {
        match self.spec.layer_norm {
            true => b.layer_norm(x, w, bias, self.spec.rms_eps),
            false => b.rms_norm(x, w, self.spec.rms_eps),
        }
    }

    /// A block whose norms are not fused into its products: LayerNorm models (StarCoder2:
    /// attention, then the FFN, each after its own norm), ungated FFNs under RMSNorms (Arcee)
    /// and parallel blocks (Cohere: one norm read by both, `x + attn(ln(x)) + mlp(ln(x))`;
    /// GPT-NeoX: a norm each of the same stream), or with norms after the residual adds
    /// (OPT-350M). Returns the stream after the attention joined it (parallel: as it came) and
    /// what the FFN adds to it at the next layer (none where the block normed the sum itself).
    fn unfused_block(
        &self,
        b: &B,
        layer: &Layer<B>,
        stream: B::Tensor,
        kv: &mut B::KvCache,
        batch: &FlatBatch,
        extras: &AttentionExtras<B::Tensor>,
    ) -> Result<(B::Tensor, Option<B::Tensor>)> {
        let s = &self.spec;
        let (
            Some(norm),
            Some(Mixer {
                attention: Attention::Heads { qkv, qk_norms, .. },
                wo,
                wo_bias,
            }),
            Some(ffn),
        ) = (&layer.attn_norm, &layer.mixer, &layer.ffn)
        else {
            return Err(ModelError::Config(
                "an unfused block needs its norm, q/k/v projections and FFN".into(),
            ));
        };
        let h = match s.post_residual_norms {
            true => stream.clone(),
            false => self.norm(b, &stream, norm, layer.attn_norm_bias.as_ref())?,
        };
        let [q, k, v] = members(qkv.apply(b, &*self.product_input(b, &h)?, Some(s.head_dim))?)?;
        let [q, k, v] = match s.clip_qkv {
            Some(limit) => [
                b.clamp(&q, limit)?,
                b.clamp(&k, limit)?,
                b.clamp(&v, limit)?,
            ],
            None => [q, k, v],
        };
        let (q, k) = norm_qk(b, s, q, k, qk_norms.as_ref())?;
        let q = b.rope_qk_write_kv(&q, &k, &v, self.kv_write(layer, batch, kv))?;
        let mut attn = attend(b, &q, kv, layer, batch, extras)?;
        if let Some(w) = &layer.attn_sub_norm {
            attn = b.rms_norm(&attn, w, s.rms_eps)?;
        }
        let o = b.linear(&*self.product_input(b, &attn)?, wo, wo_bias.as_ref())?;
        // The FFN quantizes its own products' inputs (`Mlp::activation_bits`).
        let ffn = |h: &B::Tensor| ffn.forward(b, h, s.activation);
        if s.parallel_block {
            let down = match &layer.ffn_norm {
                // GPT-NeoX: the FFN's own norm of the same stream.
                Some(norm) => ffn(&self.norm(b, &stream, norm, layer.ffn_norm_bias.as_ref())?)?,
                None => ffn(&h)?,
            };
            return Ok((stream, Some(b.add(&o, &down)?)));
        }
        let stream = b.add(&stream, &o)?;
        let ffn_norm = layer.ffn_norm.as_ref().ok_or_else(|| {
            ModelError::Config("an unfused block needs its norm before the FFN".into())
        })?;
        if s.post_residual_norms {
            let stream = self.norm(b, &stream, norm, layer.attn_norm_bias.as_ref())?;
            let stream = b.add(&stream, &ffn(&stream)?)?;
            let stream = self.norm(b, &stream, ffn_norm, layer.ffn_norm_bias.as_ref())?;
            return Ok((stream, None));
        }
        let h = self.norm(b, &stream, ffn_norm, layer.ffn_norm_bias.as_ref())?;
        let down = ffn(&h)?;
        Ok((stream, Some(down)))
    }
}

/// A layer's paged attention over its cache layer for `batch` (the keys written first), the
/// queries scaled by their temperatures where the model has them.
fn attend<B: Backend>(
    b: &B,
    q: &B::Tensor,
    kv: &B::KvCache,
    layer: &Layer<B>,
    batch: &FlatBatch,
    extras: &AttentionExtras<B::Tensor>,
) -> Result<B::Tensor> {
    let tempered = match layer.tempered {
        true => extras.temps.apply(b, q)?,
        false => None,
    };
    let q = tempered.as_ref().unwrap_or(q);
    let seqs = match (&extras.chunked, layer.chunked) {
        (Some(pieces), true) => pieces,
        _ => &batch.seqs,
    };
    b.paged_attention(
        q,
        kv,
        layer.cache_layer,
        seqs,
        batch.block_size,
        &layer.attn,
    )
}

/// A layer with neither a mixer nor an FFN (no spec plans one).
fn layer_of_nothing() -> ModelError {
    ModelError::Config("a layer with neither a mixing of tokens nor an FFN".into())
}

/// A short-convolution layer met where none was planned for (the spec names none).
fn conv_without_taps() -> ModelError {
    ModelError::Config("a short convolution in a model without short convolutions".into())
}

/// RoPE that leaves every pair as it is (all frequencies 0: cos 1, sin 0), for the layers
/// that run without it: one spec every backend's RoPE and fused kernels already take, at the
/// cost of a rotation by nothing where a backend has no way to skip it.
fn unrotated(head_dim: usize, style: crate::backend::RopeStyle) -> RopeSpec {
    RopeSpec {
        inv_freq: vec![0.0; head_dim / 2],
        style,
        mscale: 1.0,
    }
}

/// A layer's FFN on its normed input (the attention's output joining the residual stream):
/// the stream's next value and the FFN's output, the norm fused into the products where no
/// LoRA update or router needs the normed rows apart.
fn normed_ffn<B: Backend>(
    b: &B,
    s: &ModelSpec,
    li: usize,
    ffn: &Ffn<B>,
    lora: Option<&BatchLora<'_, B>>,
    ffn_in: &NormedInput<'_, B>,
) -> Result<(B::Tensor, B::Tensor)> {
    match (ffn, lora) {
        // Experts (their router reads the normed rows) and an ungated MLP (Nemotron-H's
        // squared ReLU: no fused kernel takes one product alone; LoRA is refused for such
        // models at attach) after the norm apart.
        (Ffn::Experts(_), _) | (Ffn::Dense(Mlp { gated: false, .. }), _) => {
            let (stream, h) = ffn_in.normed(b)?;
            Ok((stream, ffn.forward(b, &h, s.activation)?))
        }
        (Ffn::Dense(mlp), Some(lora)) => {
            let (stream, gate_up) = mlp.gate_up.apply_normed_then(b, ffn_in, None, |i, h, y| {
                lora.add(b, li, LoraTarget::GATE_UP[i], h, y)
            })?;
            let [gate, up] = members(gate_up)?;
            let down = down_with_lora(b, lora, li, &gate, &up, s.activation, &mlp.down)?;
            Ok((stream, down))
        }
        (Ffn::Dense(mlp), None) => {
            let (stream, gate_up) = mlp.gate_up.apply_normed(b, ffn_in, None)?;
            let [gate, up] = members(gate_up)?;
            Ok((stream, b.glu_linear(&gate, &up, s.activation, &mlp.down)?))
        }
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
