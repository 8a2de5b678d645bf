"""Checkpoints: one safetensors file with weights, optimizer and RNG state, and JSON metadata.

Nothing here unpickles: a file is read only through safetensors' header-and-buffer format,
and its metadata is validated before anything is built from it (field types, the stored
configuration, the vocabulary against the weights' shapes, finite values), so a damaged or
hand-edited checkpoint gives a one-line error naming what is wrong. Writes are atomic
(temporary file in the same folder, fsync, rename, fsync of the folder), so a crash or a
SIGKILL mid-save leaves the previous checkpoint intact; a failed write (disk full, read-only
folder) is a one-line error and leaves no partial file behind.
"""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import safe_open
from safetensors.torch import save

from charforge import __version__
from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.vocab import Vocab

FORMAT_VERSION = 1
META_KEY = "charforge"
_REQUIRED = {"format": int, "charforge_version": str, "config": dict, "tokenizer": str,
             "cell": dict, "optimizer": dict, "step": int}
_NUMBER = (int, float)
# Written by the trainer; checked when present (a checkpoint for sampling needs only the above).
_OPTIONAL = {"epoch": int, "window": int, "elapsed": _NUMBER, "best_val": (*_NUMBER, type(None)),
             "metrics": dict, "plugin_state": dict, "optimizer_groups": list, "optimizer_scalars": dict}
# Suffixes of files that torch.save/pickle write: refused by name as well as by content.
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}
# torch.optim state entries shaped like their parameter (checked before a resume uses them).
_PARAM_SHAPED = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "sum", "square_avg",
                 "grad_avg", "acc_delta", "ax", "prev", "step_size", "exp_inf"}
_TMP = ".tmp"


# -- writing ------------------------------------------------------------------------------------

def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new one, never a mix.

    The bytes go to a temporary file beside ``path`` that is fsynced and then renamed over it.
    An error (disk full, no permission) removes the temporary file and raises a one-line
    :class:`CharforgeError`; ``path`` itself is untouched until the rename.
    """
    path = Path(path)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}{_TMP}{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:  # a second Ctrl-C mid-write too: no temporary file is left behind
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CharforgeError(_write_error(path, exc)) from None
        raise
    _fsync_dir(path.parent)


def _write_error(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        hint = "free some disk space (or train with another --runs-dir) and resume"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = f"make {path.parent} writable (or train with another --runs-dir) and resume"
    elif exc.errno == errno.ENOENT:
        hint = f"the folder {path.parent} has disappeared"
    else:
        hint = "check the disk and resume"
    return f"could not write checkpoint {path}: {reason}; the previous checkpoint is intact; {hint}."


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: some systems cannot open or fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files that processes killed mid-save left beside ``path``."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return
    try:
        names = [e.name for e in os.scandir(path.parent) if e.name.startswith(".") and _TMP in e.name]
    except OSError:
        return
    for name in names:
        pid = name.rpartition(_TMP)[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                os.unlink(path.parent / name)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def first_nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, or None (one device sync)."""
    floats = [(name, t) for name, t in named if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not floats:
        return None
    finite = torch.stack([torch.isfinite(t).all().to(floats[0][1].device) for _, t in floats])
    if bool(finite.all()):
        return None
    return floats[int((~finite).nonzero()[0])][0]


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    meta = {"format": FORMAT_VERSION, "charforge_version": __version__, **meta}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, save(tensors, metadata={META_KEY: json.dumps(meta)}))


def checkpoint_step(path: Path) -> int | None:
    """The step stored in a checkpoint's metadata (tensors unread), or None if it cannot be read."""
    try:
        with safe_open(path, "pt") as f:
            step = json.loads(f.metadata()[META_KEY])["step"]
    except Exception:
        return None
    return step if _is(step, int) else None


def step_number(path: Path) -> int | None:
    """N of a ``step-N.safetensors`` checkpoint, else None."""
    digits = path.name.removeprefix("step-").removesuffix(".safetensors")
    return int(digits) if path.name.startswith("step-") and digits.isdigit() else None


def prune_step_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest step-numbered checkpoints (latest and best are separate)."""
    numbered = sorted((n, p) for p in Path(folder).glob("step-*.safetensors")
                      if (n := step_number(p)) is not None)
    for _, old in numbered[: max(len(numbered) - keep, 0)]:
        old.unlink(missing_ok=True)


# -- reading ------------------------------------------------------------------------------------

class Checkpoint:
    """A validated checkpoint: ``meta`` (JSON metadata) and its tensors by name."""

    def __init__(self, path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]):
        self.path = path
        self.meta = meta
        self.tensors = tensors

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors whose names start with ``prefix.``, with the prefix removed."""
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}


