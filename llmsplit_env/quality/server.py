"""A shared live-quality server: one Ray actor per device holds the model and serves batched evaluations to any number
of `LLMSplit-LLM-v0` envs (one process, RLlib env runners, other machines of a Ray cluster).

This module is the actor; drivers and envs reach it through `llmsplit_env.quality.client` (start, stop, stats,
connect, call, and ``llmsplit server``). Start one (the driver, once), then point envs at it by name (config
``llm.server``)::

    import ray
    from llmsplit_env.quality.client import start_quality_server

    ray.init(num_cpus=2)
    start_quality_server("quality", num_cpus=2)  # or with the env's llm settings: model=..., text=..., ...
    env = gym.make("LLMSplit-LLM-v0", llm={"server": "quality"})

or from a shell, detached, on a running cluster: ``llmsplit server start --name quality``.

Design
------
- **One actor** (`QualityServer`, an async Ray actor) loads the model once (`SplitRunner.from_pretrained`, the
  env's own loader), keeps the clean prefixes of every boundary and answers ``evaluate(split, scheme, level, params,
  seed)`` with ``(log PPL, lost fraction)``. It is named in the namespace `NAMESPACE`, so separate drivers and
  workers find it with ``ray.get_actor(name, namespace=NAMESPACE)``; `start_quality_server` creates it with
  ``get_if_exists=True`` (starting it twice returns the first one, after checking it runs the same settings). On a
  GPU it takes ``num_gpus=1``; on CPUs ``num_cpus`` (and as many torch threads).
- **Batching**: requests wait in per-split queues. The oldest request's split is served first, with up to
  ``max_batch`` requests of that split in one edge-side forward (`SplitRunner.forward_draws`: the draws stacked
  along the batch (window) dimension, the runner's own batched path); a lone request waits at most ``batch_wait_s``
  for company. While a forward runs (in one worker thread, so the event loop keeps accepting requests), new requests
  queue up: with envs that step concurrently the next forward takes them all.
- **Batch invariance**: each draw's noise comes from its own ``torch.Generator().manual_seed(seed)`` over its own
  copy of the prefix, and every op of the forward is row-independent (linear layers per token, attention per
  (window, head), norms per token, the NLL summed per window, in float64 per request). So a request's numbers can only
  depend on its batch through the kernels torch picks for the batch's shape. The server checks that once at start-up
  (``batching="checked"``, the default): at split ``L − 1`` (one decoder layer, norm and head: every kernel shape
  of any split, since all layers have the same shapes) it compares a forward of every batch size ``2..max_batch``
  with single forwards of the same draws, bit for bit, at every position. If any bit differs it serves one request
  per forward (``batch_invariant`` False in `info` and `stats`), so results never depend on batching. Single forwards
  are exactly what an env with its own model runs (`SplitRunner.evaluate` → `forward_draws` with one draw), so an env
  gets the same log-PPL from the server as from its own model (same machine kind; torch's CPU results here do not
  depend on the thread count). ``batching="trusted"`` skips the check (a GPU user who accepts last-bit
  differences for throughput), ``"off"`` never batches.
- **Failures stay with their request**: a request is checked when it arrives (split, channel, level, seed), so a
  bad one fails alone, before it joins a batch; should a batched forward still fail, its requests are run again one
  by one, so only the request that fails gets the error and the others their numbers (the same bits: batches are
  checked to equal single forwards).
- **Timeouts**: an env waits at most ``request_timeout_s`` (`DEFAULT_REQUEST_TIMEOUT_S`, a server setting every env
  reads when it connects) for an answer, then raises naming the server and the timeout, rather than blocking for
  ever on a server whose process stopped.
- **Counting** stays with the env: `LLMQuality.evaluations` counts its own requests exactly as with its own model;
  the server counts requests, forwards and batch sizes (`stats`).

Needs the optional dependency (``pip install llmsplit[ray]``); the rest of the package never imports Ray.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BATCHING = ("checked", "trusted", "off")
DEFAULT_WAIT_S = 0.01  # how long a lone request waits for others: small against a forward (~1 s CPU, ~10 ms GPU)
# How long an env waits for one answer before it raises (the server's setting, read by every env that connects): far
# above an honest wait (a queue of many envs' requests, each forward about 1 s on a CPU), far below "for ever" for a
# server whose process stopped or hangs
DEFAULT_REQUEST_TIMEOUT_S = 300.0
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes seeds in [0, 2**64 - 1]
CHECK_LEVEL_DB = 10.0  # the start-up check's channel (analog, m = 2): realistic noisy hidden states


class QualityServer:
    """The Ray actor: the model loaded once, clean prefixes kept, batched evaluations on demand (module docstring).

    Errors while loading are kept and reported by `info` (the client raises them with the config key)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = dict(spec)
        self.error: tuple[bool, str] | None = None
        self.runner = None
        self.batch_invariant: bool | None = None
        self.check_s = 0.0
        self.leakage: dict[tuple[int, int], list[float]] = {}
        self.counts = {"requests": 0, "forwards": 0, "forward_s": 0.0}
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._pending: dict[int, list[tuple]] = {}  # split -> [(channel, seed, future, arrival)], oldest first
        self._wake: asyncio.Event | None = None
        self._batcher: asyncio.Task | None = None
        # one thread runs every forward: the model is patched during a call (`SplitModel` is not thread-safe)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quality-forward")
        try:
            from llmsplit_env.llm import SplitRunner

            self.runner = SplitRunner.from_spec(spec)
            self.runner.prefixes()  # every boundary, once (or from the node's cache)
            self.clean_ppl = float(self.runner.clean_perplexity())
            self.max_batch = int(spec["max_batch"] or (16 if self.runner.device.type == "cuda" else 4))
            if spec["batching"] == "off":
                self.batch_invariant = None
            elif spec["batching"] == "checked":
                t0 = time.perf_counter()
                self.batch_invariant = self._check_batching()
                self.check_s = time.perf_counter() - t0
        except Exception as e:  # reported by info()
            self.error = (isinstance(e, (ValueError, OSError)), str(e) or type(e).__name__)

    # --- start-up ------------------------------------------------------------------------------------------------

    def _check_batching(self) -> bool:
        """True if a forward of every batch size ``2..max_batch`` gives each draw the bits of its single forward."""
        from llmsplit_env.llm.channel import make_channel

        r = self.runner
        if r.num_layers < 2 or self.max_batch < 2:
            return True  # nothing to compare: no split below L, or batches of one
        split = r.num_layers - 1
        draws = [(make_channel("analog", CHECK_LEVEL_DB, m=2.0), seed) for seed in range(self.max_batch)]
        single = [r.forward_draws(split, [d]).log_ppl[0] for d in draws]
        for n in range(2, self.max_batch + 1):
            got = r.forward_draws(split, draws[:n]).log_ppl
            if got.tobytes() != b"".join(v.tobytes() for v in single[:n]):
                return False
        return True

    @property
    def batching(self) -> bool:
        """Whether requests are batched (checked invariant, or trusted)."""
        mode = self.spec["batching"]
        return mode == "trusted" or (mode == "checked" and bool(self.batch_invariant))

    async def info(self) -> dict[str, Any]:
        import ray
        import torch

        out: dict[str, Any] = {
            "error": self.error,
            "spec": self.spec,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "torch": str(torch.__version__),  # a plain str: torch's TorchVersion would import torch in the env
            "threads": torch.get_num_threads(),
        }
        if self.error is None:
            out.update(
                describe=self.runner.describe(),
                num_layers=self.runner.num_layers,
                hidden_size=self.runner.hidden_size,
                clean_ppl=self.clean_ppl,
                max_batch=self.max_batch,
                batching=self.batching,
                batch_invariant=self.batch_invariant,
                check_s=self.check_s,
            )
        return out

    async def stats(self) -> dict[str, Any]:
        """Requests served, forwards run, their batch sizes and compute seconds (since start or `reset_stats`)."""
        return {
            **self.counts,
            "batch_sizes": dict(sorted(self.batch_sizes.items())),
            "pid": os.getpid(),
            "rss_mib": _rss_mib(),
        }

    async def reset_stats(self) -> None:
        self.counts = {"requests": 0, "forwards": 0, "forward_s": 0.0}
        self.batch_sizes.clear()

    async def scheme_params(self, scheme: str, params: dict) -> dict:
        """The channel's parameters with defaults filled in, as `make_channel(...).params()` (profile matching)."""
        from llmsplit_env.llm.channel import make_channel

        return dict(make_channel(scheme, 0.1 if scheme == "erasure" else 10.0, **params).params())

    async def probe_leakage(self, fit_tokens: int, test_tokens: int) -> list[float]:
        """The inversion probe's token-recovery accuracy per split, fitted on the text after the evaluation tokens
        (as `LLMQuality` does with its own model; computed once per setting)."""
        key = (int(fit_tokens), int(test_tokens))
        if key not in self.leakage:
            from llmsplit_env.llm.probe import probe_leakage

            loop = asyncio.get_running_loop()
            self.leakage[key] = await loop.run_in_executor(self._pool, probe_leakage, self.runner, *key)
        return self.leakage[key]

    # --- evaluations ---------------------------------------------------------------------------------------------

    async def evaluate(self, split: int, scheme: str, level: float, params: dict, seed: int) -> tuple[float, float]:
        """``(log PPL, lost fraction)`` of one channel draw (``seed``) at ``split`` and ``level``: what
        ``SplitRunner.evaluate(split, make_channel(scheme, level, **params), [seed])`` gives, batched with others."""
        from llmsplit_env.llm.channel import make_channel

        if self.error is not None:
            raise RuntimeError(f"the quality server failed to load its model: {self.error[1]}")
        # a bad request fails alone, here, before it joins a batch (where it would fail the others' forward)
        split = self.runner.check_split(split)
        if not isinstance(params, dict):
            raise ValueError(f"channel params must be a dict, got {type(params).__name__}")
        channel = make_channel(scheme, level, **params)
        seed = check_seed(seed)
        self.counts["requests"] += 1
        loop = asyncio.get_running_loop()
        if split == self.runner.num_layers:  # nothing crosses the link: the runner's deterministic path
            ev = await loop.run_in_executor(self._pool, self.runner.evaluate, split, channel, [int(seed)])
            return float(ev.log_ppl[0]), float(ev.loss_fraction[0])
        fut = loop.create_future()
        self._pending.setdefault(split, []).append((channel, int(seed), fut, time.monotonic()))
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.ensure_future(self._serve())
        return await fut

    async def _serve(self) -> None:
        """The batching loop: serve the oldest request's split, with up to ``max_batch`` of its requests."""
        loop = asyncio.get_running_loop()
        wait_s = float(self.spec["batch_wait_s"])
        limit = self.max_batch if self.batching else 1
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            split, queue = min(self._pending.items(), key=lambda item: item[1][0][3])
            left = queue[0][3] + wait_s - time.monotonic()
            if len(queue) < limit and left > 0:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=left)
                continue  # look again: more may have come, of this split or an older one
            take, rest = queue[:limit], queue[limit:]
            if rest:
                self._pending[split] = rest
            else:
                del self._pending[split]
            t0 = time.perf_counter()
            try:
                ev = await loop.run_in_executor(
                    self._pool, self.runner.forward_draws, split, [(ch, seed) for ch, seed, _, _ in take]
                )
            except Exception as e:
                if len(take) == 1:
                    if not take[0][2].done():
                        take[0][2].set_exception(e)
                    continue
                # one request the arrival checks let through can fail a batch: each is run alone, so only a
                # request that fails by itself gets an error (batches equal single forwards, so the others' bits too)
                for ch, seed, fut, _ in take:
                    if fut.done():  # the caller has gone
                        continue
                    try:
                        one = await loop.run_in_executor(self._pool, self.runner.forward_draws, split, [(ch, seed)])
                    except Exception as e1:
                        if not fut.done():
                            fut.set_exception(e1)
                        continue
                    self.counts["forwards"] += 1
                    self.batch_sizes[1] += 1
                    if not fut.done():
                        fut.set_result((float(one.log_ppl[0]), float(one.loss_fraction[0])))
                continue
            self.counts["forwards"] += 1
            self.counts["forward_s"] += time.perf_counter() - t0
            self.batch_sizes[len(take)] += 1
            for i, (_, _, fut, _) in enumerate(take):
                if not fut.done():  # the caller may have gone
                    fut.set_result((float(ev.log_ppl[i]), float(ev.loss_fraction[i])))


def check_seed(seed: Any) -> int:
    """``seed`` as an int in ``[0, MAX_SEED]`` (what a torch generator takes); ``ValueError`` naming it otherwise."""
    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**64 - 1], got {seed!r}")
    return int(seed)


def _rss_mib() -> float | None:
    """This process's resident set size in MiB (None where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return None
