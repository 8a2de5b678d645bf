"""The checkpoint: one safetensors file with weights, training state and JSON metadata.

This module alone knows the tensor layout of a checkpoint:

| name | what |
| --- | --- |
| ``model.<parameter>`` | the model's weights (its ``state_dict``) |
| ``optimizer.<N>.<key>`` | the optimizer's tensor state of parameter N (scalars go to the metadata) |
| ``rng.cpu``, ``rng.cuda`` | the random generators |
| ``carry.<layer>.<part>`` | the hidden state carried from one window to the next |

Nothing here unpickles: a file is read only through safetensors' header-and-buffer format, and
validated (:mod:`charforge.runs.validation`) before anything is built from it. The metadata holds
every tensor's checksum, and each tensor read is verified against it. A model loaded to generate
reads its weights alone; the training state is read only to resume. Writes are atomic
(:mod:`charforge.runs.files`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from charforge.config import TrainConfig
from charforge.errors import CharforgeError
from charforge.runs.directory import resolve_checkpoint
from charforge.runs.files import atomic_write
from charforge.runs.header import META_KEY
from charforge.runs.validation import FORMAT_VERSION, checksum, compatible, is_a, validate
from charforge.version import __version__
from charforge.vocab import Vocab

# Suffixes of files that torch.save/pickle write: refused by name as well as by content.
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}
# torch.optim state entries shaped like their parameter (checked before a resume uses them).
_PARAM_SHAPED = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "sum", "square_avg",
                 "grad_avg", "acc_delta", "ax", "prev", "step_size", "exp_inf"}
_NUMBER = (int, float)
MODEL = "model"  # the prefix of the weights, all a model loaded to generate reads


# -- writing ------------------------------------------------------------------------------------

def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, carry: list[tuple],
                   device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of everything a resume needs but the run's own counters: weights,
    optimizer state (its scalars and groups go to the metadata), random generators, carried state."""
    tensors = {f"{MODEL}.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for idx, entry in opt["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    tensors["rng.cpu"] = torch.get_rng_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    for i, layer in enumerate(carry):
        for j, s in enumerate(layer):
            tensors[f"carry.{i}.{j}"] = s
    return tensors, {"optimizer_groups": opt["param_groups"], "optimizer_scalars": scalars}


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and ``meta`` (with the format, charforge's version and every tensor's
    checksum) to ``path``, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"format": FORMAT_VERSION, "charforge_version": __version__, **meta,
            "checksums": {k: checksum(v) for k, v in tensors.items()}}
    atomic_write(path, save(tensors, metadata={META_KEY: json.dumps(meta)}))


# -- reading ------------------------------------------------------------------------------------

class Checkpoint:
    """A validated checkpoint: ``meta`` (JSON metadata), the stored ``config`` and ``vocab``, and the
    tensors read, by name."""

    def __init__(self, path: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                 config: TrainConfig, vocab: Vocab):
        self.path = path
        self.meta = meta
        self.tensors = tensors
        self.config = config
        self.vocab = vocab

    @property
    def step(self) -> int:
        return self.meta["step"]

    def metadata_only(self) -> "Checkpoint":
        """This checkpoint without its tensors: what a loaded model keeps to say where it came from."""
        return Checkpoint(self.path, self.meta, {}, self.config, self.vocab)

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors whose names start with ``prefix.``, with the prefix removed."""
        n = len(prefix) + 1
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}


def _sniff(path: Path) -> None:
    """Refuse anything but a safetensors file before a parser sees it (pickles first of all)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise CharforgeError(f"cannot read checkpoint {path}: {exc.strerror or exc}.") from None
    declared = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    looks_safe = len(head) == 9 and head[8:9] == b"{"  # a header length, then its JSON's opening brace
    if looks_safe and 2 <= declared <= size - 8:
        return
    if looks_safe and declared > size - 8 and path.suffix.lower() not in _PICKLE_SUFFIXES:
        # before the pickle checks: a length whose low byte is 0x80 must not read as a pickle's opcode
        raise CharforgeError(f"{path} is truncated: its header says {declared} bytes, "
                             f"the file holds {size} bytes in all.")
    if head[:1] == b"\x80" or head[:2] == b"PK" or path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CharforgeError(
            f"{path} looks like a pickle or torch.save file; charforge never unpickles (loading one could "
            f"run any code). Only .safetensors checkpoints written by charforge can be loaded.")
    if size == 0:
        raise CharforgeError(f"{path} is empty, not a checkpoint.")
    raise CharforgeError(f"{path} is not a safetensors checkpoint (its header is damaged or missing).")


