/*
 * candor_device.h — the custom-device C ABI of candor (version 1.4).
 *
 * A device plugin is a shared library (.so / .dylib / .dll) that exports ONE symbol:
 *
 *     const CandorDeviceApi *candor_device_get_api(uint32_t abi_major, uint32_t abi_minor);
 *
 * candor passes the ABI version it was built against (CANDOR_DEVICE_ABI_MAJOR/MINOR). The plugin
 * returns a pointer to a function table that lives as long as the library is loaded, or NULL when
 * it cannot serve that major version. candor refuses a table whose `abi_major` differs from its
 * own, and reads only the fields that lie within `struct_size`, so later minor versions may append
 * fields at the end without breaking older candor builds (and older plugins keep working with a
 * newer candor: missing trailing fields are treated as "not provided").
 *
 * Rules of the boundary
 *  - Plain C99: fixed-width integers, float, pointers. No C++ types; no exceptions or longjmp may
 *    cross it. Every fallible function returns a CandorStatus; on anything but CANDOR_OK,
 *    `last_error()` returns a human-readable message (valid until the next call).
 *  - candor serialises every call into one plugin behind a lock, so a plugin need not be
 *    thread-safe, and `last_error` may be a plain global.
 *  - Memory is opaque: candor holds CandorBuffer handles returned by `buffer_alloc` and frees
 *    each exactly once with `buffer_free`. Tensors are views into buffers (CandorTensor).
 *  - Ops may run asynchronously (e.g. on a device stream). Host pointers passed to an op (token
 *    ids, positions, slots, block tables, frequencies) are valid only during the call: copy them
 *    if the op is queued. `download` and `synchronize` must wait for queued work; an error of a
 *    queued op may be reported by them.
 *  - A function pointer may be NULL: the op is then unsupported, and candor runs it on its CPU
 *    backend with explicit copies (counted and reported as "fallback" ops).
 *  - `supports_op` must never crash, and must answer for the shapes given (a dimension of 0
 *    means "not known yet": answer for the op in general). Answer 0 for a variant, flag or dtype
 *    you do not know: later minors add codes.
 *  - Codes, flags and dtypes marked "(1.1)" are asked of, passed to and uploaded to a plugin only
 *    when its table says abi_minor >= 1, so a plugin written against 1.0 that never checked
 *    `variant` or `flags` is not misread; those marked "(1.2)" when it says abi_minor >= 2,
 *    "(1.3)" when it says abi_minor >= 3, "(1.4)" when it says abi_minor >= 4.
 *
 * Layouts
 *  - Activations are F32, row-major and contiguous in candor 1.0: `[tokens, features]` or
 *    `[tokens, heads, head_dim]`.
 *  - Weights are stored as read from the model file: F32, F16, BF16 or a GGML block type
 *    (Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, byte-exact as in GGUF), `[out, in]` row-major.
 *    Only dtypes whose bit is set in `dtype_mask` are uploaded; others stay on the host and every
 *    op that uses them falls back to the CPU. Rank-1 weights (norms, biases) are always F32.
 *  - The paged KV cache of a layer is two F32 tensors `[num_slots, kv_heads, head_dim]` with
 *    `slot = block_table[pos / block_size] * block_size + pos % block_size`. (1.1) Or two F16
 *    tensors, half the bytes, where `supports_op` says yes to KV_WRITE and PAGED_ATTENTION with
 *    `dtype` = CANDOR_DTYPE_F16 (`dtype` is the cache's in those two descriptors: F32 in every
 *    1.0 call): kv_write rounds k and v to nearest even, attention reads them widened to f32.
 */
#ifndef CANDOR_DEVICE_H
#define CANDOR_DEVICE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CANDOR_DEVICE_ABI_MAJOR 1u
#define CANDOR_DEVICE_ABI_MINOR 5u

/* Name of the one exported symbol. */
#define CANDOR_DEVICE_ENTRY_POINT "candor_device_get_api"

/* ---- status codes ---- */
typedef int32_t CandorStatus;
#define CANDOR_OK 0
#define CANDOR_ERR_UNSUPPORTED 1      /* op, dtype or shape not implemented */
#define CANDOR_ERR_INVALID_ARGUMENT 2 /* bad handle, shape, stride, index out of range */
#define CANDOR_ERR_OUT_OF_MEMORY 3
#define CANDOR_ERR_DEVICE 4           /* the device or its runtime failed */

