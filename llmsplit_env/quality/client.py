"""The quality server's client: start, stop and query the shared live-quality server (`llmsplit_env.quality.server`,
a named Ray actor), connect an env to it and call it, and the ``llmsplit server start | stop | stats`` command.

Needs the optional dependency (``pip install llmsplit[ray]``); the rest of the package never imports Ray.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from llmsplit_env.quality.server import BATCHING, DEFAULT_REQUEST_TIMEOUT_S, DEFAULT_WAIT_S, QualityServer
from llmsplit_env.util.ray_cluster import connect_ray, ray_missing

NAMESPACE = "llmsplit"  # fixed, so drivers started separately find the same server by name
CONNECT_TIMEOUT_S = 600.0  # an env waits this long for the server to answer (it may still be loading the model)
# methods that may rightly run longer than one evaluation (the inversion probe's fit, once per setting): they get
# at least CONNECT_TIMEOUT_S
_SLOW = {"probe_leakage": CONNECT_TIMEOUT_S}
_STARTED: dict[str, Any] = {}  # handles of the servers this process started: a named actor dies with its last handle
_TIMEOUTS: dict[str, float] = {}  # request timeout of each server this process connected to (its setting)


class ServerTimeout(RuntimeError):
    """The quality server did not answer a request within its timeout (stopped, hung or overloaded)."""


def _load_spec(
    model: str,
    text: str,
    num_tokens: int,
    window: int,
    dtype: str,
    device: str,
) -> dict[str, Any]:
    return {
        "model": str(model),
        "text": str(text),
        "num_tokens": int(num_tokens),
        "window": int(window),
        "dtype": str(dtype),
        "device": str(device),
    }


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError(ray_missing("the quality server (config 'llm.server')")) from None
    return ray


def start_quality_server(
    name: str = "quality",
    *,
    model: str = "smollm2-135m",
    text: str = "wiki",
    num_tokens: int = 2048,
    window: int = 512,
    dtype: str = "auto",
    device: str = "auto",
    num_cpus: int = 1,
    max_batch: int | None = None,
    batch_wait_s: float = DEFAULT_WAIT_S,
    batching: str = "checked",
    detached: bool = False,
    timeout_s: float = CONNECT_TIMEOUT_S,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
):
    """Start the quality server ``name`` on the connected Ray cluster (or return the running one of that name, after
    checking it has the same settings); wait until its model is loaded; return its actor handle.

    ``model``, ``text``, ``num_tokens``, ``window``, ``dtype``, ``device`` are the env config's ``llm`` settings
    (envs check that theirs match). ``device="auto"``: a GPU (``num_gpus=1``) when the cluster has one.
    ``num_cpus``: the actor's CPUs and torch threads. ``max_batch``: requests per forward (default 16 on a GPU, 4 on
    CPUs, where a batch mostly saves thread contention). ``request_timeout_s``: how long an env waits for one answer
    before it raises `ServerTimeout` naming the server (every env that connects reads it; `call` can override it).
    ``timeout_s``: how long this call waits for the model to load. The server lives as long as this driver (this
    module keeps its handle), or until `stop_quality_server`; ``detached``: outlive this driver."""
    ray = _ray()
    if not ray.is_initialized():
        raise RuntimeError("start_quality_server needs Ray: call ray.init(...) first (e.g. ray.init(num_cpus=2))")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if batching not in BATCHING:
        raise ValueError(f"batching must be one of {', '.join(map(repr, BATCHING))}, got {batching!r}")
    for key, v, lo in (("num_cpus", num_cpus, 1), ("max_batch", max_batch, 1)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise ValueError(f"{key} must be an integer >= {lo}{' or None' if key == 'max_batch' else ''}, got {v!r}")
    if isinstance(batch_wait_s, bool) or not isinstance(batch_wait_s, (int, float)) or not 0 <= batch_wait_s <= 10:
        raise ValueError(f"batch_wait_s must be a number of seconds in [0, 10], got {batch_wait_s!r}")
    _check_timeout("request_timeout_s", request_timeout_s)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    elif str(device).startswith("cuda") and not gpus:
        raise ValueError(f"device {device!r}: the Ray cluster has no GPU")
    use_gpu = str(device).startswith("cuda")
    spec = {
        **_load_spec(model, text, num_tokens, window, dtype, "cuda" if use_gpu else device),
        "threads": num_cpus,
        "max_batch": max_batch,
        "batch_wait_s": float(batch_wait_s),
        "batching": batching,
        "request_timeout_s": float(request_timeout_s),
    }
    handle = (
        ray.remote(QualityServer)
        .options(
            name=name,
            namespace=NAMESPACE,
            get_if_exists=True,
            lifetime="detached" if detached else None,
            num_cpus=num_cpus,
            num_gpus=1 if use_gpu else 0,
            max_concurrency=1000,  # async actor: requests wait in its batching queues, not in Ray's
        )
        .remote(spec)
    )
    try:
        info = ray.get(handle.info.remote(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        ray.kill(handle)
        free = ray.available_resources()
        raise RuntimeError(
            f"quality server {name!r} did not start within {timeout_s:g} s: it asked for {num_cpus} CPU(s)"
            + (" and 1 GPU" if use_gpu else "")
            + f"; the cluster has {free.get('CPU', 0):g} CPU(s) and {free.get('GPU', 0):g} GPU(s) free now "
            "(other actors may hold them), or loading the model took longer"
        ) from None
    if info["error"] is not None:
        ray.kill(handle)
        usage, message = info["error"]
        raise (ValueError if usage else RuntimeError)(f"quality server {name!r}: {message}")
    if info["spec"] != spec:
        running = info["spec"]
        differ = [f"{k}: running {running.get(k)!r}, asked {v!r}" for k, v in spec.items() if running.get(k) != v]
        raise ValueError(
            f"a quality server named {name!r} already runs with other settings ({'; '.join(differ)}); stop it "
            "(stop_quality_server) or pick another name"
        )
    _STARTED[name] = handle  # kept: the server lives as long as this driver (or longer, detached)
    return handle


def stop_quality_server(name: str = "quality") -> bool:
    """Kill the server ``name`` (False if there is none)."""
    ray = _ray()
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        _STARTED.pop(name, None)
        return False
    ray.kill(handle)
    _STARTED.pop(name, None)  # only now: dropping the last handle first would let Ray end it under our feet
    return True


def server_stats(name: str = "quality", timeout_s: float | None = None) -> dict[str, Any]:
    """The server's counters (`QualityServer.stats`); `ServerTimeout` after ``timeout_s`` (default: the server's
    request timeout)."""
    ray = _ray()
    handle = ray.get_actor(name, namespace=NAMESPACE)
    if timeout_s is None:
        timeout_s = _TIMEOUTS.get(name)
        if timeout_s is None:
            timeout_s = _request_timeout(_get(handle, name, "info", [()], CONNECT_TIMEOUT_S)[0]["spec"])
    return _get(handle, name, "stats", [()], timeout_s)[0]


def _check_timeout(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
        raise ValueError(f"{key} must be a number of seconds in (0, 86400], got {value!r}")
    return float(value)


def _request_timeout(spec: dict[str, Any]) -> float:
    """A server's request timeout (servers started before the setting existed: the default)."""
    return float(spec.get("request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S))


def _get(handle: Any, name: str, method: str, calls: list[tuple], timeout_s: float) -> list[Any]:
    """``handle.method(*args)`` for every ``args`` of ``calls``, all sent at once (the server batches what arrives
    together) and waited for together at most ``timeout_s``: `ServerTimeout` naming the server, the method and the
    timeout after that (the requests are cancelled, should the server ever come back)."""
    import ray
    from ray.exceptions import GetTimeoutError

    refs = [getattr(handle, method).remote(*args) for args in calls]
    try:
        return ray.get(refs, timeout=timeout_s)
    except GetTimeoutError:
        for ref in refs:
            with contextlib.suppress(Exception):  # a courtesy: the error below is what matters
                ray.cancel(ref)
        raise ServerTimeout(
            _key_error(
                name,
                f"the quality server did not answer {method} within {timeout_s:g} s (its request timeout: is its "
                "process stopped, hung or overloaded?); check it with `llmsplit server stats --name "
                f"{name}`, restart it, or start it with a longer request_timeout_s",
            )
        ) from None


def _key_error(name: str, what: str) -> str:
    return f"config 'llm.server' = {name!r}: {what}"


def connect(name: str, timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[Any, dict[str, Any]]:
    """The env side: the handle and `QualityServer.info` of the server ``name``; errors name ``llm.server`` and say
    what to do."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"config 'llm.server' must be None or a server name (a non-empty string), got {name!r}")
    try:
        import ray
    except ImportError:
        raise ImportError(_key_error(name, "the quality server needs Ray: pip install 'llmsplit[ray]'")) from None
    if not ray.is_initialized():
        raise RuntimeError(
            _key_error(
                name,
                "Ray is not initialised in this process; connect to the cluster that runs the server first "
                "(ray.init(address='auto') or its address), or set llm.server None to load the model here",
            )
        )
    try:
        handle = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        try:
            known = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                           if a.get("namespace") == NAMESPACE)  # fmt: skip
        except Exception:  # listing is a courtesy
            known = []
        raise ValueError(
            _key_error(
                name,
                f"no quality server of that name in Ray namespace {NAMESPACE!r} of this cluster"
                + (f" (running: {', '.join(known)})" if known else "")
                + "; start one with llmsplit_env.quality.client.start_quality_server(name, ...) or "
                f"`llmsplit server start --name {name}`",
            )
        ) from None
    from ray.exceptions import GetTimeoutError, RayActorError

    try:
        info = ray.get(handle.info.remote(), timeout=timeout_s)
    except GetTimeoutError:
        why = f"the server did not answer within {timeout_s:.0f} s (still loading, or waiting for a CPU/GPU?)"
        raise RuntimeError(_key_error(name, why)) from None
    except RayActorError as e:
        raise RuntimeError(_key_error(name, f"the server is not reachable ({type(e).__name__}); restart it")) from None
    if info["error"] is not None:
        raise RuntimeError(_key_error(name, f"the server failed to load its model: {info['error'][1]}"))
    _TIMEOUTS[name] = _request_timeout(info["spec"])
    return handle, info


def call(handle: Any, name: str, method: str, *args: Any, timeout_s: float | None = None) -> Any:
    """``handle.method(*args)``, waited for at most ``timeout_s`` (default: the server's ``request_timeout_s``, read
    by `connect`; longer for the probe), then `ServerTimeout` naming ``llm.server`` and the timeout; a dead server
    raises naming ``llm.server``, the server's own ``ValueError`` comes back as a plain ``ValueError``."""
    return call_many(handle, name, method, [args], timeout_s=timeout_s)[0]


def call_many(handle: Any, name: str, method: str, calls: list[tuple], timeout_s: float | None = None) -> list[Any]:
    """`call` for several requests sent at once (the server batches those of the same split): their answers in order,
    or the first error (as `call` raises it); the timeout bounds the wait for all of them."""
    from ray.exceptions import RayActorError, RayTaskError

    if timeout_s is None:
        timeout_s = max(_TIMEOUTS.get(name, DEFAULT_REQUEST_TIMEOUT_S), _SLOW.get(method, 0.0))
    try:
        return _get(handle, name, method, list(calls), _check_timeout("timeout_s", timeout_s))
    except RayActorError as e:
        raise RuntimeError(_key_error(name, f"the server is not reachable ({type(e).__name__}); restart it")) from None
    except RayTaskError as e:
        cause = e.cause if isinstance(getattr(e, "cause", None), Exception) else None
        if isinstance(cause, ValueError):
            raise ValueError(str(cause)) from None
        raise


# --- command line ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None, prog: str = "python -m llmsplit_env.quality.client") -> int:
    """``llmsplit server start|stop|stats --name NAME [--address ADDR] ...``: start (detached), stop or show the
    statistics of a quality server on a running Ray cluster."""
    p = argparse.ArgumentParser(prog=prog, description="start, stop or query a quality server on a Ray cluster")
    p.add_argument("command", choices=("start", "stop", "stats"))
    p.add_argument("--name", default="quality")
    p.add_argument("--address", default="auto", help="Ray cluster address (default: the running one)")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--text", default="wiki")
    p.add_argument("--num-tokens", type=int, default=2048)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--num-cpus", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=None)
    p.add_argument("--batch-wait-s", type=float, default=DEFAULT_WAIT_S)
    p.add_argument("--batching", choices=BATCHING, default="checked")
    p.add_argument("--request-timeout-s", type=float, default=DEFAULT_REQUEST_TIMEOUT_S,
                   help="how long an env waits for one answer before it raises (default: %(default)g)")  # fmt: skip
    a = p.parse_args(argv)
    if a.address in ("", "local"):  # a local instance ends with this command, and the detached server with it
        print(f"error: --address {a.address!r}: the server would stop when this command ends; start a cluster "
              "(`ray start --head`) and give --address auto or its address", file=sys.stderr)  # fmt: skip
        return 2
    try:
        owns = connect_ray(a.address, namespace=NAMESPACE, flag="--address", who="the quality server")
    except ValueError as e:  # no Ray, or nothing answers at --address
        print(f"error: {e}", file=sys.stderr)
        return 1
    ray = _ray()
    try:
        if a.command == "start":
            start_quality_server(
                a.name, model=a.model, text=a.text, num_tokens=a.num_tokens, window=a.window, dtype=a.dtype,
                device=a.device, num_cpus=a.num_cpus, max_batch=a.max_batch, batch_wait_s=a.batch_wait_s,
                batching=a.batching, detached=True, request_timeout_s=a.request_timeout_s,
            )  # fmt: skip
            print(f"quality server {a.name!r} running (namespace {NAMESPACE!r}); envs: llm={{'server': {a.name!r}}}")
        elif a.command == "stop":
            print(f"stopped {a.name!r}" if stop_quality_server(a.name) else f"no quality server {a.name!r}")
        else:
            print(server_stats(a.name))
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if owns:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
