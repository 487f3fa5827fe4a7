"""Live quality for many envs: one shared quality server against one model per env, in one run.

    python benchmarks/quality_server.py [--envs 8] [--steps 6] [--num-tokens 512] [--window 256] [--device cpu]

Every env is `LLMSplit-LLM-v0` in its own process (a Ray actor, as an RLlib env runner holds one), stepped in
lockstep from the driver with the same seeds in every mode. Modes:

- ``separate``: each env loads its own model (``llm.server`` None) with torch's default thread count for the machine
  (what a plain process gets), so N models and N x threads share the cores;
- ``shared``: one `llmsplit_env.quality.server` actor (all ``--server-cpus`` of the Ray instance) holds the model and
  batches the envs' concurrent requests (``batching="checked"``, up to ``--max-batch`` per forward);
- ``serial``: the same server serving one request per forward (``batching="off"``): batched vs one at a time.

On a CPU the default modes are all three; with ``--device cuda`` (a GPU) ``shared`` and ``serial``, where the target
is batched ≥ 3x one-at-a-time. Each step all envs take the same split (a sweep over ``--splits``): requests are
grouped by split, so envs that choose different splits batch less. Reported: combined quality evaluations per second
over the timed steps (after one warm-up step), the RSS of the processes that hold a model (N in ``separate``, the
server alone otherwise) and of the env processes, the server's forwards and batch sizes, and whether every mode gave
the same observations, rewards and infos, bit for bit.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    """This process's resident set size, MiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class EnvHost:
    """One env in its own process (as an RLlib env runner holds one); `tests/test_quality_server.py` uses it too."""

    def __init__(self, config: dict, threads: int | None = None) -> None:
        import importlib

        import gymnasium as gym

        if threads is not None:  # only a process that loads the model imports torch
            import torch

            torch.set_num_threads(threads)
        importlib.import_module("llmsplit_env")
        self.env = gym.make("LLMSplit-LLM-v0", config=config)

    def reset(self, seed: int) -> tuple:
        obs, info = self.env.reset(seed=seed)
        return obs.tolist(), info

    def step(self, action: int) -> tuple:
        obs, r, term, trunc, info = self.env.step(action)
        return obs.tolist(), r, term, trunc, info

    def evaluations(self) -> int:
        return self.env.unwrapped.quality_backend.evaluations

    def loaded(self) -> dict:
        """Whether this process imported torch and holds a model (an env served by a quality server does neither)."""
        return {"torch": "torch" in sys.modules, "runner": self.env.unwrapped.quality_backend.runner is not None}

    def report(self) -> dict:
        return {"rss_mib": rss_mib(), "evaluations": self.evaluations()}


