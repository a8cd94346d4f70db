#!/usr/bin/env python3
"""Encoder throughput side by side: candor's /v1/embeddings against transformers on the same
CPU threads, over the same token ids, random weights (nothing to download):

- `--arch bert` (default): a bge-small-en-v1.5-shaped BertModel (12 layers, 384 wide, 1536
  FFN), with the versions of ../shared/fixtures/requirements.txt (torch, transformers 4.57);
- `--arch nomic`: a nomic-embed-text-v1.5-shaped NomicBertModel (12 layers, 768 wide, 3072
  SwiGLU FFN, rotary positions), which needs transformers 5 (see
  tests/fixtures/tiny/make_nomic.py's header for installing it beside the pinned venv);
- `--arch modernbert`: a ModernBERT-base-shaped ModernBertModel (22 layers, 768 wide, 1152
  GeGLU FFN, a 128-token window on two layers of three), pinned transformers;
- `--arch gte`: a gte-base-en-v1.5-shaped GteModel (12 layers, 768 wide, 3072 GeGLU FFN,
  NTK-scaled rotary positions, no token types), served from the remote code's checkout, which
  needs transformers 5 like `nomic`;
- `--arch splade`: a splade-v3-shaped BertForMaskedLM (bert-base: 12 layers, 768 wide, its
  30522-entry masked-LM head) pooled by SPLADE (max of log(1 + relu)), timed as
  sentence-transformers' SparseEncoder computes it against candor's `/embed_sparse`; its
  output bias lowered so about 0.3% of the scores are positive, so each vector keeps a few
  hundred entries, as a trained model's do;
- `--arch distilbert-splade`: the same over an opensearch-neural-sparse-encoding-doc-v3-distill
  shaped DistilBertForMaskedLM (distilbert-base: 6 layers, 768 wide, its 30522-entry head): the
  document side of opensearch's inference-free encoders (their queries need no model).

    python3 benches/encoder_side_by_side.py [--arch bert|nomic|modernbert|gte|splade|distilbert-splade] [--candor target/release/candor]
        [--threads 2] [--shapes 32x128,8x512] [--json FILE]

Each timing is the best of three after a warm-up; candor's includes HTTP and JSON.
"""
import argparse
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKENIZER = HERE.parent / "tests" / "fixtures" / "tiny" / "bert_embed"


def make_checkout(out: Path, arch: str):
    """The model transformers times, saved as the checkout candor serves."""
    import torch

    torch.manual_seed(0)
    if arch == "nomic":
        sys.path.insert(0, str(TOKENIZER.parent))
        from make_nomic import hub_config, original_names
        from safetensors.torch import save_file
        from transformers import NomicBertConfig, NomicBertModel

        config = NomicBertConfig(
            vocab_size=30528, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=2048,
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        )
        model = NomicBertModel(config).eval()
        out.mkdir()
        save_file(original_names(model.state_dict()), str(out / "model.safetensors"))
        hub = hub_config(30528)
        hub.update(n_embd=768, n_head=12, n_inner=3072, n_layer=12, max_trained_positions=2048)
        (out / "config.json").write_text(json.dumps(hub))
    elif arch == "gte":
        sys.path.insert(0, str(TOKENIZER.parent))
        from make_gte import remote_config, remote_names
        from safetensors.torch import save_file
        from transformers import GteConfig, GteModel

        theta, ntk, head_dim = 500000.0, 2.0, 64
        sizes = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, max_position_embeddings=8192)
        config = GteConfig(vocab_size=30528, type_vocab_size=0, hidden_act="gelu", **sizes,
                           rope_parameters={"rope_type": "linear", "rope_theta": theta * ntk,
                                            "factor": ntk ** (2 / head_dim)})
        model = GteModel(config).eval()
        out.mkdir()
        save_file(remote_names(model.state_dict(), ""), str(out / "model.safetensors"))
        hub = remote_config("NewModel", 30528, theta, ntk, 0, **sizes)
        (out / "config.json").write_text(json.dumps(hub))
    elif arch in ("splade", "distilbert-splade"):
        from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM

        if arch == "splade":
            config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                num_attention_heads=12, intermediate_size=3072,
                                max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu")
            model = BertForMaskedLM(config).eval()
            bias = model.cls.predictions.bias
        else:
            config = DistilBertConfig(vocab_size=30522, dim=768, n_layers=6, n_heads=12,
                                      hidden_dim=3072, max_position_embeddings=512)
            model = DistilBertForMaskedLM(config).eval()
            bias = model.vocab_projector.bias
        with torch.no_grad():
            sample = model(input_ids=torch.tensor(inputs(4, 128))).logits
            bias -= torch.quantile(sample.flatten()[::97], 0.997)
        model.save_pretrained(out, safe_serialization=True)
        (out / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "",
             "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"},
            {"idx": 1, "name": "1", "path": "1_SpladePooling",
             "type": "sentence_transformers.sparse_encoder.models.SpladePooling"}]))
        (out / "1_SpladePooling").mkdir()
        (out / "1_SpladePooling" / "config.json").write_text(
            json.dumps({"pooling_strategy": "max", "activation_function": "relu"}))
        model = SpladeTimed(model)
    elif arch == "modernbert":
        from transformers import ModernBertConfig, ModernBertModel

        config = ModernBertConfig(vocab_size=30522, pad_token_id=0, cls_token_id=2, sep_token_id=3,
                                  bos_token_id=2, eos_token_id=3)
        model = ModernBertModel(config).eval()
        model.save_pretrained(out, safe_serialization=True)
    else:
        from transformers import BertConfig, BertModel

        config = BertConfig(
            vocab_size=30522, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2,
            hidden_act="gelu",
        )
        model = BertModel(config, add_pooling_layer=False).eval()
        model.save_pretrained(out, safe_serialization=True)
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        (out / name).write_text((TOKENIZER / name).read_text())
    return model


