/*
 * Storage types of the reference plugin: f16/bf16 conversions and GGML block dequantization,
 * written from the GGUF block layouts (as in ggml's reference `dequantize_row_*`).
 * A real device does this in its matmul kernels; here each weight row is expanded to f32.
 */
#include "reference.h"

#include <math.h>
#include <string.h>

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float ref_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return (h & 0x8000u) ? -v : v;
    }
    if (exp == 31) {
        return float_of(sign | 0x7f800000u | (man << 13)); /* inf / nan */
    }
    return float_of(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t ref_f32_to_f16(float f) {
    uint32_t u = bits_of(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs >= 0x7f800000u) {
        /* inf stays inf; nan stays a quiet nan */
        return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    }
    if (abs >= 0x477ff000u) {
        return (uint16_t)(sign | 0x7c00u); /* rounds past the largest half: inf */
    }
    if (abs < 0x38800000u) {
        /* subnormal half (or zero): round abs / 2^-24 to nearest even */
        float v = float_of(abs) * 16777216.0f;
        uint32_t i = (uint32_t)v;
        float rem = v - (float)i;
        if (rem > 0.5f || (rem == 0.5f && (i & 1u))) {
            i++;
        }
        return (uint16_t)(sign | i);
    }
    /* normal: rebias the exponent, round the mantissa to nearest even */
    uint32_t man = abs & 0x7fffffu;
    uint32_t exp = (abs >> 23) - 112u;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) {
        h++; /* may carry into the exponent, which is the right result */
    }
    return (uint16_t)(sign | h);
}

float ref_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

uint16_t ref_f32_to_bf16(float f) {
    uint32_t u = bits_of(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40u); /* quiet nan */
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

size_t ref_block_elems(CandorDtype d) {
    switch (d) {
    case CANDOR_DTYPE_F32:
    case CANDOR_DTYPE_F16:
    case CANDOR_DTYPE_BF16:
    case CANDOR_DTYPE_U32:
        return 1;
    case CANDOR_DTYPE_Q4_0:
    case CANDOR_DTYPE_Q5_0:
    case CANDOR_DTYPE_Q8_0:
    case CANDOR_DTYPE_MXFP4:
        return 32;
    case CANDOR_DTYPE_Q4_K:
    case CANDOR_DTYPE_Q5_K:
    case CANDOR_DTYPE_Q6_K:
        return 256;
    default:
        return 0;
    }
}

size_t ref_block_bytes(CandorDtype d) {
    switch (d) {
    case CANDOR_DTYPE_F32:
    case CANDOR_DTYPE_U32:
        return 4;
    case CANDOR_DTYPE_F16:
    case CANDOR_DTYPE_BF16:
        return 2;
    case CANDOR_DTYPE_Q4_0:
        return 18;
    case CANDOR_DTYPE_Q5_0:
        return 22;
    case CANDOR_DTYPE_Q8_0:
        return 34;
    case CANDOR_DTYPE_Q4_K:
        return 144;
    case CANDOR_DTYPE_Q5_K:
        return 176;
    case CANDOR_DTYPE_Q6_K:
        return 210;
    case CANDOR_DTYPE_MXFP4:
        return 17;
    default:
        return 0;
    }
}

size_t ref_row_bytes(CandorDtype d, int64_t n) {
    size_t be = ref_block_elems(d);
    if (be == 0 || n < 0 || (uint64_t)n % be != 0) {
        return 0;
    }
    return (size_t)((uint64_t)n / be) * ref_block_bytes(d);
}

static uint16_t read_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static void dequant_q4_0(const uint8_t *b, float *y) {
    float d = ref_f16_to_f32(read_u16(b));
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0x0f) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void dequant_q5_0(const uint8_t *b, float *y) {
    float d = ref_f16_to_f32(read_u16(b));
    uint32_t qh = (uint32_t)b[2] | ((uint32_t)b[3] << 8) | ((uint32_t)b[4] << 16) |
                  ((uint32_t)b[5] << 24);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int lo = (int)((qs[j] & 0x0f) | (((qh >> j) << 4) & 0x10));
        int hi = (int)((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
        y[j] = (float)(lo - 16) * d;
        y[j + 16] = (float)(hi - 16) * d;
    }
}

static void dequant_q8_0(const uint8_t *b, float *y) {
    float d = ref_f16_to_f32(read_u16(b));
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) {
        y[j] = (float)qs[j] * d;
    }
}

/* The e2m1 values doubled (0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives), so that with the
 * e8m0 scale halved each element is an integer times a power of two, as ggml computes it. */
static const int8_t k_mxfp4_doubled[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static void dequant_mxfp4(const uint8_t *b, float *y) {
    float d = ldexpf(1.0f, (int)b[0] - 128); /* 2^(e - 127), halved */
    const uint8_t *qs = b + 1;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)k_mxfp4_doubled[qs[j] & 0x0f] * d;
        y[j + 16] = (float)k_mxfp4_doubled[qs[j] >> 4] * d;
    }
}

