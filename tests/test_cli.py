"""The rnnzoo command: list, train, generate, demo, and one-line errors for bad input."""
import json
import os

import pytest
import torch

from rnnzoo import describe_mixers
from rnnzoo.cli.main import main
from rnnzoo.train import loop
from rnnzoo.train.checkpoint import load_checkpoint

TEXT = "".join(f"while n > {k}:\n    n -= {k + 1}  # step\n" for k in range(200))
TINY = ["--d-model", "16", "--n-layers", "1", "--seq-len", "8", "--batch-size", "4", "--no-progress",
        "--set", "eval_every=0", "--set", "warmup_steps=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text(TEXT)
    return str(path)


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory):
    """A trained run (4 steps of elman) shared by the generate and resume tests; tests must not change it."""
    out = str(tmp_path_factory.mktemp("run"))
    assert main(["train", "--data", data, "--out", out, "--mixer", "elman", "--steps", "4", *TINY]) == 0
    return out


def snapshot(directory) -> dict:
    return {p: open(os.path.join(directory, p), "rb").read() for p in sorted(os.listdir(directory))}


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnzoo: error: "), err
    return lines[0]


def test_list_shows_every_mixer_with_its_description(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name, description in describe_mixers().items():
        assert any(line.split()[0] == name and line.endswith(description) for line in out.splitlines())


def test_train_applies_flags_settings_and_mixer_options(data, tmp_path, capsys):
    out = str(tmp_path)
    assert main(["train", "--data", data, "--out", out, "--mixer", "elman", "--steps", "3", "--lr", "0.01",
                 "--bptt", "12", "--clip", "0.5", "--seed", "4", "--mixer-option", "nonlinearity=relu",
                 "--set", "dropout=0.1", *TINY]) == 0
    assert "validation loss" in capsys.readouterr().out
    saved = json.loads(open(os.path.join(out, "checkpoint", "config.json")).read())
    train_cfg, model_cfg = saved["train"], saved["model"]
    assert (train_cfg["steps"], train_cfg["lr"], train_cfg["bptt"], train_cfg["grad_clip"], train_cfg["seed"],
            train_cfg["dropout"], train_cfg["warmup_steps"]) == (3, 0.01, 12, 0.5, 4, 0.1, 1)
    assert model_cfg["mixer_options"] == {"nonlinearity": "relu"} and model_cfg["d_model"] == 16


def test_resume_continues_a_run(data, run_dir, tmp_path):
    out = str(tmp_path / "copy")
    assert main(["train", "--data", data, "--out", out, "--mixer", "elman", "--steps", "2", *TINY]) == 0
    assert main(["train", "--data", data, "--out", out, "--mixer", "elman", "--steps", "4", "--resume", *TINY]) == 0
    assert load_checkpoint(os.path.join(out, "checkpoint")).trainer_state["step"] == 4


def test_generate_streams_the_greedy_continuation(run_dir, capsys):
    assert main(["generate", "--checkpoint", run_dir, "--prompt", "while", "--max-new-tokens", "12",
                 "--temperature", "0"]) == 0
    text = capsys.readouterr().out
    ckpt = load_checkpoint(os.path.join(run_dir, "checkpoint"))
    ids = ckpt.vocab.encode("while")
    with torch.no_grad():  # greedy by re-reading the whole text each time: no carried state involved
        for _ in range(12):
            ids = torch.cat([ids, ckpt.model.eval()(ids[None])[0][0, -1].argmax().reshape(1)])
    assert text == ckpt.vocab.decode(ids) + "\n"


def test_generate_is_seeded(run_dir, capsys):
    def sample(seed: int) -> str:
        assert main(["generate", "--checkpoint", os.path.join(run_dir, "checkpoint"), "--max-new-tokens", "40",
                     "--temperature", "1.5", "--top-k", "5", "--seed", str(seed)]) == 0
        return capsys.readouterr().out

    first = sample(7)
    assert len(first) == 1 + 40 + 1  # the default prompt (a newline), the sample, a final newline
    assert sample(7) == first and sample(8) != first


def test_interrupt_saves_and_exits_130(data, tmp_path, monkeypatch, capsys):
    real, calls = loop.train_step, []

    def interrupted_at_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", interrupted_at_step_3)
    out = str(tmp_path)
    assert main(["train", "--data", data, "--out", out, "--mixer", "elman", "--steps", "5", *TINY]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert load_checkpoint(os.path.join(out, "checkpoint")).trainer_state["step"] == 2


@pytest.mark.parametrize("content, args, message", [
    (None, ["--mixer", "nope"], "unknown mixer 'nope'"),
    (None, ["--mixer", "elman", "--mixer-option", "colour=3"], "no option 'colour'"),
    (None, ["--mixer", "elman", "--mixer-option", "colour"], "expected --mixer-option key=value"),
    (None, ["--mixer", "elman", "--set", "stepz=3"], "unknown train config key 'stepz'"),
    (None, ["--mixer", "elman", "--steps", "0"], "steps must be >= 1"),
    (None, ["--mixer", "elman", "--set", "lr=fast"], "lr must be a number"),
    ("missing", ["--mixer", "elman"], "does not exist"),
    (b"", ["--mixer", "elman"], "is empty"),
    (b"abc\x00def" * 40, ["--mixer", "elman"], "looks binary"),
    ("caf\xe9 au lait ".encode("latin-1") * 40, ["--mixer", "elman"], "not UTF-8"),
    (b"too short", ["--mixer", "elman"], "use a smaller batch_size or seq_len"),
])
def test_bad_training_input_is_one_error_line(tmp_path, capsys, content, args, message):
    path = tmp_path / "data.txt"
    if content is None:
        path.write_text(TEXT)
    elif content != "missing":
        path.write_bytes(content)
    rc = main(["train", "--data", str(path), "--out", str(tmp_path / "out"), *TINY, *args])
    assert rc == 2
    assert message in error_line(capsys)


def test_prompt_outside_the_vocabulary(run_dir, capsys):
    assert main(["generate", "--checkpoint", run_dir, "--prompt", "wh€le~"]) == 2
    line = error_line(capsys)
    assert "'€'" in line and "'~'" in line


def test_failed_resumes_and_restarts_keep_the_checkpoint(data, run_dir, capsys):
    before = snapshot(os.path.join(run_dir, "checkpoint"))
    base = ["train", "--data", data, "--out", run_dir, "--mixer", "elman", *TINY]
    assert main([*base, "--steps", "6", "--resume", "--d-model", "32"]) == 2
    assert "d_model=16 there, 32 here" in error_line(capsys)
    assert main([*base, "--steps", "6", "--resume", "--mixer", "gru"]) == 2
    assert "mixer='elman' there, 'gru' here" in error_line(capsys)
    assert main([*base, "--steps", "6"]) == 2
    assert "already holds a checkpoint" in error_line(capsys)
    assert snapshot(os.path.join(run_dir, "checkpoint")) == before


def test_corrupt_checkpoint(data, run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    for name, blob in snapshot(os.path.join(run_dir, "checkpoint")).items():
        (out / "checkpoint" / name).write_bytes(blob)
    (out / "checkpoint" / "model.safetensors").write_bytes(b"not a safetensors file")
    before = snapshot(out / "checkpoint")
    assert main(["generate", "--checkpoint", str(out)]) == 2
    assert "model.safetensors" in error_line(capsys)
    assert main(["train", "--data", data, "--out", str(out), "--mixer", "elman", "--steps", "6", "--resume",
                 *TINY]) == 2
    assert "model.safetensors" in error_line(capsys)
    assert snapshot(out / "checkpoint") == before
    assert main(["generate", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in error_line(capsys)


def test_demo_trains_compares_and_samples(data, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--data", data, "--out", str(out), "--mixers", "elman,gru", "--steps", "3",
                 "--d-model", "8", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("mixer "):]
    assert "elman" in table and "gru" in table and "bits/char" in table and "sample from" in printed
    assert (out / "learning_curves.png").stat().st_size > 1000
    for mixer in ("elman", "gru"):
        assert load_checkpoint(out / mixer / "checkpoint").trainer_state["step"] == 3
    assert main(["demo", "--mixers", "elman,nope", "--out", str(out)]) == 2
    assert "unknown mixer 'nope'" in error_line(capsys)
