import json
import random

import numpy as np
import pytest
import safetensors.torch
import torch

from rnnzoo.errors import CheckpointError
from rnnzoo.mixers import flatten_state, unflatten_state
from rnnzoo.models import LanguageModel
from rnnzoo.tasks import CharVocab
from rnnzoo.train import checkpoint
from rnnzoo.train.checkpoint import load_checkpoint, save_checkpoint

VOCAB = CharVocab.from_text("abcdefghij .\n")
TOKENS = torch.randint(0, len(VOCAB), (2, 9), generator=torch.Generator().manual_seed(0))


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    return LanguageModel(len(VOCAB), "elman", 8, 2, **kw)


def logits(model):
    return model(TOKENS)[0].detach()


def trainer_state(model):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    out, state = model(TOKENS)
    out.square().mean().backward()
    opt.step()
    sched.step()
    return {"step": 7, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "carry": flatten_state(state), "metrics": {"loss": [2.5, 2.25], "best": None}}


@pytest.mark.parametrize("kw", [{}, {"tie_weights": True}, {"residual": True, "dropout": 0.1, "nonlinearity": "relu"}])
def test_round_trip(tmp_path, kw):
    model = make_model(**kw).eval()
    ts = trainer_state(model)
    train_config = {"lr": 1e-3, "steps": 100, "mixer": "elman"}
    path = save_checkpoint(tmp_path / "ck", model=model, vocab=VOCAB, train_config=train_config, trainer_state=ts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    ck = load_checkpoint(path)
    assert ck.path == path and ck.vocab == VOCAB and ck.train_config == train_config
    assert ck.model.config == model.config
    assert torch.equal(logits(ck.model.eval()), logits(model))
    if kw.get("tie_weights"):
        assert ck.model.head.weight is ck.model.embed.weight
    assert ck.trainer_state["step"] == 7 and ck.trainer_state["metrics"] == ts["metrics"]
    assert ck.trainer_state["rng"]["python"] == ts["rng"]["python"]
    carried = unflatten_state(ck.model.init_state(2), ck.trainer_state["carry"])
    original = unflatten_state(model.init_state(2), ts["carry"])
    assert torch.equal(ck.model(TOKENS, carried)[0], model(TOKENS, original)[0])
    opt = torch.optim.AdamW(ck.model.parameters(), lr=1e-3)
    opt.load_state_dict(ck.trainer_state["optimizer"])
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], ts["optimizer"]["state"][0]["exp_avg"])
    raw = torch.load(path / "trainer.pt", weights_only=True)
    assert raw["step"] == 7
    assert json.loads((path / "config.json").read_text())["format"] == 1


def test_without_trainer_state_and_dtype_kept(tmp_path):
    model = make_model().double()
    save_checkpoint(tmp_path / "ck", model=model, vocab=VOCAB)
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.trainer_state is None and ck.train_config is None
    assert ck.model.embed.weight.dtype == torch.float64
    assert torch.equal(logits(ck.model), logits(model))


def test_overwrite_replaces(tmp_path):
    save_checkpoint(tmp_path / "ck", model=make_model(0), vocab=VOCAB)
    new = make_model(1)
    save_checkpoint(tmp_path / "ck", model=new, vocab=VOCAB)
    assert torch.equal(logits(load_checkpoint(tmp_path / "ck").model), logits(new))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def fail(*args, **kwargs):
    raise OSError("disk full (injected)")


@pytest.mark.parametrize("target", ["safetensors", "torch"])
def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch, target):
    old = make_model(0)
    save_checkpoint(tmp_path / "ck", model=old, vocab=VOCAB, trainer_state={"step": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()}
    if target == "safetensors":
        monkeypatch.setattr(safetensors.torch, "save_file", fail)
    else:
        monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="injected"):
        save_checkpoint(tmp_path / "ck", model=make_model(1), vocab=VOCAB, trainer_state={"step": 2})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    ck = load_checkpoint(tmp_path / "ck")
    assert torch.equal(logits(ck.model), logits(old)) and ck.trainer_state == {"step": 1}


