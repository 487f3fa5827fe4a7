"""What verifying the user cache costs: SHA-256 of every cache entry against the work the entry saves or feeds.

    python benchmarks/cache_verify.py [--num-tokens 2048] [--window 512] [--text wiki] [--repeats 3]

Uses a fresh temporary cache (``LLMSPLIT_CACHE``), so the first run converts SmolLM2 (about 15 s) and computes
the token ids and the hidden-state prefixes. Then, for each kind of entry, it times the verified read against the
operation that uses it, fastest of ``--repeats`` (the file pages warm, as on any reload):

- converted model: hashing its files (`verify_dir_entry`) vs loading the model from that directory (and CRC-32,
  the faster non-cryptographic checksum that was considered instead);
- token ids: their SHA-256 vs tokenising the text again;
- prefixes: the verified read (hash + ``torch.load``) vs the unverified ``torch.load`` and vs recomputing them;
- all of it against a whole start from a warm cache (``SplitRunner.from_pretrained(...).prefixes()``).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
import zlib
from datetime import date
from pathlib import Path

from timing import best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-tokens", type=int, default=2048)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--text", default="wiki")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    os.environ["LLMSPLIT_CACHE"] = tempfile.mkdtemp(prefix="llmsplit-bench-cache-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from llmsplit_env.llm import SplitRunner
    from llmsplit_env.llm.cache_entry import read_verified, sha256_bytes, verify_dir_entry
    from llmsplit_env.llm.model import convert_alias, load_causal_lm
    from llmsplit_env.llm.model_info import alias_gguf
    from llmsplit_env.llm.text import read_text, tokenize_text, tokenizer_key

    t0 = time.perf_counter()
    model_dir = convert_alias("smollm2-135m")
    convert_s = time.perf_counter() - t0
    gguf = alias_gguf("smollm2-135m")
    settings = {"alias": "smollm2-135m", "gguf": gguf.name, "gguf_size": gguf.stat().st_size, "dtype": "float32"}
    model_bytes = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file())
    rows = []

    def verify_model():
        reason = verify_dir_entry(model_dir, "model", settings)
        assert not reason, reason

    verify_s = best(verify_model, args.repeats)
    load_s = best(lambda: load_causal_lm(str(model_dir), torch.float32, torch.device("cpu")), args.repeats)
    rows.append(("converted model (all files)", model_bytes, verify_s, "model load", load_s))
    rows.append(("converted model (all files)", model_bytes, verify_s, "GGUF conversion", convert_s))

    def crc32_model():  # the fast alternative considered (zlib's CRC-32, 32 bits, not a cryptographic hash)
        for f in model_dir.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    crc = 0
                    while chunk := fh.read(1 << 20):
                        crc = zlib.crc32(chunk, crc)

    crc_s = best(crc32_model, args.repeats)
    rows.append(("converted model: CRC-32 instead", model_bytes, crc_s, "model load", load_s))

    runner = SplitRunner.from_pretrained(
        "smollm2-135m", args.text, num_tokens=args.num_tokens, window=args.window, dtype="float32", device="cpu"
    )
    tok = runner.tokenizer
    key = tokenizer_key(tok)
    tok_path = next((Path(os.environ["LLMSPLIT_CACHE"]) / "tokens").glob("*.npy"))
    content = read_text(args.text)[1]
    tokenize_text(args.text, tok, key)
    tok_raw = tok_path.read_bytes()
    tok_verify_s = best(lambda: sha256_bytes(tok_raw), args.repeats)
    tok_build_s = best(lambda: tok(content, add_special_tokens=False), 1)
    tok_bytes = tok_path.stat().st_size
    rows.append(("token ids: SHA-256", tok_bytes, tok_verify_s, "tokenising", tok_build_s))

    t0 = time.perf_counter()
    runner.prefixes()
    prefix_build_s = time.perf_counter() - t0

    def whole_start():  # what a user waits for: resolve (verify) the model, load it, read (verify) the token ids
        SplitRunner.from_pretrained(
            "smollm2-135m", args.text, num_tokens=args.num_tokens, window=args.window, dtype="float32", device="cpu"
        ).prefixes()

    start_s = best(whole_start, args.repeats)
    pre_path = runner._prefix_path()
    raw = pre_path.read_bytes()
    manifest_settings = {
        "ident": runner._prefix_ident(),
        "shape": list(runner.prefixes().shape),
        "dtype": str(runner.dtype),
    }

    def verified_prefix_read():
        data, reason = read_verified(pre_path, "prefixes", manifest_settings)
        assert data is not None, reason
        torch.load(io.BytesIO(data), weights_only=True)

    pre_verify_s = best(verified_prefix_read, args.repeats)
    pre_load_s = best(lambda: torch.load(io.BytesIO(pre_path.read_bytes()), weights_only=True), args.repeats)
    hash_s = best(lambda: sha256_bytes(raw), args.repeats)
    rows.append(("prefixes: SHA-256 alone", len(raw), hash_s, "unverified torch.load", pre_load_s))
    rows.append(("prefixes (read + verify + load)", len(raw), pre_verify_s, "unverified torch.load", pre_load_s))
    rows.append(("prefixes (read + verify + load)", len(raw), pre_verify_s, "computing them", prefix_build_s))
    all_bytes, all_verify_s = model_bytes + tok_bytes + len(raw), verify_s + tok_verify_s + hash_s
    rows.append(("all three: hashing only", all_bytes, all_verify_s, "whole start from the cache", start_s))

    print(
        f"# cache verification cost ({date.today().isoformat()}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPU cores, fastest of {args.repeats}; "
        f"{args.num_tokens} tokens of {args.text!r})"
    )
    print("| entry | MB | verify s | against | its s | verify / it |")
    print("|---|---|---|---|---|---|")
    for name, nbytes, v, what, s in rows:
        print(f"| {name} | {nbytes / 1e6:.1f} | {v:.3f} | {what} | {s:.3f} | {v / s:.2f} |")
    print(f"SHA-256 throughput: {len(raw) / hash_s / 1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
