"""Agent files cannot run code: crafted SB3 zips, pickled weights and policy_kwargs strings are refused by name."""

from __future__ import annotations

import base64
import io
import json
import pathlib
import pickle
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

import llmsplit_env  # noqa: F401
from agents.common.hyperparameters import as_data, parse_policy_kwargs
from agents.sb3 import META, load_sb3, make_sb3_agent, save_sb3
from tests.agent_helpers import SMALL, obs_batch


class _Touch:
    """A pickle payload: unpickling it creates ``path`` (the proof that code ran)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def _trained(algo: str, tmp_path: pathlib.Path, policy_kwargs=None):
    hp = {"policy": "MlpPolicy", **SMALL[algo], **({"policy_kwargs": policy_kwargs} if policy_kwargs else {})}
    model = make_sb3_agent(algo, gym.make("LLMSplit-v0"), hp, seed=3)
    model.learn(128)
    path = tmp_path / f"{algo}.zip"
    save_sb3(model, path, algo, hp, seed=3)
    return model, path


def _rewrite(path: pathlib.Path, out: pathlib.Path, edit) -> pathlib.Path:
    """Copy the zip ``path`` to ``out`` with ``edit(name, bytes) -> bytes`` applied to every entry."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, edit(name, src.read(name)))
    return out


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn", "maskable_ppo"])
def test_round_trip_predicts_the_same(algo, tmp_path):
    model, path = _trained(algo, tmp_path, "dict(net_arch=[16], activation_fn=nn.Tanh)")
    batch = obs_batch("LLMSplit-v0", 30)
    loaded = load_sb3(path, gym.make("LLMSplit-v0"), algo=algo)
    assert type(loaded) is type(model) and loaded.num_timesteps == model.num_timesteps
    assert loaded.policy.activation_fn is torch.nn.Tanh
    assert np.array_equal(loaded.predict(batch, deterministic=True)[0], model.predict(batch, deterministic=True)[0])
    for a, b in zip(loaded.policy.state_dict().values(), model.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # without an env, the model still predicts (it only needs the saved spaces)
    bare = load_sb3(path)
    assert np.array_equal(bare.predict(batch, deterministic=True)[0], model.predict(batch, deterministic=True)[0])


def test_crafted_data_entry_runs_nothing_and_is_refused(tmp_path):
    _, path = _trained("ppo", tmp_path)
    marker = tmp_path / "pwned"
    payload = {":type:": "<class 'float'>", ":serialized:": base64.b64encode(pickle.dumps(_Touch(marker))).decode()}

    def inject(name, data):
        if name != "data":
            return data
        d = json.loads(data)
        d["ent_coef"] = payload
        return json.dumps(d).encode()

    crafted = _rewrite(path, tmp_path / "crafted.zip", inject)
    # the payload is live: SB3's own loader runs it
    PPO.load(crafted, device="cpu")
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError, match=r"crafted\.zip: data\['ent_coef'\] holds pickled Python objects"):
        load_sb3(crafted, gym.make("LLMSplit-v0"))
    assert not marker.exists()


def test_crafted_weights_run_nothing_and_are_refused(tmp_path):
    _, path = _trained("ppo", tmp_path)
    marker = tmp_path / "pwned"
    crafted = _rewrite(path, tmp_path / "crafted.zip",
                       lambda name, data: pickle.dumps(_Touch(marker)) if name == "policy.pth" else data)  # fmt: skip
    with pytest.raises(ValueError, match=r"crafted\.zip: policy\.pth refused"):
        load_sb3(crafted)
    assert not marker.exists()


def test_plain_sb3_zip_truncated_and_foreign_files_are_refused(tmp_path):
    model, path = _trained("ppo", tmp_path)
    plain = tmp_path / "plain.zip"
    model.save(plain)
    with pytest.raises(ValueError, match=rf"plain\.zip was not saved by LLMSplit \(no {META}\)"):
        load_sb3(plain)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.zip is not a zip archive"):
        load_sb3(cut)
    with pytest.raises(ValueError, match="holds a ppo agent, not dqn"):
        load_sb3(path, algo="dqn")
    with pytest.raises(FileNotFoundError, match="no saved agent"):
        load_sb3(tmp_path / "missing.zip")
    other = gym.make("LLMSplit-Paper-v0")
    with pytest.raises(ValueError, match="observation_space differs"):
        load_sb3(path, other)


def test_tampered_hyperparams_are_parsed_as_data(tmp_path):
    _, path = _trained("ppo", tmp_path)

    def edit(name, data):
        if name != META:
            return data
        meta = json.loads(data)
        meta["hyperparams"]["policy_kwargs"] = "().__class__.__base__.__subclasses__()"
        return json.dumps(meta).encode()

    with pytest.raises(ValueError, match=r"tampered\.zip: policy_kwargs .* is not allowed"):
        load_sb3(_rewrite(path, tmp_path / "tampered.zip", edit))


@pytest.mark.parametrize(
    "source",
    [
        "().__class__.__base__.__subclasses__()",
        "__import__('os').system('true')",
        "dict(activation_fn=os.system)",
        "dict(features_extractor_class=nn.Module)",
        "[x for x in ()]",
        "dict(**{'a': 1})",
        "lambda: 0",
    ],
)
def test_policy_kwargs_strings_are_never_evaluated(source):
    with pytest.raises(ValueError, match="policy_kwargs"):
        parse_policy_kwargs(source)


def test_policy_kwargs_parse_the_zoo_forms():
    source = (
        "dict(net_arch=dict(pi=[64, 64], vf=[32]), activation_fn=th.nn.ReLU, log_std_init=-0.5,"
        " optimizer_class=torch.optim.AdamW, optimizer_kwargs={'eps': 1e-5}, ortho_init=False)"
    )
    got = parse_policy_kwargs(source)
    assert got == {
        "net_arch": {"pi": [64, 64], "vf": [32]},
        "activation_fn": torch.nn.ReLU,
        "log_std_init": -0.5,
        "optimizer_class": torch.optim.AdamW,
        "optimizer_kwargs": {"eps": 1e-5},
        "ortho_init": False,
    }
    assert parse_policy_kwargs({"activation_fn": "nn.Tanh"}) == {"activation_fn": torch.nn.Tanh}
    assert as_data(got)["activation_fn"] == "nn.ReLU" and parse_policy_kwargs(as_data(got)) == got
    with pytest.raises(ValueError, match=r"policy_kwargs\['net_arch'\]\[0\] must be plain data"):
        parse_policy_kwargs({"net_arch": [object()]})


def test_hyperparameters_must_be_data():
    with pytest.raises(ValueError, match="learning_rate must be plain data"):
        make_sb3_agent("ppo", gym.make("LLMSplit-v0"), {"learning_rate": io.BytesIO()})
    with pytest.raises(ValueError, match=r"policy 'os\.system' is not one of ppo's: MlpPolicy"):
        make_sb3_agent("ppo", gym.make("LLMSplit-v0"), {"policy": "os.system"})