def resolve_checkpoint(target: str | Path, which: str = "best") -> Path:
    """A checkpoint file, or the best (falling back to latest) checkpoint of a run directory."""
    path = Path(target)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        order = [which, "latest"] if which != "latest" else ["latest"]
        for name in order:
            candidate = folder / f"{name}.safetensors"
            if candidate.is_file():
                return candidate
        raise CharforgeError(f"{target} holds no checkpoint ({which}.safetensors or latest.safetensors).")
    if not path.exists():
        raise CharforgeError(f"checkpoint {target} does not exist.")
    if not path.is_file():
        raise CharforgeError(f"checkpoint {target} is not a regular file.")
    return path


def _sniff(path: Path) -> None:
    """Refuse anything but a safetensors file before a parser sees it (pickles first of all)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise CharforgeError(f"cannot read checkpoint {path}: {exc.strerror or exc}.") from None
    declared = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if len(head) == 9 and head[8:9] == b"{" and 2 <= declared <= size - 8:
        return
    if head[:1] == b"\x80" or head[:2] == b"PK" or path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CharforgeError(
            f"{path} looks like a pickle or torch.save file; charforge never unpickles (loading one could "
            f"run any code). Only .safetensors checkpoints written by charforge can be loaded.")
    if size == 0:
        raise CharforgeError(f"{path} is empty, not a checkpoint.")
    if len(head) == 9 and head[8:9] == b"{" and declared > size - 8:
        raise CharforgeError(f"{path} is truncated: its header says {declared} bytes, "
                             f"the file holds {size} bytes in all.")
    raise CharforgeError(f"{path} is not a safetensors checkpoint (its header is damaged or missing).")


def load_checkpoint(target: str | Path, which: str = "best") -> Checkpoint:
    path = resolve_checkpoint(target, which)
    _sniff(path)
    try:
        with safe_open(path, "pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors parses untrusted bytes; whatever it rejects is damage
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CharforgeError(f"{path} is damaged or truncated: safetensors cannot read it ({reason}).") from None
    if raw is None:
        raise CharforgeError(f"{path} is a safetensors file but not a charforge checkpoint (no metadata).")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise CharforgeError(f"{path}: the checkpoint metadata is not valid JSON.") from None
    _validate(path, meta, tensors)
    return Checkpoint(path, meta, tensors)


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", dict: "a JSON object",
             list: "a list", bool: "a boolean", type(None): "null"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _is(value, kind) -> bool:
    return isinstance(value, kind) and not (isinstance(value, bool) and bool not in (
        kind if isinstance(kind, tuple) else (kind,)))


def _validate(path: Path, meta: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Check everything the loaders use, so that nothing downstream meets a surprise."""
    def fail(message: str):
        raise CharforgeError(f"{path}: {message}")

    if not isinstance(meta, dict):
        fail("the checkpoint metadata is not a JSON object.")
    version = meta.get("format")
    if _is(version, int) and version > FORMAT_VERSION:
        fail(f"written by charforge {meta.get('charforge_version', '?')} in checkpoint format {version}; "
             f"this charforge {__version__} reads format {FORMAT_VERSION} and older. Upgrade charforge.")
    for table in (_REQUIRED, _OPTIONAL):
        for key, kind in table.items():
            if (key in meta or table is _REQUIRED) and not _is(meta.get(key), kind):
                state = "missing" if key not in meta else f"{_kind_name(type(meta[key]))}"
                fail(f"checkpoint metadata field {key!r} is {state}, not {_kind_name(kind)}.")
    if version < 1:
        fail(f"unknown checkpoint format {version}.")
    for key in ("step", "epoch", "window"):
        if meta.get(key, 0) < 0:
            fail(f"checkpoint metadata field {key!r} is negative ({meta[key]}).")
    for key in ("elapsed", "best_val"):
        if meta.get(key) is not None and not math.isfinite(meta[key]):
            fail(f"checkpoint metadata field {key!r} is not a finite number ({meta[key]}).")
    if "elapsed" in meta and meta["elapsed"] < 0:
        fail("checkpoint metadata field 'elapsed' is negative.")
    for key, value in meta.get("metrics", {}).items():
        if not _is(value, (*_NUMBER, type(None))):
            fail(f"checkpoint metric {key!r} is not a number.")
    try:
        config = TrainConfig.from_dict(meta["config"]).check()
        vocab = Vocab.from_json(meta["tokenizer"])
    except CharforgeError as exc:
        fail(f"the stored configuration or tokenizer is invalid: {exc}")
    for role, name in (("cell", config.cell), ("optimizer", config.optimizer)):
        info = meta[role]
        if not _is(info.get("name"), str) or not all(_is(info.get(k), (str, type(None)))
                                                     for k in ("plugin", "dist", "version")):
            fail(f"checkpoint metadata field {role!r} must hold name, plugin, dist and version as strings.")
        if info["name"] != name:
            fail(f"the {role} {info['name']!r} in the metadata differs from the configuration's {name!r}.")
    _check_tensors(fail, config, len(vocab), tensors)


