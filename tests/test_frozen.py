"""Immutable containers (`llmsplit_env.frozen`): read-only, and they survive pickling and deep copies as such."""

from __future__ import annotations

import copy
import pickle

import pytest

from llmsplit_env.frozen import FrozenDict, SplitTable, frozen


def test_frozen_dict_refuses_every_mutating_method_and_round_trips():
    d = frozen({"a": {"b": [1, 2]}})
    assert isinstance(d, FrozenDict) and isinstance(d["a"], FrozenDict) and d["a"]["b"] == (1, 2)
    for mutate in (
        lambda: d.__setitem__("x", 1),
        lambda: d.__delitem__("a"),
        lambda: d.update(x=1),
        lambda: d.pop("a"),
        lambda: d.popitem(),
        lambda: d.setdefault("x", 1),
        lambda: d.clear(),
    ):
        with pytest.raises(TypeError, match="read-only"):
            mutate()
    for other in (pickle.loads(pickle.dumps(d)), copy.deepcopy(d)):
        assert other == d and isinstance(other, FrozenDict) and isinstance(other["a"], FrozenDict)
    assert dict(d) == {"a": {"b": (1, 2)}}


def test_split_tables_index_like_tuples_and_carry_a_read_only_array():
    t = SplitTable([0.0, 0.5, 1.0])
    assert t[1] == 0.5 and t.array.tolist() == [0.0, 0.5, 1.0]
    for u in (t, pickle.loads(pickle.dumps(t)), copy.deepcopy(t)):
        assert not u.array.flags.writeable and tuple(u) == (0.0, 0.5, 1.0)
        with pytest.raises(ValueError):
            u.array[0] = 1.0
