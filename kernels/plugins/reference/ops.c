/*
 * The ops of the reference plugin, in plain C on the host. Each op checks its tensors (dtype,
 * contiguity, shapes, ranges) and answers CANDOR_ERR_INVALID_ARGUMENT with a message rather than
 * reading out of bounds. A vendor port replaces the loops with the device library's kernels.
 */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- tensor checks ---- */

static int64_t elems_of(const CandorTensor *t) {
    int64_t n = 1;
    for (uint32_t i = 0; i < t->rank; i++) {
        n *= t->shape[i];
    }
    return n;
}

static int is_contiguous(const CandorTensor *t) {
    int64_t expect = 1;
    for (uint32_t i = t->rank; i-- > 0;) {
        if (t->shape[i] != 1 && t->strides[i] != expect) {
            return 0;
        }
        expect *= t->shape[i];
    }
    return 1;
}

/* The f32 data of a contiguous tensor, or NULL with an error recorded. */
static float *f32_data(const CandorTensor *t, const char *what) {
    if (t == NULL) {
        ref_fail(CANDOR_ERR_INVALID_ARGUMENT, "%s: NULL tensor", what);
        return NULL;
    }
    if (t->dtype != CANDOR_DTYPE_F32 || t->rank == 0 || t->rank > CANDOR_MAX_RANK ||
        !is_contiguous(t)) {
        ref_fail(CANDOR_ERR_INVALID_ARGUMENT,
                 "%s: expected a contiguous f32 tensor (dtype %u, rank %u)", what, t->dtype,
                 t->rank);
        return NULL;
    }
    for (uint32_t i = 0; i < t->rank; i++) {
        if (t->shape[i] < 0) {
            ref_fail(CANDOR_ERR_INVALID_ARGUMENT, "%s: negative dimension", what);
            return NULL;
        }
    }
    return (float *)ref_tensor_data(t, (uint64_t)elems_of(t) * 4u, what);
}

static int64_t last_dim(const CandorTensor *t) { return t->shape[t->rank - 1]; }

/* A KV cache layer [slots, kv_heads, head_dim]: F32, or F16 (ABI 1.1), contiguous. Its data,
 * or NULL with an error recorded. */
static void *cache_data(const CandorTensor *t, const char *what) {
    if (t == NULL || t->rank != 3 || !is_contiguous(t) || t->shape[0] < 0 || t->shape[1] < 0 ||
        t->shape[2] < 0 ||
        !(t->dtype == CANDOR_DTYPE_F32 || (REF_KV_F16 && t->dtype == CANDOR_DTYPE_F16))) {
        ref_fail(CANDOR_ERR_INVALID_ARGUMENT, "%s: expected a contiguous [slots, heads, dim] cache",
                 what);
        return NULL;
    }
    uint64_t bytes = (uint64_t)elems_of(t) * (t->dtype == CANDOR_DTYPE_F16 ? 2u : 4u);
    return ref_tensor_data(t, bytes, what);
}

/* Element i of a cache of dtype d, as f32 (f16 widens exactly). */
static float kv_get(const void *cache, CandorDtype d, int64_t i) {
    if (d == CANDOR_DTYPE_F16) {
        return ref_f16_to_f32(((const uint16_t *)cache)[i]);
    }
    return ((const float *)cache)[i];
}

/* Store v as element i of a cache of dtype d (f16 rounded to nearest even). */
static void kv_put(void *cache, CandorDtype d, int64_t i, float v) {
    if (d == CANDOR_DTYPE_F16) {
        ((uint16_t *)cache)[i] = ref_f32_to_f16(v);
    } else {
        ((float *)cache)[i] = v;
    }
}

#define REQUIRE(cond, ...)                                                                    \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            return ref_fail(CANDOR_ERR_INVALID_ARGUMENT, __VA_ARGS__);                        \
        }                                                                                     \
    } while (0)

#define F32_OR_FAIL(var, tensor, what)                                                        \
    float *var = f32_data((tensor), (what));                                                  \
    if (var == NULL) {                                                                        \
        return CANDOR_ERR_INVALID_ARGUMENT;                                                   \
    }