def _check_tensors(fail, config: TrainConfig, vocab_size: int, tensors: dict[str, torch.Tensor]) -> None:
    """The weights against the stored architecture, and every tensor's type and values."""
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
    layers = {k.split(".")[2] for k in tensors if k.startswith("model.layers.")}
    if layers != {str(i) for i in range(config.num_layers)}:
        fail(f"the configuration says {config.num_layers} layer(s) but the weights hold "
             f"{len(layers)} ({', '.join(sorted(layers)) or 'none'}).")
    for name, t in tensors.items():
        group, _, rest = name.partition(".")
        if group == "model" and not t.is_floating_point():
            fail(f"weight {name} has type {t.dtype}, not a floating-point type.")
        if group == "optimizer" and not rest.partition(".")[0].isdigit():
            fail(f"optimizer state tensor {name!r} does not name a parameter by number.")
        if group == "carry" and not (len(rest.split(".")) == 2 and all(p.isdigit() for p in rest.split("."))):
            fail(f"hidden-state tensor {name!r} is not named carry.LAYER.PART.")
        if group == "rng" and rest == "cpu" and (t.dtype != torch.uint8 or t.shape != torch.get_rng_state().shape):
            fail(f"the random-generator state rng.cpu has the wrong type or size ({t.dtype}, {tuple(t.shape)}).")
    bad = first_nonfinite(tensors.items())
    if bad is not None:
        fail(f"tensor {bad} holds NaN or infinite values; the checkpoint is broken.")


# -- restoring ----------------------------------------------------------------------------------

def restore_model(ckpt: Checkpoint, model: torch.nn.Module) -> None:
    try:
        model.load_state_dict(ckpt.group("model"))
    except RuntimeError as exc:
        first = " ".join(" ".join(str(exc).strip().splitlines()[0:2]).split())
        raise CharforgeError(f"{ckpt.path}: the weights do not fit the stored architecture ({first}).") from None


