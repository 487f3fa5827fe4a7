"""SB3 / sb3-contrib agents: built from zoo-style hyperparameters, saved and loaded without unpickling anything.

``ALGOS`` maps ``ppo``, ``a2c``, ``dqn``, ``maskable_ppo`` to their classes; `make_sb3_agent` builds a model from a
zoo section (`agents.common.hyperparameters.load_hyperparams`), every value checked as data.

A Stable-Baselines3 zip stores parts of the model (spaces, schedules, classes) as cloudpickle, which runs code when
loaded. `save_sb3` writes SB3's own zip (so SB3 tools can still read it) plus ``llmsplit.json``: the algo, its
hyperparameters as data, the spaces and the step count. `load_sb3` reads only that JSON and the weights: it rebuilds
the model from the algo and those hyperparameters, then loads ``policy.pth`` (and the optimizer state) with
``torch.load(weights_only=True)``. The pickled entries of ``data`` are never deserialised; a file where one appears
under a key SB3 does not pickle itself (a crafted payload) is refused with the key's name, as is a plain SB3 zip (no
``llmsplit.json``).
"""

from __future__ import annotations

import copy
import inspect
import io
import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from agents.common.env_util import make_env
from agents.common.hyperparameters import as_data, check_data, check_hyperparams, load_hyperparams, parse_policy_kwargs
from agents.common.limits import check_net_arch
from agents.common.save_util import (
    Parts,
    SpacesOnlyEnv,
    check_spaces,
    describe_space,
    load_weights,
    parse_json,
    require_saved,
    space_from,
    state_dict_of_tensors,
    zip_parts,
)
from llmsplit_env.util.files import atomic_write_bytes

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "maskable_ppo": MaskablePPO}
# Keys of a zoo section that are not algorithm keyword arguments.
_ZOO_KEYS = ("n_timesteps", "policy", "n_envs")
META = "llmsplit.json"
FORMAT = "llmsplit-sb3"
VERSION = 1
# The entries of SB3's ``data`` that SB3 itself writes as cloudpickle: never read here (rebuilt from the algo and its
# hyperparameters). Pickled data under any other key can only be a crafted file.
SB3_PICKLED_KEYS = frozenset({
    "policy_class", "observation_space", "action_space", "policy_kwargs", "lr_schedule", "clip_range", "clip_range_vf",
    "rollout_buffer_class", "rollout_buffer_kwargs", "replay_buffer_class", "replay_buffer_kwargs",
    "exploration_schedule", "train_freq", "_last_obs", "_last_original_obs", "_last_episode_starts",
    "ep_info_buffer", "ep_success_buffer",
})  # fmt: skip


# ------------------------------------------------------------------------------------------------ building
def _env_id_of(env: Any) -> str | None:
    spec = getattr(env, "spec", None)
    if spec is not None and getattr(spec, "id", None):
        return spec.id
    if isinstance(env, VecEnv):
        try:
            specs = env.get_attr("spec")
            return specs[0].id if specs and specs[0] is not None else None
        except AttributeError:
            return None
    return None


def sb3_hyperparam_keys(algo: str, zoo_keys: bool = True) -> list[str]:
    """The hyperparameters an SB3 algo takes: its constructor's keyword arguments (and the zoo's keys)."""
    params = inspect.signature(ALGOS[algo].__init__).parameters
    # seed, tensorboard_log and verbose are taken (and overridden by make_sb3_agent's explicit arguments)
    allowed = sorted(k for k in params if k not in ("self", "policy", "env", "_init_setup_model"))
    return allowed + list(_ZOO_KEYS) if zoo_keys else allowed