/* ---- element / storage types ---- */
typedef uint32_t CandorDtype;
#define CANDOR_DTYPE_F32 0u
#define CANDOR_DTYPE_F16 1u
#define CANDOR_DTYPE_BF16 2u
#define CANDOR_DTYPE_U32 3u
#define CANDOR_DTYPE_Q4_0 4u /* 32 values: f16 d, 16 bytes of nibbles (18 bytes) */
#define CANDOR_DTYPE_Q5_0 5u /* 32 values: f16 d, 4 bytes high bits, 16 bytes nibbles (22 bytes) */
#define CANDOR_DTYPE_Q8_0 6u /* 32 values: f16 d, 32 int8 (34 bytes) */
#define CANDOR_DTYPE_Q4_K 7u /* 256 values, 144 bytes */
#define CANDOR_DTYPE_Q5_K 8u /* 256 values, 176 bytes */
#define CANDOR_DTYPE_Q6_K 9u /* 256 values, 210 bytes */
/* (1.1) 32 values: an e8m0 scale byte (2^(e-127)), 16 bytes of e2m1 nibbles, element i the low
 * nibble of byte i and element i + 16 its high nibble (17 bytes; GGUF type 39, gpt-oss's
 * experts). A plugin without it receives MXFP4 weights as the Q5_0 blocks they are exactly. */
#define CANDOR_DTYPE_MXFP4 10u
#define CANDOR_DTYPE_COUNT 11u
/* Bit of a dtype in `CandorDeviceApi.dtype_mask`. */
#define CANDOR_DTYPE_BIT(d) (UINT64_C(1) << (d))

/* ---- tensors ---- */
#define CANDOR_MAX_RANK 4

/* An opaque device allocation. */
typedef struct CandorBufferImpl *CandorBuffer;

/*
 * A view into a buffer. `shape` and `strides` count elements (for block types: elements of the
 * dequantized tensor; block tensors are always row-major contiguous). Entries past `rank` are 0.
 */
typedef struct CandorTensor {
    CandorBuffer buffer;
    uint64_t offset; /* bytes from the start of the buffer */
    CandorDtype dtype;
    uint32_t rank;
    int64_t shape[CANDOR_MAX_RANK];
    int64_t strides[CANDOR_MAX_RANK];
} CandorTensor;

/* ---- ops ---- */
typedef uint32_t CandorOp;
#define CANDOR_OP_EMBEDDING 0u
#define CANDOR_OP_RMS_NORM 1u
#define CANDOR_OP_ADD_RMS_NORM 2u
#define CANDOR_OP_LINEAR 3u
#define CANDOR_OP_ROPE 4u
#define CANDOR_OP_KV_WRITE 5u
#define CANDOR_OP_PAGED_ATTENTION 6u
#define CANDOR_OP_GLU 7u
#define CANDOR_OP_ADD 8u
#define CANDOR_OP_MUL 9u
#define CANDOR_OP_SCALE 10u
#define CANDOR_OP_SOFTCAP 11u
#define CANDOR_OP_SOFTMAX 12u
#define CANDOR_OP_GATHER_ROWS 13u
#define CANDOR_OP_ARGMAX 14u
#define CANDOR_OP_CAST 15u
#define CANDOR_OP_HEADS_LINEAR 16u /* (1.1) */
#define CANDOR_OP_LAYER_NORM 17u   /* (1.2) */
#define CANDOR_OP_CLAMP 18u        /* (1.5) */
#define CANDOR_OP_XIELU 19u        /* (1.5) */
#define CANDOR_OP_QUANTIZE_ROWS 20u /* (1.5) */
#define CANDOR_OP_MUL_SIGMOID 21u  /* (1.5) */
#define CANDOR_OP_COUNT 21u

/* RoPE pairing (`variant` of CANDOR_OP_ROPE). */
#define CANDOR_ROPE_NEOX 0u        /* dimension i pairs with i + d/2 (HF rotate_half) */
#define CANDOR_ROPE_INTERLEAVED 1u /* dimension 2i pairs with 2i + 1 */

