"""Quality backends (`llmsplit_env.quality.backends`): profile interpolation and sampling, the floored lognormal's
closed-form expectations, realised packet loss; scalar and batch paths agree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmsplit_env.quality import ProfileQuality, load_profile
from llmsplit_env.quality.backends import floored_lognormal_expectations, realised_loss, realised_loss_batch


def test_floored_lognormal_expectations_closed_form():
    q, p = floored_lognormal_expectations(3.0, 0.0, 2.0)
    assert q == pytest.approx(math.exp(-1.0)) and p == pytest.approx(math.exp(3.0))
    q, p = floored_lognormal_expectations(1.0, 0.0, 2.0)  # below the floor: clean
    assert q == 1.0 and p == pytest.approx(math.exp(2.0))
    z = np.random.default_rng(1).standard_normal(400_000)
    x = np.maximum(4.0 + 1.5 * z, 3.0)
    q, p = floored_lognormal_expectations(4.0, 1.5, 3.0)
    assert q == pytest.approx(np.mean(np.exp(3.0 - x)), rel=5e-3)
    assert p == pytest.approx(np.mean(np.exp(x)), rel=3e-2)


# --- the paper preset -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["smollm2-135m-analog", "smollm2-135m-erasure"])
def test_profile_interpolation_is_exact_at_grid_points_and_linear_between(name):
    prof = load_profile(name)
    qb = ProfileQuality(prof)
    for k in range(1, 30):
        for j, x in enumerate(prof.levels):
            m, s, lo = qb.interpolate(k, float(x))
            assert (m, s, lo) == (prof.mean_log_ppl[k - 1, j], prof.std_log_ppl[k - 1, j], prof.loss_fraction[k - 1, j])
        x = 0.5 * (prof.levels[3] + prof.levels[4])
        m, s, _ = qb.interpolate(k, float(x))
        assert m == pytest.approx(0.5 * (prof.mean_log_ppl[k - 1, 3] + prof.mean_log_ppl[k - 1, 4]), rel=1e-12)
        assert s == pytest.approx(0.5 * (prof.std_log_ppl[k - 1, 3] + prof.std_log_ppl[k - 1, 4]), rel=1e-12)
        # clamped beyond the grid
        assert qb.interpolate(k, float(prof.levels[0]) - 100) == qb.interpolate(k, float(prof.levels[0]))
        assert qb.interpolate(k, float(prof.levels[-1]) + 100) == qb.interpolate(k, float(prof.levels[-1]))


def test_profile_batch_path_matches_scalar_path():
    qb = ProfileQuality("smollm2-135m-analog")
    rng = np.random.default_rng(0)
    k = rng.integers(1, 31, 500)
    lv = np.concatenate([rng.uniform(-20, 50, 500 - len(qb.levels)), np.asarray(qb.levels)])
    z = rng.standard_normal(500)
    bl, bloss = qb.sample_batch(k, lv, z)
    for i in range(500):
        sl, sloss = qb.sample(int(k[i]), float(lv[i]), float(z[i]))
        assert bl[i] == pytest.approx(sl, rel=1e-14, abs=1e-14) and bloss[i] == pytest.approx(sloss, abs=1e-15)


def test_realised_loss_is_a_binomial_count_fraction():
    n = 2048
    assert realised_loss(0.0, 3.0, n) == 0.0 and realised_loss(1.0, -3.0, n) == 1.0
    assert realised_loss(0.1, 0.0, n) == round(0.1 * n) / n
    assert realised_loss(0.001, -5.0, n) == 0.0 and realised_loss(0.999, 5.0, n) == 1.0  # clipped to [0, 1]
    p = np.array([0.0, 0.001, 0.1, 0.5, 0.999, 1.0] * 50)
    z = np.random.default_rng(0).standard_normal(p.size)
    batch = realised_loss_batch(p, z, n)
    assert batch.tolist() == [realised_loss(float(a), float(b), n) for a, b in zip(p, z, strict=True)]  # same bits
    assert np.all(batch * n == np.round(batch * n))


def test_profile_sampling_and_floor():
    qb = ProfileQuality("smollm2-135m-erasure")
    assert qb.sample(30, 0.2, 3.0) == (qb.log_clean, 0.0)
    mean, std, loss = qb.interpolate(5, 0.2)
    assert qb.sample(5, 0.2, 0.5) == (mean + 0.5 * std, loss)
    assert qb.sample(5, 0.2, -50.0)[0] == qb.log_clean  # floored at the clean perplexity
    det = ProfileQuality("smollm2-135m-erasure", sample=False)
    assert det.sample(5, 0.2, 2.0)[0] == mean


# --- channel dynamics -----------------------------------------------------------------------------------------------
