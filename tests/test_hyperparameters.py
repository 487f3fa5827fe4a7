"""The one hyperparameter loader and name check (agents.common.hyperparameters)."""

from __future__ import annotations

import pytest

from agents.common.hyperparameters import check_hyperparams, hyperparam_algos, load_hyperparams
from agents.sb3 import ALGOS


def test_load_hyperparams_tables_and_errors():
    for algo in ALGOS:
        for env_id in ("LLMSplit-v0", "LLMSplit-Paper-v0", "LLMSplit-LLM-v0"):
            hp = load_hyperparams(algo, env_id)
            assert hp["n_timesteps"] > 0 and hp["policy"] == "MlpPolicy"
    paper = load_hyperparams("ppo", "LLMSplit-Paper-v0")
    assert (paper["n_steps"], paper["batch_size"], paper["n_timesteps"]) == (400, 100, 240_000)
    rsm = load_hyperparams("rsm_ppo", "LLMSplit-Paper-v0")
    assert rsm["n_timesteps"] == 240_000 and rsm["ppo_kwargs"] == {"n_steps": 400, "batch_size": 100}
    over = load_hyperparams("ppo", "LLMSplit-v0", {"n_steps": 64, "learning_rate": 1e-3})
    assert over["n_steps"] == 64 and over["learning_rate"] == 1e-3
    assert load_hyperparams("ppo", "LLMSplit-v0")["n_steps"] != 64  # the file is not modified by overrides
    with pytest.raises(ValueError, match=r"unknown algo 'sac'; allowed: .*maskable_ppo.*ppo"):
        load_hyperparams("sac", "LLMSplit-v0")
    with pytest.raises(ValueError, match=r"no entry for env id 'CartPole-v1'; entries: LLMSplit-v0"):
        load_hyperparams("ppo", "CartPole-v1")
    with pytest.raises(ValueError, match="overrides must be a dict"):
        load_hyperparams("ppo", "LLMSplit-v0", [("n_steps", 1)])


def test_every_algo_file_is_found():
    assert set(hyperparam_algos()) == {"mbrl", "rsm_ppo", "rllib_ppo", *ALGOS}


def test_check_hyperparams_names_the_bad_keys_the_algo_and_what_it_takes():
    check_hyperparams("fixed", {"split": 3}, ["split"])
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['a', 'b'\] for mbrl; allowed: x, y"):
        check_hyperparams("mbrl", {"b": 1, "a": 2, "x": 3}, ["x", "y"])
    with pytest.raises(ValueError, match="allowed: none"):
        check_hyperparams("oracle", {"a": 1}, [])


@pytest.mark.parametrize(
    ("algo", "hyperparams", "needle"),
    [
        ("ppo", {"gamma": 2}, "ppo.gamma must be in (0, 1], got 2"),
        ("ppo", {"gamma": 0.0}, "ppo.gamma must be in (0, 1]"),
        ("ppo", {"gae_lambda": float("nan")}, "ppo.gae_lambda must be a finite number, got nan"),
        ("ppo", {"learning_rate": -1e-3}, "ppo.learning_rate must be > 0"),
        ("ppo", {"policy_kwargs": {"net_arch": [64, float("inf")]}}, "ppo.policy_kwargs.net_arch[1] must be a finite"),
        ("rllib_ppo", {"lr": float("nan")}, "rllib_ppo.lr must be a finite number, got nan"),
        ("rllib_ppo", {"lambda_": 1.5}, "rllib_ppo.lambda_ must be in (0, 1]"),
        ("rsm_ppo", {"ppo_kwargs": {"gamma": float("inf")}}, "rsm_ppo.ppo_kwargs.gamma must be a finite number"),
        ("mbrl", {"beta": float("inf")}, "mbrl.beta must be a finite number, got inf"),
    ],
)
def test_nan_infinite_and_out_of_range_values_are_refused_before_any_work(algo, hyperparams, needle):
    import gymnasium as gym

    from agents.zoo.registry import check_agent

    env = gym.make("LLMSplit-v0")
    with pytest.raises(ValueError) as e:
        check_agent(algo, env, "LLMSplit-v0", hyperparams=hyperparams)
    assert needle in str(e.value)


def test_value_checks_pass_schedules_and_sane_numbers():
    from agents.common.hyperparameters import check_values

    check_values("ppo", {"learning_rate": "lin_0.001", "gamma": 1, "gae_lambda": 0.95, "policy_kwargs": {"a": [1]}})
