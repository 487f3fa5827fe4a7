"""Crafted agent files are refused within bounded memory and time (issue 16, item 1): zip bombs, lying zip headers,
too many parts, huge declared spaces, dtypes and networks, compressed or oversized torch payloads, FIFOs.

Each crafted file is small (at most a few MB); each refusal is a ``ValueError`` naming the file and the limit. The
loads that could exhaust memory run in a fresh subprocess whose peak RSS (``ru_maxrss``) is compared with its own
baseline after the imports."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from agents.common import limits
from agents.common.limits import (
    MAX_JSON_BYTES,
    MAX_LAYER_WIDTH,
    MAX_LAYERS,
    MAX_NETWORK_PARAMETERS,
    MAX_PART_BYTES,
    MAX_PARTS,
    MAX_PICKLE_BYTES,
    MAX_SPACE_ELEMENTS,
    check_net_arch,
    check_network,
    read_bounded,
    size_text,
)
from agents.common.save_util import load_weights, read_files, read_json, space_from, weights_bytes

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
GiB = 1 << 30
BOX = {"type": "Box", "shape": [3], "dtype": "float32", "low": [0.0] * 3, "high": [1.0] * 3}
DISCRETE = {"type": "Discrete", "n": 4, "start": 0}


def _meta(**changes) -> dict:
    meta = {"format": "llmsplit-sb3", "version": 1, "algo": "ppo", "hyperparams": {"policy": "MlpPolicy"}, "seed": 0,
            "num_timesteps": 0, "observation_space": BOX, "action_space": DISCRETE}  # fmt: skip
    meta.update(changes)
    return meta


def _write_zip(path: Path, parts: dict[str, bytes], bombs: dict[str, int] = (), lie: dict[str, int] = ()) -> Path:
    """A deflated zip of ``parts``, plus ``bombs`` (name -> bytes of zeros, streamed: never held in memory), with the
    central directory's sizes of ``lie`` (name -> size) replaced."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, data in parts.items():
            z.writestr(name, data)
        for name, size in dict(bombs).items():
            chunk = bytes(MiB)
            with z.open(name, "w", force_zip64=True) as f:
                for _ in range(size // MiB):
                    f.write(chunk)
        for info in z.filelist:
            if info.filename in dict(lie):
                info.file_size = dict(lie)[info.filename]
    assert path.stat().st_size <= 10 * MiB
    return path


def _torch_zip(records: dict[str, bytes], compressed: bool = False) -> bytes:
    """A ``torch.save``-shaped zip (``archive/...`` records) holding ``records``."""
    src = zipfile.ZipFile(io.BytesIO(weights_bytes({})))
    out = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", mode) as z:
        for info in src.infolist():
            z.writestr(info.filename, records.pop(info.filename, src.read(info)))
        for name, data in records.items():
            z.writestr(name, data)
    return out.getvalue()


def _run_isolated(setup: str, call: str) -> dict:
    """Run ``call`` in a fresh interpreter after ``setup`` (the imports): its error, seconds and peak RSS growth."""
    script = f"""
import json, resource, time
{setup}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
try:
    {call}
    out = {{"error": None}}
except ValueError as e:
    out = {{"error": str(e)}}
out["seconds"] = time.perf_counter() - t
out["rss_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_bounded(result: dict, *needles: str) -> None:
    assert result["error"] is not None, "the crafted file was loaded"
    for needle in needles:
        assert needle in result["error"], result["error"]
    assert result["seconds"] <= 5.0, result
    assert result["rss_mb"] <= 200.0, result


SB3 = "from agents.sb3 import load_sb3"


# ------------------------------------------------------------------------------------------------ bombs, in isolation
def test_zip_bomb_part_is_refused_before_it_is_inflated(tmp_path):
    path = _write_zip(tmp_path / "agent.zip", {}, bombs={"llmsplit.json": GiB})
    result = _run_isolated(SB3, f"load_sb3({str(path)!r})")
    _assert_bounded(result, "agent.zip: llmsplit.json: uncompressed size 1,073,741,824 bytes",
                    f"exceeds the limit of {size_text(MAX_PART_BYTES)}")  # fmt: skip


def test_lying_zip_header_is_read_through_a_bounded_reader(tmp_path):
    # the directory says 100 bytes for a part that inflates to 256 MiB: never more than the declared size is read
    path = _write_zip(tmp_path / "lying.zip", {"llmsplit.json": json.dumps(_meta()).encode()},
                      bombs={"data": 256 * MiB}, lie={"data": 100})  # fmt: skip
    result = _run_isolated(SB3, f"load_sb3({str(path)!r})")
    _assert_bounded(result, "lying.zip")
    # and a stream longer than its limit is cut at limit + 1 bytes
    stream = io.BytesIO(bytes(10_000))
    with pytest.raises(ValueError, match="x: uncompressed size exceeds the limit of 1,000 bytes"):
        read_bounded(stream, 1000, "x")
    assert stream.tell() == 1001


def test_torch_payload_bomb_is_refused_before_torch_reads_it(tmp_path):
    from agents.mbrl.agent import MBRLAgent

    bomb = tmp_path / "module.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for info in zipfile.ZipFile(io.BytesIO(weights_bytes({"w": 0}))).infolist():
            z.writestr(info.filename, b"")
        with z.open("archive/data/0", "w", force_zip64=True) as f:
            for _ in range(GiB // MiB):
                f.write(bytes(MiB))
    assert bomb.stat().st_size <= 10 * MiB
    result = _run_isolated("from agents.mbrl.agent import MBRLAgent", f"MBRLAgent.load({str(bomb)!r})")
    _assert_bounded(result, "module.pt", "exceeds the limit" if bomb.stat().st_size > MAX_PART_BYTES else "compressed")
    with pytest.raises(ValueError, match=r"module\.pt refused: its record archive/data\.pkl is compressed"):
        MBRLAgent.load(bomb)


def test_huge_declared_space_is_refused_before_it_is_allocated(tmp_path):
    box = {"type": "Box", "shape": [200_000_000], "dtype": "float64", "low": 0.0, "high": 1.0}
    meta = _meta(observation_space=box)
    path = _write_zip(tmp_path / "space.zip", {"llmsplit.json": json.dumps(meta).encode(),
                                               "policy.pth": weights_bytes({})})  # fmt: skip
    result = _run_isolated(SB3, f"load_sb3({str(path)!r})")
    _assert_bounded(result, "space.zip", f"200,000,000 elements, over the limit of {MAX_SPACE_ELEMENTS:,}")


@pytest.mark.parametrize(
    ("net_arch", "needle"),
    [
        ([60000, 60000], f"width 60,000 exceeds the limit of {MAX_LAYER_WIDTH:,}"),
        ({"pi": [64], "vf": [4096, 4096]}, f"exceeds the limit of {MAX_NETWORK_PARAMETERS:,}"),
        ([8] * (MAX_LAYERS + 1), f"{MAX_LAYERS + 1} hidden layers exceed the limit of {MAX_LAYERS}"),
    ],
)
def test_huge_saved_net_arch_is_refused_before_it_is_built(tmp_path, net_arch, needle):
    meta = _meta(hyperparams={"policy": "MlpPolicy", "policy_kwargs": {"net_arch": net_arch}})
    path = _write_zip(tmp_path / "net.zip", {"llmsplit.json": json.dumps(meta).encode(),
                                             "policy.pth": weights_bytes({})})  # fmt: skip
    result = _run_isolated(SB3, f"load_sb3({str(path)!r})")
    _assert_bounded(result, "net.zip", "net_arch", needle)


# ------------------------------------------------------------------------------------------------ the other limits
def test_too_many_parts_and_oversized_json_and_pickle_are_refused(tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(MAX_PARTS + 1):
            z.writestr(f"p{i}", b"")
    with pytest.raises(ValueError, match=rf"many\.zip: {MAX_PARTS + 1:,} parts exceed the limit of {MAX_PARTS:,}"):
        read_files(many, "agent")
    big_json = _write_zip(tmp_path / "json.zip", {"rsm.json": b" " * (MAX_JSON_BYTES + 1)})
    with pytest.raises(ValueError, match=rf"json\.zip: rsm\.json: .* exceeds the limit of {size_text(MAX_JSON_BYTES)}"):
        read_json(read_files(big_json, "agent"), "rsm.json", big_json, "agent")
    payload = _torch_zip({"archive/data.pkl": b"\x80\x02]." + b" " * MAX_PICKLE_BYTES})
    with pytest.raises(
        ValueError, match=rf"w: archive/data\.pkl: pickle size .* limit of {size_text(MAX_PICKLE_BYTES)}"
    ):
        load_weights(payload, "w")
    lying = _torch_zip({"archive/data/0": bytes(1000)})
    with zipfile.ZipFile(io.BytesIO(lying)) as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert load_weights(weights_bytes({"x": 1}), "ok") == {"x": 1}


def test_directory_parts_are_bounded_by_stat_and_fifos_never_opened(tmp_path):
    saved = tmp_path / "agent"
    saved.mkdir()
    with open(saved / "surrogate.pt", "wb") as f:  # sparse: 1 GiB declared, nothing written
        f.truncate(GiB)
    os.mkfifo(saved / "rsm.json")
    read = read_files(saved, "RSM-PPO")
    with pytest.raises(ValueError, match=r"surrogate\.pt: size 1,073,741,824 bytes exceeds the limit of 48 MiB"):
        read("surrogate.pt")
    with pytest.raises(ValueError, match=r"rsm\.json is not a regular file \(a FIFO"):
        _within(5.0, lambda: read("rsm.json"))
    with pytest.raises(KeyError):
        read("missing")


def _within(seconds: float, call):
    """``call()``'s result, re-raising its exception; fails if it has not returned within ``seconds``."""
    box: dict = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for more than {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.mark.parametrize("kind", ["sb3", "mbrl", "rsm", "heuristic", "read_files"])
def test_a_fifo_given_as_the_agent_is_refused_without_blocking(tmp_path, kind):
    fifo = tmp_path / "agent.zip"
    os.mkfifo(fifo)
    if kind == "sb3":
        from agents.sb3 import load_sb3 as load
    elif kind == "mbrl":
        from agents.mbrl.agent import MBRLAgent

        load = MBRLAgent.load
    elif kind == "rsm":
        from agents.rsm.agent import RSMPPOAgent

        load = RSMPPOAgent.load
    elif kind == "heuristic":
        from agents.baselines import SNRThresholdAgent

        load = SNRThresholdAgent.load
    else:

        def load(path):
            return read_files(path, "agent")

    with pytest.raises(ValueError, match=r"agent\.zip is not a regular file or directory \(a FIFO"):
        _within(5.0, lambda: load(fifo))


# ------------------------------------------------------------------------------------------------ declared sizes
@pytest.mark.parametrize(
    ("space", "needle"),
    [
        ({**BOX, "dtype": "(200000000,)f8"}, "Box dtype '(200000000,)f8' is not one of the allowed float32, float64"),
        ({**BOX, "shape": [MAX_SPACE_ELEMENTS + 1]}, f"over the limit of {MAX_SPACE_ELEMENTS:,}"),
        ({**BOX, "shape": [4]}, "do not match its shape"),
        ({"type": "Discrete", "n": 10**12}, f"is not an integer in [1, {MAX_SPACE_ELEMENTS:,}]"),
    ],
)
def test_declared_spaces_are_bounded(space, needle):
    with pytest.raises(ValueError) as err:
        space_from(space, "f")
    assert needle in str(err.value) and str(err.value).startswith("f: ")
    assert space_from(BOX, "f").shape == (3,)


def test_network_limits_and_their_checks_at_build_time():
    check_network([200, 200, 200], "ok", inputs=40, outputs=6, copies=5)  # MBRL's default: well within
    check_net_arch({"pi": [64, 64], "vf": [64, 64]}, "ok", 40, 10)
    with pytest.raises(ValueError, match=f"x: a network of .* weights exceeds the limit of {MAX_NETWORK_PARAMETERS:,}"):
        check_network([1024, 1024], "x", copies=5)
    with pytest.raises(ValueError, match="x: input and output sizes"):
        check_network([8], "x", inputs="x" * 100)
    assert limits.MAX_PART_BYTES >= 2 * 4 * 2 * MAX_NETWORK_PARAMETERS  # an SB3 optimizer state of two such networks


@pytest.mark.parametrize(
    ("algo", "hp", "needle"),
    [
        ("ppo", {"policy_kwargs": {"net_arch": [60000, 60000]}}, "ppo: policy_kwargs['net_arch'][0]: width 60,000"),
        ("dqn", {"policy_kwargs": "dict(net_arch=[4096, 4096])"}, "exceeds the limit of 2,097,152"),
        ("mbrl", {"hidden_dims": [60000, 60000]}, "mbrl: hidden_dims[0]: width 60,000 exceeds the limit of 4,096"),
        ("mbrl", {"ensemble_size": 100, "hidden_dims": [1024, 1024]}, "mbrl: hidden_dims: a network of"),
        ("rsm_ppo", {"surrogate_kwargs": {"hidden_dims": [60000]}}, "rsm_ppo: surrogate hidden_dims[0]: width 60,000"),
        ("rsm_ppo", {"ppo_kwargs": {"policy_kwargs": {"net_arch": [5000]}}}, "width 5,000 exceeds the limit"),
    ],
)
def test_huge_networks_as_hyperparameters_fail_before_any_work(algo, hp, needle):
    import gymnasium as gym

    from agents.zoo.registry import check_agent

    with pytest.raises(ValueError) as err:
        _within(30.0, lambda: check_agent(algo, gym.make("LLMSplit-v0"), "LLMSplit-v0", hyperparams=hp))
    assert needle in str(err.value)


def test_rllib_fcnet_hiddens_are_bounded():
    pytest.importorskip("ray.rllib")
    from agents.rllib_ppo import check_rllib_hyperparams

    with pytest.raises(ValueError, match="rllib_ppo: fcnet_hiddens\\[0\\]: width 60,000 exceeds the limit of 4,096"):
        check_rllib_hyperparams({"fcnet_hiddens": [60000, 60000]})
    assert check_rllib_hyperparams({"fcnet_hiddens": [256, 256]}) == {"fcnet_hiddens": [256, 256]}


def test_saved_mbrl_network_sizes_are_checked_before_building(tmp_path):
    from agents.mbrl.agent import MBRLAgent

    agent = MBRLAgent("LLMSplit-v0")
    agent.hparams["hidden_dims"] = (60000, 60000)
    agent.save(tmp_path / "wide.pt")
    with pytest.raises(ValueError, match=r"wide\.pt: mbrl: hidden_dims\[0\]: width 60,000 exceeds the limit"):
        _within(5.0, lambda: MBRLAgent.load(tmp_path / "wide.pt"))