/* The bytes of a 2-D weight [rows, cols] stored in a block or float dtype. */
static const unsigned char *weight_data(const CandorTensor *w, int64_t *rows, int64_t *cols,
                                        size_t *row_bytes, const char *what) {
    if (w == NULL || w->rank != 2 || !ref_weight_dtype_supported(w->dtype)) {
        ref_fail(CANDOR_ERR_UNSUPPORTED, "%s: weight must be a 2-D tensor of a supported dtype",
                 what);
        return NULL;
    }
    *rows = w->shape[0];
    *cols = w->shape[1];
    *row_bytes = ref_row_bytes(w->dtype, *cols);
    if (*rows < 0 || *row_bytes == 0) {
        ref_fail(CANDOR_ERR_UNSUPPORTED, "%s: a row of %lld values is not whole blocks of dtype %u",
                 what, (long long)*cols, w->dtype);
        return NULL;
    }
    return ref_tensor_data(w, (uint64_t)*rows * *row_bytes, what);
}

/* ---- ops ---- */

CandorStatus ref_embedding(const CandorTensor *table, const uint32_t *ids, uint64_t n_ids,
                           const CandorTensor *out) {
    int64_t vocab, hidden;
    size_t row_bytes;
    const unsigned char *t = weight_data(table, &vocab, &hidden, &row_bytes, "embedding");
    if (t == NULL) {
        return CANDOR_ERR_INVALID_ARGUMENT;
    }
    F32_OR_FAIL(o, out, "embedding out");
    REQUIRE(elems_of(out) == (int64_t)n_ids * hidden, "embedding: out has the wrong size");
    for (uint64_t i = 0; i < n_ids; i++) {
        REQUIRE(ids[i] < (uint64_t)vocab, "embedding: id %u outside a %lld-row table", ids[i],
                (long long)vocab);
        ref_dequantize_row(table->dtype, t + ids[i] * row_bytes, o + i * hidden, hidden);
    }
    return CANDOR_OK;
}

static void rms_row(const float *x, const float *w, float eps, int64_t d, float *out) {
    double ss = 0.0;
    for (int64_t i = 0; i < d; i++) {
        ss += (double)x[i] * x[i];
    }
    float inv = (float)(1.0 / sqrt(ss / (double)d + (double)eps));
    for (int64_t i = 0; i < d; i++) {
        out[i] = x[i] * inv * w[i];
    }
}

CandorStatus ref_rms_norm(const CandorTensor *x, const CandorTensor *w, float eps,
                          const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "rms_norm x");
    F32_OR_FAIL(ws, w, "rms_norm w");
    F32_OR_FAIL(os, out, "rms_norm out");
    int64_t d = last_dim(x), n = elems_of(x);
    REQUIRE(elems_of(w) == d && elems_of(out) == n, "rms_norm: shapes do not match");
    for (int64_t r = 0; d > 0 && r < n / d; r++) {
        rms_row(xs + r * d, ws, eps, d, os + r * d);
    }
    return CANDOR_OK;
}

/* (1.2) Each row less its mean, over sqrt(biased variance + eps), times w, plus the bias. */
CandorStatus ref_layer_norm(const CandorTensor *x, const CandorTensor *w, const CandorTensor *bias,
                            float eps, const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "layer_norm x");
    F32_OR_FAIL(ws, w, "layer_norm w");
    F32_OR_FAIL(os, out, "layer_norm out");
    const float *bs = NULL;
    if (bias) {
        F32_OR_FAIL(b, bias, "layer_norm bias");
        bs = b;
    }
    int64_t d = last_dim(x), n = elems_of(x);
    REQUIRE(elems_of(w) == d && elems_of(out) == n && (!bias || elems_of(bias) == d),
            "layer_norm: shapes do not match");
    for (int64_t r = 0; d > 0 && r < n / d; r++) {
        const float *xr = xs + r * d;
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < d; i++) {
            mean += xr[i];
        }
        mean /= (double)d;
        for (int64_t i = 0; i < d; i++) {
            var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        }
        float inv = (float)(1.0 / sqrt(var / (double)d + (double)eps));
        for (int64_t i = 0; i < d; i++) {
            os[r * d + i] = (float)(xr[i] - mean) * inv * ws[i] + (bs ? bs[i] : 0.0f);
        }
    }
    return CANDOR_OK;
}

