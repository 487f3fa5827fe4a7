"""Split inference on tiny random models of several families, and on the real SmolLM2 (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from llmsplit_env.llm import SplitRunner, token_recovery_accuracy
from llmsplit_env.llm.channel import AnalogChannel, DigitalChannel, ErasureChannel

CHANNELS = [AnalogChannel(0.0), DigitalChannel(3.0), ErasureChannel(0.2)]


def runner(model_dir, **kw) -> SplitRunner:
    kw = {"text": "pydoc", "num_tokens": 256, "window": 64, "dtype": "float32", **kw}
    return SplitRunner.from_pretrained(str(model_dir), **kw)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "gpt_neox"])
def test_noiseless_split_equals_unsplit_at_every_split(tiny_models, family):
    r = runner(tiny_models[family])
    clean = r.clean_perplexity()
    for k in range(1, r.num_layers + 1):
        assert r.perplexity(k, None, cached=True) == pytest.approx(clean, rel=1e-4)
        assert r.perplexity(k, None, cached=False) == pytest.approx(clean, rel=1e-4)


def test_describe_names_the_split_path_and_attention(tiny_models):
    d = runner(tiny_models["gpt_neox"]).describe()
    assert d["split_path"] == "stock forward, hooked at the split"
    assert d["attn_implementation"] == "sdpa"
    assert d["model_class"] == "GPTNeoXForCausalLM"


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox"])
@pytest.mark.parametrize("channel", CHANNELS, ids=repr)
def test_cached_equals_uncached_for_the_same_seed(tiny_models, family, channel):
    r = runner(tiny_models[family])
    for k in (1, r.num_layers // 2, r.num_layers - 1):
        for seed in (0, 5):
            a = r.perplexity(k, channel, seed=seed, cached=True)
            b = r.perplexity(k, channel, seed=seed, cached=False)
            assert a == pytest.approx(b, rel=1e-5)


def test_seeds_reproduce_and_differ(tiny_models):
    r = runner(tiny_models["llama"])
    ch = AnalogChannel(-5.0)
    a = r.perplexities(2, ch, seeds=[0, 1, 2])
    b = r.perplexities(2, ch, seeds=[0, 1, 2])
    np.testing.assert_array_equal(a, b)
    assert len(set(a.round(10))) == 3
    single = [r.perplexity(2, ch, seed=s) for s in (0, 1, 2)]
    np.testing.assert_allclose(a, single, rtol=1e-6)
    r.draws_per_forward = 3  # batching draws into one forward gives the same numbers
    np.testing.assert_allclose(r.perplexities(2, ch, seeds=[0, 1, 2]), a, rtol=1e-5)
    assert r.perplexity(2, ch, seed=0, num_draws=3) == pytest.approx(np.exp(np.log(a).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="num_draws"):
        r.perplexity(2, ch, num_draws=0)


def test_noise_hurts_and_last_split_is_immune(tiny_models):
    r = runner(tiny_models["gpt2"])
    clean = r.clean_perplexity()
    assert r.perplexity(1, AnalogChannel(-5.0), seed=0) != pytest.approx(clean, rel=1e-3)
    assert r.perplexity(r.num_layers, AnalogChannel(-5.0), seed=0) == pytest.approx(clean, rel=1e-4)
    ev = r.evaluate(r.num_layers, DigitalChannel(-5.0), seeds=[0, 1])
    np.testing.assert_array_equal(ev.loss_fraction, [0.0, 0.0])  # nothing transmitted, nothing lost


def test_evaluations_are_counted(tiny_models):
    r = runner(tiny_models["llama"])
    r.perplexities(1, AnalogChannel(0.0), seeds=[0, 1, 2])
    r.perplexity(r.num_layers, AnalogChannel(0.0))  # nothing transmitted: no channel draw to evaluate
    r.perplexity(2, None)
    assert r.num_evaluations == 3


def test_prefixes_and_tokens_are_cached_on_disk(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSPLIT_CACHE", str(tmp_path))
    r = runner(tiny_models["llama"])
    a = r.perplexity(2, AnalogChannel(0.0), seed=1)
    assert len(list((tmp_path / "tokens").glob("*.npy"))) == 1
    assert len(list((tmp_path / "prefixes").glob("*.pt"))) == 1
    r2 = runner(tiny_models["llama"])
    assert r2.perplexity(2, AnalogChannel(0.0), seed=1) == pytest.approx(a, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "exc", "needle"),
    [
        ({"model": "./no/such/model"}, FileNotFoundError, "does not exist"),
        ({"model": "no-such-org/no-such-model"}, ValueError, "not reachable as a hub id"),
        ({"text": "wikii"}, FileNotFoundError, "neither a source (wiki, pydoc)"),
        ({"text": "/no/such/file.txt"}, FileNotFoundError, "/no/such/file.txt"),
        ({"num_tokens": 100, "window": 64}, ValueError, "multiple of window"),
        ({"window": 1}, ValueError, "window"),
        ({"window": 512, "num_tokens": 512}, ValueError, "maximum positions"),
        ({"dtype": "float16"}, ValueError, "unknown dtype 'float16'"),
        ({"device": "tpu"}, ValueError, "unknown device"),
        ({"text": "only a few words here"}, ValueError, "fewer than offset + num_tokens"),
    ],
)
def test_bad_construction_inputs(tiny_models, kwargs, exc, needle):
    kw = {"model": str(tiny_models["llama"]), **kwargs}
    model = kw.pop("model")
    with pytest.raises(exc) as err:
        runner(model, **kw)
    assert needle in str(err.value)


def test_non_causal_model_is_rejected(tmp_path, tokenizer_dir):
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64)).save_pretrained(tmp_path / "bert")  # fmt: skip
    with pytest.raises(ValueError, match=r"model_type 'bert'\) is not a decoder-only causal LM"):
        runner(tmp_path / "bert")


@pytest.mark.parametrize(("split", "needle"), [(0, "[1, 4]"), (5, "[1, 4]"), ("2", "integer"), (True, "integer")])
def test_bad_split_and_seed(tiny_models, split, needle):
    r = runner(tiny_models["llama"])
    with pytest.raises(ValueError, match="split") as err:
        r.perplexity(split, AnalogChannel(0.0))
    assert needle in str(err.value)
    with pytest.raises(ValueError, match="seed"):
        r.perplexity(1, AnalogChannel(0.0), seed=-1)
    with pytest.raises(ValueError, match="Channel"):
        r.perplexity(1, "analog")


def test_probe_recovers_tokens_on_a_tiny_model(tiny_models):
    r = runner(tiny_models["llama"], num_tokens=64)
    ids = r.extra_ids
    acc = token_recovery_accuracy(r.model, ids[:4096], ids[4096:5120], window=64)
    assert acc.shape == (4,)
    assert np.all((acc >= 0) & (acc <= 1))
    assert acc[0] > 0.5  # one random layer keeps much of the token identity in a 32-d residual stream
    noisy = token_recovery_accuracy(r.model, ids[:4096], ids[4096:5120], splits=[1], channel=AnalogChannel(-10.0))
    assert noisy[0] < acc[0]
    with pytest.raises(ValueError, match=r"probe splits must lie in \[1, 4\]"):
        token_recovery_accuracy(r.model, ids[:4096], ids[4096:5120], splits=[0])


# --- the real model -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_smollm2_noiseless_split_equals_unsplit(real_runner):
    r = real_runner
    assert r.num_layers == 30
    clean = r.clean_perplexity()
    assert 5 < clean < 40
    for k in range(1, 31):
        assert r.perplexity(k, None) == pytest.approx(clean, rel=1e-4)


@pytest.mark.slow
def test_real_smollm2_cached_equals_uncached_and_noise_hurts(real_runner):
    r = real_runner
    clean = r.clean_perplexity()
    for k in (3, 14):
        a = r.perplexity(k, AnalogChannel(5.0), seed=4, cached=True)
        assert a == pytest.approx(r.perplexity(k, AnalogChannel(5.0), seed=4, cached=False), rel=1e-4)
        assert a > 1.5 * clean


@pytest.mark.slow
def test_real_smollm2_leakage_falls_with_depth(real_runner):
    ids = real_runner.extra_ids
    acc = token_recovery_accuracy(real_runner.model, ids[:6144], ids[6144:8192], splits=[1, 15, 29], window=256)
    assert acc[0] > 0.85
    assert acc[0] > acc[1] > acc[2]


@pytest.mark.slow
def test_shipped_profile_cell_remeasures_within_spread():
    """Re-measuring cells of the shipped analog profile with fresh seeds lands within the stored spread."""
    from llmsplit_env.quality import load_profile

    p = load_profile("smollm2-135m-analog")
    md = p.metadata
    r = SplitRunner.from_pretrained(md["model"], md["text"], num_tokens=md["num_tokens"], window=md["window"],
                                    dtype="float32")  # fmt: skip
    assert r.clean_perplexity() == pytest.approx(p.clean_ppl, rel=1e-3)
    for k, level in ((8, 10.0), (20, 20.0)):
        i = int(np.flatnonzero(p.levels == level)[0])
        fresh = r.evaluate(k, AnalogChannel(level, **md["scheme_params"]), seeds=[100, 101, 102]).log_ppl
        mean, std = p.mean_log_ppl[k - 1, i], p.std_log_ppl[k - 1, i]
        # within three standard errors of the difference of two means (3 fresh draws, R stored ones)
        assert abs(fresh.mean() - mean) < 3 * std * np.sqrt(1 / len(fresh) + 1 / len(p.seeds))
        assert np.all(np.abs(fresh - mean) < 4 * std)
        # The stored seeds reproduce the stored draws (CPU vs the GPU that built it: same noise, fp32 rounding).
        same = r.evaluate(k, AnalogChannel(level, **md["scheme_params"]), seeds=[int(p.seeds[0])]).log_ppl[0]
        assert same == pytest.approx(p.log_ppl[k - 1, i, 0], abs=2e-3)


def test_text_file_whose_path_has_spaces_is_read_as_a_file(tmp_path):
    from llmsplit_env.llm import read_text

    f = tmp_path / "with space" / "t.txt"
    f.parent.mkdir()
    f.write_text("hello file")
    name, content = read_text(str(f))
    assert name == str(f) and content == "hello file"
    assert read_text("two words")[1] == "two words"


def test_draws_per_forward_is_validated(tiny_models):
    with pytest.raises(ValueError, match="draws_per_forward must be an integer >= 1"):
        runner(tiny_models["llama"], draws_per_forward=0)
