#!/usr/bin/env python3
"""A llama.cpp GGUF of a real model's shapes with random f16 weights (uniform, std 0.02, as
`candor bench --load-format dummy` makes them) and a stand-in SPM vocabulary, for speed side by
side with llama.cpp where the real weights cannot be downloaded:

    pip install numpy gguf==0.19.0        # gguf-py with LFM2's tensor names (0.18 and later)
    python3 benches/random_gguf.py lfm2-1.2b lfm2-1.2b-f16.gguf     # or pythia-1.4b
    llama-quantize lfm2-1.2b-f16.gguf lfm2-1.2b-q4_k_m.gguf Q4_K_M
    candor bench -m lfm2-1.2b-q4_k_m.gguf ...; llama-bench -m lfm2-1.2b-q4_k_m.gguf ...

Shapes: lfm2-1.2b (LiquidAI/LFM2-1.2B: short convolutions in ten of sixteen layers) and
pythia-1.4b (EleutherAI/pythia-1.4b, `gptneox`: parallel blocks with two biased LayerNorms,
q/k/v in one biased `attn_qkv`, a quarter of each head rotated). Speed only: the text such a
model writes means nothing.
"""
import sys
import numpy as np
import gguf

rng = np.random.default_rng(0)
A = 0.02 * 3 ** 0.5


def m(*shape):
    return rng.uniform(-A, A, size=shape).astype(np.float16)


def norm(n):
    return rng.uniform(0.9, 1.1, size=(n,)).astype(np.float32)


def bias(n):
    return rng.uniform(-0.1, 0.1, size=(n,)).astype(np.float32)


def vocabulary(w, n):
    """A stand-in SPM vocabulary of `n` tokens (byte fallbacks, then made-up pieces)."""
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    toks += [f"\u2581t{i}" for i in range(n - len(toks))]
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(n - 259)])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (n - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)


def lfm2_1_2b(out):
    H, FF, L, HEADS, KV, VOCAB, K = 2048, 8192, 16, 32, 8, 65536, 3
    attn = [2, 5, 8, 10, 12, 14]
    w = gguf.GGUFWriter(out, "lfm2")
    w.add_context_length(128000)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FF)
    w.add_block_count(L)
    w.add_head_count(HEADS)
    w.add_head_count_kv([KV if l in attn else 0 for l in range(L)])
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(VOCAB)
    w.add_shortconv_l_cache(K)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    vocabulary(w, VOCAB)
    w.add_tensor("token_embd.weight", m(VOCAB, H))
    w.add_tensor("token_embd_norm.weight", norm(H))
    for l in range(L):
        p = f"blk.{l}."
        w.add_tensor(p + "attn_norm.weight", norm(H))
        w.add_tensor(p + "ffn_norm.weight", norm(H))
        w.add_tensor(p + "ffn_gate.weight", m(FF, H))
        w.add_tensor(p + "ffn_up.weight", m(FF, H))
        w.add_tensor(p + "ffn_down.weight", m(H, FF))
        if l in attn:
            d = H // HEADS
            w.add_tensor(p + "attn_q.weight", m(H, H))
            w.add_tensor(p + "attn_k.weight", m(KV * d, H))
            w.add_tensor(p + "attn_v.weight", m(KV * d, H))
            w.add_tensor(p + "attn_output.weight", m(H, H))
            w.add_tensor(p + "attn_q_norm.weight", norm(d))
            w.add_tensor(p + "attn_k_norm.weight", norm(d))
        else:
            w.add_tensor(p + "shortconv.in_proj.weight", m(3 * H, H))
            conv = rng.uniform(-A, A, size=(H, K)).astype(np.float32)
            w.add_tensor(p + "shortconv.conv.weight", conv)
            w.add_tensor(p + "shortconv.out_proj.weight", m(H, H))
    return w


def pythia_1_4b(out):
    H, L, HEADS, VOCAB = 2048, 24, 16, 50304
    FF = 4 * H
    w = gguf.GGUFWriter(out, "gptneox")
    w.add_context_length(2048)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FF)
    w.add_block_count(L)
    w.add_head_count(HEADS)
    w.add_rope_dimension_count(H // HEADS // 4)
    w.add_parallel_residual(True)
    w.add_layer_norm_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    vocabulary(w, VOCAB)
    w.add_tensor("token_embd.weight", m(VOCAB, H))
    w.add_tensor("output_norm.weight", norm(H))
    w.add_tensor("output_norm.bias", bias(H))
    w.add_tensor("output.weight", m(VOCAB, H))
    for l in range(L):
        p = f"blk.{l}."
        for n in ("attn_norm", "ffn_norm"):
            w.add_tensor(p + n + ".weight", norm(H))
            w.add_tensor(p + n + ".bias", bias(H))
        for name, rows, cols in (
            ("attn_qkv", 3 * H, H),
            ("attn_output", H, H),
            ("ffn_up", FF, H),
            ("ffn_down", H, FF),
        ):
            w.add_tensor(p + name + ".weight", m(rows, cols))
            w.add_tensor(p + name + ".bias", bias(rows))
    return w


SHAPES = {"lfm2-1.2b": lfm2_1_2b, "pythia-1.4b": pythia_1_4b}

if len(sys.argv) != 3 or sys.argv[1] not in SHAPES:
    sys.exit(f"usage: random_gguf.py {{{'|'.join(SHAPES)}}} OUT.gguf")
writer = SHAPES[sys.argv[1]](sys.argv[2])
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()
print("wrote", sys.argv[2])