/* GLU activation (`variant` of CANDOR_OP_GLU). */
#define CANDOR_ACT_SILU 0u
#define CANDOR_ACT_GELU_TANH 1u
/* (1.1) gpt-oss's clamped SwiGLU: g = min(gate, 7), u = clamp(up, -7, 7),
 * out = g * sigmoid(1.702 * g) * (u + 1). */
#define CANDOR_ACT_SWIGLU_OAI 2u
/* (1.3) the exact GELU, out = 0.5 * g * (1 + erf(g / sqrt(2))) * up (transformers' `gelu`:
 * GPT-NeoX's FFN). */
#define CANDOR_ACT_GELU_ERF 3u
/* (1.3) the squared ReLU, out = max(g, 0)^2 * up (transformers' `relu2`: Nemotron's FFN). */
#define CANDOR_ACT_RELU2 4u
/* (1.4) the ReLU, out = max(g, 0) * up (transformers' `relu`: OPT's FFN). */
#define CANDOR_ACT_RELU 5u

/* `flags` of CANDOR_OP_PAGED_ATTENTION. */
#define CANDOR_ATTN_SLIDING_WINDOW 1u
#define CANDOR_ATTN_SOFTCAP 2u
/* (1.1) a learned sink logit per head: asked with `paged_attention_sinks` in mind. */
#define CANDOR_ATTN_SINKS 4u
/* (1.5) ALiBi slopes per head: asked with `paged_attention_alibi` in mind. */
#define CANDOR_ATTN_ALIBI 8u
/* `flags` of CANDOR_OP_LINEAR. */
#define CANDOR_LINEAR_BIAS 1u

/*
 * What `supports_op` is asked. `dims` by op (0 = not known yet):
 *   EMBEDDING        {rows, vocab, hidden}          dtype = table dtype
 *   LINEAR           {tokens M, out N, in K}        dtype = weight dtype
 *   RMS_NORM, ADD_RMS_NORM, SOFTMAX, ARGMAX, GATHER_ROWS, GLU, ADD, MUL, SCALE, SOFTCAP,
 *   CLAMP, XIELU, QUANTIZE_ROWS, MUL_SIGMOID (1.5)
 *                    {rows, cols}
 *   ROPE             {tokens, heads, head_dim}      variant = pairing
 *   KV_WRITE         {tokens, kv_heads, head_dim, slots in cache}  dtype = cache (1.1)
 *   PAGED_ATTENTION  {tokens, heads, kv_heads, head_dim}  flags = CANDOR_ATTN_*, dtype = cache
 *   CAST             {elements}                     dtype = source, dtype_out = target
 *   HEADS_LINEAR     {tokens, heads, out, in}       dtype = weight dtype
 */
typedef struct CandorOpDesc {
    CandorOp op;
    CandorDtype dtype;
    CandorDtype dtype_out;
    uint32_t variant;
    uint32_t flags;
    uint32_t reserved;
    int64_t dims[4];
} CandorOpDesc;

/* One sequence of a flattened attention batch. */
typedef struct CandorSeq {
    uint32_t q_start;   /* first row of its queries in the batch */
    uint32_t q_len;     /* number of query rows */
    uint32_t start_pos; /* position of its first query (= tokens cached before) */
    uint32_t num_blocks;
    const uint32_t *block_table; /* host memory, num_blocks entries */
} CandorSeq;

typedef struct CandorAttention {
    uint32_t num_heads;
    uint32_t num_kv_heads; /* num_heads is a multiple of it (grouped-query attention) */
    uint32_t head_dim;
    uint32_t block_size;
    float scale;             /* applied to q.k */
    float softcap;           /* 0: none; else scores become softcap * tanh(score / softcap) */
    uint32_t sliding_window; /* 0: none; else a query at i sees keys j with i - W < j <= i */
    uint32_t reserved;
} CandorAttention;

/*
 * The function table. Ops read their inputs and write `out` tensors that candor allocated with
 * the right shape. Unless said otherwise, every tensor argument is F32, contiguous, row-major.
 */
