"""The limits every saved agent is read within, so that a small crafted file cannot exhaust memory or time.

A saved agent is a zip archive (or a directory) of parts: JSON and ``torch.save`` files. Nothing in a file is trusted
to size an allocation: each part's size is checked against its declared size *and* read through a bounded reader
(a zip header can lie), spaces and networks declared in a file (or given as hyperparameters) are bounded before
anything is built, and a ``torch.save`` payload is checked (stored records only, their sizes within the part, a small
pickle) before ``torch.load`` sees it. Each refusal is a ``ValueError`` naming the file (and part) and the limit.

The values are far above what the project's agents need (their defaults and ``agents/hyperparams/*.yml``: networks of
at most 3 layers of 200 units, an ensemble of 5; files of at most a few MB), and low enough that a file that reaches
them costs well under 200 MB. This module is torch-free.
"""

from __future__ import annotations

import itertools
import os
import stat
import struct
from collections.abc import Mapping
from typing import IO, Any

MiB = 1 << 20
#: parts in one archive or directory (an SB3 agent has 7, RSM-PPO 3, a torch file one per tensor plus 4: a few tens)
MAX_PARTS = 1024
#: uncompressed bytes of one part (the largest the network limits allow: an SB3 optimizer state of two networks of
#: `MAX_NETWORK_PARAMETERS`, two Adam moments each, 32 MiB; MBRL's default file is 2 MB)
MAX_PART_BYTES = 48 * MiB
#: uncompressed bytes of all parts of one agent read together
MAX_TOTAL_BYTES = 64 * MiB
#: a JSON part (``llmsplit.json``, SB3's ``data``, ``rsm.json``, a heuristic agent): real ones are a few kB; JSON
#: can hold one object per 3 bytes, so this bounds its parse to about 100 MB
MAX_JSON_BYTES = 4 * MiB
#: the pickle inside a ``torch.save`` file (tensors are separate records; real ones hold a few kB of names). Unpickled
#: by torch's pure-Python ``weights_only`` unpickler: up to ~75 bytes of objects per pickle byte, ~1 s per MB
MAX_PICKLE_BYTES = 2 * MiB
#: elements of a saved Box space (its bounds are stored as JSON lists) and actions of a Discrete one (the project's
#: observations have tens of dims, its actions tens of splits)
MAX_SPACE_ELEMENTS = 4096
#: the dtypes a saved Box space may declare (the project's envs use float32)
SPACE_DTYPES = ("float32", "float64")
#: hidden layers of one network (the project's deepest: 3)
MAX_LAYERS = 16
#: units of one hidden layer (the project's widest: 200)
MAX_LAYER_WIDTH = 4096
#: weights of one network, input and output layers and every ensemble member included: 2**21 (8 MiB in float32),
#: about 5x MBRL's default reward ensemble (5 members of 3 layers of 200 units: ~440k)
MAX_NETWORK_PARAMETERS = 2**21


def size_text(n: int) -> str:
    """A byte limit as it is named in refusals: ``16 MiB`` (or ``1,234 bytes``)."""
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n:,} bytes"


def too_large(where: str, size: int | None, limit: int, what: str = "uncompressed size") -> ValueError:
    """The refusal of a part over ``limit`` bytes (``size`` when known)."""
    told = f" {size:,} bytes" if size is not None else ""
    return ValueError(f"{where}: {what}{told} exceeds the limit of {size_text(limit)}")


