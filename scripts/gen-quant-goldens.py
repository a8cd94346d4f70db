"""Writes tests/fixtures/quant/gguf_py_dequant.txt: random GGUF blocks of every type the CPU
kernels read, with gguf-py's dequantization of them (the reference llama.cpp's converter
ships), for `quant::tests::dequantization_matches_gguf_py`.

Usage: python scripts/gen-quant-goldens.py  (needs `pip install gguf numpy`)

Each line: TYPE, the block's bytes in hex, then its values (float32 as %.9g). The f16 scale
fields are set to small random values first, so no block holds NaN or infinity.
"""
import pathlib

import numpy as np
from gguf import GGML_QUANT_SIZES, quants
from gguf import GGMLQuantizationType as T

# Byte offsets of the f16 scale fields per type (the rest of a block is random bytes).
F16_FIELDS = {
    T.Q4_0: [0], T.Q5_0: [0], T.Q8_0: [0], T.Q4_1: [0, 2], T.Q5_1: [0, 2],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0],
    T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0], T.IQ1_S: [0],
    T.IQ1_M: [], T.TQ1_0: [52], T.TQ2_0: [64],
}
# As candor-kernels' `QuantType` debug-prints them.
NAMES = {
    T.Q4_K: "Q4K", T.Q5_K: "Q5K", T.Q6_K: "Q6K", T.Q2_K: "Q2K", T.Q3_K: "Q3K",
    T.IQ4_NL: "Iq4Nl", T.IQ4_XS: "Iq4Xs", T.IQ2_XXS: "Iq2Xxs", T.IQ2_XS: "Iq2Xs",
    T.IQ2_S: "Iq2S", T.IQ3_XXS: "Iq3Xxs", T.IQ3_S: "Iq3S", T.IQ1_S: "Iq1S", T.IQ1_M: "Iq1M",
    T.TQ1_0: "Tq1_0", T.TQ2_0: "Tq2_0",
}

rng = np.random.default_rng(20261205)
lines = []
for ty, fields in F16_FIELDS.items():
    _, size = GGML_QUANT_SIZES[ty]
    for _ in range(4):
        block = rng.integers(0, 256, size=size, dtype=np.uint8)
        for at in fields:
            d = np.float16(rng.uniform(-0.05, 0.05))
            block[at:at + 2] = np.frombuffer(d.tobytes(), dtype=np.uint8)
        if ty == T.IQ1_M:
            # IQ1_M keeps its f16 scale in the top nibbles of the four scale words at 48.
            bits = int(np.float16(rng.uniform(-0.05, 0.05)).view(np.uint16))
            words = block[48:56].view(np.uint16).copy()
            for i in range(4):
                words[i] = (int(words[i]) & 0x0FFF) | (((bits >> (4 * i)) & 0xF) << 12)
            block[48:56] = words.view(np.uint8)
        values = quants.dequantize(block, ty).astype(np.float32)
        name = NAMES.get(ty, ty.name)
        lines.append(" ".join([name, block.tobytes().hex()] + ["%.9g" % v for v in values]))
out = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/quant/gguf_py_dequant.txt"
out.write_text("\n".join(lines) + "\n")
print(f"{len(lines)} blocks -> {out}")