def run_mode(ray, mode: str, args: argparse.Namespace, section: dict) -> dict:
    from llmsplit_env.quality import client as qs

    host_cls = ray.remote(num_cpus=0)(EnvHost)
    # leakage from the shipped profile (same model and scheme, other text): nothing to fit in any mode
    config = {"llm": {**section, "profile_match": "model"}, "max_episode_steps": 10**6}
    server = None
    if mode != "separate":
        name = f"bench-{mode}"
        server = qs.start_quality_server(
            name, **section, num_cpus=args.server_cpus, max_batch=args.max_batch,
            batching="off" if mode == "serial" else "checked", batch_wait_s=args.batch_wait_s,
        )  # fmt: skip
        config["llm"]["server"] = name
    threads = args.threads_per_env if mode == "separate" else None
    t0 = time.perf_counter()
    hosts = [host_cls.remote(config, threads) for _ in range(args.envs)]
    ray.get([h.report.remote() for h in hosts])
    load_s = time.perf_counter() - t0
    splits = args.splits
    episodes = [[x] for x in ray.get([h.reset.remote(1000 + i) for i, h in enumerate(hosts)])]

    def lockstep(action: int) -> None:
        for ep, step in zip(episodes, ray.get([h.step.remote(action) for h in hosts]), strict=True):
            ep.append(step)

    lockstep(splits[0] - 1)  # warm-up: first forwards, allocator, caches
    before = sum(r["evaluations"] for r in ray.get([h.report.remote() for h in hosts]))
    if server is not None:
        ray.get(server.reset_stats.remote())
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    for i in range(args.steps):
        lockstep(splits[(i + 1) % len(splits)] - 1)
    wall = time.perf_counter() - t0
    reports = ray.get([h.report.remote() for h in hosts])
    evals = sum(r["evaluations"] for r in reports) - before
    out = {
        "mode": mode,
        "evals": evals,
        "wall_s": wall,
        "evals_per_s": evals / wall,
        "load_s": load_s,
        "env_rss_mib": sum(r["rss_mib"] for r in reports),
        "episodes": episodes,
        "load_avg": (load0, os.getloadavg()[0]),
    }
    if server is None:
        out["model_rss_mib"] = out["env_rss_mib"]
        out["models"] = args.envs
    else:
        info = ray.get(server.info.remote())
        stats = ray.get(server.stats.remote())
        out.update(
            model_rss_mib=stats["rss_mib"],
            models=1,
            forwards=stats["forwards"],
            requests=stats["requests"],
            batch_sizes=stats["batch_sizes"],
            batch_invariant=info["batch_invariant"],
            device=info["describe"]["device"],
            dtype=info["describe"]["dtype"],
        )
        qs.stop_quality_server(f"bench-{mode}")
    for h in hosts:
        ray.kill(h)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=6, help="timed lockstep steps (after one warm-up step)")
    p.add_argument("--splits", type=int, nargs="+", default=[1, 5, 14], help="splits swept, one per step")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--text", default="wiki")
    p.add_argument("--num-tokens", type=int, default=512)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="cpu", help="cpu, or cuda: the server on a GPU (batched vs one at a time)")
    p.add_argument("--modes", nargs="+", default=None, choices=("separate", "shared", "serial"))
    p.add_argument("--server-cpus", type=int, default=None, help="CPUs (torch threads) of the server (default all)")
    p.add_argument("--threads-per-env", type=int, default=None, help="torch threads per own-model env (default: "
                   "torch's default for this machine)")  # fmt: skip
    p.add_argument("--max-batch", type=int, default=None, help="requests per forward (default: --envs)")
    p.add_argument("--batch-wait-s", type=float, default=0.02)
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    import torch

    gpu = args.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        print("--device cuda: no GPU on this machine", file=sys.stderr)
        return 1
    cpus = len(os.sched_getaffinity(0))
    args.server_cpus = args.server_cpus or cpus
    args.threads_per_env = args.threads_per_env or torch.get_num_threads()
    args.max_batch = args.max_batch or args.envs
    modes = args.modes or (["shared", "serial"] if gpu else ["separate", "shared", "serial"])
    section = {"model": args.model, "text": args.text, "num_tokens": args.num_tokens, "window": args.window,
               "dtype": args.dtype, "device": "cuda" if gpu else "cpu"}  # fmt: skip
    # the model's safetensors copy and the clean prefixes cached once, so every mode starts warm
    from llmsplit_env.llm import SplitRunner

    SplitRunner.from_pretrained(args.model, args.text, num_tokens=args.num_tokens, window=args.window,
                                dtype=args.dtype, device=section["device"]).prefixes()  # fmt: skip
    ray.init(num_cpus=cpus, num_gpus=1 if gpu else 0, include_dashboard=False, log_to_driver=False)
    results = []
    try:
        for mode in modes:
            results.append(run_mode(ray, mode, args, section))
            print(f"{mode}: {results[-1]['evals_per_s']:.3f} evaluations/s", file=sys.stderr)
    finally:
        ray.shutdown()

    base = results[0]
    identical = all(r["episodes"] == base["episodes"] for r in results[1:])
    device = next((r["device"] for r in results if r.get("device")), section["device"])
    dtype = next((r["dtype"] for r in results if r.get("dtype")), args.dtype)
    day = datetime.date.today().isoformat()
    print(
        f"# quality_server: {args.envs} envs of LLMSplit-LLM-v0, {args.model} {dtype} on {device}, "
        f"{args.num_tokens} tokens / window {args.window}, {args.steps} lockstep steps over splits {args.splits}, "
        f"{day}, {platform.machine()}, {cpus} CPU cores, torch {torch.__version__}"
    )
    print("| mode | models | evals/s | x first | wall s | model RSS MiB | env RSS MiB | forwards/requests | batches |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        fw = f"{r['forwards']} / {r['requests']}" if "forwards" in r else "-"
        bs = " ".join(f"{n}x{c}" for n, c in r.get("batch_sizes", {}).items()) or "-"
        print(
            f"| {r['mode']} | {r['models']} | {r['evals_per_s']:.3f} | {r['evals_per_s'] / base['evals_per_s']:.2f} | "
            f"{r['wall_s']:.1f} | {r['model_rss_mib']:.0f} | {r['env_rss_mib']:.0f} | {fw} | {bs} |"
        )
    by = {r["mode"]: r for r in results}
    if "separate" in by and "shared" in by:
        s, o = by["shared"], by["separate"]
        print(
            f"shared / separate: {s['evals_per_s'] / o['evals_per_s']:.2f}x evaluations/s (target >= 1), "
            f"{o['model_rss_mib'] / s['model_rss_mib']:.1f}x less model-process RSS"
        )
    if "shared" in by and "serial" in by:
        print(
            f"batched / one at a time: {by['shared']['evals_per_s'] / by['serial']['evals_per_s']:.2f}x"
            + (" (target >= 3 on a GPU)" if gpu else "")
        )
    invariant = [r.get("batch_invariant") for r in results if "batch_invariant" in r]
    print(
        f"identical observations, rewards and infos in every mode: {'yes' if identical else 'NO'}; "
        f"server batch-invariance check: {invariant}; load avg {results[0]['load_avg'][0]:.1f} -> "
        f"{results[-1]['load_avg'][1]:.1f}"
    )
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
