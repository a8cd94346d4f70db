#!/usr/bin/env python3
"""llama-server's slot save / restore side by side with candor's, on the same GGUF, threads and
prompt, one server after the other in one run (standard library only):

1. a cold request (`POST /completion`, greedy, `n_predict` 16, a prompt of ~2300 tokens);
2. `POST /slots/0?action=save` (the prompt's K/V to a file under `--slot-save-path`);
3. the server restarted, `POST /slots/0?action=restore` from that file;
4. the same request again: it should reuse the restored prompt and answer the same text.

    python3 benches/slot_side_by_side.py LLAMA_SERVER LABEL [--candor target/release/candor]
        [--model FILE.gguf] [--threads 2] [--json FILE]

LLAMA_SERVER is a llama-server built locally (never committed); LABEL names the machine in the
result file (default benches/results/slots-qwen2.5-0.5b-LABEL.json). llama-server runs with one
slot (`-np 1`, `id_slot: 0`) and a 4096-token context; candor gives a lone request slot 0.
Each time is one request's wall clock from this client, HTTP and JSON included.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = Path.home() / ".cache/candor/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def prompt_text():
    """The same ~2300-token prompt every run: the start of this repository's README."""
    text = (HERE.parent / "README.md").read_text()[:9000]
    return "Summarise the following document in one sentence.\n\n" + text + "\n\nSummary:"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body):
    start = time.perf_counter()
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as answer:
        doc = json.loads(answer.read())
    return doc, time.perf_counter() - start


class Server:
    def __init__(self, argv, port):
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(1200):
            try:
                if urllib.request.urlopen(self.url + "/health").status == 200:
                    return
            except Exception:
                if self.proc.poll() is not None:
                    raise SystemExit(f"{argv[0]} exited with {self.proc.returncode}")
                time.sleep(0.1)
        raise SystemExit(f"{argv[0]} did not come up")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run(name, argv_for, slot_dir, prompt):
    request = {"prompt": prompt, "n_predict": 16, "temperature": 0, "cache_prompt": True,
               "id_slot": 0}
    port = free_port()
    server = Server(argv_for(port), port)
    try:
        cold, cold_s = post(server.url + "/completion", request)
        saved, save_s = post(server.url + "/slots/0?action=save", {"filename": "bench.bin"})
    finally:
        server.stop()
    size = os.path.getsize(slot_dir / "bench.bin")
    port = free_port()
    server = Server(argv_for(port), port)
    try:
        restored, restore_s = post(server.url + "/slots/0?action=restore",
                                   {"filename": "bench.bin"})
        warm, warm_s = post(server.url + "/completion", request)
    finally:
        server.stop()
    row = {
        "server": name,
        "cold_s": cold_s,
        "save_s": save_s,
        "saved_tokens": saved.get("n_saved"),
        "file_bytes": size,
        "restore_s": restore_s,
        "restored_tokens": restored.get("n_restored"),
        "after_restore_s": warm_s,
        "prompt_tokens_computed_after_restore": warm.get("timings", {}).get("prompt_n"),
        "same_text": cold.get("content") == warm.get("content"),
    }
    print(f"{name:>12}: cold {cold_s:6.2f} s  save {save_s * 1000:6.0f} ms ({size / 1e6:.1f} MB)"
          f"  restore {restore_s * 1000:6.0f} ms  after restore {warm_s:5.2f} s"
          f"  same text {row['same_text']}")
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("llama_server")
    ap.add_argument("label")
    ap.add_argument("--candor", default=str(HERE.parent / "target" / "release" / "candor"))
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    prompt = prompt_text()
    rows = []
    with tempfile.TemporaryDirectory(prefix="slot-bench-") as tmp:
        for name in ["candor", "llama-server"]:
            slot_dir = Path(tmp) / name
            slot_dir.mkdir()
            if name == "candor":
                def argv_for(port, slot_dir=slot_dir):
                    return [args.candor, "serve", "--model", args.model, "--port", str(port),
                            "--threads", str(args.threads), "--slot-save-path", str(slot_dir)]
            else:
                def argv_for(port, slot_dir=slot_dir):
                    return [args.llama_server, "-m", args.model, "--port", str(port),
                            "-t", str(args.threads), "-np", "1", "-c", "4096",
                            "--slot-save-path", str(slot_dir) + "/"]
            rows.append(run(name, argv_for, slot_dir, prompt))
    doc = {"model": Path(args.model).name, "threads": args.threads, "machine": args.label,
           "command": "python3 benches/slot_side_by_side.py LLAMA_SERVER " + args.label,
           "results": rows}
    out = args.json or str(HERE / "results" / f"slots-qwen2.5-0.5b-{args.label}.json")
    Path(out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
