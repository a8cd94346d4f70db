//! Canonical (GGUF-style) tensor names and their Hugging Face equivalents.

/// Which HF layer-norm naming an architecture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfNormNaming {
    /// llama/mistral/qwen: `post_attention_layernorm` is the pre-FFN norm.
    Llama,
    /// gemma2/3: `post_attention_layernorm` is applied to the attention output,
    /// `pre_feedforward_layernorm` is the pre-FFN norm.
    Gemma,
    /// GLM-4: `post_attention_layernorm` is the pre-FFN norm (as llama's), the post-norms
    /// are `post_self_attn_layernorm` and `post_mlp_layernorm`.
    Glm4,
    /// OLMo Hybrid: `post_attention_layernorm` norms the attention's output in its attention
    /// layers (as Gemma's) and is the pre-FFN norm in its DeltaNet layers (as llama's): each
    /// layer asks for the one it has.
    OlmoHybrid,
}

pub fn layer(l: usize, what: &str) -> String {
    format!("blk.{l}.{what}")
}

/// HF safetensors name of a canonical tensor name, or None when it has no HF equivalent.
pub fn to_hf(name: &str, naming: HfNormNaming) -> Option<String> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let top = match stem {
        "token_embd" => Some("model.embed_tokens".to_string()),
        // Learned absolute positions (GPT-2's `wpe`, named on by `gpt2_hf`).
        "position_embd" => Some("model.embed_positions".to_string()),
        "output_norm" => Some("model.norm".to_string()),
        "output" => Some("lm_head".to_string()),
        // Narrow embeddings' widening and narrowing products (OPT-350M's, named on by
        // `opt_hf`; llama.cpp has no such tensors).
        "token_embd_proj" => Some("model.project_in".to_string()),
        // A norm of the token embeddings (BLOOM's `word_embeddings_layernorm`, named on by
        // `falcon_one_norm_hf`).
        "token_embd_norm" => Some("model.embed_norm".to_string()),
        "output_proj" => Some("model.project_out".to_string()),
        // A `*ForSequenceClassification` checkout's head (llama.cpp's name for a reranker's).
        "cls.output" => Some("score".to_string()),
        _ => None,
    };
    if let Some(t) = top {
        return Some(format!("{t}.{suffix}"));
    }
    let rest = stem.strip_prefix("blk.")?;
    let (l, part) = rest.split_once('.')?;
    let l: usize = l.parse().ok()?;
    if let Some(hf) = expert_to_hf(part, suffix) {
        return Some(format!("model.layers.{l}.{hf}"));
    }
    if (part, suffix) == ("attn_sinks", "weight") {
        // gpt-oss: a parameter of the attention, not of a module.
        return Some(format!("model.layers.{l}.self_attn.sinks"));
    }
    // Qwen3-Next's linear attention: two parameters of the layer, not of modules (HF stores
    // `A_log`; llama.cpp's GGUFs `ssm_a`, −exp of it).
    match (part, suffix) {
        ("ssm_a_log", "weight") => return Some(format!("model.layers.{l}.linear_attn.A_log")),
        ("ssm_dt", "bias") => return Some(format!("model.layers.{l}.linear_attn.dt_bias")),
        // Mamba-2's skip weights (named on by `mamba_hf`).
        ("ssm_d", "weight") => return Some(format!("model.layers.{l}.linear_attn.D")),
        _ => {}
    }
    let hf = match (part, naming) {
        ("attn_norm", _) => "input_layernorm",
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        // Phi-3's q/k/v in one tensor, and its gate and up (`ffn_gate_up`; llama.cpp's phi3
        // GGUFs store that pair as a double-height `ffn_up`).
        ("attn_qkv", _) => "self_attn.qkv_proj",
        ("ffn_gate_up", _) => "mlp.gate_up_proj",
        ("attn_output", _) => "self_attn.o_proj",
        // BitNet's norms of the attention's and the GLU's outputs before their products.
        ("attn_sub_norm", _) => "self_attn.attn_sub_norm",
        ("ffn_sub_norm", _) => "mlp.ffn_sub_norm",
        // An FFN's learned activation's numbers (Apertus's xIELU: `mlp.act_fn.alpha_p`...).
        ("ffn_act", _) => "mlp.act_fn",
        // LFM2's short convolutions (llama.cpp's names).
        ("shortconv.in_proj", _) => "conv.in_proj",
        ("shortconv.conv", _) => "conv.conv",
        ("shortconv.out_proj", _) => "conv.out_proj",
        // Qwen3-Next's gated DeltaNet (llama.cpp's qwen3next names).
        ("ssm_in", _) => "linear_attn.in_proj_qkvz",
        // Qwen3.5's (its q/k/v product, `attn_qkv`, named on by `qwen3_5_hf`).
        ("attn_gate", _) => "linear_attn.in_proj_z",
        ("ssm_beta", _) => "linear_attn.in_proj_b",
        ("ssm_alpha", _) => "linear_attn.in_proj_a",
        ("ssm_ba", _) => "linear_attn.in_proj_ba",
        ("ssm_conv1d", _) => "linear_attn.conv1d",
        ("ssm_norm", _) => "linear_attn.norm",
        ("ssm_out", _) => "linear_attn.out_proj",
        // Mamba-1's x and dt products (llama.cpp's mamba names; their HF names by `mamba_hf`).
        ("ssm_x", _) => "linear_attn.x_proj",
        ("ssm_dt", _) => "linear_attn.dt_proj",
        // Jamba's norms of dt's low-rank input, B and C (llama.cpp's jamba names).
        ("ssm_dt_norm", _) => "linear_attn.dt_layernorm",
        ("ssm_b_norm", _) => "linear_attn.b_layernorm",
        ("ssm_c_norm", _) => "linear_attn.c_layernorm",
        // Kimi Delta Attention's (llama.cpp's kimi_linear names; its β, A_log, dt_bias and
        // output norm named on by `kimi_linear_hf`).
        ("ssm_conv1d_q", _) => "self_attn.q_conv1d",
        ("ssm_conv1d_k", _) => "self_attn.k_conv1d",
        ("ssm_conv1d_v", _) => "self_attn.v_conv1d",
        ("ssm_f_a", _) => "self_attn.f_a_proj",
        ("ssm_f_b", _) => "self_attn.f_b_proj",
        ("ssm_g_a", _) => "self_attn.g_a_proj",
        ("ssm_g_b", _) => "self_attn.g_b_proj",
        // DeepSeek's latent attention (llama.cpp's deepseek2 names).
        ("attn_q_a", _) => "self_attn.q_a_proj",
        ("attn_q_a_norm", _) => "self_attn.q_a_layernorm",
        ("attn_q_b", _) => "self_attn.q_b_proj",
        ("attn_kv_a_mqa", _) => "self_attn.kv_a_proj_with_mqa",
        ("attn_kv_a_norm", _) => "self_attn.kv_a_layernorm",
        ("attn_kv_b", _) => "self_attn.kv_b_proj",
        ("attn_q_norm", _) => "self_attn.q_norm",
        ("attn_k_norm", _) => "self_attn.k_norm",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        ("ffn_norm", HfNormNaming::Llama | HfNormNaming::Glm4 | HfNormNaming::OlmoHybrid) => {
            "post_attention_layernorm"
        }
        ("post_attention_norm", HfNormNaming::OlmoHybrid) => "post_attention_layernorm",
        ("post_ffw_norm", HfNormNaming::OlmoHybrid) => "post_feedforward_layernorm",
        ("post_attention_norm", HfNormNaming::Glm4) => "post_self_attn_layernorm",
        ("post_ffw_norm", HfNormNaming::Glm4) => "post_mlp_layernorm",
        ("ffn_norm", HfNormNaming::Gemma) => "pre_feedforward_layernorm",
        ("post_attention_norm", HfNormNaming::Gemma) => "post_attention_layernorm",
        ("post_ffw_norm", HfNormNaming::Gemma) => "post_feedforward_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{l}.{hf}.{suffix}"))
}