def _check_kind(algo: str, key: str, value: Any, default: Any) -> None:
    """A value of the kind the algo's default has (SB3 checks none): an int where it takes an int, a number where a
    float, a bool where a bool. Keys whose default is ``None`` or of another kind are left to the algo."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        return
    if not ok:
        kind = type(default).__name__
        raise ValueError(f"{algo}: {key} must be {kind} (like its default {default!r}), got {value!r}")


def make_sb3_agent(
    algo: str,
    env: gym.Env | VecEnv | str,
    hyperparams: Mapping[str, Any] | None = None,
    seed: int = 0,
    tensorboard_log: str | None = None,
    verbose: int = 0,
    env_id: str | None = None,
) -> BaseAlgorithm:
    """Build an SB3 / sb3-contrib model from zoo-style hyperparameters.

    :param algo: a key of ``ALGOS``
    :param env: a gym env, a VecEnv, or an env id (then ``n_envs`` from the hyperparameters applies)
    :param hyperparams: a zoo section (``n_timesteps``, ``policy``, ``n_envs``, algorithm kwargs); ``None``: from
        `agents.common.hyperparameters.load_hyperparams` for ``env_id`` (or the env's spec id). Not modified.
    :return: the untrained model (train it for ``hyperparams["n_timesteps"]`` steps)
    """
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; allowed: {', '.join(ALGOS)}")
    if isinstance(env, str):
        env_id = env_id or env
    env_id = env_id or _env_id_of(env)
    if hyperparams is None:
        if env_id is None:
            raise ValueError("no hyperparameters given and the env has no id: pass hyperparams= or env_id=")
        hyperparams = load_hyperparams(algo, env_id)
    hp = copy.deepcopy(dict(hyperparams))
    hp.pop("n_timesteps", None)
    policy = hp.pop("policy", "MlpPolicy")
    n_envs = int(hp.pop("n_envs", 1))
    cls = ALGOS[algo]
    if not isinstance(policy, str) or policy not in cls.policy_aliases:
        raise ValueError(f"policy {policy!r} is not one of {algo}'s: {', '.join(cls.policy_aliases)}")
    check_hyperparams(algo, hp, sb3_hyperparam_keys(algo, zoo_keys=False))
    params = inspect.signature(cls.__init__).parameters
    for key, value in hp.items():  # data only: nothing a hyperparameter file holds can be code
        if key == "policy_kwargs":
            hp[key] = parse_policy_kwargs(value)
        else:
            check_data(value, key)
            _check_kind(algo, key, value, params[key].default if key in params else None)
    for k in ("seed", "tensorboard_log", "verbose"):
        hp.pop(k, None)  # the explicit arguments win
    if isinstance(env, str):
        if n_envs > 1:
            make_env(env).close()  # an unknown id fails here, naming the registered ones
            env = make_vec_env(env, n_envs=n_envs, seed=seed)
        else:
            env = make_env(env)
    if isinstance(hp.get("policy_kwargs"), Mapping):  # the networks' sizes, before anything is built
        n_actions = int(env.action_space.n) if isinstance(env.action_space, gym.spaces.Discrete) else 0
        inputs = gym.spaces.flatdim(env.observation_space)
        check_net_arch(hp["policy_kwargs"].get("net_arch"), f"{algo}: policy_kwargs['net_arch']", inputs, n_actions)
    model = cls(policy, env, seed=seed, tensorboard_log=tensorboard_log, verbose=verbose, **hp)
    model.quality_evals = 0  # the `Agent` protocol's count (kept by `RewardComponentCallback` while it learns)
    return model


# ------------------------------------------------------------------------------------------------ saving, loading
def save_sb3(model: Any, path: str | os.PathLike, algo: str, hyperparams: Mapping[str, Any], seed: int = 0) -> None:
    """Write ``model`` as SB3's zip plus ``llmsplit.json``, atomically (an interrupted save keeps the old file).

    ``hyperparams``: what the model was built from (`make_sb3_agent`'s zoo section, as data).
    """
    atomic_write_bytes(path, sb3_bytes(model, algo, hyperparams, seed))


def sb3_bytes(model: Any, algo: str, hyperparams: Mapping[str, Any], seed: int = 0) -> bytes:
    """The bytes `save_sb3` writes."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "algo": algo,
        "hyperparams": as_data(dict(hyperparams)),
        "seed": int(seed),
        "num_timesteps": int(model.num_timesteps),
        "quality_evals": int(getattr(model, "quality_evals", 0)),
        "observation_space": describe_space(model.observation_space),
        "action_space": describe_space(model.action_space),
    }
    sb3 = io.BytesIO()
    model.save(sb3)
    # A fresh archive rather than appending: an appended zip keeps SB3's own directory mid-file, so a truncated copy
    # would read as a plain SB3 zip instead of a damaged one.
    out = io.BytesIO()
    with zipfile.ZipFile(sb3) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            # deflated: weights stored raw hold torch's own zip directory, which a truncated copy would be read as
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
        dst.writestr(META, json.dumps(meta, indent=1))
    return out.getvalue()


def _find_pickled(value: Any, where: str) -> str | None:
    """The first place under ``value`` that holds SB3's cloudpickle marker."""
    if isinstance(value, Mapping):
        if ":serialized:" in value:
            return where
        for k, v in value.items():
            found = _find_pickled(v, f"{where}[{k!r}]")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_pickled(v, f"{where}[{i}]")
            if found:
                return found
    return None


def _read_meta(path: str, read: Parts) -> dict[str, Any]:
    names = set(read.names)
    if META not in names and "data" not in names:
        raise ValueError(f"{path} is not a saved agent (a damaged or foreign zip archive: no {META})")
    if META not in names:
        raise ValueError(
            f"{path} was not saved by LLMSplit (no {META}): refused, because a Stable-Baselines3 zip runs pickled code "
            "when loaded. Load it with SB3 itself only if you trust where it came from."
        )
    try:
        meta = parse_json(read(META), f"{path}: {META}")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: {META} is unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{path}: {META} is not an {FORMAT} file of version {VERSION}")
    if "data" in names:
        try:
            data = parse_json(read("data"), f"{path}: data")
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"{path}: its 'data' entry is unreadable ({e})") from None
        for key, value in data.items() if isinstance(data, dict) else ():
            found = None if key in SB3_PICKLED_KEYS else _find_pickled(value, f"data[{key!r}]")
            if found:
                raise ValueError(f"{path}: {found} holds pickled Python objects, which can run code: refused")
    return meta


