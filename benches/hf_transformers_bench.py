#!/usr/bin/env python3
"""HF transformers side by side with `candor bench` on the same GPU: the same model shapes in
bf16 with random weights (no download), the same prompt and decode lengths, the same batch sizes.

    python3 benches/hf_transformers_bench.py --shapes llama-8b -p 512 -n 128 -b 1,8,32 \
        --json benches/results/hf-transformers-dummy-llama-8b-h100.json

Tests, as candor names them: `pp512` (one 512-token prompt, one forward pass, tokens/s) and
`tg128@bB` (B sequences each generating 128 tokens greedily after a 1-token prompt, with the KV
cache; aggregate tokens/s = B * 128 / seconds). Each is repeated -r times after one warm-up run;
mean and sample standard deviation as llama-bench and candor report them.

Needs torch (CUDA) and transformers; run it on the GPU machine (see docs/cuda.md).
"""
import argparse
import json
import platform
import statistics
import subprocess
import time

# The published configs of the models candor's dummy shape table copies
# (candor-models src/dummy.rs); `--config FILE` takes any other config.json.
SHAPES = {
    "llama-8b": {  # meta-llama/Llama-3.1-8B
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "max_position_embeddings": 131072, "tie_word_embeddings": False,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    },
    "llama-1b": {  # meta-llama/Llama-3.2-1B
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
        "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "max_position_embeddings": 131072, "tie_word_embeddings": True,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    },
    "qwen2.5-7b": {  # Qwen/Qwen2.5-7B
        "model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584,
        "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
        "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "max_position_embeddings": 131072, "use_sliding_window": False,
        "tie_word_embeddings": False,
    },
    "qwen2.5-0.5b": {  # Qwen/Qwen2.5-0.5B (the shapes of the Q4_K_M test model)
        "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
        "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "max_position_embeddings": 32768, "use_sliding_window": False,
        "tie_word_embeddings": True,
    },
    "gpt-oss-20b": {  # openai/gpt-oss-20b (its MXFP4 experts as bf16 here)
        "model_type": "gpt_oss", "vocab_size": 201088, "hidden_size": 2880,
        "intermediate_size": 2880, "num_hidden_layers": 24, "num_attention_heads": 64,
        "num_key_value_heads": 8, "head_dim": 64, "num_local_experts": 32,
        "num_experts_per_tok": 4, "sliding_window": 128, "rms_norm_eps": 1e-5,
        "rope_theta": 150000.0, "max_position_embeddings": 131072,
        "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False,
                         "original_max_position_embeddings": 4096},
        "tie_word_embeddings": False,
    },
    "gemma3-270m": {  # google/gemma-3-270m (the shapes of the Q4_K_M test model)
        "model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 640,
        "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 256, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window": 512,
        "query_pre_attn_scalar": 256, "max_position_embeddings": 32768,
        "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
    },
}


def gpu_facts(torch):
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        driver = None
    return {
        "gpu_name": props.name,
        "gpu_memory_bytes": props.total_memory,
        "compute_capability": f"{props.major}.{props.minor}",
        "driver_version": driver,
        "torch_version": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "host": platform.node(),
    }


def timed(sync, fn, reps):
    fn()  # warm-up: kernels selected, memory pools grown
    sync()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def result(test, kind, n_tokens, batch, seconds):
    tok_s = [n_tokens / s for s in seconds]
    return {
        "test": test, "kind": kind, "n_tokens": n_tokens, "batch": batch, "depth": 0,
        "seconds": seconds, "tok_s": tok_s, "tok_s_mean": statistics.mean(tok_s),
        "tok_s_sd": statistics.stdev(tok_s) if len(tok_s) > 1 else 0.0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", choices=sorted(SHAPES), default="llama-8b")
    ap.add_argument("--config", help="an HF config.json to use instead of --shapes")
    ap.add_argument("--name", help="the model's name in the result (default: candor bench's "
                    "name for dummy weights of these shapes, `dummy-qwen2-0.5b`); `candor report` "
                    "puts runs of one name under one model")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-b", "--batch", default="1,8,32", help="decode batch sizes")
    ap.add_argument("-r", "--repetitions", type=int, default=5)
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa, eager, flash_attention_2)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cuda",
                    help="torch device (cpu only to try this script where there is no GPU)")
    ap.add_argument("--json", help="write the result document here")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    if args.config:
        with open(args.config) as f:
            cfg_dict = json.load(f)
        name = args.config
    else:
        cfg_dict = dict(SHAPES[args.shapes])
        name = None
    model_type = cfg_dict.pop("model_type")
    if args.name:
        name = args.name
    elif name is None:
        # As `candor bench --load-format dummy` names the same shapes (`dummy-qwen2-0.5b`), so
        # `candor report` puts both runs under one model.
        # (`gpt_oss` is `gpt-oss` there).
        name = f"dummy-{model_type.replace('_', '-')}-{args.shapes.rsplit('-', 1)[-1]}"
    config = AutoConfig.for_model(model_type, **cfg_dict)
    torch.manual_seed(args.seed)
    # transformers 5 names the argument `dtype`; 4.x called it `torch_dtype`.
    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    dev = args.device
    attn = args.attn
    with torch.device(dev):
        try:
            model = AutoModelForCausalLM.from_config(
                config, attn_implementation=attn, **{dtype_kw: torch.bfloat16})
        except ValueError as refused:
            # Some architectures have no SDPA path (gpt-oss: its attention sinks); transformers
            # then refuses the request rather than falling back, so fall back here, and say so
            # in the result.
            if attn == "eager":
                raise
            print(f"{model_type}: attn_implementation={attn} refused ({refused}); using eager")
            attn = "eager"
            model = AutoModelForCausalLM.from_config(
                config, attn_implementation=attn, **{dtype_kw: torch.bfloat16})
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    vocab = config.vocab_size
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)

    results = []
    with torch.inference_mode():
        if args.n_prompt > 0:
            ids = torch.randint(0, vocab, (1, args.n_prompt), device=dev, generator=gen)
            secs = timed(sync, lambda: model(ids, use_cache=False), args.repetitions)
            results.append(result(f"pp{args.n_prompt}", "prefill", args.n_prompt, 1, secs))
        for b in [int(x) for x in args.batch.split(",") if x]:
            if args.n_gen <= 0:
                break
            ids = torch.randint(0, vocab, (b, 1), device=dev, generator=gen)

            def decode():
                model.generate(ids, attention_mask=torch.ones_like(ids),
                               max_new_tokens=args.n_gen, min_new_tokens=args.n_gen,
                               do_sample=False, pad_token_id=0)
            secs = timed(sync, decode, args.repetitions)
            test = f"tg{args.n_gen}" + (f"@b{b}" if b > 1 else "")
            results.append(result(test, "decode", args.n_gen * b, b, secs))

    doc = {
        "schema_version": 1,
        "tool": "hf transformers",
        "transformers_version": transformers.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"name": name, "format": "dummy", "arch": model_type,
                  "quantization": "BF16", "parameters": params, "attn_implementation": attn},
        "hardware": gpu_facts(torch) if dev.startswith("cuda") else {"device": dev},
        "config": {"n_prompt": args.n_prompt, "n_gen": args.n_gen,
                   "repetitions": args.repetitions, "batch": args.batch, "seed": args.seed},
        "results": results,
    }
    print("| test | tok/s |\n| --- | ---: |")
    for r in results:
        print(f"| {r['test']} | {r['tok_s_mean']:.2f} ± {r['tok_s_sd']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