/// Mixtral's HF name of a tensor `to_hf` names the Qwen/DeepSeek way (`mlp.gate`,
/// `mlp.experts.E.{gate,up,down}_proj`): `block_sparse_moe.gate`,
/// `block_sparse_moe.experts.E.{w1,w3,w2}`.
pub fn mixtral_hf(hf: &str) -> Option<String> {
    let (head, rest) = hf.split_once(".mlp.")?;
    let rest = match rest.strip_prefix("experts.") {
        Some(expert) => {
            let (e, proj) = expert.split_once('.')?;
            let (proj, suffix) = proj.split_once('.')?;
            let w = match proj {
                "gate_proj" => "w1",
                "up_proj" => "w3",
                "down_proj" => "w2",
                _ => return None,
            };
            format!("experts.{e}.{w}.{suffix}")
        }
        None if rest == "gate.weight" => rest.to_string(),
        // MiniMax-M2's router correction bias, beside its Mixtral-named experts.
        None if rest == "gate.e_score_correction_bias" => "e_score_correction_bias".into(),
        None => return None,
    };
    Some(format!("{head}.block_sparse_moe.{rest}"))
}

/// Hunyuan's HF name of a per-head q/k norm, which `to_hf` names the Qwen3 way
/// (`self_attn.q_norm`): `self_attn.query_layernorm` / `key_layernorm`; of
/// Hunyuan-A13B's router and shared expert too, which `to_hf` names the DeepSeek way:
/// `mlp.gate.wg`, `mlp.shared_mlp.*`.
pub fn hunyuan_hf(hf: &str) -> Option<String> {
    if let Some(head) = hf.strip_suffix(".mlp.gate.weight") {
        return Some(format!("{head}.mlp.gate.wg.weight"));
    }
    if let Some((head, rest)) = hf.split_once(".mlp.shared_experts.") {
        return Some(format!("{head}.mlp.shared_mlp.{rest}"));
    }
    let (head, rest) = hf.split_once(".self_attn.")?;
    let rest = match rest.split_once('.')? {
        ("q_norm", suffix) => format!("query_layernorm.{suffix}"),
        ("k_norm", suffix) => format!("key_layernorm.{suffix}"),
        _ => return None,
    };
    Some(format!("{head}.self_attn.{rest}"))
}

/// How a family renames the tensors `to_hf` names the llama way: whole names outside the
/// layers (`model.norm`, ...), and module paths within each layer, whose tensors then live
/// under `layers` followed by the layer's index.
struct Renames {
    top: &'static [(&'static str, &'static str)],
    layers: &'static str,
    parts: &'static [(&'static str, &'static str)],
}

impl Renames {
    fn apply(&self, hf: &str) -> Option<String> {
        let (stem, suffix) = hf.rsplit_once('.')?;
        if let Some((_, to)) = self.top.iter().find(|(from, _)| *from == stem) {
            return Some(format!("{to}.{suffix}"));
        }
        let (l, part) = stem.strip_prefix("model.layers.")?.split_once('.')?;
        let (_, to) = self.parts.iter().find(|(from, _)| *from == part)?;
        Some(format!("{}.{l}.{to}.{suffix}", self.layers))
    }
}

/// Sarvam's HF name of a tensor `to_hf` names the llama / DeepSeek way, as its original
/// release (and transformers' save) keeps it: the embeddings `word_embeddings`, q/k/v joined
/// as `attention.query_key_value` (q rows, then k, then v), `attention.dense`, the q/k norms
/// `attention.{query,key}_layernorm`, the routers' correction bias `mlp.gate.expert_bias`.
pub fn sarvam_hf(hf: &str) -> Option<String> {
    if let Some(bias) = correction_bias_as(hf, "mlp.gate.expert_bias") {
        return Some(bias);
    }
    Renames {
        top: &[("model.embed_tokens", "model.word_embeddings")],
        layers: "model.layers",
        parts: &[
            ("self_attn.qkv_proj", "attention.query_key_value"),
            ("self_attn.o_proj", "attention.dense"),
            ("self_attn.q_norm", "attention.query_layernorm"),
            ("self_attn.k_norm", "attention.key_layernorm"),
        ],
    }
    .apply(hf)
}

/// LFM2's HF name of a tensor `to_hf` names the llama way: its norms (`operator_norm`,
/// `ffn_norm`, the last one `embedding_norm`), q/k norms (`q_layernorm`), output product
/// (`out_proj`) and FFN (`feed_forward.w1` / `w3` / `w2`).
pub fn lfm2_hf(hf: &str) -> Option<String> {
    Renames {
        top: &[("model.norm", "model.embedding_norm")],
        layers: "model.layers",
        parts: &[
            ("input_layernorm", "operator_norm"),
            ("post_attention_layernorm", "ffn_norm"),
            ("self_attn.q_norm", "self_attn.q_layernorm"),
            ("self_attn.k_norm", "self_attn.k_layernorm"),
            ("self_attn.o_proj", "self_attn.out_proj"),
            ("mlp.gate_proj", "feed_forward.w1"),
            ("mlp.up_proj", "feed_forward.w3"),
            ("mlp.down_proj", "feed_forward.w2"),
        ],
    }
    .apply(hf)
}

/// LFM2-MoE's HF name of an expert tensor `to_hf` names the Qwen/DeepSeek way: the router
/// `feed_forward.gate`, its choice bias `feed_forward.expert_bias`, expert E's
/// `feed_forward.experts.E.{w1,w3,w2}`.
pub fn lfm2_moe_hf(hf: &str) -> Option<String> {
    let (head, rest) = hf.split_once(".mlp.")?;
    let rest = match rest {
        "gate.weight" => rest.to_string(),
        "gate.e_score_correction_bias" => "expert_bias".to_string(),
        // Mixtral's expert names (`experts.E.w1`), under LFM2's module.
        _ => mixtral_hf(hf)?
            .split_once(".block_sparse_moe.")?
            .1
            .to_string(),
    };
    Some(format!("{head}.feed_forward.{rest}"))
}