CandorStatus ref_add_rms_norm(const CandorTensor *x, const CandorTensor *residual,
                              const CandorTensor *w, float eps, const CandorTensor *sum_out,
                              const CandorTensor *norm_out) {
    F32_OR_FAIL(xs, x, "add_rms_norm x");
    F32_OR_FAIL(rs, residual, "add_rms_norm residual");
    F32_OR_FAIL(ws, w, "add_rms_norm w");
    F32_OR_FAIL(ss, sum_out, "add_rms_norm sum");
    F32_OR_FAIL(ns, norm_out, "add_rms_norm norm");
    int64_t d = last_dim(x), n = elems_of(x);
    REQUIRE(elems_of(residual) == n && elems_of(sum_out) == n && elems_of(norm_out) == n &&
                elems_of(w) == d,
            "add_rms_norm: shapes do not match");
    for (int64_t i = 0; i < n; i++) {
        ss[i] = xs[i] + rs[i];
    }
    for (int64_t r = 0; d > 0 && r < n / d; r++) {
        rms_row(ss + r * d, ws, eps, d, ns + r * d);
    }
    return CANDOR_OK;
}

/* out[i * out_stride + j] = x[i * x_stride ..][..k] . w_j (+ bias[j]) for m rows of x and the
 * n weight rows of `wd` (dtype d, row_bytes each): linear's product, and each head's of
 * heads_linear. Each weight row is expanded once (into `row`, k floats) and used for every row
 * of x. */
static void rows_times_weight(CandorDtype d, const unsigned char *wd, size_t row_bytes, int64_t n,
                              int64_t k, const float *x, int64_t x_stride, int64_t m, float *out,
                              int64_t out_stride, const float *bias, float *row) {
    for (int64_t j = 0; j < n; j++) {
        ref_dequantize_row(d, wd + (size_t)j * row_bytes, row, k);
        for (int64_t i = 0; i < m; i++) {
            const float *xr = x + i * x_stride;
            float acc = 0.0f;
            for (int64_t e = 0; e < k; e++) {
                acc += xr[e] * row[e];
            }
            out[i * out_stride + j] = acc + (bias ? bias[j] : 0.0f);
        }
    }
}

CandorStatus ref_linear(const CandorTensor *x, const CandorTensor *w, const CandorTensor *bias,
                        const CandorTensor *out) {
    int64_t n, k;
    size_t row_bytes;
    const unsigned char *wd = weight_data(w, &n, &k, &row_bytes, "linear");
    if (wd == NULL) {
        return CANDOR_ERR_UNSUPPORTED;
    }
    F32_OR_FAIL(xs, x, "linear x");
    F32_OR_FAIL(os, out, "linear out");
    REQUIRE(last_dim(x) == k, "linear: x has %lld columns, the weight %lld",
            (long long)last_dim(x), (long long)k);
    int64_t m = k > 0 ? elems_of(x) / k : 0;
    REQUIRE(elems_of(out) == m * n, "linear: out has the wrong size");
    const float *b = NULL;
    if (bias != NULL) {
        b = f32_data(bias, "linear bias");
        if (b == NULL) {
            return CANDOR_ERR_INVALID_ARGUMENT;
        }
        REQUIRE(elems_of(bias) == n, "linear: bias of %lld for %lld outputs",
                (long long)elems_of(bias), (long long)n);
    }
    float *row = malloc((size_t)(k > 0 ? k : 1) * sizeof *row);
    if (row == NULL) {
        return ref_fail(CANDOR_ERR_OUT_OF_MEMORY, "linear: no memory for a weight row");
    }
    rows_times_weight(w->dtype, wd, row_bytes, n, k, xs, k, m, os, n, b, row);
    free(row);
    return CANDOR_OK;
}

