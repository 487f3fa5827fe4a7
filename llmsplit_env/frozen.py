"""Immutable containers of the compiled problem: a read-only dict that pickles, per-split tables, read-only arrays."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class FrozenDict(dict):
    """A read-only dict (its mutating methods raise ``TypeError``) that, unlike ``MappingProxyType``, pickles and
    deep-copies. A guard against accidents, not a sandbox (``dict.__setitem__(d, k, v)`` still writes)."""

    def _readonly(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is read-only")

    __setitem__ = __delitem__ = __ior__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly

    def __reduce__(self):
        return type(self), (dict(self),)


class SplitTable(tuple):
    """A per-split table indexed by split ``k = 0..L`` (entry 0 unused): a tuple for the scalar path that also
    carries a read-only float64 array (``.array``) for the batch path."""

    array: np.ndarray

    def __new__(cls, values):
        self = super().__new__(cls, (float(v) for v in values))
        arr = np.array(self, dtype=np.float64)
        arr.flags.writeable = False
        self.array = arr
        return self

    def __reduce__(self):
        return type(self), (tuple(self),)  # the array is derived again, read-only


def readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def frozen(obj):
    if isinstance(obj, Mapping):
        return FrozenDict({k: frozen(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return tuple(frozen(v) for v in obj)
    return obj