/// Apertus's HF name of a norm `to_hf` names the llama way: `attention_layernorm`,
/// `feedforward_layernorm`.
pub fn apertus_hf(hf: &str) -> Option<String> {
    Renames {
        top: &[],
        layers: "model.layers",
        parts: &[
            ("input_layernorm", "attention_layernorm"),
            ("post_attention_layernorm", "feedforward_layernorm"),
        ],
    }
    .apply(hf)
}

/// StarCoder2's HF name of an ungated MLP's projection, which `to_hf` names the llama way
/// (`mlp.up_proj`, `mlp.down_proj`): `mlp.c_fc`, `mlp.c_proj`.
pub fn starcoder2_hf(hf: &str) -> Option<String> {
    let (head, rest) = hf.split_once(".mlp.")?;
    let rest = match rest.split_once('.')? {
        ("up_proj", suffix) => format!("c_fc.{suffix}"),
        ("down_proj", suffix) => format!("c_proj.{suffix}"),
        _ => return None,
    };
    Some(format!("{head}.mlp.{rest}"))
}

/// Phi's HF name of a tensor `to_hf` names the llama way: its output product
/// (`self_attn.dense`), ungated MLP (`mlp.fc1`, `mlp.fc2`) and last norm (`final_layernorm`).
pub fn phi_hf(hf: &str) -> Option<String> {
    Renames {
        top: &[("model.norm", "model.final_layernorm")],
        layers: "model.layers",
        parts: &[
            ("self_attn.o_proj", "self_attn.dense"),
            ("mlp.up_proj", "mlp.fc1"),
            ("mlp.down_proj", "mlp.fc2"),
        ],
    }
    .apply(hf)
}