def read_bounded(stream: IO[bytes], limit: int, where: str) -> bytes:
    """At most ``limit`` bytes of ``stream``; ``ValueError`` (naming ``where`` and the limit) if it holds more. Never
    reads more than ``limit + 1`` bytes, whatever a header said, and reads in chunks of 1 MiB (``zipfile`` inflates
    as much as is asked for before it cuts a part to its declared size)."""
    chunks, total = [], 0
    while total <= limit:
        chunk = stream.read(min(MiB, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise too_large(where, None, limit, "uncompressed size")
    return b"".join(chunks)


def zip_entry_count(tail: bytes) -> int | None:
    """The entry count an archive's end-of-central-directory record (within its last 65,557 bytes ``tail``) declares;
    ``None`` when there is none. ZIP64 counts (0xFFFF) read as "more than any limit"."""
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    (count,) = struct.unpack("<H", tail[at + 10 : at + 12])
    return 1 << 62 if count == 0xFFFF else count


def check_zip_entries(tail: bytes, where: str, limit: int = MAX_PARTS) -> None:
    """``ValueError`` if the archive ending with ``tail`` declares more than ``limit`` entries (checked before
    ``zipfile`` reads its directory, which costs memory per entry)."""
    count = zip_entry_count(tail)
    if count is not None and count > limit:
        raise ValueError(f"{where}: {count:,} parts exceed the limit of {limit:,}")


def open_regular(path: str | os.PathLike, where: str) -> int:
    """A read-only descriptor of ``path``, refused (``ValueError``) unless it is a regular file: opened without
    blocking, so a FIFO or device given as a file fails at once. ``FileNotFoundError`` passes through."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{where} is not a regular file (a FIFO, device or socket): refused")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file_bounded(path: str | os.PathLike, limit: int, where: str | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (`open_regular`, `read_bounded`)."""
    where = str(path) if where is None else where
    fd = open_regular(path, where)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise too_large(where, size, limit, "size")
        return read_bounded(f, limit, where)


# ------------------------------------------------------------------------------------------------ declared sizes
def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_space_size(description: Mapping[str, Any], where: str) -> None:
    """``ValueError`` naming ``where`` and the limit for a saved space too large to build: a Box of more than
    `MAX_SPACE_ELEMENTS` elements or of a dtype not in `SPACE_DTYPES`, a Discrete of more actions."""
    if description.get("type") == "Discrete":
        n = description.get("n")
        if not _int(n) or not 1 <= n <= MAX_SPACE_ELEMENTS:
            raise ValueError(f"{where}: Discrete n {n!r} is not an integer in [1, {MAX_SPACE_ELEMENTS:,}] (the limit)")
        return
    dtype = description.get("dtype")
    if not isinstance(dtype, str) or dtype not in SPACE_DTYPES:
        raise ValueError(f"{where}: Box dtype {dtype!r} is not one of the allowed {', '.join(SPACE_DTYPES)}")
    shape = description.get("shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 8 or not all(_int(s) and s >= 0 for s in shape):
        raise ValueError(f"{where}: Box shape {shape!r} is not a list of 1 to 8 sizes")
    n = 1
    for s in shape:
        n *= s
    if n > MAX_SPACE_ELEMENTS:
        raise ValueError(f"{where}: Box shape {shape} has {n:,} elements, over the limit of {MAX_SPACE_ELEMENTS:,}")


def check_network(widths: Any, where: str, inputs: int = 0, outputs: int = 0, copies: Any = 1) -> None:
    """``ValueError`` naming ``where`` and the limit unless ``widths`` is a list of at most `MAX_LAYERS` hidden
    widths, each an int in [1, `MAX_LAYER_WIDTH`], whose network (with ``inputs`` and ``outputs`` units, when known,
    times ``copies`` ensemble members) has at most `MAX_NETWORK_PARAMETERS` weights. Checked before it is built."""
    if not isinstance(widths, (list, tuple)):
        raise ValueError(f"{where} must be a list of layer widths, got {widths!r}")
    if len(widths) > MAX_LAYERS:
        raise ValueError(f"{where}: {len(widths):,} hidden layers exceed the limit of {MAX_LAYERS}")
    for i, w in enumerate(widths):
        if not _int(w) or w < 1:
            raise ValueError(f"{where}[{i}] must be a positive integer width, got {w!r}")
        if w > MAX_LAYER_WIDTH:
            raise ValueError(f"{where}[{i}]: width {w:,} exceeds the limit of {MAX_LAYER_WIDTH:,}")
    if not _int(copies) or not 1 <= copies <= MAX_LAYER_WIDTH:
        raise ValueError(f"{where}: {copies!r} copies (ensemble members) is not an integer in [1, {MAX_LAYER_WIDTH:,}]")
    if not (_int(inputs) and _int(outputs) and inputs >= 0 and outputs >= 0):
        raise ValueError(f"{where}: input and output sizes {inputs!r}, {outputs!r} are not sizes")
    dims = [d for d in (inputs, *widths, outputs) if d]
    weights = copies * sum(a * b for a, b in itertools.pairwise(dims))
    if weights > MAX_NETWORK_PARAMETERS:
        raise ValueError(f"{where}: a network of {weights:,} weights exceeds the limit of {MAX_NETWORK_PARAMETERS:,}")


def check_net_arch(net_arch: Any, where: str, inputs: int = 0, outputs: int = 0) -> None:
    """`check_network` for each network an SB3 ``net_arch`` describes: a list of widths (shared by the policy and
    value networks), a dict of lists (``pi``/``vf``/``qf``), or the old list of widths with such a dict last."""
    if net_arch is None:
        return
    if isinstance(net_arch, Mapping):
        for key, widths in net_arch.items():
            check_network(widths, f"{where}[{key!r}]", inputs, outputs)
        return
    if isinstance(net_arch, (list, tuple)):
        shared = [w for w in net_arch if not isinstance(w, Mapping)]
        check_network(shared, where, inputs, outputs)
        for heads in (w for w in net_arch if isinstance(w, Mapping)):
            last = shared[-1] if shared else inputs
            check_net_arch(dict(heads), where, last, outputs)
        return
    raise ValueError(f"{where} must be a list of layer widths or a dict of such lists, got {net_arch!r}")