CandorStatus ref_heads_linear(const CandorTensor *x, const CandorTensor *w,
                              const CandorTensor *out) {
    REQUIRE(w != NULL && w->rank == 3 && ref_weight_dtype_supported(w->dtype),
            "heads_linear: weight must be a 3-D tensor of a supported dtype");
    int64_t heads = w->shape[0], n = w->shape[1], k = w->shape[2];
    size_t row_bytes = ref_row_bytes(w->dtype, k);
    REQUIRE(heads >= 0 && n >= 0 && row_bytes != 0,
            "heads_linear: a row of %lld values is not whole blocks of dtype %u", (long long)k,
            w->dtype);
    const unsigned char *wd =
        ref_tensor_data(w, (uint64_t)heads * (uint64_t)n * row_bytes, "heads_linear weight");
    if (wd == NULL) {
        return CANDOR_ERR_INVALID_ARGUMENT;
    }
    F32_OR_FAIL(xs, x, "heads_linear x");
    F32_OR_FAIL(os, out, "heads_linear out");
    REQUIRE(x->rank == 3 && x->shape[1] == heads && x->shape[2] == k,
            "heads_linear: x is not [tokens, %lld, %lld]", (long long)heads, (long long)k);
    int64_t tokens = x->shape[0];
    REQUIRE(elems_of(out) == tokens * heads * n, "heads_linear: out has the wrong size");
    float *row = malloc((size_t)(k > 0 ? k : 1) * sizeof *row);
    if (row == NULL) {
        return ref_fail(CANDOR_ERR_OUT_OF_MEMORY, "heads_linear: no memory for a weight row");
    }
    /* Head h: its matrix against the h-th head of every token. */
    for (int64_t h = 0; h < heads; h++) {
        rows_times_weight(w->dtype, wd + (size_t)(h * n) * row_bytes, row_bytes, n, k, xs + h * k,
                          heads * k, tokens, os + h * n, heads * n, NULL, row);
    }
    free(row);
    return CANDOR_OK;
}

CandorStatus ref_rope(const CandorTensor *x, const uint32_t *positions, const float *inv_freq,
                      uint32_t n_freq, uint32_t pairing, float mscale, const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "rope x");
    F32_OR_FAIL(os, out, "rope out");
    REQUIRE(x->rank == 3 && elems_of(out) == elems_of(x), "rope: x must be [tokens, heads, dim]");
    int64_t t = x->shape[0], h = x->shape[1], d = x->shape[2];
    REQUIRE((int64_t)n_freq * 2 == d, "rope: %u frequencies for head_dim %lld", n_freq,
            (long long)d);
    REQUIRE(pairing == CANDOR_ROPE_NEOX || pairing == CANDOR_ROPE_INTERLEAVED,
            "rope: unknown pairing %u", pairing);
    int64_t half = d / 2;
    for (int64_t r = 0; r < t; r++) {
        for (int64_t i = 0; i < half; i++) {
            /* double angle: position * frequency exceeds 1e5 radians on long contexts */
            double a = (double)positions[r] * (double)inv_freq[i];
            float c = (float)cos(a) * mscale, s = (float)sin(a) * mscale;
            for (int64_t hh = 0; hh < h; hh++) {
                const float *src = xs + (r * h + hh) * d;
                float *dst = os + (r * h + hh) * d;
                int64_t lo = pairing == CANDOR_ROPE_NEOX ? i : 2 * i;
                int64_t hi = pairing == CANDOR_ROPE_NEOX ? i + half : 2 * i + 1;
                float va = src[lo], vb = src[hi];
                dst[lo] = va * c - vb * s;
                dst[hi] = vb * c + va * s;
            }
        }
    }
    return CANDOR_OK;
}

CandorStatus ref_kv_write(const CandorTensor *k_cache, const CandorTensor *v_cache,
                          const CandorTensor *k, const CandorTensor *v, const uint32_t *slots,
                          uint64_t n_slots) {
    void *kc = cache_data(k_cache, "kv_write k_cache");
    void *vc = cache_data(v_cache, "kv_write v_cache");
    if (kc == NULL || vc == NULL) {
        return CANDOR_ERR_INVALID_ARGUMENT;
    }
    F32_OR_FAIL(ks, k, "kv_write k");
    F32_OR_FAIL(vs, v, "kv_write v");
    CandorDtype dt = k_cache->dtype;
    REQUIRE(elems_of(v_cache) == elems_of(k_cache) && v_cache->dtype == dt,
            "kv_write: the caches differ");
    int64_t num_slots = k_cache->shape[0], row = k_cache->shape[1] * k_cache->shape[2];
    REQUIRE(elems_of(k) == (int64_t)n_slots * row && elems_of(v) == elems_of(k),
            "kv_write: %llu slots for %lld values", (unsigned long long)n_slots,
            (long long)elems_of(k));
    for (uint64_t i = 0; i < n_slots; i++) {
        REQUIRE(slots[i] < (uint64_t)num_slots, "kv_write: slot %u past the cache (%lld)",
                slots[i], (long long)num_slots);
        for (int64_t e = 0; e < row; e++) {
            kv_put(kc, dt, (int64_t)slots[i] * row + e, ks[(int64_t)i * row + e]);
            kv_put(vc, dt, (int64_t)slots[i] * row + e, vs[(int64_t)i * row + e]);
        }
    }
    return CANDOR_OK;
}