/// GPT-NeoX's HF name of a tensor `to_hf` names the llama way: everything under `gpt_neox.`,
/// the embeddings `embed_in`, the head `embed_out`, the last norm `final_layer_norm`, q/k/v
/// `attention.query_key_value` (rows per head: `SafetensorsDir` regroups them), the output
/// product `attention.dense` and the MLP `mlp.dense_h_to_4h` / `mlp.dense_4h_to_h`.
pub fn gpt_neox_hf(hf: &str) -> Option<String> {
    Renames {
        top: &[
            ("model.embed_tokens", "gpt_neox.embed_in"),
            ("model.norm", "gpt_neox.final_layer_norm"),
            ("lm_head", "embed_out"),
        ],
        layers: "gpt_neox.layers",
        parts: &[
            ("input_layernorm", "input_layernorm"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            ("self_attn.qkv_proj", "attention.query_key_value"),
            ("self_attn.o_proj", "attention.dense"),
            ("mlp.up_proj", "mlp.dense_h_to_4h"),
            ("mlp.down_proj", "mlp.dense_4h_to_h"),
        ],
    }
    .apply(hf)
}

/// GPT-2's HF name of a tensor `to_hf` names the llama way, under `transformer.` (as
/// `GPT2LMHeadModel` saves it; `gpt2_bare_hf` for the original checkpoints' names without it):
/// `wte`, `wpe`, `ln_f`, and per block `h.N.` with `ln_1`, `attn.c_attn` (q/k/v joined),
/// `attn.c_proj`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`. Their weights are stored `[in, out]`
/// (`Conv1D`): `SafetensorsDir` transposes them.
pub fn gpt2_hf(hf: &str) -> Option<String> {
    Renames {
        top: &[
            ("model.embed_tokens", "transformer.wte"),
            ("model.embed_positions", "transformer.wpe"),
            ("model.norm", "transformer.ln_f"),
        ],
        layers: "transformer.h",
        parts: &[
            ("input_layernorm", "ln_1"),
            ("post_attention_layernorm", "ln_2"),
            ("self_attn.qkv_proj", "attn.c_attn"),
            ("self_attn.o_proj", "attn.c_proj"),
            ("mlp.up_proj", "mlp.c_fc"),
            ("mlp.down_proj", "mlp.c_proj"),
        ],
    }
    .apply(hf)
}

/// GPT-J's HF name of a tensor `to_hf` names the llama way: `transformer.wte`, `ln_f`, and per
/// block `transformer.h.N.` with `ln_1`, `attn.{q,k,v,out}_proj`, `mlp.fc_in`, `mlp.fc_out`
/// (the head stays `lm_head`, with its bias).
pub fn gptj_hf(hf: &str) -> Option<String> {
    Renames {
        top: &[
            ("model.embed_tokens", "transformer.wte"),
            ("model.norm", "transformer.ln_f"),
        ],
        layers: "transformer.h",
        parts: &[
            ("input_layernorm", "ln_1"),
            ("self_attn.q_proj", "attn.q_proj"),
            ("self_attn.k_proj", "attn.k_proj"),
            ("self_attn.v_proj", "attn.v_proj"),
            ("self_attn.o_proj", "attn.out_proj"),
            ("mlp.up_proj", "mlp.fc_in"),
            ("mlp.down_proj", "mlp.fc_out"),
        ],
    }
    .apply(hf)
}

/// OPT's HF name of a tensor `to_hf` names the llama way, under `model.decoder.` (as
/// `OPTForCausalLM` saves it; `opt_bare_hf` for `OPTModel`'s names, which the Hub's original
/// checkpoints keep): `embed_tokens`, `embed_positions`, `final_layer_norm`, and per layer
/// `layers.N.` with `self_attn_layer_norm`, `self_attn.{q,k,v,out}_proj`, `final_layer_norm`
/// (the FFN's), `fc1`, `fc2`.
pub fn opt_hf(hf: &str) -> Option<String> {
    Renames {
        top: &[
            ("model.embed_tokens", "model.decoder.embed_tokens"),
            ("model.embed_positions", "model.decoder.embed_positions"),
            ("model.norm", "model.decoder.final_layer_norm"),
            ("model.project_in", "model.decoder.project_in"),
            ("model.project_out", "model.decoder.project_out"),
        ],
        layers: "model.decoder.layers",
        parts: &[
            ("input_layernorm", "self_attn_layer_norm"),
            ("post_attention_layernorm", "final_layer_norm"),
            ("self_attn.q_proj", "self_attn.q_proj"),
            ("self_attn.k_proj", "self_attn.k_proj"),
            ("self_attn.v_proj", "self_attn.v_proj"),
            ("self_attn.o_proj", "self_attn.out_proj"),
            ("mlp.up_proj", "fc1"),
            ("mlp.down_proj", "fc2"),
        ],
    }
    .apply(hf)
}

/// `opt_hf` without the `model.` prefix.
pub fn opt_bare_hf(hf: &str) -> Option<String> {
    opt_hf(hf).map(|n| n["model.".len()..].to_string())
}

/// `gpt2_hf` without the `transformer.` prefix: the names of the original GPT-2 checkpoints.
pub fn gpt2_bare_hf(hf: &str) -> Option<String> {
    gpt2_hf(hf).map(|n| n["transformer.".len()..].to_string())
}

/// Falcon's outer names and the modules of its blocks other than their norms; BLOOM's, whose
/// blocks Falcon's one-norm ones repeat, add the embeddings' norm.
const FALCON_TOP: &[(&str, &str)] = &[
    ("model.embed_tokens", "transformer.word_embeddings"),
    ("model.embed_norm", "transformer.word_embeddings_layernorm"),
    ("model.norm", "transformer.ln_f"),
];
const FALCON_LAYERS: &str = "transformer.h";

/// Falcon's HF name of a tensor `to_hf` names the llama way, under `transformer.`:
/// `word_embeddings`, `ln_f`, and per block `h.N.` with `self_attention.query_key_value` (per
/// KV head: `SafetensorsDir` regroups it), `self_attention.dense`, `mlp.dense_h_to_4h` /
/// `dense_4h_to_h`, and the norms of the blocks with one per branch (`ln_attn`, `ln_mlp`);
/// `falcon_one_norm_hf` names them `input_layernorm` (and a sequential block's
/// `post_attention_layernorm`).
pub fn falcon_hf(hf: &str) -> Option<String> {
    Renames {
        top: FALCON_TOP,
        layers: FALCON_LAYERS,
        parts: &[
            ("input_layernorm", "ln_attn"),
            ("post_attention_layernorm", "ln_mlp"),
            ("self_attn.qkv_proj", "self_attention.query_key_value"),
            ("self_attn.o_proj", "self_attention.dense"),
            ("mlp.up_proj", "mlp.dense_h_to_4h"),
            ("mlp.down_proj", "mlp.dense_4h_to_h"),
        ],
    }
    .apply(hf)
}

/// `falcon_one_norm_hf` without the `transformer.` prefix: BLOOM's names as `BloomModel`
/// saved them (bigscience's checkpoints).
pub fn bloom_bare_hf(hf: &str) -> Option<String> {
    falcon_one_norm_hf(hf).map(|n| n["transformer.".len()..].to_string())
}

/// MPT's HF name of a tensor `to_hf` names the llama way, under `transformer.`: `wte`,
/// `norm_f`, and per block `blocks.N.` with `norm_1`, `attn.Wqkv` (q rows, then k, then v),
/// `attn.out_proj`, `norm_2`, `ffn.up_proj`, `ffn.down_proj`.
pub fn mpt_hf(hf: &str) -> Option<String> {
    Renames {
        top: &[
            ("model.embed_tokens", "transformer.wte"),
            ("model.embed_positions", "transformer.wpe"),
            ("model.norm", "transformer.norm_f"),
        ],
        layers: "transformer.blocks",
        parts: &[
            ("input_layernorm", "norm_1"),
            ("post_attention_layernorm", "norm_2"),
            ("self_attn.qkv_proj", "attn.Wqkv"),
            ("self_attn.o_proj", "attn.out_proj"),
            ("mlp.up_proj", "ffn.up_proj"),
            ("mlp.down_proj", "ffn.down_proj"),
        ],
    }
    .apply(hf)
}

/// `falcon_hf` for the blocks with one norm (Falcon-7B, Falcon-RW; BLOOM's).
pub fn falcon_one_norm_hf(hf: &str) -> Option<String> {
    Renames {
        top: FALCON_TOP,
        layers: FALCON_LAYERS,
        parts: &[
            ("input_layernorm", "input_layernorm"),
            ("post_attention_layernorm", "post_attention_layernorm"),
            ("self_attn.qkv_proj", "self_attention.query_key_value"),
            ("self_attn.o_proj", "self_attention.dense"),
            ("mlp.up_proj", "mlp.dense_h_to_4h"),
            ("mlp.down_proj", "mlp.dense_4h_to_h"),
        ],
    }
    .apply(hf)
}

/// Granite MoE's HF name of its router, which `to_hf` names the Qwen way (`mlp.gate`):
/// `block_sparse_moe.router.layer`.
pub fn granite_moe_hf(hf: &str) -> Option<String> {
    let (head, rest) = hf.split_once(".mlp.gate.")?;
    Some(format!("{head}.block_sparse_moe.router.layer.{rest}"))
}

/// Granite's "swash" models' HF name of their router, which `to_hf` names the Qwen way
/// (`mlp.gate`): `block_sparse_moe.router` (Granite MoE's `router.layer` one level up).
pub fn granite_swash_hf(hf: &str) -> Option<String> {
    let (head, rest) = hf.split_once(".mlp.gate.")?;
    Some(format!("{head}.block_sparse_moe.router.{rest}"))
}

/// gpt-oss's HF name of its router's tensors, which `to_hf` names the Qwen way (`mlp.gate`):
/// `mlp.router`.
pub fn gpt_oss_hf(hf: &str) -> Option<String> {
    let (head, rest) = hf.split_once(".mlp.gate.")?;
    Some(format!("{head}.mlp.router.{rest}"))
}

/// ERNIE 4.5's HF name of the routers' correction bias `to_hf` names the DeepSeek way
/// (`mlp.gate.e_score_correction_bias`): `mlp.moe_statics.e_score_correction_bias`.
pub fn ernie_moe_hf(hf: &str) -> Option<String> {
    correction_bias_as(hf, "mlp.moe_statics.e_score_correction_bias")
}

/// K-EXAONE's HF name of the routers' correction bias (`mlp.e_score_correction_bias`, beside
/// the router rather than in it).
pub fn exaone_moe_hf(hf: &str) -> Option<String> {
    correction_bias_as(hf, "mlp.e_score_correction_bias")
}

/// The routers' correction bias, which `to_hf` names the DeepSeek way
/// (`mlp.gate.e_score_correction_bias`), under a family's own `name` in the same layer.
fn correction_bias_as(hf: &str, name: &str) -> Option<String> {
    let head = hf.strip_suffix(".mlp.gate.e_score_correction_bias")?;
    Some(format!("{head}.{name}"))
}

/// Granite 4.0-H's HF name of a Mamba-2 tensor `to_hf` names as Qwen3-Next's linear
/// attention's (llama.cpp names both `ssm_*`): `mamba.in_proj`, `mamba.conv1d`, `mamba.A_log`,
/// `mamba.dt_bias`, `mamba.D`, `mamba.norm`, `mamba.out_proj`.
pub fn mamba_hf(hf: &str) -> Option<String> {
    let (head, rest) = hf.split_once(".linear_attn.")?;
    let rest = match rest.split_once('.') {
        Some(("in_proj_qkvz", suffix)) => format!("in_proj.{suffix}"),
        Some((
            "conv1d" | "norm" | "out_proj" | "x_proj" | "dt_proj" | "dt_layernorm" | "b_layernorm"
            | "c_layernorm",
            _,
        )) => rest.to_string(),
        None if matches!(rest, "A_log" | "dt_bias" | "D") => rest.to_string(),
        _ => return None,
    };
    Some(format!("{head}.mamba.{rest}"))
}

/// Nemotron-H's HF name of a tensor `to_hf` names the llama way, under `prefix` (checkouts:
/// `backbone`): the embeddings `embeddings`, the final norm `norm_f`, each layer's one norm
/// `norm` (before its mixer or its FFN), and its one module `mixer`: the attention's and
/// the MLP's projections, the experts with their router `gate`, Mamba-2's tensors as
/// `mamba_hf` names them.
pub fn nemotron_h_hf(hf: &str, prefix: &str) -> Option<String> {
    let rest = hf.strip_prefix("model.")?;
    let named = if let Some(suffix) = rest.strip_prefix("embed_tokens.") {
        format!("embeddings.{suffix}")
    } else if let Some(suffix) = rest.strip_prefix("norm.") {
        format!("norm_f.{suffix}")
    } else {
        let (l, part) = rest.strip_prefix("layers.")?.split_once('.')?;
        let (module, tail) = part.split_once('.')?;
        let part = match module {
            "input_layernorm" | "post_attention_layernorm" => format!("norm.{tail}"),
            "self_attn" | "mlp" => format!("mixer.{tail}"),
            "linear_attn" => {
                let mamba = mamba_hf(hf)?;
                format!("mixer.{}", mamba.split_once(".mamba.")?.1)
            }
            _ => return None,
        };
        format!("layers.{l}.{part}")
    };
    Some(format!("{prefix}.{named}"))
}

/// Mamba-1's HF name of its dt product's bias, which `to_hf` names as Qwen3-Next's `dt_bias`:
/// `backbone.layers.N.mixer.dt_proj.bias`.
pub fn mamba1_hf(hf: &str) -> Option<String> {
    let l = hf
        .strip_prefix("model.layers.")?
        .strip_suffix(".linear_attn.dt_bias")?;
    Some(format!("backbone.layers.{l}.mixer.dt_proj.bias"))
}

/// Bamba's HF name of a tensor `to_hf` names the llama way: the FFN under `feed_forward`
/// after `pre_ff_layernorm`, the last norm `final_layernorm` (its Mamba-2 layers' as
/// `mamba_hf` names them).
pub fn bamba_hf(hf: &str) -> Option<String> {
    if let Some(suffix) = hf.strip_prefix("model.norm.") {
        return Some(format!("model.final_layernorm.{suffix}"));
    }
    if let Some((head, rest)) = hf.split_once(".post_attention_layernorm.") {
        return Some(format!("{head}.pre_ff_layernorm.{rest}"));
    }
    let (head, rest) = hf.split_once(".mlp.")?;
    Some(format!("{head}.feed_forward.{rest}"))
}

/// Jamba's HF name of its Mamba-1 dt product's bias, which `to_hf` names as Qwen3-Next's
/// `dt_bias` (`mamba.dt_proj.bias`), and of a router, which `to_hf` names the Qwen way
/// (`feed_forward.router`). Its FFN and norms are Bamba's (`bamba_hf`), its other Mamba-1
/// tensors `mamba_hf`'s.
pub fn jamba_hf(hf: &str) -> Option<String> {
    if let Some(head) = hf.strip_suffix(".linear_attn.dt_bias") {
        return Some(format!("{head}.mamba.dt_proj.bias"));
    }
    let head = hf.strip_suffix(".mlp.gate.weight")?;
    Some(format!("{head}.feed_forward.router.weight"))
}

/// AFMoE's HF name of a tensor `to_hf` names otherwise (with Gemma's norm names): the FFN's
/// norms `pre_mlp_layernorm` / `post_mlp_layernorm`, the attention's gate product
/// `self_attn.gate_proj` (`to_hf`: Qwen3.5's `linear_attn.in_proj_z`), the router
/// `mlp.router.gate` and its correction bias `mlp.expert_bias`.
pub fn afmoe_hf(hf: &str) -> Option<String> {
    let renames = [
        (".pre_feedforward_layernorm.", ".pre_mlp_layernorm."),
        (".post_feedforward_layernorm.", ".post_mlp_layernorm."),
        (".linear_attn.in_proj_z.", ".self_attn.gate_proj."),
        (".mlp.gate.weight", ".mlp.router.gate.weight"),
    ];
    first_renamed(hf, &renames).or_else(|| correction_bias_as(hf, "mlp.expert_bias"))
}

/// `hf` with the first of `renames` (`from`, `to`) it contains replaced; None where it holds
/// none of them.
fn first_renamed(hf: &str, renames: &[(&str, &str)]) -> Option<String> {
    renames.iter().find_map(|(from, to)| {
        let (head, rest) = hf.split_once(from)?;
        Some(format!("{head}{to}{rest}"))
    })
}

/// OLMo Hybrid's HF name of a DeltaNet tensor `to_hf` names as attention's q/k/v or as
/// Qwen3.5's DeltaNet's: its products under `linear_attn` (`q_proj`, `k_proj`, `v_proj`,
/// `g_proj`, `b_proj`, `a_proj`, `o_proj`), its gated norm `o_norm`; and its checkouts' norm
/// names (`attention_layer_norm` for `input_layernorm`, `feedforward_layer_norm` for
/// `post_attention_layernorm`, as transformers renames them at load).
pub fn olmo_hybrid_hf(hf: &str) -> Option<String> {
    let renames = [
        (".input_layernorm.", ".attention_layer_norm."),
        (".post_attention_layernorm.", ".feedforward_layer_norm."),
        (".self_attn.q_proj.", ".linear_attn.q_proj."),
        (".self_attn.k_proj.", ".linear_attn.k_proj."),
        (".self_attn.v_proj.", ".linear_attn.v_proj."),
        (".linear_attn.in_proj_z.", ".linear_attn.g_proj."),
        (".linear_attn.in_proj_b.", ".linear_attn.b_proj."),
        (".linear_attn.in_proj_a.", ".linear_attn.a_proj."),
        (".linear_attn.out_proj.", ".linear_attn.o_proj."),
        (".linear_attn.norm.", ".linear_attn.o_norm."),
    ];
    first_renamed(hf, &renames)
}

/// Kimi Linear's HF name of a tensor `to_hf` names as Qwen3-Next's DeltaNet's or under `mlp`:
/// its Kimi Delta Attention's β product, A_log, dt_bias and output norm under `self_attn`
/// (`b_proj`, `o_norm`); the router, its correction bias, the shared experts (and, in
/// transformers 5's saves, the first layer's dense MLP) under `block_sparse_moe` (the routed
/// experts are Mixtral's, `mixtral_hf`).
pub fn kimi_linear_hf(hf: &str) -> Option<String> {
    if let Some((head, rest)) = hf.split_once(".linear_attn.") {
        let rest = match rest.split_once('.') {
            Some(("in_proj_b", suffix)) => format!("b_proj.{suffix}"),
            Some(("norm", suffix)) => format!("o_norm.{suffix}"),
            None if matches!(rest, "A_log" | "dt_bias") => rest.to_string(),
            _ => return None,
        };
        return Some(format!("{head}.self_attn.{rest}"));
    }
    let (head, rest) = hf.split_once(".mlp.")?;
    if rest.starts_with("experts.") {
        return None;
    }
    Some(format!("{head}.block_sparse_moe.{rest}"))
}

/// Qwen3.5's HF name of its DeltaNet's q/k/v product, which `to_hf` names as Phi-3's joined
/// attention product (llama.cpp names both `attn_qkv`): `linear_attn.in_proj_qkv`.
pub fn qwen3_5_hf(hf: &str) -> Option<String> {
    let (head, suffix) = hf.split_once(".self_attn.qkv_proj.")?;
    Some(format!("{head}.linear_attn.in_proj_qkv.{suffix}"))
}

/// Qwen2-MoE's HF name of a shared-expert tensor `to_hf` names the DeepSeek way
/// (`mlp.shared_experts.*`): `mlp.shared_expert.*`.
pub fn qwen2_moe_hf(hf: &str) -> Option<String> {
    let (head, rest) = hf.split_once(".mlp.shared_experts.")?;
    Some(format!("{head}.mlp.shared_expert.{rest}"))
}

/// Llama 4's HF name of an FFN tensor `to_hf` names the Qwen/DeepSeek way (`mlp.*`): under
/// `feed_forward`, the router as `router`, the shared expert as `shared_expert`.
pub fn llama4_hf(hf: &str) -> Option<String> {
    let (head, rest) = hf.split_once(".mlp.")?;
    let rest = match rest {
        "gate.weight" => "router.weight".to_string(),
        _ => match rest.strip_prefix("shared_experts.") {
            Some(shared) => format!("shared_expert.{shared}"),
            None => rest.to_string(),
        },
    };
    Some(format!("{head}.feed_forward.{rest}"))
}

/// Canonical name of expert `e`'s `what` (`ffn_gate_exps`, `ffn_up_exps`, `ffn_down_exps`) in
/// layer `l`: llama.cpp's name of the tensor holding every expert, with the expert's index.
pub fn expert(l: usize, what: &str, e: usize) -> String {
    format!("blk.{l}.{what}.{e}.weight")
}

/// HF names of the mixture-of-experts tensors (`part` is the canonical name between the layer
/// and the suffix): the router, its correction bias, one expert's projections, the shared
/// experts'.
fn expert_to_hf(part: &str, suffix: &str) -> Option<String> {
    let projection = |p: &str| match p {
        "ffn_gate" => Some("gate_proj"),
        "ffn_up" => Some("up_proj"),
        "ffn_down" => Some("down_proj"),
        _ => None,
    };
    match (part, suffix) {
        ("ffn_gate_inp", "weight") => return Some("mlp.gate.weight".into()),
        ("ffn_gate_inp", "bias") => return Some("mlp.gate.bias".into()),
        ("exp_probs_b", "bias") => return Some("mlp.gate.e_score_correction_bias".into()),
        ("ffn_gate_inp_shexp", "weight") => return Some("mlp.shared_expert_gate.weight".into()),
        _ => {}
    }
    if let Some(p) = part.strip_suffix("_shexp").and_then(projection) {
        return Some(format!("mlp.shared_experts.{p}.{suffix}"));
    }
    let (what, e) = part.split_once('.')?;
    let e: usize = e.parse().ok()?;
    let p = what.strip_suffix("_exps").and_then(projection)?;
    Some(format!("mlp.experts.{e}.{p}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_qwen3_next_linear_attention_to_its_checkouts() {
        let hf = |name: &str| to_hf(name, HfNormNaming::Llama);
        for (canonical, checkout) in [
            (
                "blk.0.ssm_in.weight",
                "model.layers.0.linear_attn.in_proj_qkvz.weight",
            ),
            (
                "blk.0.ssm_ba.weight",
                "model.layers.0.linear_attn.in_proj_ba.weight",
            ),
            (
                "blk.2.ssm_conv1d.weight",
                "model.layers.2.linear_attn.conv1d.weight",
            ),
            ("blk.2.ssm_a_log.weight", "model.layers.2.linear_attn.A_log"),
            ("blk.2.ssm_dt.bias", "model.layers.2.linear_attn.dt_bias"),
            (
                "blk.1.ssm_norm.weight",
                "model.layers.1.linear_attn.norm.weight",
            ),
            (
                "blk.1.ssm_out.weight",
                "model.layers.1.linear_attn.out_proj.weight",
            ),
            (
                "blk.1.attn_gate.weight",
                "model.layers.1.linear_attn.in_proj_z.weight",
            ),
            (
                "blk.1.ssm_beta.weight",
                "model.layers.1.linear_attn.in_proj_b.weight",
            ),
            (
                "blk.1.ssm_alpha.weight",
                "model.layers.1.linear_attn.in_proj_a.weight",
            ),
        ] {
            assert_eq!(hf(canonical).as_deref(), Some(checkout), "{canonical}");
        }
        assert_eq!(
            qwen3_5_hf(&hf("blk.0.attn_qkv.weight").unwrap()).as_deref(),
            Some("model.layers.0.linear_attn.in_proj_qkv.weight")
        );
        // Granite 4.0-H's Mamba-2 layers under the same canonical names.
        for (canonical, checkout) in [
            ("blk.0.ssm_in.weight", "model.layers.0.mamba.in_proj.weight"),
            ("blk.0.ssm_conv1d.bias", "model.layers.0.mamba.conv1d.bias"),
            ("blk.0.ssm_a_log.weight", "model.layers.0.mamba.A_log"),
            ("blk.0.ssm_d.weight", "model.layers.0.mamba.D"),
            ("blk.0.ssm_norm.weight", "model.layers.0.mamba.norm.weight"),
        ] {
            assert_eq!(mamba_hf(&hf(canonical).unwrap()).as_deref(), Some(checkout));
        }
        // Nemotron-H's: one norm and one mixer module a layer, under `backbone`.
        for (canonical, checkout) in [
            ("token_embd.weight", "backbone.embeddings.weight"),
            ("output_norm.weight", "backbone.norm_f.weight"),
            ("blk.0.attn_norm.weight", "backbone.layers.0.norm.weight"),
            ("blk.1.ffn_norm.weight", "backbone.layers.1.norm.weight"),
            (
                "blk.0.ssm_in.weight",
                "backbone.layers.0.mixer.in_proj.weight",
            ),
            ("blk.0.ssm_a_log.weight", "backbone.layers.0.mixer.A_log"),
            ("blk.0.ssm_dt.bias", "backbone.layers.0.mixer.dt_bias"),
            (
                "blk.2.attn_q.weight",
                "backbone.layers.2.mixer.q_proj.weight",
            ),
            (
                "blk.2.attn_output.weight",
                "backbone.layers.2.mixer.o_proj.weight",
            ),
            (
                "blk.1.ffn_up.weight",
                "backbone.layers.1.mixer.up_proj.weight",
            ),
            (
                "blk.3.ffn_gate_inp.weight",
                "backbone.layers.3.mixer.gate.weight",
            ),
            (
                "blk.3.exp_probs_b.bias",
                "backbone.layers.3.mixer.gate.e_score_correction_bias",
            ),
            (
                "blk.3.ffn_down_shexp.weight",
                "backbone.layers.3.mixer.shared_experts.down_proj.weight",
            ),
        ] {
            let named = nemotron_h_hf(&hf(canonical).unwrap(), "backbone");
            assert_eq!(named.as_deref(), Some(checkout), "{canonical}");
        }
        // Mamba-1's.
        for (canonical, checkout) in [
            (
                "blk.0.ssm_x.weight",
                "backbone.layers.0.mixer.x_proj.weight",
            ),
            (
                "blk.0.ssm_dt.weight",
                "backbone.layers.0.mixer.dt_proj.weight",
            ),
        ] {
            let named = nemotron_h_hf(&hf(canonical).unwrap(), "backbone");
            assert_eq!(named.as_deref(), Some(checkout), "{canonical}");
        }
        assert_eq!(
            mamba1_hf(&hf("blk.2.ssm_dt.bias").unwrap()).as_deref(),
            Some("backbone.layers.2.mixer.dt_proj.bias")
        );
        // Bamba's.
        for (canonical, checkout) in [
            ("output_norm.weight", "model.final_layernorm.weight"),
            (
                "blk.1.ffn_norm.weight",
                "model.layers.1.pre_ff_layernorm.weight",
            ),
            (
                "blk.1.ffn_gate.weight",
                "model.layers.1.feed_forward.gate_proj.weight",
            ),
        ] {
            assert_eq!(bamba_hf(&hf(canonical).unwrap()).as_deref(), Some(checkout));
        }
        // Jamba's: its own, Mamba-1's under `mamba`, its experts under `feed_forward`.
        let jamba = |canonical: &str| jamba_hf(&hf(canonical).unwrap());
        assert_eq!(
            jamba("blk.2.ssm_dt.bias").as_deref(),
            Some("model.layers.2.mamba.dt_proj.bias")
        );
        assert_eq!(
            jamba("blk.1.ffn_gate_inp.weight").as_deref(),
            Some("model.layers.1.feed_forward.router.weight")
        );
        assert_eq!(
            mamba_hf(&hf("blk.0.ssm_b_norm.weight").unwrap()).as_deref(),
            Some("model.layers.0.mamba.b_layernorm.weight")
        );
        assert_eq!(
            bamba_hf(&hf(&expert(1, "ffn_up_exps", 3)).unwrap()).as_deref(),
            Some("model.layers.1.feed_forward.experts.3.up_proj.weight")
        );
        assert_eq!(
            granite_swash_hf(&hf("blk.1.ffn_gate_inp.weight").unwrap()).as_deref(),
            Some("model.layers.1.block_sparse_moe.router.weight")
        );
        // AFMoE's (Gemma's norm names).
        let gemma = |canonical: &str| to_hf(canonical, HfNormNaming::Gemma).unwrap();
        for (canonical, checkout) in [
            (
                "blk.1.ffn_norm.weight",
                "model.layers.1.pre_mlp_layernorm.weight",
            ),
            (
                "blk.1.post_ffw_norm.weight",
                "model.layers.1.post_mlp_layernorm.weight",
            ),
            (
                "blk.0.attn_gate.weight",
                "model.layers.0.self_attn.gate_proj.weight",
            ),
            (
                "blk.2.ffn_gate_inp.weight",
                "model.layers.2.mlp.router.gate.weight",
            ),
            ("blk.2.exp_probs_b.bias", "model.layers.2.mlp.expert_bias"),
        ] {
            assert_eq!(afmoe_hf(&gemma(canonical)).as_deref(), Some(checkout));
        }
        // Kimi Linear's.
        for (canonical, checkout) in [
            (
                "blk.0.ssm_beta.weight",
                "model.layers.0.self_attn.b_proj.weight",
            ),
            ("blk.0.ssm_a_log.weight", "model.layers.0.self_attn.A_log"),
            ("blk.0.ssm_dt.bias", "model.layers.0.self_attn.dt_bias"),
            (
                "blk.0.ssm_norm.weight",
                "model.layers.0.self_attn.o_norm.weight",
            ),
            (
                "blk.1.exp_probs_b.bias",
                "model.layers.1.block_sparse_moe.gate.e_score_correction_bias",
            ),
            (
                "blk.1.ffn_up_shexp.weight",
                "model.layers.1.block_sparse_moe.shared_experts.up_proj.weight",
            ),
        ] {
            let named = kimi_linear_hf(&hf(canonical).unwrap());
            assert_eq!(named.as_deref(), Some(checkout), "{canonical}");
        }
        assert_eq!(
            hf("blk.0.ssm_conv1d_k.weight").as_deref(),
            Some("model.layers.0.self_attn.k_conv1d.weight")
        );
        let expert = nemotron_h_hf(&hf(&expert(3, "ffn_up_exps", 1)).unwrap(), "backbone");
        assert_eq!(
            expert.as_deref(),
            Some("backbone.layers.3.mixer.experts.1.up_proj.weight")
        );
    }

    #[test]
    fn maps_lfm2_names_to_its_checkouts() {
        let hf = |name: &str| lfm2_hf(&to_hf(name, HfNormNaming::Llama).unwrap());
        assert_eq!(
            hf("blk.2.attn_norm.weight").as_deref(),
            Some("model.layers.2.operator_norm.weight")
        );
        assert_eq!(
            hf("blk.0.ffn_gate.weight").as_deref(),
            Some("model.layers.0.feed_forward.w1.weight")
        );
        assert_eq!(
            hf("blk.1.attn_k_norm.weight").as_deref(),
            Some("model.layers.1.self_attn.k_layernorm.weight")
        );
        assert_eq!(
            hf("output_norm.weight").as_deref(),
            Some("model.embedding_norm.weight")
        );
        assert_eq!(
            to_hf("blk.3.shortconv.in_proj.weight", HfNormNaming::Llama).as_deref(),
            Some("model.layers.3.conv.in_proj.weight")
        );
        assert_eq!(hf("blk.0.attn_q.weight"), None, "named as llama's");
    }

    #[test]
    fn maps_phi_names_to_its_checkouts() {
        let hf = |name: &str| phi_hf(&to_hf(name, HfNormNaming::Llama).unwrap());
        assert_eq!(
            hf("blk.4.attn_output.bias").as_deref(),
            Some("model.layers.4.self_attn.dense.bias")
        );
        assert_eq!(
            hf("blk.0.ffn_up.weight").as_deref(),
            Some("model.layers.0.mlp.fc1.weight")
        );
        assert_eq!(
            hf("blk.1.ffn_down.bias").as_deref(),
            Some("model.layers.1.mlp.fc2.bias")
        );
        assert_eq!(
            hf("output_norm.bias").as_deref(),
            Some("model.final_layernorm.bias")
        );
        assert_eq!(hf("blk.0.attn_norm.weight"), None, "named as llama's");
    }

    #[test]
    fn maps_gpt_neox_names_to_its_checkouts() {
        let hf = |name: &str| gpt_neox_hf(&to_hf(name, HfNormNaming::Llama).unwrap());
        assert_eq!(
            hf("token_embd.weight").as_deref(),
            Some("gpt_neox.embed_in.weight")
        );
        assert_eq!(hf("output.weight").as_deref(), Some("embed_out.weight"));
        assert_eq!(
            hf("output_norm.bias").as_deref(),
            Some("gpt_neox.final_layer_norm.bias")
        );
        assert_eq!(
            hf("blk.3.attn_qkv.bias").as_deref(),
            Some("gpt_neox.layers.3.attention.query_key_value.bias")
        );
        assert_eq!(
            hf("blk.0.ffn_norm.weight").as_deref(),
            Some("gpt_neox.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(
            hf("blk.1.ffn_down.weight").as_deref(),
            Some("gpt_neox.layers.1.mlp.dense_4h_to_h.weight")
        );
        assert_eq!(hf("blk.1.attn_q.weight"), None);
    }

    #[test]
    fn maps_gpt2_names_to_its_checkouts() {
        let hf = |name: &str| gpt2_hf(&to_hf(name, HfNormNaming::Llama).unwrap());
        assert_eq!(
            hf("position_embd.weight").as_deref(),
            Some("transformer.wpe.weight")
        );
        assert_eq!(
            hf("blk.2.attn_qkv.bias").as_deref(),
            Some("transformer.h.2.attn.c_attn.bias")
        );
        assert_eq!(
            hf("blk.0.ffn_down.weight").as_deref(),
            Some("transformer.h.0.mlp.c_proj.weight")
        );
        assert_eq!(
            gpt2_bare_hf(&to_hf("output_norm.bias", HfNormNaming::Llama).unwrap()).as_deref(),
            Some("ln_f.bias")
        );
        assert_eq!(hf("blk.0.attn_q.weight"), None);
    }

    #[test]
    fn maps_opt_names_to_its_checkouts() {
        let hf = |name: &str| opt_hf(&to_hf(name, HfNormNaming::Llama).unwrap());
        for (name, want) in [
            (
                "position_embd.weight",
                "model.decoder.embed_positions.weight",
            ),
            ("output_norm.bias", "model.decoder.final_layer_norm.bias"),
            (
                "blk.3.attn_norm.weight",
                "model.decoder.layers.3.self_attn_layer_norm.weight",
            ),
            (
                "blk.3.ffn_norm.bias",
                "model.decoder.layers.3.final_layer_norm.bias",
            ),
            (
                "blk.0.attn_output.bias",
                "model.decoder.layers.0.self_attn.out_proj.bias",
            ),
            ("blk.1.ffn_up.weight", "model.decoder.layers.1.fc1.weight"),
            ("blk.1.ffn_down.weight", "model.decoder.layers.1.fc2.weight"),
        ] {
            assert_eq!(hf(name).as_deref(), Some(want), "{name}");
        }
        assert_eq!(
            opt_bare_hf(&to_hf("token_embd.weight", HfNormNaming::Llama).unwrap()).as_deref(),
            Some("decoder.embed_tokens.weight")
        );
        assert_eq!(hf("blk.0.ffn_gate.weight"), None);
    }

    #[test]
    fn maps_norms_per_family() {
        assert_eq!(
            to_hf("blk.2.ffn_norm.weight", HfNormNaming::Llama).as_deref(),
            Some("model.layers.2.post_attention_layernorm.weight")
        );
        assert_eq!(
            to_hf("blk.2.ffn_norm.weight", HfNormNaming::Gemma).as_deref(),
            Some("model.layers.2.pre_feedforward_layernorm.weight")
        );
        assert_eq!(
            to_hf("blk.0.post_attention_norm.weight", HfNormNaming::Gemma).as_deref(),
            Some("model.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(
            to_hf("blk.0.attn_q.bias", HfNormNaming::Llama).as_deref(),
            Some("model.layers.0.self_attn.q_proj.bias")
        );
        assert_eq!(
            to_hf("output.weight", HfNormNaming::Llama).as_deref(),
            Some("lm_head.weight")
        );
        assert_eq!(
            to_hf("cls.output.weight", HfNormNaming::Llama).as_deref(),
            Some("score.weight")
        );
        assert_eq!(to_hf("blk.x.attn_q.weight", HfNormNaming::Llama), None);
    }

    #[test]
    fn maps_experts_and_latent_attention() {
        let hf = |n: &str| to_hf(n, HfNormNaming::Llama);
        assert_eq!(
            hf(&expert(3, "ffn_down_exps", 12)).as_deref(),
            Some("model.layers.3.mlp.experts.12.down_proj.weight")
        );
        assert_eq!(
            hf("blk.1.ffn_up_shexp.weight").as_deref(),
            Some("model.layers.1.mlp.shared_experts.up_proj.weight")
        );
        assert_eq!(
            hf("blk.1.ffn_gate_inp.weight").as_deref(),
            Some("model.layers.1.mlp.gate.weight")
        );
        assert_eq!(
            hf("blk.1.exp_probs_b.bias").as_deref(),
            Some("model.layers.1.mlp.gate.e_score_correction_bias")
        );
        assert_eq!(
            hf("blk.0.attn_kv_a_mqa.weight").as_deref(),
            Some("model.layers.0.self_attn.kv_a_proj_with_mqa.weight")
        );
        assert_eq!(hf("blk.0.ffn_gate_exps.x.weight"), None);
        let lfm2_moe = |name: &str| lfm2_moe_hf(&to_hf(name, HfNormNaming::Llama).unwrap());
        assert_eq!(
            lfm2_moe(&expert(3, "ffn_gate_exps", 7)).as_deref(),
            Some("model.layers.3.feed_forward.experts.7.w1.weight")
        );
        assert_eq!(
            lfm2_moe("blk.3.ffn_gate_inp.weight").as_deref(),
            Some("model.layers.3.feed_forward.gate.weight")
        );
        assert_eq!(
            lfm2_moe("blk.3.exp_probs_b.bias").as_deref(),
            Some("model.layers.3.feed_forward.expert_bias")
        );
        assert_eq!(
            mixtral_hf("model.layers.2.mlp.experts.5.up_proj.weight").as_deref(),
            Some("model.layers.2.block_sparse_moe.experts.5.w3.weight")
        );
        assert_eq!(
            mixtral_hf("model.layers.2.mlp.gate.weight").as_deref(),
            Some("model.layers.2.block_sparse_moe.gate.weight")
        );
        assert_eq!(mixtral_hf("model.layers.2.mlp.up_proj.weight"), None);
        assert_eq!(
            hf("blk.3.attn_sinks.weight").as_deref(),
            Some("model.layers.3.self_attn.sinks")
        );
        assert_eq!(
            gpt_oss_hf(&hf("blk.3.ffn_gate_inp.bias").unwrap()).as_deref(),
            Some("model.layers.3.mlp.router.bias")
        );
    }
}
