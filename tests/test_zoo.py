"""The zoo's registry: every algo has a builder, a loader, a file name and its hyperparameters (agents.zoo.registry)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import llmsplit_env  # noqa: F401
from agents.common.env_util import collect_transitions
from agents.common.hyperparameters import HYPERPARAMS_DIR, hyperparam_algos
from agents.zoo.registry import ALGOS, REGISTRY, load_agent, train_agent


def test_registry_covers_every_algo():
    assert set(ALGOS) == set(REGISTRY) == {
        "mbrl", "ppo", "a2c", "dqn", "maskable_ppo", "rsm_ppo", "rllib_ppo",
        "oracle", "random", "fixed", "threshold",
        "cell_planner", "cell_selfish", "cell_fixed", "cell_random"}  # fmt: skip
    for algo, entry in REGISTRY.items():
        cls = entry.agent_class()
        assert callable(getattr(cls, "load", None)), algo
        assert callable(entry.build) and callable(entry.fit) and entry.file_name, algo
        assert entry.hyperparam_keys() is not None, algo
        assert (HYPERPARAMS_DIR / f"{algo}.yml").is_file() == entry.yaml, algo
    assert set(hyperparam_algos()) == {a for a, e in REGISTRY.items() if e.yaml}
    no_budget = ["oracle", "random", "fixed", "cell_planner", "cell_selfish", "cell_fixed", "cell_random"]
    assert [a for a, e in REGISTRY.items() if not e.uses_budget] == no_budget
    assert "warmup_steps" in REGISTRY["mbrl"].hyperparam_keys() and "n_real" in REGISTRY["rsm_ppo"].hyperparam_keys()
    assert "learning_rate" in REGISTRY["ppo"].hyperparam_keys() and "n_timesteps" in REGISTRY["ppo"].hyperparam_keys()


@pytest.mark.parametrize(
    ("algo", "hp", "needle"),
    [
        ("mbrl", {"bogus": 1}, "unknown hyperparameter(s) ['bogus'] for mbrl; allowed: warmup_steps"),
        ("ppo", {"learning_rat": 0.1}, "unknown hyperparameter(s) ['learning_rat'] for ppo"),
        ("fixed", {"splt": 3}, "unknown hyperparameter(s) ['splt'] for fixed; allowed: split"),
        ("oracle", {"x": 1}, "for oracle; allowed: none"),
    ],
)
def test_bad_hyperparameters_name_the_key_and_algo(tmp_path, algo, hp, needle):
    with pytest.raises(ValueError) as err:
        train_agent(algo, out_dir=tmp_path, hyperparams=hp)
    assert needle in str(err.value)


def test_train_and_load_heuristics(tmp_path):
    rec = train_agent("fixed", out_dir=tmp_path / "f", hyperparams={"split": 7})
    assert rec.path.endswith("agent.json") and rec.quality_evals == 0 and rec.n_timesteps == 0
    assert load_agent("fixed", rec.path).split == 7
    rec = train_agent("threshold", out_dir=tmp_path / "t", n_timesteps=60)
    fitted_on = collect_transitions(gym.make("LLMSplit-v0"), 60, seed=0)  # its 60 steps; those that send count
    assert rec.quality_evals == fitted_on.quality_evals < 60 and rec.hyperparams == {"num_steps": 60}
    with pytest.raises(ValueError, match="unknown algo 'sac'"):
        train_agent("sac")
    with pytest.raises(ValueError, match="unknown algo 'sac'"):
        load_agent("sac", rec.path)
    with pytest.raises(FileNotFoundError, match="no saved ppo agent"):
        load_agent("ppo", tmp_path / "missing.zip")
