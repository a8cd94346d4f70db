/*
 * Internal declarations of the reference plugin (shared by device.c, ops.c and dtypes.c).
 * Nothing here is part of the ABI: the ABI is kernels/include/candor_device.h.
 */
#ifndef CANDOR_REFERENCE_H
#define CANDOR_REFERENCE_H

#include "candor_device.h"
#include <stddef.h>
#include <stdint.h>

/* KV caches in F16 besides F32 (ABI 1.1); the 1.0 test variant keeps F32 only. */
#ifdef CANDOR_REFERENCE_ABI_1_0
#define REF_KV_F16 0
#else
#define REF_KV_F16 1
#endif

/* ---- errors (device.c) ---- */
/* Record a printf-style message for last_error() and return `status`. */
CandorStatus ref_fail(CandorStatus status, const char *fmt, ...);

/* ---- buffers (device.c) ---- */
/* Host pointer to the bytes of a tensor after checking that the handle is live and that
 * `bytes` bytes from the tensor's offset lie inside the buffer; NULL (error recorded) if not. */
void *ref_tensor_data(const CandorTensor *t, uint64_t bytes, const char *what);

/* ---- dtypes (dtypes.c) ---- */
float ref_f16_to_f32(uint16_t h);
uint16_t ref_f32_to_f16(float f);
float ref_bf16_to_f32(uint16_t h);
uint16_t ref_f32_to_bf16(float f);
/* Values per block and bytes per block of a dtype (1 and the element size for plain types);
 * 0 for a dtype the plugin does not read. */
size_t ref_block_elems(CandorDtype d);
size_t ref_block_bytes(CandorDtype d);
/* Bytes of a row of `n` values, or 0 when n is not a whole number of blocks. */
size_t ref_row_bytes(CandorDtype d, int64_t n);
/* Dequantize one row of `n` values (n a whole number of blocks) to f32. Returns 0 on success. */
int ref_dequantize_row(CandorDtype d, const void *src, float *dst, int64_t n);
/* Whether the plugin reads weights of this dtype. */
int ref_weight_dtype_supported(CandorDtype d);

/* ---- ops (ops.c) ---- */
CandorStatus ref_embedding(const CandorTensor *table, const uint32_t *ids, uint64_t n_ids,
                           const CandorTensor *out);
CandorStatus ref_rms_norm(const CandorTensor *x, const CandorTensor *w, float eps,
                          const CandorTensor *out);
CandorStatus ref_layer_norm(const CandorTensor *x, const CandorTensor *w, const CandorTensor *bias,
                            float eps, const CandorTensor *out);
CandorStatus ref_add_rms_norm(const CandorTensor *x, const CandorTensor *residual,
                              const CandorTensor *w, float eps, const CandorTensor *sum_out,
                              const CandorTensor *norm_out);
CandorStatus ref_linear(const CandorTensor *x, const CandorTensor *w, const CandorTensor *bias,
                        const CandorTensor *out);
CandorStatus ref_heads_linear(const CandorTensor *x, const CandorTensor *w,
                              const CandorTensor *out);
CandorStatus ref_rope(const CandorTensor *x, const uint32_t *positions, const float *inv_freq,
                      uint32_t n_freq, uint32_t pairing, float mscale, const CandorTensor *out);
CandorStatus ref_kv_write(const CandorTensor *k_cache, const CandorTensor *v_cache,
                          const CandorTensor *k, const CandorTensor *v, const uint32_t *slots,
                          uint64_t n_slots);
CandorStatus ref_paged_attention(const CandorTensor *q, const CandorTensor *k_cache,
                                 const CandorTensor *v_cache, const CandorSeq *seqs,
                                 uint64_t n_seqs, const CandorAttention *params,
                                 const CandorTensor *out);
CandorStatus ref_paged_attention_sinks(const CandorTensor *q, const CandorTensor *k_cache,
                                       const CandorTensor *v_cache, const CandorSeq *seqs,
                                       uint64_t n_seqs, const CandorAttention *params,
                                       const float *sinks, const CandorTensor *out);
CandorStatus ref_paged_attention_alibi(const CandorTensor *q, const CandorTensor *k_cache,
                                       const CandorTensor *v_cache, const CandorSeq *seqs,
                                       uint64_t n_seqs, const CandorAttention *params,
                                       const float *sinks, const float *alibi,
                                       const CandorTensor *out);
CandorStatus ref_clamp(const CandorTensor *x, float limit, const CandorTensor *out);
CandorStatus ref_xielu(const CandorTensor *x, float alpha_p, float alpha_n, float beta, float eps,
                       const CandorTensor *out);
CandorStatus ref_quantize_rows(const CandorTensor *x, uint32_t bits, const CandorTensor *out);
CandorStatus ref_mul_sigmoid(const CandorTensor *x, const CandorTensor *gate,
                             const CandorTensor *out);
CandorStatus ref_glu(const CandorTensor *gate, const CandorTensor *up, uint32_t activation,
                     const CandorTensor *out);
CandorStatus ref_add(const CandorTensor *a, const CandorTensor *b, const CandorTensor *out);
CandorStatus ref_mul(const CandorTensor *a, const CandorTensor *b, const CandorTensor *out);
CandorStatus ref_scale(const CandorTensor *x, float s, const CandorTensor *out);
CandorStatus ref_softcap(const CandorTensor *x, float cap, const CandorTensor *out);
CandorStatus ref_softmax(const CandorTensor *x, const CandorTensor *out);
CandorStatus ref_argmax(const CandorTensor *x, uint32_t *out_host);
CandorStatus ref_cast(const CandorTensor *src, const CandorTensor *dst);

#endif