/* 6-bit scale and minimum of sub-block j of a Q4_K/Q5_K super-block. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void dequant_q4_k(const uint8_t *b, float *y) {
    float d = ref_f16_to_f32(read_u16(b));
    float dmin = ref_f16_to_f32(read_u16(b + 2));
    const uint8_t *scales = b + 4;
    const uint8_t *q = b + 16;
    int is = 0;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, m;
        scale_min_k4(is, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            *y++ = d1 * (float)(q[l] & 0x0f) - m1;
        }
        for (int l = 0; l < 32; l++) {
            *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
        q += 32;
        is += 2;
    }
}

static void dequant_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b;
    const uint8_t *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = ref_f16_to_f32(read_u16(b + 208));
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

int ref_weight_dtype_supported(CandorDtype d) {
    /* Q5_K is left out on purpose: a weight type the device lacks must fall back to the CPU. */
    switch (d) {
    case CANDOR_DTYPE_F32:
    case CANDOR_DTYPE_F16:
    case CANDOR_DTYPE_BF16:
    case CANDOR_DTYPE_Q4_0:
    case CANDOR_DTYPE_Q5_0:
    case CANDOR_DTYPE_Q8_0:
    case CANDOR_DTYPE_Q4_K:
    case CANDOR_DTYPE_Q6_K:
#ifndef CANDOR_REFERENCE_ABI_1_0
    case CANDOR_DTYPE_MXFP4:
#endif
        return 1;
    default:
        return 0;
    }
}

int ref_dequantize_row(CandorDtype d, const void *src, float *dst, int64_t n) {
    const uint8_t *p = (const uint8_t *)src;
    size_t be = ref_block_elems(d), bb = ref_block_bytes(d);
    if (be == 0 || n < 0 || (uint64_t)n % be != 0 || !ref_weight_dtype_supported(d)) {
        return -1;
    }
    int64_t blocks = n / (int64_t)be;
    for (int64_t i = 0; i < blocks; i++, p += bb, dst += be) {
        switch (d) {
        case CANDOR_DTYPE_F32:
            memcpy(dst, p, 4);
            break;
        case CANDOR_DTYPE_F16:
            dst[0] = ref_f16_to_f32(read_u16(p));
            break;
        case CANDOR_DTYPE_BF16:
            dst[0] = ref_bf16_to_f32(read_u16(p));
            break;
        case CANDOR_DTYPE_Q4_0:
            dequant_q4_0(p, dst);
            break;
        case CANDOR_DTYPE_Q5_0:
            dequant_q5_0(p, dst);
            break;
        case CANDOR_DTYPE_Q8_0:
            dequant_q8_0(p, dst);
            break;
        case CANDOR_DTYPE_Q4_K:
            dequant_q4_k(p, dst);
            break;
        case CANDOR_DTYPE_Q6_K:
            dequant_q6_k(p, dst);
            break;
        case CANDOR_DTYPE_MXFP4:
            dequant_mxfp4(p, dst);
            break;
        default:
            return -1;
        }
    }
    return 0;
}