/* Attention of every entry: `sinks` is NULL or one logit per head that joins each softmax's
 * maximum and denominator (and adds no value); `alibi` is NULL or one slope per head, times the
 * key's distance from the query added to each score. */
static CandorStatus attend(const CandorTensor *q, const CandorTensor *k_cache,
                           const CandorTensor *v_cache, const CandorSeq *seqs, uint64_t n_seqs,
                           const CandorAttention *p, const float *sinks, const float *alibi,
                           const CandorTensor *out) {
    F32_OR_FAIL(qs, q, "attention q");
    const void *kc = cache_data(k_cache, "attention k_cache");
    const void *vc = cache_data(v_cache, "attention v_cache");
    if (kc == NULL || vc == NULL) {
        return CANDOR_ERR_INVALID_ARGUMENT;
    }
    F32_OR_FAIL(os, out, "attention out");
    CandorDtype dt = k_cache->dtype;
    REQUIRE(p != NULL && p->num_heads > 0 && p->num_kv_heads > 0 && p->head_dim > 0 &&
                p->block_size > 0 && p->num_heads % p->num_kv_heads == 0,
            "attention: bad parameters");
    int64_t d = p->head_dim, heads = p->num_heads, kvh = p->num_kv_heads;
    int64_t row = heads * d, tokens = q->shape[0];
    REQUIRE(elems_of(q) == tokens * row && elems_of(out) == tokens * row,
            "attention: q/out do not match %u heads x %u", p->num_heads, p->head_dim);
    REQUIRE(k_cache->shape[1] == kvh && k_cache->shape[2] == d &&
                elems_of(v_cache) == elems_of(k_cache) && v_cache->dtype == dt,
            "attention: cache is not [slots, %u, %u]", p->num_kv_heads, p->head_dim);
    int64_t num_slots = k_cache->shape[0];
    memset(os, 0, (size_t)(tokens * row) * 4);
    int64_t group = heads / kvh;
    float *scores = NULL;
    size_t cap = 0;
    for (uint64_t si = 0; si < n_seqs; si++) {
        const CandorSeq *s = &seqs[si];
        int64_t ctx = (int64_t)s->start_pos + s->q_len;
        REQUIRE((int64_t)s->q_start + s->q_len <= tokens &&
                    (int64_t)s->num_blocks * p->block_size >= ctx,
                "attention: sequence %llu out of range", (unsigned long long)si);
        for (uint32_t b = 0; b < s->num_blocks; b++) {
            REQUIRE((int64_t)(s->block_table[b] + 1) * p->block_size <= num_slots,
                    "attention: block %u past the cache", s->block_table[b]);
        }
        if ((size_t)ctx > cap) {
            float *grown = realloc(scores, (size_t)ctx * sizeof *scores);
            if (grown == NULL) {
                free(scores);
                return ref_fail(CANDOR_ERR_OUT_OF_MEMORY, "attention: no memory for scores");
            }
            scores = grown;
            cap = (size_t)ctx;
        }
        for (uint32_t qi = 0; qi < s->q_len; qi++) {
            int64_t r = (int64_t)s->q_start + qi, pos = (int64_t)s->start_pos + qi;
            int64_t first = 0;
            if (p->sliding_window > 0 && pos + 1 > (int64_t)p->sliding_window) {
                first = pos + 1 - p->sliding_window;
            }
            for (int64_t h = 0; h < heads; h++) {
                const float *qh = qs + r * row + h * d;
                int64_t kh = h / group;
                float max = sinks != NULL ? sinks[h] : -INFINITY;
                for (int64_t j = first; j <= pos; j++) {
                    int64_t slot = (int64_t)s->block_table[j / p->block_size] * p->block_size +
                                   j % p->block_size;
                    const int64_t kr = (slot * kvh + kh) * d;
                    float sc = 0.0f;
                    for (int64_t e = 0; e < d; e++) {
                        sc += qh[e] * kv_get(kc, dt, kr + e);
                    }
                    sc *= p->scale;
                    if (p->softcap > 0.0f) {
                        sc = p->softcap * tanhf(sc / p->softcap);
                    }
                    if (alibi != NULL) {
                        sc += alibi[h] * (float)(j - pos);
                    }
                    scores[j - first] = sc;
                    if (sc > max) {
                        max = sc;
                    }
                }
                float sum = sinks != NULL ? expf(sinks[h] - max) : 0.0f;
                for (int64_t j = first; j <= pos; j++) {
                    scores[j - first] = expf(scores[j - first] - max);
                    sum += scores[j - first];
                }
                float *oh = os + r * row + h * d;
                for (int64_t j = first; j <= pos; j++) {
                    int64_t slot = (int64_t)s->block_table[j / p->block_size] * p->block_size +
                                   j % p->block_size;
                    const int64_t vr = (slot * kvh + kh) * d;
                    float pj = scores[j - first] / sum;
                    for (int64_t e = 0; e < d; e++) {
                        oh[e] += pj * kv_get(vc, dt, vr + e);
                    }
                }
            }
        }
    }
    free(scores);
    return CANDOR_OK;
}

