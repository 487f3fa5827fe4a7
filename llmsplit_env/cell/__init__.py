"""The edge cell: N UEs sharing one uplink and one edge server (`CellSimulator`), with three faces: the centralised
Gymnasium env ``LLMSplit-Cell-v0`` (`LLMSplitCellEnv`), a PettingZoo ``ParallelEnv`` (`parallel_env`) and RLlib
multi-agent (`llmsplit_env.cell.rllib`). Light: PettingZoo is imported only by `parallel_env`."""

from __future__ import annotations

from llmsplit_env.util.exports import lazy_exports

_LAZY = {
    "CellSimulator": "llmsplit_env.cell.simulator",
    "LLMSplitCellEnv": "llmsplit_env.cell.env",
    "parallel_env": "llmsplit_env.cell.parallel",
    "CellParallelEnv": "llmsplit_env.cell.parallel",
    "default_cell_config": "llmsplit_env.cell.config",
    "resolve_cell_config": "llmsplit_env.cell.config",
}
__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
