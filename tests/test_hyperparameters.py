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