class SpladeTimed:
    """A masked LM's SPLADE vectors as sentence-transformers' SpladePooling computes them."""

    def __init__(self, mlm):
        self.mlm = mlm

    def __call__(self, input_ids):
        import torch

        logits = self.mlm(input_ids=input_ids).logits
        return torch.max(torch.log1p(torch.relu(logits)), dim=1).values


def inputs(n, length):
    random.seed(0)
    return [[2] + [random.randint(5, 30000) for _ in range(length - 2)] + [3] for _ in range(n)]


def best_of_three(run):
    run()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def time_transformers(model, threads, ids):
    import torch

    torch.set_num_threads(threads)
    batch = torch.tensor(ids)
    with torch.no_grad():
        return best_of_three(lambda: model(input_ids=batch))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_candor(url, ids, sparse):
    # A SPLADE vector is answered as its non-zero entries, as sparse-vector stores take it.
    path, field = ("/embed_sparse", "inputs") if sparse else ("/v1/embeddings", "input")
    body = json.dumps({field: ids}).encode()

    def post():
        req = urllib.request.Request(url + path, data=body,
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req).read())
        assert len(answer if sparse else answer["data"]) == len(ids)

    return best_of_three(post)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--candor", default=str(HERE.parent / "target" / "release" / "candor"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="32x128,8x512")
    ap.add_argument("--arch", choices=["bert", "nomic", "modernbert", "gte", "splade",
                                       "distilbert-splade"],
                    default="bert")
    ap.add_argument("--json")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="candor-encoder-bench-") as tmp:
        checkout = Path(tmp) / f"{args.arch}-shaped"
        model = make_checkout(checkout, args.arch)
        port = free_port()
        server = subprocess.Popen(
            [args.candor, "serve", "--model", str(checkout), "--port", str(port),
             "--threads", str(args.threads), "--max-waiting", "256"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if urllib.request.urlopen(url + "/health").status == 200:
                        break
                except Exception:
                    time.sleep(0.1)
            for n, length in shapes:
                ids = inputs(n, length)
                candor = time_candor(url, ids, args.arch.endswith("splade"))
                hf = time_transformers(model, args.threads, ids)
                rows.append({"inputs": n, "tokens_each": length,
                             "candor_tok_s": n * length / candor,
                             "transformers_tok_s": n * length / hf})
        finally:
            server.terminate()
            server.wait()
    import torch
    import transformers
    for r in rows:
        print(f"{r['inputs']:>3} x {r['tokens_each']:<4} candor {r['candor_tok_s']:7.0f} tok/s   "
              f"transformers {r['transformers_tok_s']:7.0f} tok/s   "
              f"({r['candor_tok_s'] / r['transformers_tok_s']:.2f}x)")
    shaped = {"bert": "bge-small-en-v1.5", "nomic": "nomic-embed-text-v1.5",
              "modernbert": "ModernBERT-base", "gte": "gte-base-en-v1.5",
              "splade": "splade-v3 (bert-base masked LM, SPLADE max pooling)",
              "distilbert-splade": "opensearch-neural-sparse-encoding-doc-v3-distill "
                                   "(distilbert-base masked LM, SPLADE max pooling)"}[args.arch]
    doc = {"model": f"{shaped} shapes, random weights", "threads": args.threads,
           "transformers": transformers.__version__, "torch": torch.__version__, "results": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
