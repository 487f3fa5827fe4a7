"""The profile builder's cells on Ray: ``llmsplit profile … --ray [ADDRESS]``.

Needs the optional dependency (``pip install llmsplit[ray]``); this module imports Ray only when a build starts, so
the package, and the serial build, work without it.

Design
------
- **Workers** are Ray actors (`CellWorker`). Each loads the model once (`SplitRunner.from_pretrained`, the serial
  build's settings) and keeps the runner, so the clean hidden-state prefixes are computed (or read from the node's
  cache) once per worker and every later cell runs only the edge-side layers. Where the cluster has GPUs, one worker
  per GPU (``num_gpus=1``); otherwise ``--cpus-per-worker N`` CPUs each (``num_cpus=N``, and N torch threads).
- **Scheduling** is split-major: the cells still to measure, in the serial order (split by split), are cut into one
  contiguous run per worker; each worker has at most `IN_FLIGHT` cells queued at its actor (one computing, one
  waiting, so it never idles on a round trip), and the driver tops it up as results come back (``ray.wait``). A
  worker that runs out takes the back half of the longest remaining run.
- **Results** stream back to the driver, which alone writes the resumable partial file, after every cell, exactly as
  the serial build does (same format, same ``--fresh``): a build started serially resumes on Ray and vice versa. The
  clean perplexity and the leakage probe run as the first task of worker 0, beside the other workers' cells.
- **Fault tolerance** is Ray's: actors restart up to `MAX_RESTARTS` times (the model reloads) and their in-flight
  cells are retried on the new incarnation (``max_task_retries=-1``); each cell's result arrives once, and the
  driver stores a cell only if it is not stored yet. A worker that has used up its restarts is dropped and its cells
  go back to the others; only if every worker is gone does the build stop (the finished cells stay in the partial
  file).
- **Numbers do not depend on where a cell ran**: workers measure with the serial build's own `measure_cell` and
  `measure_probe`, and torch's CPU kernels here give bit-identical float32 results at any thread count (checked in
  the tests and by ``benchmarks/profile_scaling.py``), so a Ray build equals the serial build. Machines with other
  CPUs (AVX2 vs AVX-512) or GPUs may differ in the last bits, as any two runs on them would.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import time

import llmsplit_env
from llmsplit_env.profiling.cells import Job, Plan, UsageError, WorkersLost, measure_cell, measure_probe
from llmsplit_env.util.ray_cluster import connect_ray, require_resources

MAX_RESTARTS = 3  # per worker; its in-flight cells are retried on the restarted actor
IN_FLIGHT = 2  # cells queued at each actor
MAX_UNAVAILABLE = 10  # a worker reported unreachable more often than this is treated as dead
READY_NOTE_S = 60.0  # say once that we are still waiting for workers after this long


class CellWorker:
    """A Ray actor: the model loaded once (clean prefixes kept by its runner); measures cells on demand.

    Errors while loading are kept and reported by `info`, so the driver can print them as one line."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.error: tuple[bool, str] | None = None
        self.runner = None
        try:
            from llmsplit_env.llm import SplitRunner

            self.runner = SplitRunner.from_spec(spec, draws_per_forward=spec["draws_per_forward"])
        except Exception as e:  # reported by info()
            self.error = (isinstance(e, (ValueError, OSError)), str(e) or type(e).__name__)

    def info(self) -> dict:
        import ray
        import torch

        out = {
            "error": self.error,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "version": llmsplit_env.__version__,
            "package": os.path.dirname(llmsplit_env.__file__),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        if self.runner is not None:
            extra = self.runner.extra_ids
            out.update(
                describe=self.runner.describe(),
                num_layers=self.runner.num_layers,
                extra_tokens=0 if extra is None else len(extra),
            )
        return out

    def cell(self, split: int, level_index: int) -> tuple[dict, float, int]:
        s = self.spec
        cell, seconds = measure_cell(self.runner, s["scheme"], s["levels"][level_index], s["params"], s["seeds"], split)
        return cell, seconds, os.getpid()

    def clean_and_probe(self, need_clean: bool, need_probe: bool, splits: list[int]) -> tuple:
        s = self.spec
        clean = self.runner.clean_perplexity() if need_clean else None
        acc, seconds = (None, 0.0)
        if need_probe:
            acc, seconds = measure_probe(
                self.runner, splits, s["probe_fit_tokens"], s["probe_test_tokens"], s["window"]
            )
        return clean, acc, seconds, os.getpid()


def _chunks(items: list, n: int) -> list[list]:
    """``items`` cut into ``n`` contiguous runs of near-equal length (the first ones one longer)."""
    q, r = divmod(len(items), n)
    out, start = [], 0
    for j in range(n):
        end = start + q + (j < r)
        out.append(items[start:end])
        start = end
    return out


class RayBackend:
    """Measures a profile's cells on Ray workers (see the module's docstring); the driver side of ``--ray``."""

    #: called on the driver as ``on_result(backend, job)`` after each result is stored (tests use it to kill a
    #: worker or interrupt a build at a chosen point)
    on_result = None

    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        import ray

        self.ray = ray
        self.args = args
        self.plan = plan
        self.address = args.ray or None
        self.cpus = args.cpus_per_worker or 1
        self.actors: list = []
        self.owns_ray = False
        self.device: str | None = None  # known before the workers start on CPUs; from the workers on GPUs
        self.dtype: str | None = None
        self.stats = {"duplicates": 0, "lost_tasks_resubmitted": 0}
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    # --- start-up ---------------------------------------------------------------------------------------------

    def _connect(self) -> None:
        ray, args = self.ray, self.args
        if not ray.is_initialized() and self.address is None:  # a new local instance: size it for the workers
            local_gpus = 0
            if args.device != "cpu":
                import torch

                local_gpus = torch.cuda.device_count()
                if args.device == "cuda" and local_gpus == 0:
                    raise UsageError("--device cuda: this machine has no GPU for the Ray workers")
            machine = _cpu_count()
            workers = args.workers or (local_gpus or max(1, machine // self.cpus))
            if workers * self.cpus > machine:
                # a local instance sized past the machine would start them all, each loading the model, on the
                # machine's few cores (no answer for minutes, or out of memory): an explicit count is refused,
                # rather than silently cut down
                fits = f"--workers {machine // self.cpus}" if machine >= self.cpus else f"--cpus-per-worker {machine}"
                raise UsageError(
                    f"--workers {workers} x --cpus-per-worker {self.cpus} needs {workers * self.cpus} CPUs; this "
                    f"machine has {machine} for a local Ray instance (give {fits} or fewer, or --ray ADDRESS of a "
                    "cluster)"
                )
            self.owns_ray = connect_ray(None, workers * self.cpus, num_gpus=local_gpus)
        else:
            self.owns_ray = connect_ray(self.address, flag="--ray", who="--ray")
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 0))
        if args.device == "cuda" and gpus == 0:
            raise UsageError("--device cuda: the Ray cluster has no GPUs")
        self.gpu = args.device == "cuda" or (args.device == "auto" and gpus > 0)
        self.workers = args.workers or (gpus if self.gpu else max(1, cpus // self.cpus))
        # every worker on one node with its CPUs (and GPU): checked against the nodes, at once on a local instance,
        # within a bounded wait on a cluster that may grow, instead of waiting for ever for workers never placed
        bundle = {"CPU": float(self.cpus)} | ({"GPU": 1.0} if self.gpu else {})
        try:
            require_resources([bundle] * self.workers, f"--workers {self.workers} x --cpus-per-worker {self.cpus}"
                              + (" (1 GPU each)" if self.gpu else ""))  # fmt: skip
        except ValueError as e:
            raise UsageError(str(e)) from None
        if not self.gpu:
            # on CPUs the driver resolves the dtype, as the serial build would, and the workers use it as given
            import torch

            from llmsplit_env.llm.model import resolve_dtype

            self.device = "cpu"
            try:
                self.dtype = str(resolve_dtype(args.dtype, torch.device("cpu"))).removeprefix("torch.")
            except ValueError as e:
                raise UsageError(f"--dtype: {e}") from None

    def load(self) -> None:
        """Start the workers (each loads the model) and check that they agree."""
        ray, a = self.ray, self.args
        spec = {
            "model": str(a.model),
            "text": str(a.text),
            "num_tokens": a.num_tokens,
            "window": a.window,
            "dtype": self.dtype or a.dtype,
            "device": "cuda" if self.gpu else "cpu",
            "draws_per_forward": a.draws_per_forward,
            "threads": self.cpus,
            "scheme": a.scheme,
            "levels": self.plan.levels,
            "params": self.plan.params,
            "seeds": list(a.seeds),
            "probe_fit_tokens": a.probe_fit_tokens,
            "probe_test_tokens": a.probe_test_tokens,
        }
        remote = ray.remote(CellWorker).options(
            num_cpus=self.cpus,
            num_gpus=1 if self.gpu else 0,
            max_restarts=MAX_RESTARTS,
            max_task_retries=-1,
        )
        self.actors = [remote.remote(spec) for _ in range(self.workers)]
        infos = self._wait([w.info.remote() for w in self.actors])
        for info in infos:
            if info["error"] is not None:
                usage, message = info["error"]
                where = f" (on the Ray worker of node {info['node'][:12]})"
                raise (ValueError if usage else RuntimeError)(message + where)
            if info["version"] != llmsplit_env.__version__:
                raise ValueError(
                    f"a Ray worker runs llmsplit {info['version']} ({info['package']}), the driver "
                    f"{llmsplit_env.__version__}: install the same version on every node"
                )
        first = infos[0]
        for info in infos[1:]:
            for key in ("describe", "num_layers", "extra_tokens", "torch"):
                if info[key] != first[key]:
                    raise ValueError(
                        f"the Ray workers disagree on {key}: {first[key]!r} vs {info[key]!r} "
                        "(same packages on every node, and an explicit --dtype, fix this)"
                    )
        self.infos = infos
        self.pids = [{info["pid"]} for info in infos]
        self.nodes = {info["node"] for info in infos}
        self.num_layers = first["num_layers"]
        self.extra_tokens = first["extra_tokens"]
        self.described = first["describe"]
        if self.device is None:
            self.device, self.dtype = self.described["device"], self.described["dtype"]
        elif (self.described["device"], self.described["dtype"]) != (self.device, self.dtype):
            raise RuntimeError(f"the Ray workers run {self.described}, not {self.device} {self.dtype}")

    def _wait(self, refs: list) -> list:
        ray = self.ray
        t0 = time.perf_counter()
        noted = False
        while True:
            ready, pending = ray.wait(refs, num_returns=len(refs), timeout=5.0)
            if not pending:
                return ray.get(refs)
            if not noted and time.perf_counter() - t0 > READY_NOTE_S:
                print(
                    f"waiting for Ray workers: {len(ready)} of {len(refs)} ready (are the cluster's "
                    f"{'GPUs' if self.gpu else 'CPUs'} taken by other jobs?)",
                    file=sys.stderr,
                )
                noted = True

    def describe(self) -> dict:
        return self.described

    # --- the cells --------------------------------------------------------------------------------------------

    def measure(self, job: Job) -> None:
        from ray.exceptions import ActorUnavailableError, RayActorError

        ray = self.ray
        n = len(self.actors)
        queues = [collections.deque(run) for run in _chunks(job.todo, n)]
        alive = set(range(n))
        load = [0] * n
        in_flight: dict = {}  # ObjectRef -> (worker, (k, i) or "probe")
        unavailable = [0] * n

        def submit(j: int, what) -> None:
            w = self.actors[j]
            if what == "probe":
                ref = w.clean_and_probe.remote(job.need_clean, job.need_probe, job.splits)
            else:
                ref = w.cell.remote(*what)
            in_flight[ref] = (j, what)
            load[j] += 1

        def steal(j: int) -> None:
            # dead workers' runs first, then the longest run of a live one: its back half, kept in order
            victims = [v for v in range(n) if v != j and queues[v]]
            if not victims:
                return
            v = max(victims, key=lambda v: (v not in alive, len(queues[v])))
            take = len(queues[v]) if v not in alive else (len(queues[v]) + 1) // 2
            moved = [queues[v].pop() for _ in range(take)]
            queues[j].extend(reversed(moved))

        def refill(j: int) -> None:
            while load[j] < IN_FLIGHT:
                if not queues[j]:
                    steal(j)
                if not queues[j]:
                    return
                submit(j, queues[j].popleft())

        if job.need_clean or job.need_probe:
            submit(0, "probe")
        for j in range(n):
            refill(j)
        while in_flight:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            j, what = in_flight.pop(ref)
            load[j] -= 1
            try:
                result = ray.get(ref)
            except (ActorUnavailableError, RayActorError) as e:
                gone = not isinstance(e, ActorUnavailableError)  # died for good: its restarts are used up
                unavailable[j] += not gone  # unreachable for a moment: ask it again, a few times
                if not gone and unavailable[j] <= MAX_UNAVAILABLE and j in alive:
                    self._requeue(queues, j, what, submit, alive, load)
                    refill(j)
                    continue
                alive.discard(j)  # the others take over its cells
                self.stats["lost_tasks_resubmitted"] += 1
                if not alive:
                    raise WorkersLost(
                        f"every Ray worker died (each restarted up to {MAX_RESTARTS} times); the finished cells "
                        "are kept in the partial file: rerun the same command to resume"
                    ) from None
                self._requeue(queues, j, what, submit, alive, load)
                for v in alive:
                    refill(v)
                continue
            self.pids[j].add(result[-1])
            if what == "probe":
                clean, acc, seconds, _pid = result
                if job.need_clean:
                    job.state["clean_ppl"] = clean
                if job.need_probe:
                    job.state["probe_accuracy"] = acc
                    job.state["timings"]["probe_s"] = seconds
                job.save()
            else:
                cell, seconds, _pid = result
                if not job.record(*what, cell, seconds):
                    self.stats["duplicates"] += 1
            if self.on_result is not None:
                type(self).on_result(self, job)
            refill(j)

    def _requeue(self, queues, j, what, submit, alive, load) -> None:
        if what == "probe":  # not a cell: straight to the least-loaded live worker
            submit(min(alive, key=lambda v: load[v]), "probe")
        else:
            queues[j].appendleft(what)

    def metadata(self) -> dict:
        return {
            "ray": {
                "address": self.address or "local",
                "workers": self.workers,
                "cpus_per_worker": self.cpus,
                "gpus_per_worker": 1 if self.gpu else 0,
                "torch_threads_per_worker": self.infos[0]["threads"],
                "nodes": len(self.nodes),
                "worker_restarts": sum(len(p) - 1 for p in self.pids),
                **self.stats,
            }
        }

    def close(self) -> None:
        ray = self.ray
        for w in self.actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(w)
        self.actors = []
        if self.owns_ray:
            ray.shutdown()
            self.owns_ray = False


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
