"""The one Ray connection of every command that uses Ray (``llmsplit sweep``, ``llmsplit profile --ray``,
``llmsplit server``, ``train --algo rllib_ppo --ray-address``, ``benchmarks/sample_efficiency.py --ray``).

Torch-free, and Ray is imported only when `connect_ray` runs, so the package works without ``llmsplit[ray]``.
"""

from __future__ import annotations

import logging
import os

#: the address of a new local instance (Ray's ``"auto"`` joins a running one instead)
LOCAL = "local"
#: a new local instance's object store: results of cells and trials are small
OBJECT_STORE_BYTES = 256 * 2**20
#: Ray's connection rounds to a cluster's GCS (``RAY_gcs_server_port_wait_time_s``, unless set): Ray retries an
#: unreachable cluster for minutes by default; one round (about 40 s) is enough to say so
CONNECT_ATTEMPTS = 1


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
        return True
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(CONNECT_ATTEMPTS))
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{flag} {address}: cannot connect to a Ray cluster ({first})") from None
    return True


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