CandorStatus ref_paged_attention(const CandorTensor *q, const CandorTensor *k_cache,
                                 const CandorTensor *v_cache, const CandorSeq *seqs,
                                 uint64_t n_seqs, const CandorAttention *params,
                                 const CandorTensor *out) {
    return attend(q, k_cache, v_cache, seqs, n_seqs, params, NULL, NULL, out);
}

CandorStatus ref_paged_attention_sinks(const CandorTensor *q, const CandorTensor *k_cache,
                                       const CandorTensor *v_cache, const CandorSeq *seqs,
                                       uint64_t n_seqs, const CandorAttention *params,
                                       const float *sinks, const CandorTensor *out) {
    REQUIRE(sinks != NULL, "attention: NULL sinks");
    return attend(q, k_cache, v_cache, seqs, n_seqs, params, sinks, NULL, out);
}

CandorStatus ref_paged_attention_alibi(const CandorTensor *q, const CandorTensor *k_cache,
                                       const CandorTensor *v_cache, const CandorSeq *seqs,
                                       uint64_t n_seqs, const CandorAttention *params,
                                       const float *sinks, const float *alibi,
                                       const CandorTensor *out) {
    REQUIRE(alibi != NULL, "attention: NULL ALiBi slopes");
    return attend(q, k_cache, v_cache, seqs, n_seqs, params, sinks, alibi, out);
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

/* gpt-oss's clamped SwiGLU (the model's constants, as transformers and llama.cpp hold them). */
static float swiglu_oai(float gate, float up) {
    const float limit = 7.0f, alpha = 1.702f;
    float g = gate < limit ? gate : limit;
    float u = up < -limit ? -limit : (up > limit ? limit : up);
    return g / (1.0f + expf(-alpha * g)) * (u + 1.0f);
}

static float relu2(float x) { return x > 0.0f ? x * x : 0.0f; }

static float relu(float x) { return x > 0.0f ? x : 0.0f; }

static float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

static float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

CandorStatus ref_glu(const CandorTensor *gate, const CandorTensor *up, uint32_t activation,
                     const CandorTensor *out) {
    F32_OR_FAIL(g, gate, "glu gate");
    F32_OR_FAIL(u, up, "glu up");
    F32_OR_FAIL(o, out, "glu out");
    int64_t n = elems_of(gate);
    REQUIRE(elems_of(up) == n && elems_of(out) == n, "glu: shapes do not match");
    REQUIRE(activation == CANDOR_ACT_SILU || activation == CANDOR_ACT_GELU_TANH ||
                activation == CANDOR_ACT_SWIGLU_OAI || activation == CANDOR_ACT_GELU_ERF ||
                activation == CANDOR_ACT_RELU2 || activation == CANDOR_ACT_RELU,
            "glu: unknown activation %u", activation);
    for (int64_t i = 0; i < n; i++) {
        if (activation == CANDOR_ACT_SWIGLU_OAI) {
            o[i] = swiglu_oai(g[i], u[i]);
        } else {
            float a = activation == CANDOR_ACT_SILU        ? silu(g[i])
                      : activation == CANDOR_ACT_GELU_ERF ? gelu_erf(g[i])
                      : activation == CANDOR_ACT_RELU2    ? relu2(g[i])
                      : activation == CANDOR_ACT_RELU     ? relu(g[i])
                                                          : gelu_tanh(g[i]);
            o[i] = a * u[i];
        }
#ifdef CANDOR_FAULT_WRONG_GLU
        o[i] *= 1.01f;
#endif
    }
    return CANDOR_OK;
}

/* a, b and out of the same element count; `op` 0 adds, 1 multiplies. */
static CandorStatus binary(const CandorTensor *a, const CandorTensor *b, const CandorTensor *out,
                           int op, const char *what) {
    F32_OR_FAIL(as, a, what);
    F32_OR_FAIL(bs, b, what);
    F32_OR_FAIL(os, out, what);
    int64_t n = elems_of(a);
    REQUIRE(elems_of(b) == n && elems_of(out) == n, "%s: shapes do not match", what);
    for (int64_t i = 0; i < n; i++) {
        os[i] = op == 0 ? as[i] + bs[i] : as[i] * bs[i];
    }
    return CANDOR_OK;
}

CandorStatus ref_add(const CandorTensor *a, const CandorTensor *b, const CandorTensor *out) {
    return binary(a, b, out, 0, "add");
}

CandorStatus ref_mul(const CandorTensor *a, const CandorTensor *b, const CandorTensor *out) {
    return binary(a, b, out, 1, "mul");
}

CandorStatus ref_scale(const CandorTensor *x, float s, const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "scale x");
    F32_OR_FAIL(os, out, "scale out");
    int64_t n = elems_of(x);
    REQUIRE(elems_of(out) == n, "scale: shapes do not match");
    for (int64_t i = 0; i < n; i++) {
        os[i] = xs[i] * s;
    }
    return CANDOR_OK;
}

