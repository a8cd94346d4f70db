#!/usr/bin/env python3
"""A GGUF model's skeleton: everything but its weights, small enough to travel where the model
cannot (the GPU machine takes 64 MiB from this one and downloads nothing), and filled back there
into a GGUF of the same size, layout, metadata, tokenizer, tensor shapes and quantization types,
its weights tiled from a few real blocks of each tensor. Speed does not depend on the weights'
values, so `candor bench` on the filled file measures the real model's work; its tokens mean
nothing, and a result from it is named as such (`random-weights` in the file name).

    python3 scripts/gguf-skeleton.py make MODEL.gguf SKELETON.skel.xz
    python3 scripts/gguf-skeleton.py fill SKELETON.skel.xz OUT.gguf

Why a script and not candor: this is tooling for the GPU proof (scripts/gpu-kit.sh makes the
skeletons, scripts/gpu-proof.sh fills them), Python's standard library is all it needs, and
the GPU machine has Python for the transformers side.

Skeleton layout (lzma-compressed): a JSON line {"format", "data_start", "tensors": [{"name",
"offset", "size", "sample"}]} (offsets from the start of the data section, sizes in bytes,
`sample` the bytes kept of the tensor's start: whole blocks, up to SAMPLE_BYTES), then the
file's first `data_start` bytes verbatim (header, metadata, tensor infos, alignment padding),
then the samples end to end in tensor order.
"""
import argparse
import json
import lzma
import struct
import sys

FORMAT = "candor-gguf-skeleton-1"
# Bytes kept of each tensor: a few blocks of every quantization type.
SAMPLE_BYTES = 4096

# ggml types: (elements per block, bytes per block).
BLOCKS = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 36),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    30: (1, 2),  # BF16
}

# GGUF metadata value types: fixed sizes (8 = string, 9 = array are read apart).
VALUE_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class Reader:
    def __init__(self, f):
        self.f = f

    def take(self, fmt):
        size = struct.calcsize(fmt)
        raw = self.f.read(size)
        if len(raw) != size:
            raise ValueError("the file ends inside its header")
        return struct.unpack(fmt, raw)

    def string(self):
        (n,) = self.take("<Q")
        return self.f.read(n).decode("utf-8", "replace")

    def skip_value(self, vtype):
        if vtype == 8:
            self.string()
        elif vtype == 9:
            etype, n = self.take("<IQ")
            if etype in (8, 9):
                for _ in range(n):
                    self.skip_value(etype)
            else:
                self.f.seek(VALUE_BYTES[etype] * n, 1)
        elif vtype in VALUE_BYTES:
            self.f.seek(VALUE_BYTES[vtype], 1)
        else:
            raise ValueError(f"unknown metadata value type {vtype}")

    def value(self, vtype):
        if vtype == 4:
            return self.take("<I")[0]
        self.skip_value(vtype)
        return None


def read_layout(path):
    """(data_start, tensors as (name, offset, size)) of a GGUF file (version 2 or 3)."""
    with open(path, "rb") as f:
        r = Reader(f)
        magic, version, n_tensors, n_kv = r.take("<4sIQQ")
        if magic != b"GGUF" or version not in (2, 3):
            raise ValueError(f"{path}: not a GGUF v2/v3 file")
        alignment = 32
        for _ in range(n_kv):
            key = r.string()
            (vtype,) = r.take("<I")
            value = r.value(vtype)
            if key == "general.alignment" and value:
                alignment = value
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            (n_dims,) = r.take("<I")
            dims = r.take(f"<{n_dims}Q")
            ggml_type, offset = r.take("<IQ")
            if ggml_type not in BLOCKS:
                raise ValueError(f"{path}: tensor {name} of unknown ggml type {ggml_type}")
            per_block, block_bytes = BLOCKS[ggml_type]
            elements = 1
            for d in dims:
                elements *= d
            if elements % per_block:
                raise ValueError(f"{path}: tensor {name} is not whole blocks")
            tensors.append((name, offset, elements // per_block * block_bytes, block_bytes))
        info_end = f.tell()
    data_start = (info_end + alignment - 1) // alignment * alignment
    return data_start, tensors


def make(model, skeleton):
    data_start, tensors = read_layout(model)
    entries, samples = [], []
    with open(model, "rb") as f:
        header = f.read(data_start)
        for name, offset, size, block_bytes in tensors:
            keep = min(size, max(block_bytes, SAMPLE_BYTES // block_bytes * block_bytes))
            f.seek(data_start + offset)
            sample = f.read(keep)
            if len(sample) != keep:
                raise ValueError(f"{model}: tensor {name} runs past the end of the file")
            samples.append(sample)
            entries.append({"name": name, "offset": offset, "size": size, "sample": keep})
    doc = {"format": FORMAT, "data_start": data_start, "tensors": entries}
    with lzma.open(skeleton, "wb", preset=6) as out:
        out.write(json.dumps(doc).encode() + b"\n")
        out.write(header)
        for s in samples:
            out.write(s)
    print(f"{skeleton}: {len(entries)} tensors, {data_start} bytes of header")


def fill(skeleton, model):
    with lzma.open(skeleton, "rb") as f:
        doc = json.loads(f.readline())
        if doc.get("format") != FORMAT:
            raise ValueError(f"{skeleton}: not a {FORMAT} file")
        header = f.read(doc["data_start"])
        samples = [f.read(t["sample"]) for t in doc["tensors"]]
    with open(model, "wb") as out:
        out.write(header)
        at = 0
        for t, sample in sorted(zip(doc["tensors"], samples), key=lambda p: p[0]["offset"]):
            if t["offset"] < at or not sample:
                raise ValueError(f"{skeleton}: tensor {t['name']} overlaps the one before")
            out.write(b"\0" * (t["offset"] - at))
            whole, rest = divmod(t["size"], len(sample))
            out.write(sample * whole + sample[:rest])
            at = t["offset"] + t["size"]
    print(f"{model}: {len(samples)} tensors, weights tiled from their first blocks")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="keep a GGUF's header and a few blocks of each tensor")
    m.add_argument("model")
    m.add_argument("skeleton")
    fl = sub.add_parser("fill", help="a GGUF of the skeleton's layout, weights tiled")
    fl.add_argument("skeleton")
    fl.add_argument("model")
    args = ap.parse_args()
    try:
        if args.cmd == "make":
            make(args.model, args.skeleton)
        else:
            fill(args.skeleton, args.model)
    except (OSError, ValueError, lzma.LZMAError) as e:
        sys.exit(f"gguf-skeleton: {e}")


if __name__ == "__main__":
    main()