def test_crash_between_renames_falls_back_to_old(tmp_path, monkeypatch):
    old = make_model(0)
    save_checkpoint(tmp_path / "ck", model=old, vocab=VOCAB)
    replace = checkpoint.os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("power cut (injected)")
        replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", crash_on_second)
    with pytest.raises(OSError, match="injected"):
        save_checkpoint(tmp_path / "ck", model=make_model(1), vocab=VOCAB)
    monkeypatch.undo()
    assert not (tmp_path / "ck").exists() and (tmp_path / "ck.old").is_dir()
    assert torch.equal(logits(load_checkpoint(tmp_path / "ck").model), logits(old))
    new = make_model(2)
    save_checkpoint(tmp_path / "ck", model=new, vocab=VOCAB)
    assert torch.equal(logits(load_checkpoint(tmp_path / "ck").model), logits(new))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_trainer_state_must_load_with_weights_only(tmp_path):
    save_checkpoint(tmp_path / "ck", model=make_model(), vocab=VOCAB, trainer_state={"step": 1})
    for bad, where in (({"rng": {"numpy": np.zeros(3)}}, "rng"), ({"loss": np.float64(1.0)}, "loss"),
                       ({"carry": make_model().init_state(1)}, "carry"), ({1.5: 0}, "1.5")):
        with pytest.raises(CheckpointError, match=where):
            save_checkpoint(tmp_path / "ck", model=make_model(), vocab=VOCAB, trainer_state=bad)
    assert load_checkpoint(tmp_path / "ck").trainer_state == {"step": 1}


def test_save_refuses_bad_arguments(tmp_path):
    with pytest.raises(CheckpointError, match="vocabulary has 3"):
        save_checkpoint(tmp_path / "ck", model=make_model(), vocab=CharVocab.from_text("abc"))
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(tmp_path / "ck", model=make_model(), vocab=VOCAB, train_config={"f": object()})
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        save_checkpoint(precious, model=make_model(), vocab=VOCAB)
    assert (precious / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "ck").exists()


def saved(tmp_path, **kw):
    path = tmp_path / "ck"
    save_checkpoint(path, model=make_model(**kw), vocab=VOCAB, trainer_state={"step": 1})
    return path


def edit_json(file, fn):
    file.write_text(json.dumps(fn(json.loads(file.read_text()))))


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        load_checkpoint(tmp_path / "file")
    path = saved(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage, match", [
    (lambda p: (p / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda p: (p / "config.json").unlink(), "missing"),
    (lambda p: edit_json(p / "config.json", lambda c: c | {"format": 99}), "format-1"),
    (lambda p: edit_json(p / "config.json", lambda c: c | {"train": 3}), "'train'"),
    (lambda p: edit_json(p / "config.json", lambda c: c | {"model": c["model"] | {"colour": 1}}), "colour"),
    (lambda p: edit_json(p / "config.json", lambda c: c | {"model": c["model"] | {"mixer": "nope"}}), "nope"),
    (lambda p: (p / "vocab.json").unlink(), "vocab.json is missing"),
    (lambda p: (p / "vocab.json").write_text('{"type": "char", "chars": ["a", "b"]}'), "2 characters"),
    (lambda p: (p / "trainer.pt").write_bytes(b"garbage"), "trainer.pt"),
    (lambda p: torch.save({"x": torch.nn.Linear(1, 1)}, p / "trainer.pt"), "trainer.pt"),
])
def test_damaged_checkpoint(tmp_path, damage, match):
    path = saved(tmp_path)
    damage(path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


@pytest.mark.parametrize("change, match", [
    ({"d_model": 16}, "wrong shape"),
    ({"n_layers": 3}, "missing: stack.layers.2"),
    ({"n_layers": 1}, "unexpected: stack.layers.1"),
    ({"tie_weights": True}, "unexpected: head.weight"),
])
def test_weights_that_do_not_match_the_config(tmp_path, change, match):
    path = saved(tmp_path)
    edit_json(path / "config.json", lambda c: c | {"model": c["model"] | change})
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)
