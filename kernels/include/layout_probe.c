/*
 * Sizes and field offsets of the ABI structs as the C compiler lays them out. Built by build.rs
 * into a small test library; candor's unit test compares its Rust mirror (src/backend/plugin/
 * ffi.rs) against these numbers, so a field added to one side only is caught.
 */
#include "candor_device.h"
#include <stddef.h>

#if defined(_WIN32)
#define PROBE_EXPORT __declspec(dllexport)
#else
#define PROBE_EXPORT __attribute__((visibility("default")))
#endif

#define FIELD(T, f) (uint64_t) offsetof(T, f)

/* Writes up to `cap` numbers to `out` and returns how many there are. */
PROBE_EXPORT uint64_t candor_layout_probe(uint64_t *out, uint64_t cap) {
    const uint64_t v[] = {
        sizeof(CandorTensor), FIELD(CandorTensor, offset), FIELD(CandorTensor, dtype),
        FIELD(CandorTensor, rank), FIELD(CandorTensor, shape), FIELD(CandorTensor, strides),
        sizeof(CandorOpDesc), FIELD(CandorOpDesc, flags), FIELD(CandorOpDesc, dims),
        sizeof(CandorSeq), FIELD(CandorSeq, num_blocks), FIELD(CandorSeq, block_table),
        sizeof(CandorAttention), FIELD(CandorAttention, scale),
        FIELD(CandorAttention, sliding_window),
        sizeof(CandorDeviceApi), FIELD(CandorDeviceApi, name), FIELD(CandorDeviceApi, dtype_mask),
        FIELD(CandorDeviceApi, supports_op), FIELD(CandorDeviceApi, buffer_alloc),
        FIELD(CandorDeviceApi, synchronize), FIELD(CandorDeviceApi, embedding),
        FIELD(CandorDeviceApi, paged_attention), FIELD(CandorDeviceApi, cast),
        FIELD(CandorDeviceApi, paged_attention_sinks), FIELD(CandorDeviceApi, heads_linear),
        FIELD(CandorDeviceApi, layer_norm), FIELD(CandorDeviceApi, paged_attention_alibi),
        FIELD(CandorDeviceApi, clamp), FIELD(CandorDeviceApi, xielu),
        FIELD(CandorDeviceApi, quantize_rows), FIELD(CandorDeviceApi, mul_sigmoid),
    };
    uint64_t n = sizeof v / sizeof v[0];
    for (uint64_t i = 0; i < n && i < cap; i++) {
        out[i] = v[i];
    }
    return n;
}
