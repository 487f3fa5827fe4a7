"""The one Ray connection of every command that uses Ray (``llmsplit sweep``, ``llmsplit profile --ray``,
``llmsplit server``, ``train --algo rllib_ppo --ray-address``, ``benchmarks/sample_efficiency.py --ray``).

Torch-free, and Ray is imported only when `connect_ray` runs, so the package works without ``llmsplit[ray]``.

`require_resources` is the one check, for every command, that what it asks of the cluster (trials, env runners,
workers) can ever be placed: Ray itself would keep such a request pending for ever.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence

#: the address of a new local instance (Ray's ``"auto"`` joins a running one instead)
LOCAL = "local"
#: a new local instance's object store: results of cells and trials are small
OBJECT_STORE_BYTES = 256 * 2**20
#: Ray's connection rounds to a cluster's GCS (``RAY_gcs_server_port_wait_time_s``, unless set): Ray retries an
#: unreachable cluster for minutes by default; one round (about 40 s) is enough to say so
CONNECT_ATTEMPTS = 1
#: how long a command waits for a Ray *cluster* to grow to what it asks for before it gives up (a local instance that
#: this process started has a fixed size and is never waited for): an autoscaling cluster adds nodes on demand within
#: minutes, a fixed one never will; ``LLMSPLIT_RAY_WAIT_S`` overrides it
RESOURCE_WAIT_S = 30.0
WAIT_ENV = "LLMSPLIT_RAY_WAIT_S"
#: the GCS address of the local instance `connect_ray` started in this process, if any (its resources are all it
#: will ever have)
_STARTED_LOCAL: str | None = None


def ray_missing(who: str, extra: str = "ray", what: str = "Ray") -> str:
    """The one-line message for a missing optional dependency: ``"<who> needs <what>, which is not installed:
    pip install 'llmsplit[<extra>]'"``."""
    return f"{who} needs {what}, which is not installed: pip install 'llmsplit[{extra}]'"


def connect_ray(
    address: str | None,
    num_cpus: int | None = None,
    *,
    num_gpus: int | None = None,
    namespace: str | None = None,
    flag: str = "--ray-address",
    who: str = "this command",
    extra: str = "ray",
) -> bool:
    """Connect this process to Ray: the cluster at ``address`` (``"auto"``: the running one), else (``None``, ``""``
    or `LOCAL`) a new local instance with ``num_cpus`` CPUs and ``num_gpus`` GPUs (default: all) and an object store
    of `OBJECT_STORE_BYTES`. Quiet: no dashboard, no worker logs on the driver, no usage stats.

    A process already connected (a notebook, the tests, an earlier call) keeps its connection. Returns whether this
    call started it, i.e. whether the caller shuts it down (``ray.shutdown()``).

    ``ValueError`` (one line) if Ray is not installed (naming ``who`` and the ``llmsplit[extra]`` to install) or
    nothing answers at ``address`` (naming ``flag`` and the address)."""
    global _STARTED_LOCAL
    try:
        import ray
    except ImportError:
        raise ValueError(ray_missing(who, extra)) from None
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if namespace is not None:
        quiet["namespace"] = namespace
    if address in (None, "", LOCAL):
        ray.init(address=LOCAL, num_cpus=num_cpus, num_gpus=num_gpus, object_store_memory=OBJECT_STORE_BYTES, **quiet)
        _STARTED_LOCAL = ray.get_runtime_context().gcs_address
        return True
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(CONNECT_ATTEMPTS))
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{flag} {address}: cannot connect to a Ray cluster ({first})") from None
    return True


def started_local() -> bool:
    """Whether Ray runs as a local instance that `connect_ray` started in this process (a fixed size: what it lacks
    now it will never have). False once Ray is shut down, or when someone else connected this process."""
    import ray

    if not ray.is_initialized() or _STARTED_LOCAL is None:
        return False
    return ray.get_runtime_context().gcs_address == _STARTED_LOCAL


def resource_wait_s() -> float:
    """`RESOURCE_WAIT_S`, or the seconds given by the environment variable ``LLMSPLIT_RAY_WAIT_S``."""
    raw = os.environ.get(WAIT_ENV)
    if raw is None:
        return RESOURCE_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 86400:
        raise ValueError(f"environment variable {WAIT_ENV} must be a number of seconds in [0, 86400], got {raw!r}")
    return value


def _amount(x: float, name: str) -> str:
    n = f"{x:g}"
    return f"{n} {name}" + ("" if x == 1 or name[-1].islower() else "s")


def _shape(bundle: Mapping[str, float]) -> str:
    return " + ".join(_amount(v, k) for k, v in bundle.items() if v) or "nothing"


