#!/usr/bin/env python3
"""A llama.cpp `lfm2` GGUF of LFM2-1.2B's shapes with random f16 weights (uniform, std 0.02, as
`candor bench --load-format dummy` makes them) and a stand-in SPM vocabulary of 65536 tokens,
for speed side by side with llama.cpp where the real weights cannot be downloaded:

    pip install numpy gguf==0.19.0        # gguf-py with LFM2's tensor names (0.18 and later)
    python3 benches/lfm2_random_gguf.py lfm2-1.2b-f16.gguf
    llama-quantize lfm2-1.2b-f16.gguf lfm2-1.2b-q4_k_m.gguf Q4_K_M
    candor bench -m lfm2-1.2b-q4_k_m.gguf ...; llama-bench -m lfm2-1.2b-q4_k_m.gguf ...

Speed only: the text such a model writes means nothing.
"""
import sys
import numpy as np
import gguf

out = sys.argv[1]
H, FF, L, HEADS, KV, VOCAB, K = 2048, 8192, 16, 32, 8, 65536, 3
ATTN = [2, 5, 8, 10, 12, 14]
rng = np.random.default_rng(0)
a = 0.02 * 3 ** 0.5
def m(*shape):
    return rng.uniform(-a, a, size=shape).astype(np.float16)
def norm(n):
    return rng.uniform(0.9, 1.1, size=(n,)).astype(np.float32)

w = gguf.GGUFWriter(out, "lfm2")
w.add_context_length(128000)
w.add_embedding_length(H)
w.add_feed_forward_length(FF)
w.add_block_count(L)
w.add_head_count(HEADS)
w.add_head_count_kv([KV if l in ATTN else 0 for l in range(L)])
w.add_rope_freq_base(1e6)
w.add_layer_norm_rms_eps(1e-5)
w.add_vocab_size(VOCAB)
w.add_shortconv_l_cache(K)
w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
toks += [f"\u2581t{i}" for i in range(VOCAB - len(toks))]
w.add_tokenizer_model("llama")
w.add_token_list(toks)
w.add_token_scores([0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(VOCAB - 259)])
w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (VOCAB - 259))
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_tensor("token_embd.weight", m(VOCAB, H))
w.add_tensor("token_embd_norm.weight", norm(H))
for l in range(L):
    p = f"blk.{l}."
    w.add_tensor(p + "attn_norm.weight", norm(H))
    w.add_tensor(p + "ffn_norm.weight", norm(H))
    w.add_tensor(p + "ffn_gate.weight", m(FF, H))
    w.add_tensor(p + "ffn_up.weight", m(FF, H))
    w.add_tensor(p + "ffn_down.weight", m(H, FF))
    if l in ATTN:
        d = H // HEADS
        w.add_tensor(p + "attn_q.weight", m(H, H))
        w.add_tensor(p + "attn_k.weight", m(KV * d, H))
        w.add_tensor(p + "attn_v.weight", m(KV * d, H))
        w.add_tensor(p + "attn_output.weight", m(H, H))
        w.add_tensor(p + "attn_q_norm.weight", norm(d))
        w.add_tensor(p + "attn_k_norm.weight", norm(d))
    else:
        w.add_tensor(p + "shortconv.in_proj.weight", m(3 * H, H))
        w.add_tensor(p + "shortconv.conv.weight", rng.uniform(-a, a, size=(H, K)).astype(np.float32))
        w.add_tensor(p + "shortconv.out_proj.weight", m(H, H))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", out)
