"""Profiles: the shipped SmolLM2 profiles, the loader's schema checks, and the builder CLI (resume, errors)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from llmsplit_env.profiling import builder
from llmsplit_env.quality import ProfileError, load_profile, profile_from_dict, shipped_profiles

SHIPPED = ["smollm2-135m-analog", "smollm2-135m-digital", "smollm2-135m-erasure"]


def test_all_three_schemes_ship():
    assert set(SHIPPED) <= set(shipped_profiles())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_covers_the_grid(name):
    p = load_profile(name)
    assert p.splits.tolist() == list(range(1, 31))
    assert len(p.seeds) >= 3
    assert p.metadata["num_tokens"] >= 1024
    if p.scheme == "erasure":
        assert p.levels[0] == 0.0 and p.levels[-1] == pytest.approx(0.3)
    else:
        assert p.levels[0] == -5.0 and p.levels[-1] == 35.0
    step = np.diff(p.levels).max()
    assert step <= (0.025 + 1e-9 if p.scheme == "erasure" else 2.5)
    # built under the builder's earlier module name; `command_now` is the same flags through today's command line
    assert p.metadata["command"].startswith("python -m llmsplit_env.profile ")
    assert p.metadata["command_now"] == "llmsplit profile " + p.metadata["command"].split(" ", 3)[3]
    assert f"--scheme {p.scheme}" in p.metadata["command"]
    for key in (
        "model",
        "text",
        "num_tokens",
        "window",
        "dtype",
        "scheme_params",
        "seeds",
        "timings",
        "package_version",
    ):
        assert key in p.metadata
    # Nothing is transmitted at k = L: the clean model, no loss, no leakage.
    np.testing.assert_allclose(p.mean_log_ppl[-1], np.log(p.clean_ppl), rtol=1e-4)
    assert p.leakage[-1] == 0.0 and np.all(p.loss_fraction[-1] == 0.0)


def test_analog_profile_approaches_clean_at_high_snr_and_degrades_at_low_snr():
    p = load_profile("smollm2-135m-analog")
    rel = p.mean_ppl / p.clean_ppl - 1
    assert np.all(rel[:, p.levels >= 30.0] < 0.05)
    assert np.all(p.mean_ppl[:-1, p.levels == -5.0] > 10 * p.clean_ppl)
    # quality never improves as the SNR falls (within the seed spread)
    assert np.all(np.diff(p.mean_log_ppl, axis=1) <= 3 * p.std_log_ppl[:, 1:] + 1e-9)


def test_digital_loss_fraction_follows_outage_and_erasure_worsens_with_rho():
    from llmsplit_env.llm.channel import nakagami_outage_probability

    d = load_profile("smollm2-135m-digital")
    md = d.metadata["scheme_params"]
    expected = [nakagami_outage_probability(v, md["threshold_db"], md["m"]) for v in d.levels]
    np.testing.assert_allclose(d.loss_fraction[0], expected, atol=0.03)
    e = load_profile("smollm2-135m-erasure")
    assert np.all(np.diff(e.mean_log_ppl[:-1], axis=1) > -3 * e.std_log_ppl[:-1, 1:])
    np.testing.assert_allclose(e.loss_fraction[:-1], np.broadcast_to(e.levels, e.loss_fraction[:-1].shape), atol=0.01)


def test_leakage_falls_from_first_to_last_split():
    p = load_profile("smollm2-135m-analog")
    assert p.leakage[0] > 0.9
    assert p.leakage[0] > p.leakage[9] > p.leakage[28] > p.leakage[29] == 0.0
    assert p.probe_accuracy[-1] > 0.2  # H_L itself still leaks; it just never leaves the phone


def test_round_trip(tmp_path):
    p = load_profile("smollm2-135m-erasure")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(p.to_json()))
    q = load_profile(path)
    for field in ("splits", "levels", "seeds", "log_ppl", "mean_log_ppl", "std_log_ppl", "leakage", "loss_fraction"):
        np.testing.assert_array_equal(getattr(p, field), getattr(q, field))
    assert q.clean_ppl == p.clean_ppl and q.metadata == p.metadata


def _mutated(mutate):
    data = copy.deepcopy(load_profile("smollm2-135m-analog").to_json())
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("leakage"), "missing field 'leakage'"),
        (lambda d: d.update(format="other"), "field 'format'"),
        (lambda d: d.update(format_version=99), "unsupported format_version 99"),
        (lambda d: d.update(scheme="optical"), "field 'scheme' must be one of"),
        (lambda d: d.update(level_name="rho"), "level_name for scheme 'analog' must be 'snr_db'"),
        (lambda d: d["levels"].reverse(), "strictly increasing"),
        (lambda d: d["splits"].__setitem__(3, 40), "consecutive integers"),
        (lambda d: d["mean_log_ppl"].pop(), "'mean_log_ppl' has shape (29, 17)"),
        (lambda d: d["mean_log_ppl"][0].__setitem__(0, 1.0), "not the mean of 'log_ppl'"),
        (lambda d: d["std_log_ppl"][0].__setitem__(0, 9.0), "not the sample std"),
        (lambda d: d["leakage"].__setitem__(0, 1.5), "'leakage' must lie in [0, 1]"),
        (lambda d: d["log_ppl"][0][0].__setitem__(0, "x"), "not a numeric array"),
        (lambda d: d["log_ppl"][0][0].__setitem__(0, float("nan")), "non-finite"),
        (lambda d: d.update(clean_ppl=-1), "'clean_ppl' must be a finite number >= 1"),
        (lambda d: d.update(splits=[k + 0.5 for k in d["splits"]]), "'splits' must be integers, got 1.5"),
        (lambda d: d["seeds"].__setitem__(0, 0.25), "'seeds' must be integers, got 0.25"),
        (lambda d: d["splits"].__setitem__(1, d["splits"][0]), "'splits' must not repeat a split"),
    ],
)
def test_malformed_profiles_are_rejected_with_the_reason(mutate, needle):
    with pytest.raises(ProfileError) as err:
        profile_from_dict(_mutated(mutate), "bad.json")
    assert needle in str(err.value) and "bad.json" in str(err.value)


def test_unknown_name_and_bad_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped: smollm2-135m-analog"):
        load_profile("no-such-profile")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match="not valid JSON") as err:
        load_profile(bad)
    assert str(bad) in str(err.value)
    bad.write_bytes(b"\xff\xfe{\x00\x00\x80")  # not UTF-8 at all
    with pytest.raises(ProfileError, match="not a UTF-8 text file") as err:
        load_profile(bad)
    assert str(bad) in str(err.value)
    good = json.dumps(load_profile("smollm2-135m-erasure").to_json()).encode()
    bad.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ProfileError, match="not valid JSON") as err:
        load_profile(bad)
    assert str(bad) in str(err.value)


def test_the_env_refuses_a_profile_short_of_l_with_the_builders_rule():
    from llmsplit_env.quality import ProfileQuality, check_splits

    data = load_profile("smollm2-135m-analog").to_json()
    for key in ("splits", "log_ppl", "mean_log_ppl", "std_log_ppl", "loss_fraction", "leakage", "probe_accuracy"):
        data[key] = data[key][:-1]  # splits 1..29 of a 30-layer model
    p = profile_from_dict(data, "short.json")  # a well-formed file
    with pytest.raises(ProfileError, match=r"must cover the splits up to L = 30"):
        ProfileQuality(p)
    with pytest.raises(ProfileError, match=r"must cover the splits up to L = 30"):
        check_splits([28, 29], "--splits", 30)
    assert check_splits([28.0, 29, 30], "--splits", 30) == [28, 29, 30]


# --- the builder ----------------------------------------------------------------------------------------------------


def build_args(model_dir, out, *extra):
    return [
        "--model", str(model_dir), "--text", "pydoc", "--scheme", "analog", "--out", str(out),
        "--num-tokens", "128", "--window", "64", "--levels", "-5", "10", "30", "--seeds", "0", "1", "2",
        "--dtype", "float32", "--probe-fit-tokens", "1024", "--probe-test-tokens", "512", *extra,
    ]  # fmt: skip


def test_builder_writes_a_loadable_profile(tiny_models, tmp_path):
    out = tmp_path / "tiny.json"
    assert builder.main(build_args(tiny_models["llama"], out)) == 0
    p = load_profile(out)
    assert p.splits.tolist() == [1, 2, 3, 4] and p.levels.tolist() == [-5.0, 10.0, 30.0]
    assert p.log_ppl.shape == (4, 3, 3)
    assert p.metadata["command"] == "python -m llmsplit_env.profiling.builder " + " ".join(
        build_args(tiny_models["llama"], out)
    )
    assert not out.with_name(out.name + ".partial.json").exists()
    # the builder's numbers are the runner's numbers
    from llmsplit_env.llm import SplitRunner
    from llmsplit_env.llm.channel import AnalogChannel

    r = SplitRunner.from_pretrained(str(tiny_models["llama"]), "pydoc", num_tokens=128, window=64, dtype="float32")
    np.testing.assert_allclose(r.evaluate(2, AnalogChannel(10.0), seeds=[0, 1, 2]).log_ppl, p.log_ppl[1, 1], rtol=1e-6)


def test_builder_resumes_after_an_interruption(tiny_models, tmp_path, interrupt_evaluation, capsys):
    out = tmp_path / "tiny.json"
    partial_path = out.with_name(out.name + ".partial.json")
    calls = interrupt_evaluation(5)  # Ctrl-C in the middle of a cell
    assert builder.main(build_args(tiny_models["llama"], out)) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"interrupted: the finished cells are kept in {partial_path}; rerun the same command to resume"
    partial = json.loads(partial_path.read_text())
    assert len(partial["cells"]) == 4 and not out.exists()
    calls["n"] = 100
    assert builder.main(build_args(tiny_models["llama"], out)) == 0
    assert calls["n"] == 100 + 12 - 4  # only the missing cells were measured
    interrupt_evaluation.restore()
    fresh = tmp_path / "fresh.json"
    assert builder.main(build_args(tiny_models["llama"], fresh)) == 0
    np.testing.assert_allclose(load_profile(out).log_ppl, load_profile(fresh).log_ppl, rtol=1e-9)


def test_builder_refuses_to_resume_with_other_settings(tiny_models, tmp_path, capsys):
    out = tmp_path / "tiny.json"
    partial = out.with_name(out.name + ".partial.json")
    partial.write_text(json.dumps({"settings": {"scheme": "erasure"}, "cells": {}}))
    assert builder.main(build_args(tiny_models["llama"], out)) == 2
    assert "different settings" in capsys.readouterr().err
    assert builder.main([*build_args(tiny_models["llama"], out), "--fresh"]) == 0


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--levels", "-80", "0"], "--levels: snr_db must be a finite number in [-50.0, 100.0], got -80.0"),
        (["--seeds", "1", "1"], "--seeds must be distinct"),
        (["--splits", "2", "9"], "--splits must lie in [1, 4] (the model has L = 4 layers), got [2, 9]"),
        (["--m", "0.1"], "--m: m (Nakagami shape)"),
    ],
)
def test_builder_bad_arguments(tiny_models, tmp_path, capsys, extra, needle):
    assert builder.main([*build_args(tiny_models["llama"], tmp_path / "x.json"), *extra]) == 2
    assert needle in capsys.readouterr().err


def test_builder_unknown_scheme_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        builder.main(["--scheme", "optical", "--out", str(tmp_path / "x.json")])
    assert err.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --scheme: invalid choice: 'optical'") and err.count("\n") == 1


def test_recorded_profile_command_runs_the_builder():
    """The shipped profiles' ``command_now`` (``llmsplit profile …``) reaches the builder's CLI with its flags."""
    from agents.zoo.cli import main as llmsplit

    p = load_profile("smollm2-135m-erasure")
    argv = p.metadata["command_now"].split()[1:]
    assert argv[0] == "profile"
    with pytest.raises(SystemExit) as err:  # the recorded flags parse; a bad scheme is refused by the same parser
        llmsplit([*argv[:1], "--scheme", "nope", *argv[3:]])
    assert err.value.code == 2
