"""Networks of the authors' reward-surrogate shape (``fc``: 2 → 128 → 128 → 1 with ReLU), written by the tests
themselves: their ``reward_predictor.pth`` is not shipped."""

from __future__ import annotations

import torch


def authors_net() -> torch.nn.Module:
    """A module whose state dict has the authors' keys and shapes (``fc.0``, ``fc.2``, ``fc.4``)."""
    m = torch.nn.Module()
    m.fc = torch.nn.Sequential(
        torch.nn.Linear(2, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1)
    )
    return m


def zeroed_net() -> torch.nn.Module:
    """`authors_net` with every weight and bias 0 (tests then set the few they need)."""
    m = authors_net()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


def v_mlp(path) -> torch.nn.Module:
    """Hand-set weights saved to ``path``: ``f(rho, p) = -|p - 30 rho|``, so the best split is about ``30 rho``
    (1..10)."""
    m = zeroed_net()
    with torch.no_grad():
        m.fc[0].weight[0] = torch.tensor([-30.0, 1.0])  # relu(p - 30 rho)
        m.fc[0].weight[1] = torch.tensor([30.0, -1.0])  # relu(30 rho - p)
        m.fc[2].weight[0, 0] = m.fc[2].weight[1, 1] = 1.0
        m.fc[4].weight[0, :2] = -1.0
    torch.save(m.state_dict(), path)
    return m