def restore_optimizer(ckpt: Checkpoint, optimizer: torch.optim.Optimizer, device) -> None:
    """Load the optimizer's state after checking it against a freshly built optimizer."""
    def fail(message: str):
        raise CharforgeError(f"{ckpt.path}: {message}; the checkpoint cannot be resumed.")

    meta = ckpt.meta
    groups, fresh = meta.get("optimizer_groups"), optimizer.state_dict()["param_groups"]
    if groups is None:
        fail("it holds no optimizer state")
    if len(groups) != len(fresh):
        fail(f"it has {len(groups)} optimizer parameter group(s), the optimizer {len(fresh)}")
    for saved, new in zip(groups, fresh):
        if not isinstance(saved, dict) or saved.get("params") != new["params"]:
            fail("its optimizer parameter groups do not match the model's parameters")
        for key in saved.keys() & new.keys() - {"params"}:
            if not _compatible(saved[key], json.loads(json.dumps(new[key]))):
                fail(f"optimizer setting {key!r} is {saved[key]!r}, expected something like {new[key]!r}")
    # a setting the checkpoint lacks (an older torch, a hand edit) keeps the value the configuration gives
    groups = [{**new, **saved} for saved, new in zip(groups, fresh)]
    # state_dict() numbers the parameters 0, 1, ... across the groups, in order
    shapes = {i: tuple(p.shape) for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    state: dict[int, dict] = {}
    for name, tensor in ckpt.group("optimizer").items():
        idx, key = name.split(".", 1)
        if int(idx) not in shapes:
            fail(f"optimizer state {name!r} names parameter {idx}, which the model does not have")
        if key in _PARAM_SHAPED and tensor.dim() and tuple(tensor.shape) != shapes[int(idx)]:
            fail(f"optimizer state {name!r} has shape {tuple(tensor.shape)}, its parameter {shapes[int(idx)]}")
        state.setdefault(int(idx), {})[key] = tensor.to(device) if key != "step" else tensor
    tensor_keys = {key for entry in state.values() for key in entry}
    for idx, entry in meta.get("optimizer_scalars", {}).items():
        if not (idx.isdigit() and int(idx) in shapes and isinstance(entry, dict)
                and all(_is(v, (*_NUMBER, bool, str, type(None))) for v in entry.values())):
            fail(f"optimizer scalars for parameter {idx!r} are not a JSON object of numbers")
        if entry.keys() & tensor_keys:  # e.g. Adam's step: a tensor, never a plain number
            fail(f"optimizer state {sorted(entry.keys() & tensor_keys)[0]!r} of parameter {idx} is a number "
                 f"where the other parameters hold a tensor")
        state.setdefault(int(idx), {}).update(entry)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        fail(f"the optimizer state does not load ({' '.join(str(exc).split())})")


def _compatible(saved, fresh) -> bool:
    """A stored optimizer setting fits the freshly built one: flags (bools, None) are equal, since the
    configuration fixes them; numbers are finite numbers; lists have the same length and shape."""
    if fresh is None or isinstance(fresh, bool) or saved is None or isinstance(saved, bool):
        return saved is fresh or (type(saved) is type(fresh) and saved == fresh)
    if isinstance(fresh, _NUMBER):
        return isinstance(saved, _NUMBER) and math.isfinite(saved)
    if isinstance(fresh, list):
        return isinstance(saved, list) and len(saved) == len(fresh) and all(map(_compatible, saved, fresh))
    return type(saved) is type(fresh)


def restore_carry(ckpt: Checkpoint, template: list[tuple[torch.Tensor, ...]], device) -> list[tuple]:
    """The hidden state carried across windows, shaped like ``template`` (the initial state)."""
    carry = ckpt.group("carry")
    wanted = {f"{i}.{j}": t for i, layer in enumerate(template) for j, t in enumerate(layer)}
    if carry.keys() != wanted.keys() or any(carry[k].shape != t.shape for k, t in wanted.items()):
        raise CharforgeError(f"{ckpt.path}: the stored hidden state does not fit the model "
                             f"({len(carry)} tensor(s) for {len(wanted)}); the checkpoint cannot be resumed.")
    return [tuple(carry[f"{i}.{j}"].to(device, t.dtype) for j, t in enumerate(layer))
            for i, layer in enumerate(template)]


def restore_rng(ckpt: Checkpoint, device: torch.device) -> None:
    if "rng.cpu" not in ckpt.tensors:
        raise CharforgeError(f"{ckpt.path}: it holds no random-generator state; the checkpoint cannot be resumed.")
    torch.set_rng_state(ckpt.tensors["rng.cpu"])
    if device.type == "cuda" and "rng.cuda" in ckpt.tensors:
        try:
            torch.cuda.set_rng_state(ckpt.tensors["rng.cuda"], device)
        except (RuntimeError, TypeError):
            raise CharforgeError(f"{ckpt.path}: the stored CUDA random-generator state is damaged.") from None


def require_plugins(ckpt: Checkpoint, registry, roles=("cell", "optimizer")) -> None:
    """A one-line error naming the plugin to install when the checkpoint's cell (or optimizer) is missing."""
    for role in roles:
        info = ckpt.meta[role]
        if info.get("name") not in registry.names(role):
            source = info.get("dist") or info.get("plugin") or "an unknown plugin"
            raise CharforgeError(
                f"{ckpt.path} needs {role} {info.get('name')!r} from plugin {info.get('plugin')!r} "
                f"(install {source}{' ' + info['version'] if info.get('version') else ''}); it is not "
                f"installed or is blocked."
            )


def load_model(target: str | Path, registry, device: str | torch.device = "cpu", which: str = "best"):
    """(model in eval mode, vocabulary, checkpoint) from a checkpoint file or run directory."""
    from charforge.model import build_model

    ckpt = load_checkpoint(target, which)
    require_plugins(ckpt, registry, ("cell",))
    config = TrainConfig.from_dict(ckpt.meta["config"])
    vocab = Vocab.from_json(ckpt.meta["tokenizer"])
    try:
        model = build_model(config, len(vocab), registry)
    except CharforgeError as exc:
        raise CharforgeError(f"{ckpt.path}: {exc}") from None
    restore_model(ckpt, model)
    return model.to(device).eval(), vocab, ckpt