def unplaceable(bundles: Sequence[Mapping[str, float]], bins: Sequence[Mapping[str, float]],
                where: str = "the Ray cluster", bin_name: str = "node") -> str | None:  # fmt: skip
    """Why the resource ``bundles`` (``{"CPU": 4, "GPU": 1}`` each, every one on a single node) can never all be held
    at once on ``bins`` (the total resources of each node, or of each placement-group bundle), as ``"<asked>; <where>
    has <what>"``; None when they might.

    Only certain impossibilities are named, so a request that fits is never refused: a bundle larger than every bin,
    more of a resource in all than the bins hold, or more copies of one bundle than the bins can hold side by side."""
    bundles = [{k: float(v) for k, v in b.items() if v} for b in bundles]
    bins = [{k: float(v) for k, v in b.items()} for b in bins]
    names = sorted({k for b in bundles for k in b}, key=lambda k: (k not in ("CPU", "GPU"), k))

    def total(r: str) -> float:
        return sum(b.get(r, 0.0) for b in bins)

    def largest(r: str) -> float:
        return max((b.get(r, 0.0) for b in bins), default=0.0)

    if bundles and not bins:
        asked = {r: sum(b.get(r, 0.0) for b in bundles) for r in names}
        return f"{_shape(asked)}; {where} has none"
    for b in bundles:
        if not any(all(node.get(r, 0.0) >= v for r, v in b.items()) for node in bins):
            short = [r for r in b if largest(r) < b[r]] or list(b)
            has = ", ".join(f"at most {_amount(largest(r), r)} on a {bin_name} ({_amount(total(r), r)} in all)"
                            if total(r) else f"no {r}" for r in short)  # fmt: skip
            return f"{_shape(b)} on one {bin_name}; {where} has {has}"
    for r in names:
        asked = sum(b.get(r, 0.0) for b in bundles)
        if asked > total(r) + 1e-9:
            return f"{_amount(asked, r)} in all; {where} has {_amount(total(r), r)}"
    for b in {tuple(sorted(b.items())) for b in bundles}:
        count = sum(1 for x in bundles if tuple(sorted(x.items())) == b)
        fits = sum(min(math.floor(node.get(r, 0.0) / v + 1e-9) for r, v in b) for node in bins) if b else count
        if count > fits:
            return f"{count} x ({_shape(dict(b))}), each on one {bin_name}; {where} holds at most {fits} of them"
    return None


def node_resources() -> list[dict[str, float]]:
    """The total resources of each live node of the connected cluster."""
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def require_resources(bundles: Sequence[Mapping[str, float]], asked: str, *, fixed: bool | None = None,
                      wait_s: float | None = None) -> None:  # fmt: skip
    """``ValueError`` ``"<asked> needs <what>; the Ray cluster has <what>"`` when the connected cluster can never hold
    ``bundles`` at once (`unplaceable`, against the nodes' total resources, not what is free now: what others hold is
    given back in time). Instead of waiting for ever on something that never comes.

    A ``fixed`` cluster (default: a local instance this process started, `started_local`) fails at once. Any other
    may grow (an autoscaler adds nodes for what is asked: the bundles are requested from it meanwhile), so it is
    watched for up to ``wait_s`` seconds (default `resource_wait_s`) before the error, which then says how long."""
    why = unplaceable(bundles, node_resources())
    if why is None:
        return
    fixed = started_local() if fixed is None else fixed
    wait_s = resource_wait_s() if wait_s is None else float(wait_s)
    if not fixed and wait_s > 0:
        from ray.autoscaler.sdk import request_resources

        request = [{k: v for k, v in b.items() if v} for b in bundles]
        with contextlib.suppress(Exception):  # only a hint, to an autoscaler if the cluster has one
            request_resources(bundles=request)
        deadline = time.monotonic() + wait_s
        try:
            while why is not None and time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                why = unplaceable(bundles, node_resources())
        finally:
            with contextlib.suppress(Exception):  # the hint withdrawn: what was asked now runs, or is refused
                request_resources()
        if why is None:
            return
    waited = "" if fixed or wait_s <= 0 else f" (after waiting {wait_s:g} s for it to grow; {WAIT_ENV} sets how long)"
    raise ValueError(f"{asked} needs {why}{waited}")


def add_ray_flag(parser, what: str) -> None:
    """``--ray [ADDRESS]`` on an argparse ``parser``: absent (``None``), a local Ray instance (``""``, the flag
    alone) or the cluster at ADDRESS; ``what`` is what runs on Ray (for the help)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help=f"{what}: a local Ray instance (the flag alone), or the cluster at ADDRESS",
    )
