"""Front doors: ``llmsplit train`` / ``evaluate`` (and the repo's train.py / evaluate.py wrappers) with tiny budgets;
their outputs; bad input; the ``llmsplit`` dispatcher and every ``python -m`` entry point's ``--help``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluate  # noqa: E402
import train  # noqa: E402

TINY = ["-n", "400", "--eval-episodes", "2", "--no-progress",
        "--hyperparams", "mbrl.warmup_steps:100", "mbrl.max_epochs:30", "rsm_ppo.n_real:60", "threshold.num_steps:60",
        "ppo.n_steps:128", "ppo.batch_size:64"]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    args = ["--algo", "mbrl", "ppo", "rsm_ppo", "oracle", "random", "fixed", "threshold",
            "-f", str(root), "-tb", str(root / "tb"), *TINY]  # fmt: skip
    assert train.main(args) == 0
    return root


def test_train_writes_agents_summary_and_tensorboard(trained_run, capsys):
    summary = json.loads((trained_run / "LLMSplit-v0" / "summary.json").read_text())
    agents = summary["agents"]
    assert set(agents) == {f"{a}_seed0" for a in ("mbrl", "ppo", "rsm_ppo", "oracle", "random", "fixed", "threshold")}
    for name, rec in agents.items():
        assert Path(rec["path"]).exists(), name
    assert agents["mbrl_seed0"]["quality_evals"] == 400
    assert 0 < agents["rsm_ppo_seed0"]["quality_evals"] <= 60  # its collection steps that sent something
    assert 0 < agents["ppo_seed0"]["quality_evals"] <= 512  # whole rollouts of 128 steps: 4 of them
    assert agents["oracle_seed0"]["final"]["normalized_score"] == pytest.approx(1.0)
    assert agents["random_seed0"]["final"]["normalized_score"] == pytest.approx(0.0)
    assert agents["mbrl_seed0"]["curve"], "MBRL logs a learning curve after its warm-up"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {p.name: p for p in (trained_run / "tb" / "LLMSplit-v0").iterdir()}
    assert {"MBRL_1", "PPO_1", "RSM-PPO_1"} <= set(runs)
    for name in ("MBRL_1", "PPO_1", "RSM-PPO_1"):
        acc = EventAccumulator(str(runs[name]))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        for prefix in ("rollout/", "eval/", "model/", "reward/quality", "cost/quality_evals"):
            assert any(t.startswith(prefix) for t in tags), (name, prefix, sorted(tags))


def test_evaluate_scores_saved_agents_and_writes_json_and_plots(trained_run, capsys):
    out = trained_run / "eval.json"
    assert evaluate.main(["-f", str(trained_run), "--n-eval-episodes", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) >= {"mbrl_seed0", "ppo_seed0", "rsm_ppo_seed0", "oracle_seed0"}
    for r in res.values():
        assert set(r) == {"mean_return", "ci95", "normalized_score", "mean_ppl", "quality_evals"}
    assert res["oracle_seed0"]["normalized_score"] == pytest.approx(1.0)
    assert res["mbrl_seed0"]["quality_evals"] == 400
    plots = trained_run / "LLMSplit-v0" / "plots"
    for png in ("learning_curves.png", "policy_map.png"):
        assert (plots / png).read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "norm. score" in printed and "mbrl_seed0" in printed


def test_evaluate_only_some_agents(trained_run, tmp_path):
    out = tmp_path / "e.json"
    assert evaluate.main(["-f", str(trained_run), "--algo", "oracle", "random", "--n-eval-episodes", "2",
                          "--json", str(out), "--plots", str(tmp_path)]) == 0  # fmt: skip
    assert set(json.loads(out.read_text())) == {"oracle_seed0", "random_seed0"}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--env", "LLMSplit-v9"], "unknown env id 'LLMSplit-v9'"),
        (["--env-kwargs", "reward.weights.quallity:1"], "unknown config key 'reward.weights.quallity'"),
        (["--env-kwargs", "scheme"], "--env-kwargs expects key:value pairs"),
        (["-n", "0"], "-n/--n-timesteps must be >= 1"),
        (["--hyperparams", "ppo.learning_rat:0.1"], "learning_rat"),
        (["--hyperparams", "n_steps:128"], "--hyperparams keys must start with an algo being trained"),
        (["--hyperparams", "mbrl.n_steps:128"], "--hyperparams keys must start with an algo being trained"),
        (["--eval-freq", "0"], "--eval-freq must be >= 1"),
    ],
)
def test_train_bad_input(tmp_path, capsys, argv, needle):
    code = train.main(["--algo", "ppo", "-f", str(tmp_path), "-tb", "", "--no-progress", "-n", "64", *argv])
    assert code == 2
    assert needle in capsys.readouterr().err


def test_unknown_hyperparameters_of_our_own_agents_are_rejected(tmp_path, capsys):
    code = train.main(["--algo", "mbrl", "-f", str(tmp_path), "-tb", "", "--no-progress", "-n", "10",
                       "--hyperparams", "mbrl.bogus:1"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown hyperparameter(s) ['bogus'] for mbrl" in err and "warmup_steps" in err


def test_train_unknown_algo_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as err:
        train.main(["--algo", "sac"])
    assert err.value.code == 2
    assert "invalid choice: 'sac'" in capsys.readouterr().err


def test_evaluate_bad_input(tmp_path, trained_run, capsys):
    assert evaluate.main(["-f", str(tmp_path)]) == 2
    assert "no training summary" in capsys.readouterr().err
    assert evaluate.main(["-f", str(trained_run), "--algo", "dqn"]) == 2
    assert "no saved agent for dqn" in capsys.readouterr().err
    assert evaluate.main(["-f", str(trained_run), "--n-eval-episodes", "1"]) == 2
    assert "--n-eval-episodes must be >= 2" in capsys.readouterr().err


def test_env_kwargs_parse_nested_yaml_values():
    from agents.zoo.args import parse_key_values

    parsed = parse_key_values(["reward.weights.switching:0.5", "scheme:digital", "splits.excluded:[1, 2]"], "x")
    assert parsed == {"reward": {"weights": {"switching": 0.5}}, "scheme": "digital", "splits": {"excluded": [1, 2]}}


# ------------------------------------------------------------------------------------------------ faults
SMALL = ["-tb", "", "--no-progress", "--eval-episodes", "2", "-n", "128",
         "--hyperparams", "ppo.n_steps:64", "ppo.batch_size:32"]  # fmt: skip


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    assert train.main(["--algo", "oracle", "random", "ppo", "-f", str(root), *SMALL]) == 0
    return root


def _copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run whose summary points at the copied agents."""
    import shutil

    shutil.copytree(src, dst)
    path = dst / "LLMSplit-v0" / "summary.json"
    path.write_text(path.read_text().replace(str(src), str(dst)))
    return dst


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["--algo", "oracle", "ppo", "--hyperparams", "ppo.policy_kwargs:().__class__.__base__.__subclasses__()"],
            "is not allowed",
        ),
        (
            ["--algo", "oracle", "ppo", "--hyperparams", "ppo.policy_kwargs:__import__('os').system('touch pwned')"],
            "is not allowed",
        ),
        (
            ["--algo", "oracle", "ppo", "--hyperparams", "ppo.policy_kwargs:dict(activation_fn=nn.Module)"],
            "may not name 'nn.Module'",
        ),
        (
            ["--algo", "oracle", "mbrl", "--hyperparams", "mbrl.warmup_steps:20"],
            "ends inside MBRL's warm-up (warmup_steps=20)",
        ),
        (["--algo", "oracle", "ppo", "--hyperparams", "ppo.n_steps:zero"], "n_steps"),
        (["--algo", "oracle", "fixed", "--hyperparams", "fixed.split:99"], "99"),
        (["--algo", "oracle", "rsm_ppo", "--hyperparams", "rsm_ppo.n_real:1"], "n_real"),
    ],
)
def test_train_checks_every_algo_before_training_the_first(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert train.main([*argv, "-f", str(tmp_path), "-tb", "", "--no-progress", "-n", "10"]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "LLMSplit-v0").exists(), "nothing may be trained or written before every algo checks out"
    assert not (tmp_path / "pwned").exists()


def test_interrupted_retrain_keeps_the_previous_agent(small_run, tmp_path, capsys, monkeypatch):
    """Ctrl-C at the worst point of a save (bytes written, not yet renamed): exit 130, one line, old agent intact."""
    import llmsplit_env.util.files as files

    run = _copy_run(small_run, tmp_path / "run")
    agent = run / "LLMSplit-v0" / "ppo_seed0" / "agent.zip"
    before = agent.read_bytes()
    real_replace = files.os.replace

    def interrupt(src, dst):
        if Path(dst) == agent:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", interrupt)
    assert train.main(["--algo", "ppo", "-f", str(run), *SMALL, "--seed", "0"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["interrupted: stopped; everything saved before the interrupt is kept"]
    monkeypatch.undo()
    assert agent.read_bytes() == before
    assert [p.name for p in agent.parent.iterdir()] == ["agent.zip"]  # no temporary file left
    assert evaluate.main(["-f", str(run), "--n-eval-episodes", "2", "--plots", str(tmp_path / "p")]) == 0
    assert "ppo_seed0" in capsys.readouterr().out


def test_sigint_during_train_keeps_saved_agents(small_run, tmp_path):
    """A real SIGINT to a running train.py: status 130, a one-line message, every agent saved before still loads."""
    import signal
    import subprocess
    import time

    run = _copy_run(small_run, tmp_path / "run")
    argv = [sys.executable, str(ROOT / "train.py"), "--algo", "ppo", "-f", str(run), *SMALL, "-n", "100000"]
    # A shell's background job starts with SIGINT ignored, and a child inherits that: give it the default back, as a
    # terminal's Ctrl-C would find it.
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert proc.stdout.readline().startswith("== ppo")  # training has started
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # never leave a training process behind
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted: stopped; everything saved before the interrupt is kept"
    assert "Traceback" not in err
    from agents.zoo.registry import load_agent

    for rec in json.loads((run / "LLMSplit-v0" / "summary.json").read_text())["agents"].values():
        load_agent(rec["algo"], rec["path"], None if rec["algo"] == "ppo" else _env())


def test_ctrl_c_while_rescoring_leaves_the_new_agents_own_entry(small_run, tmp_path, capsys, monkeypatch):
    """Ctrl-C after the new agent is saved, while train re-scores it: the summary already describes the new file (its
    digest and real-evaluation count), just without a final score, and evaluate reports the new count."""
    import agents.zoo.registry as registry
    from llmsplit_env.util.files import file_digest

    run = _copy_run(small_run, tmp_path / "run")
    summary_path = run / "LLMSplit-v0" / "summary.json"
    old = json.loads(summary_path.read_text())["agents"]["ppo_seed0"]
    assert 0 < old["quality_evals"] <= 128 and "final" in old

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "load_agent", interrupt)  # train's re-score loads the saved agent first
    assert train.main(["--algo", "ppo", "-f", str(run), *SMALL, "-n", "192"]) == 130
    monkeypatch.undo()
    new = json.loads(summary_path.read_text())["agents"]["ppo_seed0"]
    assert old["quality_evals"] < new["quality_evals"] <= 192 and "final" not in new
    assert new["sha256"] == file_digest(new["path"]) != old.get("sha256")
    out = tmp_path / "e.json"
    assert evaluate.main(["-f", str(run), "--n-eval-episodes", "2", "--json", str(out), "--plots", str(tmp_path)]) == 0
    assert json.loads(out.read_text())["ppo_seed0"]["quality_evals"] == new["quality_evals"]


def test_an_entry_whose_agent_file_changed_is_listed_not_scored(small_run, tmp_path, capsys):
    run = _copy_run(small_run, tmp_path / "run")
    summary_path = run / "LLMSplit-v0" / "summary.json"
    summary = json.loads(summary_path.read_text())
    ppo, rnd = summary["agents"]["ppo_seed0"], summary["agents"]["random_seed0"]
    assert len(ppo["sha256"]) == 64
    # the random agent's file replaced behind the summary's back by another whole agent file
    Path(rnd["path"]).write_text(json.dumps(json.loads(Path(rnd["path"]).read_text()), indent=3))
    out = tmp_path / "e.json"
    rc = evaluate.main(["-f", str(run), "--n-eval-episodes", "2", "--json", str(out), "--plots", str(tmp_path)])
    assert rc == 3
    res = json.loads(out.read_text())
    assert "changed after its summary entry was written" in res["random_seed0"]["error"]
    assert "normalized_score" in res["ppo_seed0"]
    # a summary written before digests were recorded is taken as it is
    del rnd["sha256"]
    summary_path.write_text(json.dumps(summary))
    assert evaluate.main(["-f", str(run), "--n-eval-episodes", "2", "--plots", str(tmp_path)]) == 0


def _env():
    from agents.common.env_util import make_env

    return make_env("LLMSplit-v0")


def test_evaluate_skips_agents_it_cannot_load(small_run, tmp_path, capsys):
    run = _copy_run(small_run, tmp_path / "run")
    agent = run / "LLMSplit-v0" / "ppo_seed0" / "agent.zip"
    agent.write_bytes(agent.read_bytes()[:11_000])  # what an in-place save cut short used to leave
    out = tmp_path / "e.json"
    assert (
        evaluate.main(["-f", str(run), "--n-eval-episodes", "2", "--json", str(out), "--plots", str(tmp_path / "p")])
        == 3
    )  # fmt: skip  (partial)
    res = json.loads(out.read_text())
    assert set(res) == {"oracle_seed0", "random_seed0", "ppo_seed0"}
    assert "agent.zip is not a zip archive" in res["ppo_seed0"]["error"]
    assert res["oracle_seed0"]["normalized_score"] == pytest.approx(1.0)
    assert "skipped ppo_seed0" in capsys.readouterr().err
    for name in ("oracle_seed0", "random_seed0"):
        Path(json.loads((run / "LLMSplit-v0" / "summary.json").read_text())["agents"][name]["path"]).unlink()
    assert evaluate.main(["-f", str(run), "--n-eval-episodes", "2", "--plots", str(tmp_path / "p")]) == 1
    assert "none of the 3 agents could be evaluated" in capsys.readouterr().err


def test_an_agent_that_fails_while_acting_is_listed_and_the_others_scored(small_run, tmp_path, capsys, monkeypatch):
    """One agent that loads but raises in ``predict`` (a crafted file, a bug) costs only itself: the others are
    scored, it is listed with its reason in the table and the JSON, and the exit status says partial (3)."""
    import agents.zoo.registry as registry

    run = _copy_run(small_run, tmp_path / "run")
    real_load = registry.load_agent

    class Broken:
        def predict(self, *args, **kwargs):
            raise NotImplementedError("activation 'Module' has no forward")

    def load(algo, path, env=None):
        return Broken() if algo == "random" else real_load(algo, path, env)

    monkeypatch.setattr(registry, "load_agent", load)
    out = tmp_path / "e.json"
    rc = evaluate.main(["-f", str(run), "--n-eval-episodes", "2", "--json", str(out), "--plots", str(tmp_path / "p")])
    assert rc == 3
    res = json.loads(out.read_text())
    assert "normalized_score" in res["oracle_seed0"] and "normalized_score" in res["ppo_seed0"]
    assert res["random_seed0"] == {
        "error": "evaluation failed: NotImplementedError: activation 'Module' has no forward"
    }
    captured = capsys.readouterr()
    assert "random_seed0      not evaluated: evaluation failed: NotImplementedError" in captured.out
    assert "partial: 1 of the 3 agents could not be evaluated" in captured.err


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"", "is not a readable training summary"), (b"\xff\xfe{", "is not a readable training summary"),
     (b'{"agents": []}', "is not a training summary"), (b'{"agents": {"x": {"algo": "ppo"}}}', "entry 'x'")],
)  # fmt: skip
def test_malformed_summary_is_named(tmp_path, capsys, content, needle):
    (tmp_path / "LLMSplit-v0").mkdir()
    (tmp_path / "LLMSplit-v0" / "summary.json").write_bytes(content)
    assert evaluate.main(["-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "summary.json" in err and len(err.strip().splitlines()) == 1
    assert train.main(["--algo", "oracle", "-f", str(tmp_path), "-tb", "", "--no-progress"]) == 2
    assert needle in capsys.readouterr().err


def test_evaluate_checks_outputs_before_work(small_run, tmp_path, capsys, monkeypatch):
    import agents.common.evaluation

    def never(*_a, **_k):
        raise AssertionError("evaluated before checking its outputs")

    monkeypatch.setattr(agents.common.evaluation, "evaluate_agent", never)
    assert evaluate.main(["-f", str(small_run), "--plots", "/dev/null"]) == 2
    assert "--plots /dev/null exists and is not a folder" in capsys.readouterr().err
    assert evaluate.main(["-f", str(small_run), "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_ctrl_c_in_evaluate_keeps_finished_results(small_run, tmp_path, capsys, monkeypatch):
    import agents.common.evaluation

    real = agents.common.evaluation.evaluate_agent
    calls = []

    def second_interrupts(*a, **k):
        calls.append(k.get("trace", False))
        if sum(calls) == 2:  # the second agent's evaluation (the normaliser's runs take no trace)
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(agents.common.evaluation, "evaluate_agent", second_interrupts)
    out = tmp_path / "e.json"
    assert evaluate.main(["-f", str(small_run), "--n-eval-episodes", "2", "--json", str(out),
                          "--plots", str(tmp_path / "p")]) == 130  # fmt: skip
    assert list(json.loads(out.read_text())) == ["oracle_seed0"]
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("fault", ["truncate", "garbage", "flip", "empty"])
def test_every_saved_agent_fault_is_an_error_naming_the_file(trained_run, tmp_path, fault):
    """Each algo's saved file, damaged: `load_agent` raises ValueError naming the file (or loads it whole)."""
    import shutil

    from agents.zoo.registry import load_agent

    agents = json.loads((trained_run / "LLMSplit-v0" / "summary.json").read_text())["agents"]
    for name, rec in agents.items():
        src = Path(rec["path"])
        dst = tmp_path / name / src.name
        dst.parent.mkdir()
        shutil.copy(src, dst)
        data = dst.read_bytes()
        mid = len(data) // 2
        damaged = {
            "truncate": data[: len(data) * 2 // 3],
            "garbage": b"\xff\xfe garbage \x00" * 10,
            "empty": b"",
            "flip": data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :],
        }
        dst.write_bytes(damaged[fault])
        try:
            load_agent(rec["algo"], dst, _env())
        except ValueError as e:
            assert str(dst) in str(e), (name, fault, e)
        else:  # a flipped byte in a part that is not read back (e.g. JSON whitespace) can leave a whole agent
            assert fault == "flip", (name, fault)


# ---------------------------------------------------------------------------------------- llmsplit and python -m
def test_the_wrappers_are_the_packaged_commands():
    import agents.zoo.evaluate
    import agents.zoo.train

    assert train.main is agents.zoo.train.main and evaluate.main is agents.zoo.evaluate.main


def test_llmsplit_help_lists_every_subcommand(capsys):
    from agents.zoo.cli import COMMANDS, main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert set(COMMANDS) == {"train", "evaluate", "sweep", "profile", "map", "server"}
    for name in COMMANDS:
        assert f"    {name} " in out, name
    for argv, needle in (([], "give a command"), (["trian"], "invalid choice: 'trian'")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "flag"),
    [("train", "--n-timesteps"), ("evaluate", "--n-eval-episodes"), ("sweep", "--grid"), ("profile", "--scheme"),
     ("map", "--config"), ("server", "--address")],
)  # fmt: skip
def test_llmsplit_command_help_shows_its_flags(capsys, command, flag):
    from agents.zoo.cli import main

    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: llmsplit {command} ") and flag in out


def test_llmsplit_passes_arguments_and_exit_status_through(tmp_path, capsys):
    from agents.zoo.cli import main

    assert main(["evaluate", "-f", str(tmp_path)]) == 2  # the command's own one-line error
    assert "no training summary" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse's error, naming the command
        main(["train", "--algo", "sac"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: llmsplit train" in err and "invalid choice: 'sac'" in err
    # a detached server on a local instance would end with the command: refused before Ray starts
    assert main(["server", "start", "--address", "local"]) == 2
    assert "the server would stop when this command ends" in capsys.readouterr().err


def _main_modules() -> list[str]:
    """Every module of the packages with an ``if __name__ == "__main__":`` block."""
    out = []
    for pkg in ("agents", "llmsplit_env"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if 'if __name__ == "__main__":' in path.read_text():
                out.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return out


def test_every_python_m_entry_point_prints_help():
    """``python -m X --help`` for every module with a ``__main__`` block: a usage line, status 0, nothing loaded."""
    import subprocess

    mods = _main_modules()
    assert {"agents.zoo.cli", "agents.zoo.train", "agents.zoo.evaluate", "agents.zoo.sweep",
            "llmsplit_env.profiling.builder", "llmsplit_env.profiling.split_map"} <= set(mods)  # fmt: skip
    for mod in mods:
        r = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 0 and r.stdout.startswith("usage: "), (mod, r.stderr[-2000:])
