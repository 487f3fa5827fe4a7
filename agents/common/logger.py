"""One TensorBoard tag tree for every agent: an SB3 `Logger` that mirrors ``train/*`` as ``model/*``.

Tag tree (the same for SB3 agents, RSM-PPO and the MBRL agent, so runs compare side by side):

| tag                    | what                                                                                 |
|------------------------|--------------------------------------------------------------------------------------|
| ``rollout/*``          | episode statistics (``ep_rew_mean``, ``ep_len_mean``; SB3's, or the same keys)        |
| ``reward/<component>`` | mean per-step ``info["rewards"][<component>]`` (unweighted), episodes since last dump |
| ``model/*``            | SB3's ``train/*`` keys mirrored (`TagTreeLogger`), surrogate / model fit statistics   |
| ``cost/quality_evals`` | real quality evaluations spent by training so far                                    |
| ``eval/*``             | ``mean_reward``, ``normalized_score``, ``quality_evals`` on fixed held-out seeds     |

The ``reward/*`` and ``cost/*`` tags come from `agents.common.callbacks`, the ``eval/*`` ones from its evaluation
callbacks.
"""

from __future__ import annotations

import os
import sys

from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, TensorBoardOutputFormat
from stable_baselines3.common.utils import get_latest_run_id

# Keys under ``train/`` that SB3 writes; `TagTreeLogger` mirrors them under ``model/``.
_SB3_TRAIN_PREFIX = "train/"
_MODEL_PREFIX = "model/"


class TagTreeLogger(Logger):
    """SB3 `Logger` that, on every dump, mirrors the ``train/*`` keys as ``model/*`` (the shared tag tree).

    ``keep_train=False`` drops the ``train/*`` originals (by default both are written, so SB3 users still find theirs).
    """

    def __init__(self, folder: str | None, output_formats: list[KVWriter], keep_train: bool = True) -> None:
        super().__init__(folder, output_formats)
        self.keep_train = keep_train

    @classmethod
    def wrap(cls, logger: Logger, keep_train: bool = True) -> TagTreeLogger:
        """A `TagTreeLogger` sharing ``logger``'s folder, outputs and pending values (records through either land in
        the same dump), so callbacks that still hold the old object keep working."""
        if isinstance(logger, TagTreeLogger):
            return logger
        new = cls(logger.dir, logger.output_formats, keep_train=keep_train)
        new.name_to_value = logger.name_to_value
        new.name_to_count = logger.name_to_count
        new.name_to_excluded = logger.name_to_excluded
        new.level = logger.level
        return new

    @classmethod
    def adopt(cls, logger: Logger, keep_train: bool = True) -> TagTreeLogger:
        """Make ``logger`` itself (a plain SB3 `Logger`) a `TagTreeLogger`, in place: whoever holds it (the model,
        callbacks) gets the mirroring. Returns it."""
        if isinstance(logger, TagTreeLogger):
            return logger
        if type(logger) is not Logger:
            raise ValueError(f"adopt takes a plain SB3 Logger, not a {type(logger).__name__}: use wrap")
        logger.__class__ = cls
        logger.keep_train = keep_train
        return logger

    def dump(self, step: int = 0) -> None:
        for key in [k for k in self.name_to_value if k.startswith(_SB3_TRAIN_PREFIX)]:
            mirrored = _MODEL_PREFIX + key[len(_SB3_TRAIN_PREFIX) :]
            self.name_to_value[mirrored] = self.name_to_value[key]
            self.name_to_excluded[mirrored] = self.name_to_excluded.get(key, ("",))
            if not self.keep_train:
                del self.name_to_value[key]
                self.name_to_excluded.pop(key, None)
        super().dump(step)


def configure_logger(log_root: str | None, run_name: str, verbose: int = 0, keep_train: bool = True) -> TagTreeLogger:
    """A `TagTreeLogger` writing TensorBoard events to ``<log_root>/<run_name>_<n>`` (SB3 naming: ``n`` is the next
    free index), plus stdout when ``verbose >= 1``. ``log_root=None``: no files (stdout only with ``verbose >= 1``).
    """
    if not isinstance(run_name, str) or not run_name or os.sep in run_name:
        raise ValueError(f"run_name must be a non-empty name without {os.sep!r}, got {run_name!r}")
    formats: list[KVWriter] = []
    folder = None
    if log_root is not None:
        log_root = os.fspath(log_root)
        folder = os.path.join(log_root, f"{run_name}_{get_latest_run_id(log_root, run_name) + 1}")
        os.makedirs(folder, exist_ok=True)
        formats.append(TensorBoardOutputFormat(folder))
    if verbose >= 1:
        formats.append(HumanOutputFormat(sys.stdout))
    return TagTreeLogger(folder, formats, keep_train=keep_train)
