/*
 * candor reference device plugin: the function table, buffers, errors and `supports_op`.
 *
 * This plugin runs on the host in plain C99 so that it works everywhere, and it is the template
 * to copy for a real accelerator: replace the buffer functions with the vendor runtime's
 * allocator and copies (aclrtMalloc/aclrtMemcpy, cnrtMalloc, musaMalloc...), and each op in
 * ops.c with the vendor library call (see docs/plugins.md). Keep the checks: candor relies on
 * every function answering with a status and a message instead of crashing.
 *
 * One op is left unimplemented on purpose (gather_rows: its table entry is NULL), as is the
 * Q5_K weight type, so that candor's CPU fallback is always exercised by the tests.
 *
 * Test-only variants are built from this same source with -D defines (see build.rs):
 *   CANDOR_FAULT_WRONG_MAJOR     reports an ABI major candor does not speak
 *   CANDOR_FAULT_NO_ENTRY        does not export candor_device_get_api
 *   CANDOR_FAULT_NULL_TABLE      returns NULL from candor_device_get_api
 *   CANDOR_FAULT_SMALL_STRUCT    reports a struct_size that stops before the ops
 *   CANDOR_FAULT_FAIL_AT_CALL=N  the N-th rms_norm call fails (once) with a device error
 *   CANDOR_FAULT_CLAIMS_ALL      supports_op says yes to everything; gather_rows then fails
 *   CANDOR_FAULT_WRONG_GLU       glu returns numbers 1% off (the conformance suite must see it)
 *   CANDOR_REFERENCE_ABI_1_0     a plugin written against ABI 1.0: minor 0, the 1.0 table (no
 *                                paged_attention_sinks, heads_linear or layer_norm), no MXFP4, and a
 *                                supports_op that, as a 1.0 plugin might, never looks at GLU
 *                                variants, attention flags or cache dtypes (candor must not
 *                                ask it about 1.1 codes); F32 KV caches only
 */
#include "reference.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(_WIN32)
#define REF_EXPORT __declspec(dllexport)
#else
#define REF_EXPORT __attribute__((visibility("default")))
#endif

/* ---- errors ---- */

/* candor serialises calls into a plugin, so one global message is enough. */
static char g_error[512] = "";

CandorStatus ref_fail(CandorStatus status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    return status;
}

static const char *ref_last_error(void) { return g_error; }

/* ---- buffers ----
 * Device memory here is malloc'd host memory. Every live handle is kept in a registry, so that
 * a stale or foreign handle is answered with an error (and counted) instead of corrupting the
 * heap: candor's ownership must make that count stay 0, and the tests check it. */

struct CandorBufferImpl {
    uint64_t size;
    unsigned char *data;
};

static struct CandorBufferImpl **g_live = NULL;
static size_t g_live_len = 0, g_live_cap = 0;
static uint64_t g_bad_frees = 0;

static int find_live(CandorBuffer b) {
    for (size_t i = 0; i < g_live_len; i++) {
        if (g_live[i] == b) {
            return (int)i;
        }
    }
    return -1;
}

static CandorStatus ref_buffer_alloc(uint64_t bytes, CandorBuffer *out) {
    if (out == NULL) {
        return ref_fail(CANDOR_ERR_INVALID_ARGUMENT, "buffer_alloc: NULL output handle");
    }
    *out = NULL;
    if (bytes > (uint64_t)SIZE_MAX / 2) {
        return ref_fail(CANDOR_ERR_OUT_OF_MEMORY, "buffer_alloc: %llu bytes is too large",
                        (unsigned long long)bytes);
    }
    if (g_live_len == g_live_cap) {
        size_t cap = g_live_cap ? g_live_cap * 2 : 256;
        struct CandorBufferImpl **grown = realloc(g_live, cap * sizeof *grown);
        if (grown == NULL) {
            return ref_fail(CANDOR_ERR_OUT_OF_MEMORY, "buffer_alloc: registry is full");
        }
        g_live = grown;
        g_live_cap = cap;
    }
    struct CandorBufferImpl *b = malloc(sizeof *b);
    /* malloc(0) may return NULL: always ask for at least one byte */
    unsigned char *data = malloc(bytes ? (size_t)bytes : 1);
    if (b == NULL || data == NULL) {
        free(b);
        free(data);
        return ref_fail(CANDOR_ERR_OUT_OF_MEMORY, "buffer_alloc: out of memory for %llu bytes",
                        (unsigned long long)bytes);
    }
    b->size = bytes;
    b->data = data;
    g_live[g_live_len++] = b;
    *out = b;
    return CANDOR_OK;
}

