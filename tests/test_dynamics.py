"""Channel dynamics between steps (`llmsplit_env.dynamics`): mobility stays in the cell and covers the SNR range,
batch and scalar paths agree, the paper's drift follows the split."""

from __future__ import annotations

import numpy as np
import pytest

from llmsplit_env.dynamics import MobilityChannel, PaperErasureDrift


def test_mobility_channel_stays_in_the_cell_and_covers_the_snr_range():
    ch = MobilityChannel()
    rng = np.random.default_rng(0)
    levels, radii = [], []
    for _ in range(300):
        ch.reset(rng.standard_normal(ch.reset_normals).tolist())
        for z in rng.standard_normal((50, 5)).tolist():
            ch.advance(z)
            levels.append(ch.level)
            radii.append(ch.distance)
            assert 0.0 <= ch.speed <= 9.0
    levels = np.asarray(levels)
    assert max(radii) <= 200.0 + 1e-9
    assert (levels < -5).mean() > 0.02 and (levels > 35).mean() > 0.01
    for lo in range(-5, 35, 5):  # every 5 dB regime is visited often
        assert ((levels >= lo) & (levels < lo + 5)).mean() > 0.02
    # the estimate carries ~1 dB of error; successive levels are correlated (shadowing, slow mobility)
    d = np.diff(levels)
    assert np.std(d) < 0.5 * np.std(levels)


def test_mobility_batch_path_matches_scalar_path():
    ch = MobilityChannel()
    rng = np.random.default_rng(3)
    n = 64
    z0 = rng.standard_normal((ch.reset_normals, n))
    state = {name: np.zeros(n) for name in ch.state_names}
    ch.reset_batch(state, np.arange(n), z0)
    zs = rng.standard_normal((40, 5, n))
    for t in range(40):
        ch.advance_batch(state, zs[t])
    for i in range(n):
        ch.reset(z0[:, i].tolist())
        for t in range(40):
            ch.advance(zs[t, :, i].tolist())
        np.testing.assert_allclose(ch.get_state(), [state[name][i] for name in ch.state_names], rtol=1e-9, atol=1e-9)


def test_paper_drift_moves_rho_with_the_split():
    d = PaperErasureDrift()
    d.reset([0.3, -0.2, 0.0])
    rho = d.level
    assert 0.01 <= rho <= 0.3
    d.on_action(-2)  # two layers shallower: rho grows by 0.1 %
    assert d.level == pytest.approx(rho * 1.001)
    d.on_action(3)
    assert d.level == pytest.approx(rho * 1.001 * 0.9985)
    d.level = 0.2999
    d.on_action(-4)
    assert d.level == 0.3  # clipped at rho_max


# --- observation and rendering --------------------------------------------------------------------------------------