CandorStatus ref_softcap(const CandorTensor *x, float cap, const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "softcap x");
    F32_OR_FAIL(os, out, "softcap out");
    int64_t n = elems_of(x);
    REQUIRE(elems_of(out) == n, "softcap: shapes do not match");
    REQUIRE(cap != 0.0f, "softcap: cap is 0");
    for (int64_t i = 0; i < n; i++) {
        os[i] = cap * tanhf(xs[i] / cap);
    }
    return CANDOR_OK;
}

CandorStatus ref_clamp(const CandorTensor *x, float limit, const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "clamp x");
    F32_OR_FAIL(os, out, "clamp out");
    int64_t n = elems_of(x);
    REQUIRE(elems_of(out) == n, "clamp: shapes do not match");
    REQUIRE(limit >= 0.0f, "clamp: negative limit");
    for (int64_t i = 0; i < n; i++) {
        os[i] = xs[i] < -limit ? -limit : (xs[i] > limit ? limit : xs[i]);
    }
    return CANDOR_OK;
}

CandorStatus ref_xielu(const CandorTensor *x, float alpha_p, float alpha_n, float beta, float eps,
                       const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "xielu x");
    F32_OR_FAIL(os, out, "xielu out");
    int64_t n = elems_of(x);
    REQUIRE(elems_of(out) == n, "xielu: shapes do not match");
    for (int64_t i = 0; i < n; i++) {
        float v = xs[i];
        os[i] = v > 0.0f ? alpha_p * v * v + beta * v
                         : (expm1f(v < eps ? v : eps) - v) * alpha_n + beta * v;
    }
    return CANDOR_OK;
}

CandorStatus ref_quantize_rows(const CandorTensor *x, uint32_t bits, const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "quantize_rows x");
    F32_OR_FAIL(os, out, "quantize_rows out");
    int64_t d = last_dim(x), n = elems_of(x);
    REQUIRE(elems_of(out) == n, "quantize_rows: shapes do not match");
    REQUIRE(bits >= 2 && bits <= 16, "quantize_rows: %u bits", bits);
    const float top = (float)((1u << (bits - 1)) - 1);
    for (int64_t r = 0; d > 0 && r < n / d; r++) {
        const float *xr = xs + r * d;
        float *orow = os + r * d;
        float largest = 1e-5f;
        for (int64_t i = 0; i < d; i++) {
            float a = fabsf(xr[i]);
            largest = a > largest ? a : largest;
        }
        const float s = top / largest;
        for (int64_t i = 0; i < d; i++) {
            float q = rintf(xr[i] * s); /* the default rounding mode: ties to even */
            q = q < -top - 1.0f ? -top - 1.0f : (q > top ? top : q);
            orow[i] = q / s;
        }
    }
    return CANDOR_OK;
}