static CandorStatus ref_buffer_free(CandorBuffer buffer) {
    int i = find_live(buffer);
    if (i < 0) {
        g_bad_frees++;
        return ref_fail(CANDOR_ERR_INVALID_ARGUMENT,
                        "buffer_free: %p is not a live buffer (double free?)", (void *)buffer);
    }
    g_live[i] = g_live[--g_live_len];
    free(buffer->data);
    free(buffer);
    return CANDOR_OK;
}

static CandorStatus check_range(CandorBuffer b, uint64_t offset, uint64_t bytes,
                                const char *what) {
    if (find_live(b) < 0) {
        return ref_fail(CANDOR_ERR_INVALID_ARGUMENT, "%s: %p is not a live buffer", what,
                        (void *)b);
    }
    if (offset > b->size || bytes > b->size - offset) {
        return ref_fail(CANDOR_ERR_INVALID_ARGUMENT,
                        "%s: %llu bytes at offset %llu overrun a buffer of %llu bytes", what,
                        (unsigned long long)bytes, (unsigned long long)offset,
                        (unsigned long long)b->size);
    }
    return CANDOR_OK;
}

static CandorStatus ref_upload(CandorBuffer dst, uint64_t offset, const void *src,
                               uint64_t bytes) {
    CandorStatus s = check_range(dst, offset, bytes, "upload");
    if (s != CANDOR_OK) {
        return s;
    }
    if (bytes > 0) {
        memcpy(dst->data + offset, src, (size_t)bytes);
    }
    return CANDOR_OK;
}

static CandorStatus ref_download(CandorBuffer src, uint64_t offset, void *dst, uint64_t bytes) {
    CandorStatus s = check_range(src, offset, bytes, "download");
    if (s != CANDOR_OK) {
        return s;
    }
    if (bytes > 0) {
        memcpy(dst, src->data + offset, (size_t)bytes);
    }
    return CANDOR_OK;
}

/* Ops run synchronously on the calling thread: nothing is ever queued. */
static CandorStatus ref_synchronize(void) { return CANDOR_OK; }

void *ref_tensor_data(const CandorTensor *t, uint64_t bytes, const char *what) {
    if (t == NULL) {
        ref_fail(CANDOR_ERR_INVALID_ARGUMENT, "%s: NULL tensor", what);
        return NULL;
    }
    if (check_range(t->buffer, t->offset, bytes, what) != CANDOR_OK) {
        return NULL;
    }
    return t->buffer->data + t->offset;
}

static CandorStatus ref_memory_info(uint64_t *total, uint64_t *avail) {
#ifdef _SC_PHYS_PAGES
    long pages = sysconf(_SC_PHYS_PAGES);
#else
    long pages = -1;
#endif
    long page = sysconf(_SC_PAGESIZE);
#ifdef _SC_AVPHYS_PAGES
    long free_pages = sysconf(_SC_AVPHYS_PAGES);
#else
    long free_pages = -1;
#endif
    if (pages <= 0 || page <= 0) {
        return ref_fail(CANDOR_ERR_UNSUPPORTED, "memory_info: the host does not report memory");
    }
    if (total) {
        *total = (uint64_t)pages * (uint64_t)page;
    }
    if (avail) {
        *avail = free_pages > 0 ? (uint64_t)free_pages * (uint64_t)page : 0;
    }
    return CANDOR_OK;
}

/* ---- supports_op ---- */

