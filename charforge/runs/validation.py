"""Every check a checkpoint passes before anything is built from it.

The metadata's field types, every tensor read against its checksum, the stored configuration and
vocabulary, the weights against the architecture they claim, the names of the training state's
tensors, and finite values: a damaged, truncated or hand-edited file is refused with one line naming
what is wrong.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any, Iterable

import torch

from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.version import __version__
from charforge.vocab import Vocab

# 2: every tensor's checksum in the metadata. Format 1 files (older charforge) load unverified.
FORMAT_VERSION = 2
_REQUIRED = {"format": int, "charforge_version": str, "config": dict, "tokenizer": str,
             "cell": dict, "optimizer": dict, "step": int}
_NUMBER = (int, float)
# Written by the trainer; checked when present (a checkpoint for sampling needs only the above).
_OPTIONAL = {"epoch": int, "window": int, "elapsed": _NUMBER, "best_val": (*_NUMBER, type(None)),
             "val_windows": (int, type(None)),
             "metrics": dict, "corpus": dict, "plugin_state": dict, "optimizer_groups": list,
             "optimizer_scalars": dict, "checksums": dict}
# The floating-point types a checkpoint's tensors may have: those every CPU operation supports.
FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def checksum(t: torch.Tensor) -> int:
    """CRC-32 of a CPU tensor's type, shape and bytes: the fastest of the standard library's hashes
    where benchmarks/checksum.py measured them, and one that catches every flipped bit or byte."""
    described = zlib.crc32(f"{t.dtype} {tuple(t.shape)}".encode())
    return zlib.crc32(t.contiguous().reshape(-1).view(torch.uint8).numpy(), described)


def first_nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, or None (one device sync)."""
    floats = [(name, t) for name, t in named if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not floats:
        return None
    finite = torch.stack([torch.isfinite(t).all().to(floats[0][1].device) for _, t in floats])
    if bool(finite.all()):
        return None
    return floats[int((~finite).nonzero()[0])][0]


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", dict: "a JSON object",
             list: "a list", bool: "a boolean", type(None): "null"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def is_a(value, kind) -> bool:
    """``isinstance``, except that a bool is not an int (JSON's true is no step count)."""
    return isinstance(value, kind) and not (isinstance(value, bool) and bool not in (
        kind if isinstance(kind, tuple) else (kind,)))


def validate(path: Path, meta: Any, tensors: dict[str, torch.Tensor], names: Iterable[str]
             ) -> tuple[TrainConfig, Vocab]:
    """Check everything the loaders use, so that nothing downstream meets a surprise; returns the
    stored configuration and vocabulary, parsed once.

    ``names`` are all the tensors the file holds, ``tensors`` those read (a model loaded to
    generate reads only its weights): names are checked for all, types and values for those read.
    """
    def fail(message: str):
        raise CharforgeError(f"{path}: {message}")

    names = list(names)
    if not isinstance(meta, dict):
        fail("the checkpoint metadata is not a JSON object.")
    version = meta.get("format")
    if is_a(version, int) and version > FORMAT_VERSION:
        fail(f"written by charforge {meta.get('charforge_version', '?')} in checkpoint format {version}; "
             f"this charforge {__version__} reads format {FORMAT_VERSION} and older. Upgrade charforge.")
    for table in (_REQUIRED, _OPTIONAL):
        for key, kind in table.items():
            if (key in meta or table is _REQUIRED) and not is_a(meta.get(key), kind):
                state = "missing" if key not in meta else f"{_kind_name(type(meta[key]))}"
                fail(f"checkpoint metadata field {key!r} is {state}, not {_kind_name(kind)}.")
    if version < 1:
        fail(f"unknown checkpoint format {version}.")
    _check_checksums(fail, meta, tensors, names)
    if meta.get("val_windows") is not None and meta["val_windows"] < 1:
        fail(f"checkpoint metadata field 'val_windows' is not positive ({meta['val_windows']}).")
    for key in ("step", "epoch", "window"):
        if meta.get(key, 0) < 0:
            fail(f"checkpoint metadata field {key!r} is negative ({meta[key]}).")
    for key in ("elapsed", "best_val"):
        if meta.get(key) is not None and not math.isfinite(meta[key]):
            fail(f"checkpoint metadata field {key!r} is not a finite number ({meta[key]}).")
    if "elapsed" in meta and meta["elapsed"] < 0:
        fail("checkpoint metadata field 'elapsed' is negative.")
    for key, value in meta.get("metrics", {}).items():
        if not is_a(value, (*_NUMBER, type(None))):
            fail(f"checkpoint metric {key!r} is not a number.")
    try:
        config = TrainConfig.from_dict(meta["config"]).check()
        vocab = Vocab.from_json(meta["tokenizer"])
    except CharforgeError as exc:
        fail(f"the stored configuration or tokenizer is invalid: {exc}")
    for role, name in (("cell", config.cell), ("optimizer", config.optimizer)):
        info = meta[role]
        if not is_a(info.get("name"), str) or not all(is_a(info.get(k), (str, type(None)))
                                                     for k in ("plugin", "dist", "version")):
            fail(f"checkpoint metadata field {role!r} must hold name, plugin, dist and version as strings.")
        if info["name"] != name:
            fail(f"the {role} {info['name']!r} in the metadata differs from the configuration's {name!r}.")
    _check_tensors(fail, config, len(vocab), tensors, names)
    return config, vocab


def _check_checksums(fail, meta: dict, tensors: dict[str, torch.Tensor], names: Iterable[str]) -> None:
    """Every tensor read against the checksum written with it; every tensor the file holds has one."""
    sums = meta.get("checksums")
    if sums is None:
        if meta["format"] >= 2:
            fail("the checkpoint metadata has no checksums, so its tensor data cannot be verified.")
        return
    names = set(names)
    for name in sorted(names):
        if not is_a(sums.get(name), int):
            fail(f"the checkpoint metadata has no checksum for tensor {name}, so its data cannot be verified.")
    if len(sums) != len(names):
        fail(f"the checkpoint metadata has checksums of tensors the file does not hold "
             f"({', '.join(sorted(set(sums) - names)[:3])}).")
    for name, t in tensors.items():
        if checksum(t) != sums[name]:
            fail(f"tensor data is damaged (checksum mismatch in {name}): the file changed after charforge "
                 f"wrote it.")


def _check_tensors(fail, config: TrainConfig, vocab_size: int, tensors: dict[str, torch.Tensor],
                   names: list[str]) -> None:
    """The weights against the stored architecture, every tensor's name, and the type and values of
    those read."""
    def shape(name):
        t = tensors.get(name)
        return None if t is None else tuple(t.shape)

    expected = {"model.head.weight": (vocab_size, config.hidden_size),
                "model.head.bias": (vocab_size,) if config.output_bias else None,
                "model.embed.weight": (vocab_size, config.embedding_dim) if config.embedding_dim else None}
    for name, want in expected.items():
        if shape(name) != want:
            got = "it is missing" if shape(name) is None else f"it has shape {shape(name)}"
            if want is None:
                fail(f"the weights hold {name}, which the stored configuration does not have.")
            what = (f"the vocabulary has {vocab_size} characters and the configuration says hidden size "
                    f"{config.hidden_size}, embedding {config.embedding_dim}")
            fail(f"{what}, so {name} should have shape {want}, but {got}.")
    layers = {k.split(".")[2] for k in names if k.startswith("model.layers.")}
    if len(layers) != config.num_layers or layers != {str(i) for i in range(config.num_layers)}:
        fail(f"the configuration says {config.num_layers} layer(s) but the weights hold "
             f"{len(layers)} ({', '.join(sorted(layers)) or 'none'}).")
    for name in names:
        group, _, rest = name.partition(".")
        t = tensors.get(name)
        if t is not None and t.is_floating_point() and t.dtype not in FLOATS:
            fail(f"tensor {name} has type {t.dtype}; charforge computes in float32, float64, float16 or "
                 f"bfloat16 only.")
        if group == "model" and t is not None and not t.is_floating_point():
            fail(f"weight {name} has type {t.dtype}, not a floating-point type.")
        if group == "optimizer" and not rest.partition(".")[0].isdigit():
            fail(f"optimizer state tensor {name!r} does not name a parameter by number.")
        if group == "carry" and not (len(rest.split(".")) == 2 and all(p.isdigit() for p in rest.split("."))):
            fail(f"hidden-state tensor {name!r} is not named carry.LAYER.PART.")
        if group == "rng" and rest == "cpu" and t is not None and (t.dtype != torch.uint8 or t.shape != torch.get_rng_state().shape):
            fail(f"the random-generator state rng.cpu has the wrong type or size ({t.dtype}, {tuple(t.shape)}).")
    bad = first_nonfinite(tensors.items())
    if bad is not None:
        fail(f"tensor {bad} holds NaN or infinite values; the checkpoint is broken.")


def compatible(saved, fresh) -> bool:
    """A stored optimizer setting fits the freshly built one: flags (bools, None) are equal, since the
    configuration fixes them; numbers are finite numbers; lists have the same length and shape."""
    if fresh is None or isinstance(fresh, bool) or saved is None or isinstance(saved, bool):
        return saved is fresh or (type(saved) is type(fresh) and saved == fresh)
    if isinstance(fresh, _NUMBER):
        return isinstance(saved, _NUMBER) and math.isfinite(saved)
    if isinstance(fresh, list):
        return isinstance(saved, list) and len(saved) == len(fresh) and all(map(compatible, saved, fresh))
    return type(saved) is type(fresh)