def load_sb3(path: str | os.PathLike, env: gym.Env | None = None, algo: str | None = None, device: str = "cpu"):
    """Rebuild an agent saved by `save_sb3`. ``env``: the env to attach, whose spaces must be the saved ones (default:
    none; the model then only predicts). ``algo``: refuse a file of another algo. Read within the limits of
    `agents.common.limits` (parts, sizes, spaces, network widths)."""
    path = require_saved(path, "agent", kind="file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a zip archive (truncated or not a saved agent)")
    return _load_parts(zip_parts(path, str(path), "agent"), str(path), env, algo, device)


def load_sb3_bytes(data: bytes, path: str, env: gym.Env | None = None, algo: str | None = None, device: str = "cpu"):
    """`load_sb3` from the file's bytes; ``path`` names it in errors."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ValueError(f"{path} is not a zip archive (truncated or not a saved agent)")
    return _load_parts(zip_parts(data, path, "agent"), path, env, algo, device)


def _load_parts(read: Parts, path: str, env: gym.Env | None, algo: str | None, device: str):
    try:
        meta = _read_meta(path, read)
        saved_algo = meta.get("algo")
        if saved_algo not in ALGOS:
            raise ValueError(f"{path}: unknown algo {saved_algo!r}; allowed: {', '.join(ALGOS)}")
        if algo is not None and saved_algo != algo:
            raise ValueError(f"{path} holds a {saved_algo} agent, not {algo}")
        where = f"{path}: policy.pth"
        policy_state = state_dict_of_tensors(load_weights(read("policy.pth"), where), where)
        optim = "policy.optimizer.pth"
        optim_state = load_weights(read(optim), f"{path}: {optim}") if optim in read.names else None
    except KeyError as e:
        raise ValueError(f"{path} is a damaged saved agent (no part {e})") from None
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is a damaged zip archive ({e})") from None
    hp = meta.get("hyperparams")
    if not isinstance(hp, dict):
        raise ValueError(f"{path}: {META} has no hyperparams table")
    if env is None:
        env = SpacesOnlyEnv(space_from(meta["observation_space"], path), space_from(meta["action_space"], path))
    check_spaces(env, meta, path)
    try:
        model = make_sb3_agent(saved_algo, env, {**hp, "device": device}, seed=int(meta.get("seed", 0)))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    try:
        model.policy.load_state_dict(policy_state)
        if optim_state is not None:
            model.policy.optimizer.load_state_dict(optim_state)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        msg = f"{path}: the saved weights do not fit the {saved_algo} model its hyperparameters build ({e})"
        raise ValueError(msg) from None
    model.num_timesteps = int(meta.get("num_timesteps", 0))
    model.quality_evals = int(meta.get("quality_evals", 0))  # files from before it was saved: 0
    return model