static int32_t ref_supports_op(const CandorOpDesc *op) {
    if (op == NULL) {
        return 0;
    }
#ifdef CANDOR_FAULT_CLAIMS_ALL
    return 1;
#else
    switch (op->op) {
    case CANDOR_OP_EMBEDDING:
        return ref_weight_dtype_supported(op->dtype);
    case CANDOR_OP_LINEAR:
        /* a block weight needs whole blocks per row (dims[2] = K; 0 = not known yet) */
        return ref_weight_dtype_supported(op->dtype) &&
               (op->dims[2] == 0 || ref_row_bytes(op->dtype, op->dims[2]) != 0);
#ifndef CANDOR_REFERENCE_ABI_1_0
    case CANDOR_OP_HEADS_LINEAR: /* the weight's dtype is 0 (F32) while not known yet */
        return ref_weight_dtype_supported(op->dtype) &&
               (op->dims[3] == 0 || ref_row_bytes(op->dtype, op->dims[3]) != 0);
#endif
    case CANDOR_OP_ROPE:
        return op->variant == CANDOR_ROPE_NEOX || op->variant == CANDOR_ROPE_INTERLEAVED;
#ifdef CANDOR_REFERENCE_ABI_1_0
    case CANDOR_OP_GLU:
    case CANDOR_OP_PAGED_ATTENTION:
        return 1;
#else
    case CANDOR_OP_GLU:
        return op->variant == CANDOR_ACT_SILU || op->variant == CANDOR_ACT_GELU_TANH ||
               op->variant == CANDOR_ACT_SWIGLU_OAI || op->variant == CANDOR_ACT_GELU_ERF ||
               op->variant == CANDOR_ACT_RELU2 || op->variant == CANDOR_ACT_RELU;
    case CANDOR_OP_PAGED_ATTENTION:
        return (op->flags & ~(CANDOR_ATTN_SLIDING_WINDOW | CANDOR_ATTN_SOFTCAP |
                              CANDOR_ATTN_SINKS | CANDOR_ATTN_ALIBI)) == 0 &&
               (op->dtype == CANDOR_DTYPE_F32 || op->dtype == CANDOR_DTYPE_F16);
    case CANDOR_OP_KV_WRITE: /* dtype: the cache's, F32 or F16 */
        return op->dtype == CANDOR_DTYPE_F32 || op->dtype == CANDOR_DTYPE_F16;
    case CANDOR_OP_LAYER_NORM:
    case CANDOR_OP_CLAMP:
    case CANDOR_OP_XIELU:
    case CANDOR_OP_QUANTIZE_ROWS:
    case CANDOR_OP_MUL_SIGMOID:
        return 1;
#endif
    case CANDOR_OP_CAST: {
        int in = op->dtype <= CANDOR_DTYPE_BF16, out = op->dtype_out <= CANDOR_DTYPE_BF16;
        return in && out;
    }
    case CANDOR_OP_RMS_NORM:
    case CANDOR_OP_ADD_RMS_NORM:
#ifdef CANDOR_REFERENCE_ABI_1_0
    case CANDOR_OP_KV_WRITE:
#endif
    case CANDOR_OP_ADD:
    case CANDOR_OP_MUL:
    case CANDOR_OP_SCALE:
    case CANDOR_OP_SOFTCAP:
    case CANDOR_OP_SOFTMAX:
    case CANDOR_OP_ARGMAX:
        return 1;
    case CANDOR_OP_GATHER_ROWS: /* left to candor's CPU fallback on purpose */
    default:
        return 0;
    }
#endif
}

/* ---- fault variants (tests only) ---- */

#ifdef CANDOR_FAULT_FAIL_AT_CALL
static CandorStatus faulty_rms_norm(const CandorTensor *x, const CandorTensor *w, float eps,
                                    const CandorTensor *out) {
    static unsigned long calls = 0;
    if (++calls == (unsigned long)(CANDOR_FAULT_FAIL_AT_CALL)) {
        return ref_fail(CANDOR_ERR_DEVICE, "injected fault: rms_norm call %lu failed", calls);
    }
    return ref_rms_norm(x, w, eps, out);
}
#define RMS_NORM_ENTRY faulty_rms_norm
#else
#define RMS_NORM_ENTRY ref_rms_norm
#endif

#ifdef CANDOR_FAULT_CLAIMS_ALL
static CandorStatus claimed_gather_rows(const CandorTensor *x, const uint32_t *rows,
                                        uint64_t n_rows, const CandorTensor *out) {
    (void)x;
    (void)rows;
    (void)n_rows;
    (void)out;
    return ref_fail(CANDOR_ERR_UNSUPPORTED, "gather_rows is not implemented on this device");
}
#define GATHER_ROWS_ENTRY claimed_gather_rows
#else
#define GATHER_ROWS_ENTRY NULL
#endif