CandorStatus ref_mul_sigmoid(const CandorTensor *x, const CandorTensor *gate,
                             const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "mul_sigmoid x");
    F32_OR_FAIL(gs, gate, "mul_sigmoid gate");
    F32_OR_FAIL(os, out, "mul_sigmoid out");
    int64_t n = elems_of(x);
    REQUIRE(elems_of(gate) == n && elems_of(out) == n, "mul_sigmoid: sizes do not match");
    for (int64_t i = 0; i < n; i++) {
        os[i] = xs[i] / (1.0f + expf(-gs[i]));
    }
    return CANDOR_OK;
}

CandorStatus ref_softmax(const CandorTensor *x, const CandorTensor *out) {
    F32_OR_FAIL(xs, x, "softmax x");
    F32_OR_FAIL(os, out, "softmax out");
    int64_t d = last_dim(x), n = elems_of(x);
    REQUIRE(elems_of(out) == n, "softmax: shapes do not match");
    for (int64_t r = 0; d > 0 && r < n / d; r++) {
        const float *xr = xs + r * d;
        float *orow = os + r * d;
        float max = -INFINITY, sum = 0.0f;
        for (int64_t i = 0; i < d; i++) {
            max = xr[i] > max ? xr[i] : max;
        }
        for (int64_t i = 0; i < d; i++) {
            orow[i] = expf(xr[i] - max);
            sum += orow[i];
        }
        for (int64_t i = 0; i < d; i++) {
            orow[i] /= sum;
        }
    }
    return CANDOR_OK;
}

CandorStatus ref_argmax(const CandorTensor *x, uint32_t *out_host) {
    F32_OR_FAIL(xs, x, "argmax x");
    REQUIRE(x->rank == 2 && out_host != NULL, "argmax: x must be 2-D");
    int64_t rows = x->shape[0], cols = x->shape[1];
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xs + r * cols;
        int64_t best = 0;
        for (int64_t i = 1; i < cols; i++) {
            if (xr[i] > xr[best]) {
                best = i;
            }
        }
        out_host[r] = (uint32_t)best;
    }
    return CANDOR_OK;
}

CandorStatus ref_cast(const CandorTensor *src, const CandorTensor *dst) {
    REQUIRE(src != NULL && dst != NULL, "cast: NULL tensor");
    REQUIRE(src->dtype <= CANDOR_DTYPE_BF16 && dst->dtype <= CANDOR_DTYPE_BF16,
            "cast: only f32, f16 and bf16 convert");
    REQUIRE(is_contiguous(src) && is_contiguous(dst), "cast: tensors must be contiguous");
    int64_t n = elems_of(src);
    REQUIRE(elems_of(dst) == n, "cast: shapes do not match");
    size_t sb = ref_block_bytes(src->dtype), db = ref_block_bytes(dst->dtype);
    const unsigned char *s = ref_tensor_data(src, (uint64_t)n * sb, "cast src");
    unsigned char *d = ref_tensor_data(dst, (uint64_t)n * db, "cast dst");
    if (s == NULL || d == NULL) {
        return CANDOR_ERR_INVALID_ARGUMENT;
    }
    for (int64_t i = 0; i < n; i++) {
        float v;
        uint16_t h;
        switch (src->dtype) {
        case CANDOR_DTYPE_F32:
            memcpy(&v, s + i * 4, 4);
            break;
        case CANDOR_DTYPE_F16:
            memcpy(&h, s + i * 2, 2);
            v = ref_f16_to_f32(h);
            break;
        default:
            memcpy(&h, s + i * 2, 2);
            v = ref_bf16_to_f32(h);
            break;
        }
        switch (dst->dtype) {
        case CANDOR_DTYPE_F32:
            memcpy(d + i * 4, &v, 4);
            break;
        case CANDOR_DTYPE_F16:
            h = ref_f32_to_f16(v);
            memcpy(d + i * 2, &h, 2);
            break;
        default:
            h = ref_f32_to_bf16(v);
            memcpy(d + i * 2, &h, 2);
            break;
        }
    }
    return CANDOR_OK;
}
