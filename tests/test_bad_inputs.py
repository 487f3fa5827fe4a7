"""Bad inputs are refused naming what to fix (issue 16, items 6 and 7): profiles whose values cannot be perplexities,
damaged sweep trial files, output folders that cannot be written, and a config that is not a dict."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import llmsplit_env  # noqa: F401  (registers the envs)
from agents.zoo import common, sweep
from agents.zoo.sweep_results import read_result, result_path, table_rows
from llmsplit_env.config import resolve_config
from llmsplit_env.quality import ProfileError, load_profile, shipped_profiles

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluate  # noqa: E402
import train  # noqa: E402

# --- profiles ---------------------------------------------------------------------------------------------------------

BASE = load_profile("smollm2-135m-analog").to_json()


def _all_log_ppl(d: dict, value: float) -> None:
    """Every draw of every cell at ``value`` (mean and std consistent, so only the range check can refuse it)."""
    d["log_ppl"] = [[[value] * len(cell) for cell in row] for row in d["log_ppl"]]
    d["mean_log_ppl"] = [[value] * len(row) for row in d["mean_log_ppl"]]
    d["std_log_ppl"] = [[0.0] * len(row) for row in d["std_log_ppl"]]


def _draws(d: dict, a: float, b: float) -> None:
    """Cell (0, 0) with draws alternating a, b: a huge spread, consistent mean and std."""
    import numpy as np

    cell = [a if i % 2 else b for i in range(len(d["seeds"]))]
    d["log_ppl"][0][0] = cell
    d["mean_log_ppl"][0][0] = float(np.mean(cell))
    d["std_log_ppl"][0][0] = float(np.std(cell, ddof=1))


def _text(mutate=None, replace: tuple[str, str] | None = None) -> str:
    d = copy.deepcopy(BASE)
    if mutate:
        mutate(d)
    text = json.dumps(d)
    if replace:
        assert replace[0] in text
        text = text.replace(replace[0], replace[1], 1)
    return text


NESTED = "[" * 100_000 + "]" * 100_000
CLEAN = f'"clean_ppl": {BASE["clean_ppl"]!r}'
BAD_PROFILES = [
    # values that cannot be perplexities
    ("log_ppl below 0", _text(lambda d: _all_log_ppl(d, -50.0)), "'log_ppl' must lie in [0, 460.517]"),
    ("log_ppl huge", _text(lambda d: _all_log_ppl(d, 1000.0)), "'log_ppl' must lie in [0, 460.517]"),
    ("E[PPL] overflows", _text(lambda d: _draws(d, 10.0, 400.0)), "(the log of a cell's expected perplexity)"),
    ("clean_ppl 1e308", _text(replace=(CLEAN, '"clean_ppl": 1e308')), "'clean_ppl' must be a finite number >= 1"),
    ("clean_ppl 0", _text(replace=(CLEAN, '"clean_ppl": 0')), "'clean_ppl' must be a finite number >= 1"),
    ("clean_ppl 0.5", _text(replace=(CLEAN, '"clean_ppl": 0.5')), "'clean_ppl' must be a finite number >= 1"),
    ("clean_ppl NaN", _text(replace=(CLEAN, '"clean_ppl": NaN')), "'clean_ppl' must be a finite number >= 1"),
    ("clean_ppl 1e400", _text(replace=(CLEAN, '"clean_ppl": 1e400')), "'clean_ppl' must be a finite number >= 1"),
    ("clean_ppl 10**400", _text(replace=(CLEAN, '"clean_ppl": 1' + "0" * 400)), "'clean_ppl' must be a finite"),
    ("NaN in log_ppl", _text(replace=('"log_ppl": [[[', '"log_ppl": [[[NaN, ')), "field 'log_ppl'"),
    ("inf in loss_fraction", _text(lambda d: d["loss_fraction"][0].__setitem__(0, float("inf"))), "'loss_fraction'"),
    ("negative std", _text(lambda d: d["std_log_ppl"][0].__setitem__(0, -1.0)), "'std_log_ppl' must lie in [0,"),
    ("loss_fraction > 1", _text(lambda d: d["loss_fraction"][0].__setitem__(0, 1.5)), "'loss_fraction' must lie in"),
    ("leakage < 0", _text(lambda d: d["leakage"].__setitem__(0, -0.1)), "'leakage' must lie in [0, 1]"),
    ("probe > 1", _text(lambda d: d["probe_accuracy"].__setitem__(0, 2.0)), "'probe_accuracy' must lie in [0, 1]"),
    ("levels -inf", _text(replace=('"levels": [', '"levels": [-Infinity, ')), "field 'levels' has non-finite"),
    ("levels off the channel", _text(lambda d: d["levels"].__setitem__(0, -80.0)), "'levels': snr_db must be"),
    # integers that are not, or too large to be
    ("split 10**400", _text(replace=('"splits": [', '"splits": [1' + "0" * 400 + ", ")), "field 'splits'"),
    ("splits past the bound", _text(lambda d: d.update(splits=[k + 20_000 for k in d["splits"]])), "'splits' must lie"),
    ("seed 2**70", _text(lambda d: d["seeds"].__setitem__(0, 2**70)), "'seeds' must be integers in [0, 2**63 - 1]"),
    ("seed -1", _text(lambda d: d["seeds"].__setitem__(0, -1)), "'seeds' must be integers in [0, 2**63 - 1]"),
    ("seed 'x'", _text(lambda d: d["seeds"].__setitem__(0, "x")), "field 'seeds' is not a numeric array"),
    ("num_layers 'abc'", _text(lambda d: d["metadata"].update(num_layers="abc")), "'metadata.num_layers' must be an"),
    ("num_layers 1e308", _text(lambda d: d["metadata"].update(num_layers=1e308)), "'metadata.num_layers' must be an"),
    ("num_layers < split", _text(lambda d: d["metadata"].update(num_layers=3)), "is below the last split"),
    ("hidden_size 2.5", _text(lambda d: d["metadata"].update(hidden_size=2.5)), "'metadata.hidden_size' must be an"),
    ("scheme_params list", _text(lambda d: d["metadata"].update(scheme_params=[1])), "'metadata.scheme_params'"),
    # files that are not profiles at all
    ("nested arrays", NESTED, "nested too deeply"),
    ("nested in metadata", _text(replace=('"metadata": {', '"metadata": {"x": ' + NESTED + ", ")), "nested too deeply"),
    ("integer of 5000 digits", _text(replace=(CLEAN, '"clean_ppl": 1' + "0" * 5000)), "not valid JSON"),
]


@pytest.mark.parametrize(("text", "needle"), [c[1:] for c in BAD_PROFILES], ids=[c[0] for c in BAD_PROFILES])
def test_a_profile_that_cannot_be_perplexities_is_refused_naming_file_and_field(tmp_path, text, needle):
    path = tmp_path / "crafted.json"
    path.write_text(text)
    with pytest.raises(ProfileError) as err:  # never OverflowError, RecursionError, "invalid literal for int()"
        load_profile(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and needle in msg, msg
    assert len(msg) < 400  # a huge value is not echoed whole


def test_the_shipped_profiles_and_their_round_trips_still_load(tmp_path):
    for name in shipped_profiles():
        p = load_profile(name)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(p.to_json()))
        assert load_profile(path).clean_ppl == p.clean_ppl


def test_the_location_and_value_of_a_bad_cell_are_named(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(_text(lambda d: d["std_log_ppl"][2].__setitem__(5, -0.25)))
    with pytest.raises(ProfileError, match=r"'std_log_ppl' .* got at split #2, level #5: -0\.25$"):
        load_profile(path)


# --- sweep trial files ------------------------------------------------------------------------------------------------

SPEC = {"name": "oracle_seed0_abc", "env_id": "LLMSplit-v0", "env_config": "default", "algo": "oracle", "seed": 0}
GOOD = {"mean_return": 12.5, "normalized_score": 0.75, "R_random": 5.0, "R_oracle": 15.0, "quality_evals": 0,
        "n_timesteps": 0, "train_s": 0.5, "agent_path": "a", "curve": []}  # fmt: skip


def _trial(out: Path, result) -> Path:
    path = result_path(out, SPEC)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"spec": SPEC, "result": result}))
    return path


DAMAGED = [
    ({}, "'result.mean_return' is missing"),
    (GOOD | {"normalized_score": float("nan")}, "'result.normalized_score' must be a finite number"),
    (GOOD | {"mean_return": 1e308}, "'result.mean_return' must be a finite number within ±1e+12, got 1e+308"),
    (GOOD | {"mean_return": float("-inf")}, "'result.mean_return' must be a finite number"),
    (GOOD | {"R_oracle": "15"}, "'result.R_oracle' must be a finite number"),
    (GOOD | {"train_s": -1.0}, "'result.train_s' must be >= 0"),
    (GOOD | {"quality_evals": 1.5}, "'result.quality_evals' must be an integer >= 0, got 1.5"),
    (GOOD | {"n_timesteps": -3}, "'result.n_timesteps' must be an integer >= 0"),
    (GOOD | {"R_oracle": 5.0}, "'result.R_oracle' (5.0) must exceed 'R_random' (5.0)"),
    (GOOD | {"normalized_score": 0.9}, "'result.normalized_score' (0.9) is not the score of 'mean_return' (0.75)"),
]


@pytest.mark.parametrize(("result", "needle"), DAMAGED, ids=[n for _, n in DAMAGED])
def test_a_damaged_trial_file_is_refused_naming_file_and_field(tmp_path, result, needle):
    path = _trial(tmp_path, result)
    with pytest.raises(ValueError) as err:
        read_result(tmp_path, SPEC)
    msg = str(err.value)
    assert msg.startswith(f"{path} is damaged: ") and needle in msg and "remove it to rerun that trial" in msg, msg


def test_a_sound_trial_file_reaches_the_table(tmp_path):
    _trial(tmp_path, GOOD | {"n_timesteps": None})
    res = read_result(tmp_path, SPEC)
    [row] = table_rows([SPEC], {SPEC["name"]: res}, {})
    assert row["status"] == "done" and row["normalized_score"] == 0.75


def test_an_unreadable_trial_file_names_itself(tmp_path):
    path = result_path(tmp_path, SPEC)
    path.parent.mkdir(parents=True)
    for text in ("[" * 100_000, '{"spec": ' + "1" * 5000 + "}"):
        path.write_text(text)
        with pytest.raises(ValueError, match="is not a readable trial result") as err:
            read_result(tmp_path, SPEC)
        assert str(err.value).startswith(str(path))


# --- output folders ---------------------------------------------------------------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    """Building an env (the first piece of work of train, evaluate and sweep) fails the test."""
    import agents.common.env_util
    import agents.common.evaluation
    import agents.zoo.registry  # imported before the patch: a module importing make_env now would keep the fake

    def never(*_a, **_k):
        raise AssertionError("work started before the output folder was checked")

    monkeypatch.setattr(agents.common.env_util, "make_env", never)


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_train_refuses_an_output_folder_it_cannot_write(tmp_path, capsys, no_work, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    base = ["--algo", "oracle", "-tb", "", "--no-progress"]
    assert train.main([*base, "-f", str(a_file)]) == 2
    assert f"-f/--log-folder {a_file}/LLMSplit-v0: {a_file} is a file" in _one_error(capsys)
    (tmp_path / "runs" / "LLMSplit-v0").mkdir(parents=True)
    (tmp_path / "runs" / "LLMSplit-v0" / "oracle_seed0").write_text("x")  # where the agent's folder goes
    assert train.main([*base, "-f", str(tmp_path / "runs")]) == 2
    assert "-f/--log-folder" in (err := _one_error(capsys)) and "oracle_seed0 exists and is not a folder" in err
    assert train.main([*base, "-f", str(tmp_path), "-tb", str(a_file)]) == 2
    assert f"-tb/--tensorboard-log {a_file}/LLMSplit-v0: {a_file} is a file" in _one_error(capsys)
    real = common.os.access
    monkeypatch.setattr(common.os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    assert train.main([*base, "-f", str(tmp_path / "new")]) == 2
    assert f"-f/--log-folder {tmp_path}/new/LLMSplit-v0: cannot create or write to {tmp_path}" in _one_error(capsys)


def test_evaluate_names_a_log_folder_it_cannot_use(tmp_path, capsys, no_work, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert evaluate.main(["-f", str(a_file)]) == 2
    assert f"-f/--log-folder {a_file}: {a_file} is a file" in _one_error(capsys)
    run = tmp_path / "run" / "LLMSplit-v0"
    run.mkdir(parents=True)
    summary = {"env_id": "LLMSplit-v0", "agents": {"x": {"algo": "a", "path": "p"}}}
    (run / "summary.json").write_text(json.dumps(summary))
    real = common.os.access
    monkeypatch.setattr(common.os, "access", lambda p, mode: False if Path(p) == run else real(p, mode))
    assert evaluate.main(["-f", str(tmp_path / "run")]) == 2
    err = _one_error(capsys)
    assert f"-f/--log-folder (the default --plots) {run}/plots: cannot create or write to {run}" in err


def test_sweep_refuses_an_out_it_cannot_write(tmp_path, capsys, no_work, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, needle in ((a_file, f"--out {a_file} exists and is not a folder"),
                        (a_file / "sub", f"--out {a_file}/sub: {a_file} is a file")):  # fmt: skip
        assert sweep.main(["--algo", "oracle", "--out", str(out)]) == 2
        assert needle in _one_error(capsys)
    real = common.os.access
    monkeypatch.setattr(common.os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    assert sweep.main(["--algo", "oracle", "--out", str(tmp_path / "new")]) == 2
    assert f"--out {tmp_path}/new: cannot create or write to {tmp_path} (not writable)" in _one_error(capsys)


# --- config= ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [[("backend", "profile")], "backend", 5, [1, 2], (("a", 1),)])
def test_a_config_that_is_not_a_dict_is_named(config):
    kind = type(config).__name__
    with pytest.raises(ValueError, match=f"^config must be a dict, got {kind}$"):
        resolve_config(config)
    with pytest.raises(ValueError, match=f"^config must be a dict, got {kind}$"):
        gym.make("LLMSplit-v0", config=config)
    with pytest.raises(ValueError, match=f"^config must be a dict, got {kind}$"):
        gym.make("LLMSplit-v0", config=config, reward={"weights": {"switching": 0.1}})