def load_checkpoint(target: str | Path, which: str = "best", model_only: bool = False) -> Checkpoint:
    """The validated checkpoint of a file or run directory; ``model_only`` reads the weights alone
    (what generation needs), leaving the training state's tensors unread."""
    path = resolve_checkpoint(target, which)
    _sniff(path)
    try:
        with safe_open(path, "pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
            names = list(f.keys())
            wanted = [k for k in names if k.startswith(MODEL + ".")] if model_only else names
            tensors = {k: f.get_tensor(k) for k in wanted}
    except Exception as exc:  # safetensors parses untrusted bytes; whatever it rejects is damage
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CharforgeError(f"{path} is damaged or truncated: safetensors cannot read it ({reason}).") from None
    if raw is None:
        raise CharforgeError(f"{path} is a safetensors file but not a charforge checkpoint (no metadata).")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise CharforgeError(f"{path}: the checkpoint metadata is not valid JSON.") from None
    config, vocab = validate(path, meta, tensors, names)
    return Checkpoint(path, meta, tensors, config, vocab)


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
            if not compatible(saved[key], json.loads(json.dumps(new[key]))):
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
        if key in _PARAM_SHAPED and tuple(tensor.shape) != shapes[int(idx)]:
            fail(f"optimizer state {name!r} has shape {tuple(tensor.shape)}, its parameter {shapes[int(idx)]}")
        if key == "step" and (tensor.dim() or tensor.is_complex() or float(tensor) < 0):
            fail(f"optimizer state {name!r} (shape {tuple(tensor.shape)}) is not a step count: one real "
                 f"number, not negative")
        state.setdefault(int(idx), {})[key] = tensor.to(device) if key != "step" else tensor
    tensor_keys = {key for entry in state.values() for key in entry}
    for idx, entry in meta.get("optimizer_scalars", {}).items():
        if not (idx.isdigit() and int(idx) in shapes and isinstance(entry, dict)
                and all(is_a(v, (*_NUMBER, bool, str, type(None))) for v in entry.values())):
            fail(f"optimizer scalars for parameter {idx!r} are not a JSON object of numbers")
        if entry.keys() & tensor_keys:  # e.g. Adam's step: a tensor, never a plain number
            fail(f"optimizer state {sorted(entry.keys() & tensor_keys)[0]!r} of parameter {idx} is a number "
                 f"where the other parameters hold a tensor")
        state.setdefault(int(idx), {}).update(entry)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        fail(f"the optimizer state does not load ({' '.join(str(exc).split())})")


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
    try:
        torch.set_rng_state(ckpt.tensors["rng.cpu"])
    except RuntimeError:  # torch checks the state: all zeros, say, is no Mersenne Twister's
        raise CharforgeError(f"{ckpt.path}: the stored random-generator state rng.cpu is invalid; the checkpoint "
                             f"cannot be resumed.") from None
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


def check_fits(ckpt: Checkpoint, registry, input_size=None) -> None:
    """Refuse a stored configuration whose recurrent layers are not the ones the weights hold before
    anything is allocated, so that a size no file holds never reaches memory. The layers are built on
    the meta device (shapes, no data) and compared with the file's; the embedding and the read-out
    were compared when the file was validated. ``input_size``: a task's, as
    :func:`~charforge.model.build_model` takes it."""
    from charforge.model import meta_layer
    from charforge.options import resolve_options

    def fail(message: str):
        raise CharforgeError(f"{ckpt.path}: {message}")

    config = ckpt.config
    cell = registry.get("cell", config.cell).obj
    width = input_size(cell.uses_time) if input_size else config.embedding_dim or len(ckpt.vocab)  # as CharModel
    try:
        options = resolve_options(f"cell {config.cell!r}", cell.options, config.cell_options)
        layers = [meta_layer(cell, width if i == 0 else config.hidden_size, config.hidden_size, options)
                  for i in range(config.num_layers)]
    except CharforgeError as exc:  # an option out of its bounds, say
        fail(str(exc))
    if None in layers:  # a plugin cell that reads values as it builds: restore_model checks after the build
        return
    for i, layer in enumerate(layers):
        prefix = f"{MODEL}.layers.{i}."
        want = {prefix + k: tuple(v.shape) for k, v in layer.state_dict().items()}
        have = {k: tuple(v.shape) for k, v in ckpt.tensors.items() if k.startswith(prefix)}
        for name in sorted(want.keys() | have.keys()):
            if name not in want:
                fail(f"the weights hold {name}, which the stored configuration's model does not have.")
            if want[name] != have.get(name):
                got = f"the file's has shape {have[name]}" if name in have else "the file lacks it"
                fail(f"the stored configuration gives {name} shape {want[name]}, but {got}; the weights are "
                     f"not this model's.")


def require_text(ckpt: Checkpoint, registry, consequence: str) -> None:
    """Refuse a model whose inputs are not characters (one that learned a task of vectors), saying the
    ``consequence``."""
    task = ckpt.config.corpus
    if task in registry.names("task") and not registry.get("task", task).obj.text:
        raise CharforgeError(f"{ckpt.path}: this model learned the task {task!r}, whose inputs are not "
                             f"characters: {consequence}.")


def build_from(ckpt: Checkpoint, registry):
    """The model a checkpoint holds, in eval mode on the CPU, built from its stored configuration once
    :func:`check_fits` has found the file holds all of it."""
    from charforge.model import build_model

    require_plugins(ckpt, registry, ("cell",))
    require_text(ckpt, registry, "there is nothing to sample from it")
    check_fits(ckpt, registry)
    try:
        model = build_model(ckpt.config, len(ckpt.vocab), registry, training=False)
    except CharforgeError as exc:
        raise CharforgeError(f"{ckpt.path}: {exc}") from None
    restore_model(ckpt, model)
    return model.eval()
