"""Checkpoints: one directory per checkpoint, written atomically.

    run/ckpt/model.safetensors   weights (tied weights stored once)
    run/ckpt/config.json         {"format": 1, "model": LMConfig dict, "train": train config dict or null}
    run/ckpt/vocab.json          CharVocab.to_json()
    run/ckpt/trainer.pt          optional: step, optimizer/scheduler/RNG states, carried state, metrics

A save writes everything into a temporary directory beside the target, fsyncs it, then swaps it in with two
renames (target -> target.old, temporary -> target) and deletes target.old. A crash at any moment leaves a
complete checkpoint at the target, or (between the renames) at target.old, where ``load_checkpoint`` looks
when the target is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch

from rnnzoo.errors import CheckpointError, RnnzooError
from rnnzoo.models.lm import LanguageModel, LMConfig
from rnnzoo.tasks.text import CharVocab

FORMAT = 1
MODEL_FILE, CONFIG_FILE, VOCAB_FILE, TRAINER_FILE = "model.safetensors", "config.json", "vocab.json", "trainer.pt"


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns; ``path`` is the directory read (``NAME.old`` after a crashed save)."""

    model: LanguageModel
    vocab: CharVocab
    train_config: dict | None
    trainer_state: dict | None
    path: Path


def save_checkpoint(path: str | Path, *, model: LanguageModel, vocab: CharVocab, train_config: dict | None = None,
                    trainer_state: dict | None = None) -> Path:
    """Write a checkpoint directory at ``path``, replacing any checkpoint there; returns the path."""
    path = Path(path)
    if not isinstance(model, LanguageModel) or not isinstance(vocab, CharVocab):
        raise CheckpointError("save_checkpoint needs model=LanguageModel and vocab=CharVocab")
    if len(vocab) != model.config.vocab_size:
        raise CheckpointError(f"the vocabulary has {len(vocab)} characters but the model was built for "
                              f"{model.config.vocab_size}; save the vocabulary the model was trained with")
    if train_config is not None and not isinstance(train_config, dict):
        raise CheckpointError(f"train_config must be a dict or None, got {type(train_config).__name__}")
    if trainer_state is not None:
        check_loadable(trainer_state, "trainer_state")
    try:
        config = json.dumps({"format": FORMAT, "model": model.config.to_dict(), "train": train_config}, indent=2)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the model or train config cannot be written as JSON ({e}); "
                              "keep config values to numbers, strings, bools, lists and dicts") from None
    if path.exists() and not is_replaceable(path):
        raise CheckpointError(f"{str(path)!r} exists and is not a checkpoint; refusing to replace it. "
                              "Choose another path or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        safetensors.torch.save_file(weights(model), tmp / MODEL_FILE)
        (tmp / CONFIG_FILE).write_text(config + "\n", encoding="utf-8")
        (tmp / VOCAB_FILE).write_text(json.dumps(vocab.to_json()) + "\n", encoding="utf-8")
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_FILE)
        for f in tmp.iterdir():
            fsync(f)
        fsync(tmp)
        swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``; the model is moved to ``map_location``."""
    path = Path(path)
    old = old_path(path)
    if not path.exists() and old.is_dir():
        path = old
    if not path.is_dir():
        what = "is a file, not a checkpoint directory" if path.exists() else "does not exist"
        raise CheckpointError(f"checkpoint {str(path)!r} {what}; pass the directory save_checkpoint wrote")
    config = read_json(path / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != FORMAT or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{path / CONFIG_FILE} is not a format-{FORMAT} checkpoint config "
                              '({"format": 1, "model": {...}, "train": ...}); it is damaged or from another tool')
    train_config = config.get("train")
    if train_config is not None and not isinstance(train_config, dict):
        raise CheckpointError(f"{path / CONFIG_FILE}: 'train' must be a dict or null")
    try:
        model = LanguageModel.from_config(LMConfig.from_dict(config["model"]))
    except RnnzooError as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: cannot build the model: {e}") from None
    vocab = CharVocab.from_json(read_json(path / VOCAB_FILE))
    if len(vocab) != model.config.vocab_size:
        raise CheckpointError(f"{path}: vocab.json has {len(vocab)} characters but the model expects "
                              f"{model.config.vocab_size}; the checkpoint files do not belong together")
    load_weights(model, path / MODEL_FILE)
    model.to(map_location)
    return Checkpoint(model, vocab, train_config, load_trainer_state(path / TRAINER_FILE, map_location), path)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each shared tensor (tied weights) kept once, under its first name."""
    out, seen = {}, set()
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape)
        if t.numel() == 0 or key not in seen:
            seen.add(key)
            out[name] = t.detach().cpu().contiguous()
    return out


def load_weights(model: LanguageModel, file: Path) -> None:
    if not file.is_file():
        raise CheckpointError(f"{file} is missing; the checkpoint is incomplete")
    try:
        state = safetensors.torch.load_file(file)
    except Exception as e:
        raise CheckpointError(f"{file} is not a readable safetensors file ({e}); the checkpoint is damaged") from None
    expected = {k: v.shape for k, v in weights(model).items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k])}" for k in sorted(set(state) & set(expected))
                 if state[k].shape != expected[k]]
    if missing or unexpected or misshapen:
        problems = [f"{label}: {', '.join(items)}" for label, items in
                    (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)) if items]
        raise CheckpointError(f"{file} does not match the model in config.json ({'; '.join(problems)}); "
                              "the weights and config come from different models")
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    model.load_state_dict(state, strict=False)


def load_trainer_state(file: Path, map_location) -> dict | None:
    if not file.exists():
        return None
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{file} cannot be read ({type(e).__name__}: {str(e)[:200]}); "
                              "the trainer state is damaged: delete trainer.pt to keep only the weights") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds a {type(state).__name__}, not a dict; the trainer state is damaged")
    return state


def check_loadable(obj, where: str) -> None:
    """Raise unless ``obj`` is built from the plain types torch.load(weights_only=True) accepts.

    Exact types: a NamedTuple or a numpy scalar would pickle as its own class and fail to load.
    """
    if type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise CheckpointError(f"{where} has a key {k!r} of type {type(k).__name__}; use str or int keys")
            check_loadable(v, f"{where}[{k!r}]")
    elif type(obj) in (list, tuple, torch.Size):
        for i, v in enumerate(obj):
            check_loadable(v, f"{where}[{i}]")
    elif not (obj is None or isinstance(obj, torch.Tensor) or type(obj) in (str, int, float, bool)):
        raise CheckpointError(f"{where} is a {type(obj).__name__}; trainer state may hold only tensors, dicts, "
                              "lists, tuples, Python numbers, strings, bools and None (convert arrays and numpy "
                              "numbers with torch.as_tensor or float(), states with flatten_state)")


def read_json(file: Path):
    if not file.is_file():
        raise CheckpointError(f"{file} is missing; the checkpoint is incomplete")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({e}); the checkpoint is damaged") from None


def old_path(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def is_replaceable(path: Path) -> bool:
    """A checkpoint directory (or an empty one) may be replaced; anything else is left alone."""
    return path.is_dir() and ((path / CONFIG_FILE).is_file() or not any(path.iterdir()))


def swap_in(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``, keeping a complete checkpoint on disk at every moment."""
    old = old_path(path)
    if path.exists():
        if old.exists():
            shutil.rmtree(old)  # a leftover from a crash after its swap; ``path`` is complete
        os.replace(path, old)
    os.replace(tmp, path)
    fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk (directories only where the OS allows it)."""
    if path.is_dir() and os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