typedef struct CandorDeviceApi {
    /* sizeof(CandorDeviceApi) as the plugin was compiled: candor reads no field past it. */
    uint32_t struct_size;
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t reserved0;

    /* ---- device facts ---- */
    const char *name;   /* e.g. "Ascend 910B2" */
    const char *vendor; /* e.g. "Huawei" */
    uint64_t dtype_mask; /* CANDOR_DTYPE_BIT of every dtype the device keeps in its buffers */
    CandorStatus (*memory_info)(uint64_t *total_bytes, uint64_t *free_bytes);
    /* Message of the last failed call (never NULL; "" when none). */
    const char *(*last_error)(void);
    /* 1 when the op runs on the device as described, 0 otherwise. */
    int32_t (*supports_op)(const CandorOpDesc *op);

    /* ---- memory ---- */
    CandorStatus (*buffer_alloc)(uint64_t bytes, CandorBuffer *out);
    CandorStatus (*buffer_free)(CandorBuffer buffer);
    CandorStatus (*upload)(CandorBuffer dst, uint64_t offset, const void *src, uint64_t bytes);
    CandorStatus (*download)(CandorBuffer src, uint64_t offset, void *dst, uint64_t bytes);
    CandorStatus (*synchronize)(void);

    /* ---- ops ---- */
    /* out[i, :] = table[ids[i], :]; table [vocab, hidden] in any weight dtype. */
    CandorStatus (*embedding)(const CandorTensor *table, const uint32_t *ids, uint64_t n_ids,
                              const CandorTensor *out);
    /* RMSNorm over the last dimension times w ([cols]). */
    CandorStatus (*rms_norm)(const CandorTensor *x, const CandorTensor *w, float eps,
                             const CandorTensor *out);
    /* sum = x + residual; norm = rms_norm(sum) * w. */
    CandorStatus (*add_rms_norm)(const CandorTensor *x, const CandorTensor *residual,
                                 const CandorTensor *w, float eps, const CandorTensor *sum_out,
                                 const CandorTensor *norm_out);
    /* out[M, N] = x[M, K] . w[N, K]^T (+ bias[N]); w in any weight dtype, bias may be NULL. */
    CandorStatus (*linear)(const CandorTensor *x, const CandorTensor *w, const CandorTensor *bias,
                           const CandorTensor *out);
    /* Rotary embedding of x [tokens, heads, head_dim] at positions[tokens]; angle of pair i at
     * position p is p * inv_freq[i] (n_freq = head_dim / 2); cos/sin are multiplied by mscale. */
    CandorStatus (*rope)(const CandorTensor *x, const uint32_t *positions, const float *inv_freq,
                         uint32_t n_freq, uint32_t pairing, float mscale, const CandorTensor *out);
    /* k_cache[slots[i]] = k[i]; v_cache[slots[i]] = v[i]; k, v [n_slots, kv_heads, head_dim]. */
    CandorStatus (*kv_write)(const CandorTensor *k_cache, const CandorTensor *v_cache,
                             const CandorTensor *k, const CandorTensor *v, const uint32_t *slots,
                             uint64_t n_slots);
    /* Causal attention of q [tokens, heads, head_dim] over each sequence's cached keys (the new
     * ones included) -> out [tokens, heads * head_dim]; rows of no sequence are zero. */
    CandorStatus (*paged_attention)(const CandorTensor *q, const CandorTensor *k_cache,
                                    const CandorTensor *v_cache, const CandorSeq *seqs,
                                    uint64_t n_seqs, const CandorAttention *params,
                                    const CandorTensor *out);
    /* out = act(gate) * up. */
    CandorStatus (*glu)(const CandorTensor *gate, const CandorTensor *up, uint32_t activation,
                        const CandorTensor *out);
    CandorStatus (*add)(const CandorTensor *a, const CandorTensor *b, const CandorTensor *out);
    CandorStatus (*mul)(const CandorTensor *a, const CandorTensor *b, const CandorTensor *out);
    /* out = x * s. */
    CandorStatus (*scale)(const CandorTensor *x, float s, const CandorTensor *out);
    /* out = cap * tanh(x / cap). */
    CandorStatus (*softcap)(const CandorTensor *x, float cap, const CandorTensor *out);
    /* Softmax over the last dimension. */
    CandorStatus (*softmax)(const CandorTensor *x, const CandorTensor *out);
    /* out[i, :] = x[rows[i], :] for a 2-D x. */
    CandorStatus (*gather_rows)(const CandorTensor *x, const uint32_t *rows, uint64_t n_rows,
                                const CandorTensor *out);
    /* out_host[r] = index of the first largest value of row r of a 2-D x (host memory). */
    CandorStatus (*argmax)(const CandorTensor *x, uint32_t *out_host);
    /* Element-wise copy with conversion between F32, F16 and BF16 (same shape). */
    CandorStatus (*cast)(const CandorTensor *src, const CandorTensor *dst);

    /* ---- appended in 1.1 ---- */
    /* paged_attention with a sink logit per head (gpt-oss): sinks is host memory, num_heads
     * floats. Head h's weights over its scores s_j (after scale and softcap) become
     * exp(s_j - m) / (exp(sinks[h] - m) + sum_i exp(s_i - m)), m = max(sinks[h], max_j s_j):
     * the sink takes a share of the softmax and adds no value. The sink is neither scaled nor
     * capped. */
    CandorStatus (*paged_attention_sinks)(const CandorTensor *q, const CandorTensor *k_cache,
                                          const CandorTensor *v_cache, const CandorSeq *seqs,
                                          uint64_t n_seqs, const CandorAttention *params,
                                          const float *sinks, const CandorTensor *out);
    /* A product per head: out[t, h, :] = w[h] . x[t, h, :], x [tokens, heads, in], w [heads,
     * out, in] in any weight dtype, out [tokens, heads, out]. DeepSeek's latent attention takes
     * its queries into the latent space and its outputs out of it with these, and caches the
     * 576-wide latent once per token; without it candor caches every head's keys and values
     * (DeepSeek-V3: 49152 values per token and layer) to run latent attention with the other
     * ops. */
    CandorStatus (*heads_linear)(const CandorTensor *x, const CandorTensor *w,
                                 const CandorTensor *out);

    /* ---- appended in 1.2 ---- */
    /* LayerNorm over the last dimension (Cohere's Command R): each row less its mean, divided
     * by sqrt(biased variance + eps), times w ([cols]), plus bias ([cols]; NULL: none). */
    CandorStatus (*layer_norm)(const CandorTensor *x, const CandorTensor *w,
                               const CandorTensor *bias, float eps, const CandorTensor *out);

    /* ---- appended in 1.5 ---- */
    /* paged_attention with ALiBi positions (BLOOM, MPT, Falcon-RW): alibi is host memory,
     * num_heads slopes; a query at position i adds alibi[h] * (j - i) (exact: j - i is an
     * integer) to its score of key j after the scale and softcap. sinks is NULL or as
     * paged_attention_sinks takes them. */
    CandorStatus (*paged_attention_alibi)(const CandorTensor *q, const CandorTensor *k_cache,
                                          const CandorTensor *v_cache, const CandorSeq *seqs,
                                          uint64_t n_seqs, const CandorAttention *params,
                                          const float *sinks, const float *alibi,
                                          const CandorTensor *out);
    /* out = min(max(x, -limit), limit) elementwise (OLMo's and MPT's clip_qkv on their q/k/v
     * products). */
    CandorStatus (*clamp)(const CandorTensor *x, float limit, const CandorTensor *out);
    /* xIELU elementwise with one layer's numbers (Apertus's FFN activation):
     * x > 0: alpha_p * x^2 + beta * x; else (expm1(min(x, eps)) - x) * alpha_n + beta * x. */
    CandorStatus (*xielu)(const CandorTensor *x, float alpha_p, float alpha_n, float beta,
                          float eps, const CandorTensor *out);
    /* Each row of a 2-D x (BitNet b1.58's product inputs) to `bits`-bit signed integers by its
     * largest magnitude and back: s = (2^(bits-1) - 1) / max(max_i |x_i|, 1e-5), out =
     * clamp(rint(x * s), -2^(bits-1), 2^(bits-1) - 1) / s, ties to even; bits in 2..16. */
    CandorStatus (*quantize_rows)(const CandorTensor *x, uint32_t bits, const CandorTensor *out);
    /* out = x * sigmoid(gate) elementwise, gate of x's element count (Qwen3-Next's gate of
     * the attention's output). */
    CandorStatus (*mul_sigmoid)(const CandorTensor *x, const CandorTensor *gate,
                                const CandorTensor *out);
} CandorDeviceApi;

/* The entry point every plugin exports. */
typedef const CandorDeviceApi *(*CandorGetApiFn)(uint32_t abi_major, uint32_t abi_minor);

#ifdef __cplusplus
}
#endif

#endif /* CANDOR_DEVICE_H */