#ifdef CANDOR_FAULT_WRONG_MAJOR
#define REF_ABI_MAJOR (CANDOR_DEVICE_ABI_MAJOR + 1u)
#else
#define REF_ABI_MAJOR CANDOR_DEVICE_ABI_MAJOR
#endif

#ifdef CANDOR_FAULT_SMALL_STRUCT
#define REF_STRUCT_SIZE ((uint32_t)offsetof(CandorDeviceApi, name))
#elif defined(CANDOR_REFERENCE_ABI_1_0)
#define REF_STRUCT_SIZE ((uint32_t)offsetof(CandorDeviceApi, paged_attention_sinks))
#else
#define REF_STRUCT_SIZE ((uint32_t)sizeof(CandorDeviceApi))
#endif

/* ---- the table ---- */

#ifdef CANDOR_REFERENCE_ABI_1_0
#define REF_ABI_MINOR 0u
#define REF_MXFP4_BIT 0u
#else
#define REF_ABI_MINOR CANDOR_DEVICE_ABI_MINOR
#define REF_MXFP4_BIT CANDOR_DTYPE_BIT(CANDOR_DTYPE_MXFP4)
#endif

static const CandorDeviceApi g_api = {
    REF_STRUCT_SIZE,
    REF_ABI_MAJOR,
    REF_ABI_MINOR,
    0,
    "candor reference (host C)",
    "candor",
    CANDOR_DTYPE_BIT(CANDOR_DTYPE_F32) | CANDOR_DTYPE_BIT(CANDOR_DTYPE_F16) |
        CANDOR_DTYPE_BIT(CANDOR_DTYPE_BF16) | CANDOR_DTYPE_BIT(CANDOR_DTYPE_Q4_0) |
        CANDOR_DTYPE_BIT(CANDOR_DTYPE_Q5_0) | CANDOR_DTYPE_BIT(CANDOR_DTYPE_Q8_0) |
        CANDOR_DTYPE_BIT(CANDOR_DTYPE_Q4_K) | CANDOR_DTYPE_BIT(CANDOR_DTYPE_Q6_K) |
        REF_MXFP4_BIT,
    ref_memory_info,
    ref_last_error,
    ref_supports_op,
    ref_buffer_alloc,
    ref_buffer_free,
    ref_upload,
    ref_download,
    ref_synchronize,
    ref_embedding,
    RMS_NORM_ENTRY,
    ref_add_rms_norm,
    ref_linear,
    ref_rope,
    ref_kv_write,
    ref_paged_attention,
    ref_glu,
    ref_add,
    ref_mul,
    ref_scale,
    ref_softcap,
    ref_softmax,
    GATHER_ROWS_ENTRY,
    ref_argmax,
    ref_cast,
    /* past REF_STRUCT_SIZE in the 1.0 variant: candor never sees these */
    ref_paged_attention_sinks,
    ref_heads_linear,
    ref_layer_norm,
    ref_paged_attention_alibi,
    ref_clamp,
    ref_xielu,
    ref_quantize_rows,
    ref_mul_sigmoid,
};

#ifndef CANDOR_FAULT_NO_ENTRY
REF_EXPORT const CandorDeviceApi *candor_device_get_api(uint32_t abi_major, uint32_t abi_minor) {
    (void)abi_minor; /* a newer minor reads fields we do not have: struct_size tells it so */
#ifdef CANDOR_FAULT_NULL_TABLE
    (void)abi_major;
    (void)&g_api;
    return NULL;
#else
    /* A plugin that cannot serve the caller's major may also return NULL; this one returns
     * its table and lets candor compare abi_major (so the wrong-major variant is seen). */
    (void)abi_major;
    return &g_api;
#endif
}
#else
/* Exported under another name, so the library loads but the entry point is missing. */
REF_EXPORT const CandorDeviceApi *candor_device_get_api_misspelled(uint32_t abi_major,
                                                                   uint32_t abi_minor) {
    (void)abi_major;
    (void)abi_minor;
    return &g_api;
}
#endif

/* Not part of the ABI: live buffer count and frees of unknown handles, for leak checks. */
REF_EXPORT void candor_reference_stats(uint64_t *live_buffers, uint64_t *bad_frees) {
    if (live_buffers) {
        *live_buffers = (uint64_t)g_live_len;
    }
    if (bad_frees) {
        *bad_frees = g_bad_frees;
    }
}
