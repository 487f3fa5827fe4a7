"""Probabilistic ensemble: fit quality, variance calibration, early stopping, elites, persistence, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.mbrl.ensemble import EnsemblePrediction, GaussianEnsemble, encode_inputs


@pytest.fixture(autouse=True)
def _one_thread():
    # Two shared cores; one thread also keeps float reductions in a fixed order.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _sin_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1))
    # Offset and scale far from (0, 1) so that a broken output standardisation shows up.
    return x, 10 + 3 * np.sin(3 * x) + 0.3 * rng.standard_normal((n, 1))


@pytest.fixture(scope="module")
def sin_model() -> tuple[GaussianEnsemble, dict]:
    torch.set_num_threads(1)
    x, y = _sin_data(500, seed=0)
    model = GaussianEnsemble(1, 1, ensemble_size=5, num_elites=3, hidden_dims=(64, 64), seed=0)
    stats = model.fit(x, y, max_epochs=300, patience=20)
    return model, stats


# ---------------------------------------------------------------------- features
def test_encode_inputs_broadcasts_over_splits():
    obs = np.array([12.5, -0.3, 0.1, 0.4])
    feats = encode_inputs(obs, np.arange(1, 31), num_layers=30)
    assert feats.shape == (30, 5) and feats.dtype == np.float32
    assert np.allclose(feats[:, :4], obs) and np.allclose(feats[:, 4], np.arange(1, 31) / 30)
    # N rollouts x K splits.
    obs_n = np.arange(12.0).reshape(3, 4)
    feats = encode_inputs(obs_n[:, None, :], [1, 15, 30], num_layers=30)
    assert feats.shape == (3, 3, 5)
    assert np.allclose(feats[2, 1], [8, 9, 10, 11, 0.5])
    # Pairs (obs_i, k_i) for training data.
    feats = encode_inputs(obs_n, [3, 6, 9], num_layers=30)
    assert feats.shape == (3, 5) and np.allclose(feats[:, 4], [0.1, 0.2, 0.3])


def test_encode_inputs_one_hot():
    feats = encode_inputs(np.zeros(2), [1, 4], num_layers=4, one_hot=True)
    assert feats.shape == (2, 2 + 1 + 4)
    assert np.array_equal(feats[:, 3:], [[1, 0, 0, 0], [0, 0, 0, 1]])


def test_encode_inputs_raw_split_and_dtype():
    """RSM-PPO's surrogate input (the paper's raw ``(ρ, p)``, float64) is the same encoding."""
    obs = np.array([[0.2, 0.0], [0.1, 0.5]], np.float32)
    feats = encode_inputs(obs[:, :1], np.array([7, 3]), num_layers=10, raw_split=True, dtype=np.float64)
    assert feats.dtype == np.float64 and np.array_equal(feats, [[np.float32(0.2), 7.0], [np.float32(0.1), 3.0]])
    frac = encode_inputs(obs, 5, num_layers=10, one_hot=True, dtype=np.float64)
    assert frac.shape == (2, 2 + 1 + 10) and np.all(frac[:, 2] == 0.5) and np.all(frac[:, 7] == 1.0)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros((3, 4)), [1, 2], 30), "broadcast"),
        ((np.zeros(4), [0, 31], 30), "splits must lie"),
        ((np.zeros(4), [1.5], 30, True), "integer splits"),
        ((np.zeros(4), [1], 0), "num_layers"),
        ((np.array(1.0), [1], 30), "scalar"),
        ((np.array([np.nan]), [1], 30), "finite"),
    ],
)
def test_encode_inputs_bad(args, match):
    with pytest.raises(ValueError, match=match):
        encode_inputs(*args)


# ---------------------------------------------------------------------- fit quality
def test_fits_noisy_sine_with_calibrated_noise(sin_model):
    model, stats = sin_model
    x_test = np.linspace(-0.95, 0.95, 200)[:, None]
    pred = model.predict(x_test)
    assert isinstance(pred, EnsemblePrediction) and pred.mean.shape == (200, 1)
    rmse = float(np.sqrt(np.mean((pred.mean - (10 + 3 * np.sin(3 * x_test))) ** 2)))
    assert rmse < 0.12  # noise std is 0.3, signal amplitude 3
    alea_std = np.sqrt(pred.aleatoric_var)
    assert np.all((alea_std > 0.3 / 1.5) & (alea_std < 0.3 * 1.5))
    # In-distribution the members agree more than the noise varies.
    assert np.sqrt(pred.epistemic_var).mean() < 0.5 * alea_std.mean()
    assert np.allclose(pred.var, pred.epistemic_var + pred.aleatoric_var)
    assert stats["stopped_early"] and stats["epochs"] < 300
    assert stats["num_train"] == 400 and stats["num_val"] == 100


def test_epistemic_variance_grows_off_data(sin_model):
    model, _ = sin_model
    inside = model.predict(np.linspace(-0.9, 0.9, 50)[:, None]).epistemic_var.mean()
    outside = model.predict(np.linspace(2.5, 4.0, 50)[:, None]).epistemic_var.mean()
    assert outside > 10 * inside


def test_heteroscedastic_2d_two_outputs():
    rng = np.random.default_rng(0)
    n = 800
    x = rng.uniform(-1, 1, (n, 2))
    noise_std = lambda x: np.stack([0.1 + 0.3 * np.abs(x[:, 0]), np.full(len(x), 0.05)], axis=1)
    mean_fn = lambda x: np.stack([x[:, 0] + x[:, 1], np.sin(2 * x[:, 0]) * x[:, 1]], axis=1)
    y = mean_fn(x) + noise_std(x) * rng.standard_normal((n, 2))
    model = GaussianEnsemble(2, 2, ensemble_size=5, num_elites=3, hidden_dims=(64, 64), seed=0)
    model.fit(x, y, max_epochs=300, patience=20)
    grid = np.linspace(-0.9, 0.9, 7)
    x_test = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
    pred = model.predict(x_test)
    rmse = np.sqrt(np.mean((pred.mean - mean_fn(x_test)) ** 2, axis=0))
    assert np.all(rmse < 0.08)
    ratio = np.sqrt(pred.aleatoric_var) / noise_std(x_test)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    # The noise of output 0 is 3.7x larger at |x0| = 0.9 than at x0 = 0; the model must see the trend.
    std0 = np.sqrt(pred.aleatoric_var[:, 0])
    assert std0[np.abs(x_test[:, 0]) > 0.85].mean() > 2.0 * std0[np.abs(x_test[:, 0]) < 0.01].mean()


def test_members_are_distinct_and_predict_shapes(sin_model):
    model, _ = sin_model
    x = encode_inputs(np.zeros((4, 1, 0)), [5, 10, 20], num_layers=30)  # [4, 3, 1] inputs
    mean, var = model.predict_members(x)
    assert mean.shape == var.shape == (5, 4, 3, 1) and np.all(var > 0)
    # Bootstraps + separate initialisations: no two members are the same function.
    flat = mean.reshape(5, -1)
    assert min(np.abs(flat[i] - flat[j]).max() for i in range(5) for j in range(i + 1, 5)) > 1e-4
    pred = model.predict(x)
    assert pred.mean.shape == (4, 3, 1)
    assert np.allclose(pred.mean, mean[model.elites].mean(0)) and np.allclose(
        pred.aleatoric_var, var[model.elites].mean(0)
    )


def test_sample_moments(sin_model):
    model, _ = sin_model
    x = np.full((20000, 1), 0.3)
    pred = model.predict(x[:1])
    for gen in (np.random.default_rng(0), torch.Generator().manual_seed(0)):
        s = model.sample(x, gen)
        assert s.shape == (20000, 1)
        assert abs(s.mean() - pred.mean[0, 0]) < 4 * np.sqrt(pred.var[0, 0] / 20000)
        assert abs(s.var() / pred.var[0, 0] - 1) < 0.05
    assert model.sample(np.zeros((3, 2, 1)), np.random.default_rng(1)).shape == (3, 2, 1)
    # Fixed members (TS-∞ particles): every draw comes from the requested member's Gaussian. Off the data
    # (x = 2.5) the members disagree, so drawing from the wrong member would show.
    mean, var = model.predict_members(np.array([[2.5]]))
    assert abs(mean[0, 0, 0] - mean[4, 0, 0]) > 10 * np.sqrt(max(var[0, 0, 0], var[4, 0, 0]) / 10000)
    members = np.array([0, 4])[:, None]  # 2 particles x 10000 inputs
    s = model.sample(np.full((2, 10000, 1), 2.5), np.random.default_rng(2), members=members)
    for i, m in enumerate((0, 4)):
        assert abs(s[i].mean() - mean[m, 0, 0]) < 4 * np.sqrt(var[m, 0, 0] / 10000)
        assert abs(s[i].var() / var[m, 0, 0] - 1) < 0.06
    with pytest.raises(ValueError, match="members must be integer"):
        model.sample(x[:2], members=[5, 0])
    with pytest.raises(ValueError, match="broadcast"):
        model.sample(x[:2], members=[0, 1, 2])
    with pytest.raises(ValueError, match="Generator"):
        model.sample(x[:2], generator=0)


# ---------------------------------------------------------------------- training loop
def test_early_stopping_on_tiny_noise_dataset():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 1))
    model = GaussianEnsemble(3, 1, ensemble_size=4, num_elites=2, hidden_dims=(32, 32), seed=0)
    stats = model.fit(x, y, max_epochs=1000, patience=5)
    assert stats["stopped_early"] and 5 <= stats["epochs"] < 1000
    assert len(stats["val_curve"]) == stats["epochs"] + 1
    # With patience beyond the budget, it runs to max_epochs and says so.
    stats = GaussianEnsemble(3, 1, ensemble_size=4, num_elites=2, hidden_dims=(32, 32), seed=0).fit(
        x, y, max_epochs=15, patience=100
    )
    assert not stats["stopped_early"] and stats["epochs"] == 15


def test_elites_are_best_members_and_best_epochs_restored():
    # 20 very noisy points, a big learning rate and no patience limit: the members overfit, so the validation MSE
    # at the last epoch is well above the best one, and restoring each member's best epoch matters.
    rng = np.random.default_rng(3)
    x, x_val = rng.uniform(-1, 1, (20, 1)), rng.uniform(-1, 1, (60, 1))
    y = 10 + 3 * np.sin(3 * x) + rng.standard_normal((20, 1))
    y_val = 10 + 3 * np.sin(3 * x_val) + rng.standard_normal((60, 1))
    model = GaussianEnsemble(
        1, 1, ensemble_size=6, num_elites=2, hidden_dims=(64, 64), learning_rate=1e-2, weight_decay=0.0, seed=1
    )
    stats = model.fit(
        x, y, x_val, y_val, max_epochs=300, patience=1000, batch_size=16, stop_on="mse", improvement_threshold=0.0
    )
    assert stats["num_val"] == 60 and stats["num_train"] == 20 and stats["epochs"] == 300
    assert not stats["stopped_early"]
    curve = stats["val_curve"]
    assert curve[-1] > 1.1 * min(curve)  # the scenario really overfits
    # Every member was rolled back to its own best epoch, so their mean beats every epoch's mean.
    assert np.mean(stats["member_val_mse"]) <= min(curve) + 1e-6
    mean, _ = model.predict_members(x_val)
    # Member MSE on the validation set, in the standardised target units the stats use.
    mse = (((mean - y_val) / model.output_norm.std.numpy()) ** 2).mean(axis=(1, 2))
    assert np.allclose(mse, stats["member_val_mse"], rtol=1e-4)
    assert stats["elites"] == np.argsort(mse)[:2].tolist() == model.elites.tolist()
    assert np.isclose(stats["val_mse"], mse[model.elites].mean(), rtol=1e-4)


def test_no_validation_split_scores_on_training_data():
    x, y = _sin_data(50, seed=5)
    stats = GaussianEnsemble(1, 1, ensemble_size=3, num_elites=1, hidden_dims=(16,), seed=0).fit(
        x, y, val_ratio=0.0, max_epochs=5
    )
    assert stats["num_train"] == 50 and stats["num_val"] == 0 and len(stats["elites"]) == 1


def test_refit_warm_starts_and_counts():
    x, y = _sin_data(200, seed=6)
    model = GaussianEnsemble(1, 1, ensemble_size=3, num_elites=2, hidden_dims=(32, 32), seed=0)
    first = model.fit(x[:100], y[:100], max_epochs=40, patience=40)
    second = model.fit(x, y, max_epochs=40, patience=40)
    assert model.num_fits == 2
    # Warm start: the second fit starts from a trained model, not from scratch.
    assert second["val_curve"][0] < 0.5 * first["val_curve"][0]


# ---------------------------------------------------------------------- persistence and determinism
def test_save_load_round_trip(tmp_path, sin_model):
    model, _ = sin_model
    path = tmp_path / "sub" / "ens.pt"
    model.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["ens.pt"]  # no temp file left behind
    loaded = GaussianEnsemble.load(path)
    assert loaded.hparams == model.hparams and loaded.elites.tolist() == model.elites.tolist()
    x = np.linspace(-2, 2, 33)[:, None]
    for a, b in zip(model.predict_members(x), loaded.predict_members(x), strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(model.sample(x, np.random.default_rng(3)), loaded.sample(x, np.random.default_rng(3)))
    # The internal generator state travels too.
    model.save(path)
    loaded = GaussianEnsemble.load(path)
    assert np.array_equal(model.sample(x), loaded.sample(x))
    # Overwrite in place and reject foreign files.
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved GaussianEnsemble"):
        GaussianEnsemble.load(tmp_path / "other.pt")
    other = GaussianEnsemble(1, 1, ensemble_size=5, num_elites=3, hidden_dims=(32,), seed=0)
    with pytest.raises(ValueError, match="hyperparameters"):
        other.load_state_dict(model.state_dict())


def test_deterministic_given_seed():
    x, y = _sin_data(100, seed=7)
    x_test = np.linspace(-1, 1, 17)[:, None]

    def run(seed: int):
        model = GaussianEnsemble(1, 1, ensemble_size=3, num_elites=2, hidden_dims=(32, 32), seed=seed)
        stats = model.fit(x, y, max_epochs=30, patience=30)
        return stats, model.predict_members(x_test)[0], model.sample(x_test)

    s1, m1, d1 = run(0)
    s2, m2, d2 = run(0)
    _, m3, _ = run(1)
    assert s1 == s2 and np.array_equal(m1, m2) and np.array_equal(d1, d2)
    assert not np.allclose(m1, m3)


# ---------------------------------------------------------------------- input validation
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_elites": 6}, "num_elites"),
        ({"num_elites": 0}, "num_elites"),
        ({"in_dim": 0}, "in_dim"),
        ({"hidden_dims": (16, 0)}, "hidden_dims"),
        ({"learning_rate": 0.0}, "learning_rate"),
    ],
)
def test_bad_constructor_args(kwargs, match):
    args = {"in_dim": 2, "out_dim": 1, "ensemble_size": 5, "num_elites": 3}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        GaussianEnsemble(**args)


def test_bad_fit_and_predict_inputs():
    model = GaussianEnsemble(2, 1, ensemble_size=3, num_elites=2, hidden_dims=(8,))
    x, y = np.zeros((10, 2)), np.zeros((10, 1))
    with pytest.raises(ValueError, match=r"inputs must have shape \[N, in_dim=2\]"):
        model.fit(np.zeros((10, 3)), y)
    with pytest.raises(ValueError, match="out_dim=1"):
        model.fit(x, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="differ in length"):
        model.fit(x, np.zeros((9, 1)))
    with pytest.raises(ValueError, match="non-finite"):
        model.fit(np.full((10, 2), np.nan), y)
    with pytest.raises(ValueError, match="val_ratio"):
        model.fit(x, y, val_ratio=1.0)
    with pytest.raises(ValueError, match="both X_val and Y_val"):
        model.fit(x, y, X_val=x)
    with pytest.raises(ValueError, match="stop_on"):
        model.fit(x, y, stop_on="loss")
    with pytest.raises(ValueError, match="patience"):
        model.fit(x, y, patience=0)
    with pytest.raises(ValueError, match="improvement_threshold"):
        model.fit(x, y, improvement_threshold=-0.1)
    with pytest.raises(ValueError, match=r"\[\.\.\., in_dim=2\]"):
        model.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        model.predict(np.array([[0.0, np.inf]]))
    # A 1-D target is accepted when there is a single output.
    assert model.fit(x, np.zeros(10), max_epochs=2)["epochs"] >= 1
