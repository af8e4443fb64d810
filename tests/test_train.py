"""Training loop, truncated BPTT, evaluation, config and exact resume."""
import json
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from rnnzoo.errors import CheckpointError, ConfigError, DataError, DivergedError
from rnnzoo.mixers.state import detach_state, flatten_state
from rnnzoo.models.lm import LanguageModel
from rnnzoo.tasks.text import StreamBatches
from rnnzoo.train import TrainConfig, evaluate, train, unigram_entropy
from rnnzoo.train import loop
from rnnzoo.train.checkpoint import load_checkpoint

TEXT = "".join(f"for i in range({n}):\n    total += i * {n % 9}\n" for n in range(60))
# Small enough for a second per run; bptt > seq_len, dropout and two layers so that resuming must restore the
# carried context and state, the RNG and the optimizer to come out exact.
TINY = dict(mixer="lstm", d_model=16, n_layers=2, dropout=0.1, steps=8, batch_size=4, seq_len=8, bptt=12,
            warmup_steps=2, eval_every=3, eval_batches=2, log_every=2, save_every=4, seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text(TEXT)
    return str(path)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run of TINY that the resumed runs must reproduce bit for bit."""
    cfg = TrainConfig(**TINY, data=data, out_dir=str(tmp_path_factory.mktemp("reference")))
    return train(cfg, progress=False)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def snapshot(directory) -> dict:
    return {p: open(os.path.join(directory, p), "rb").read() for p in sorted(os.listdir(directory))}



def test_config_rejects_unknown_keys_and_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'stepz'.*valid keys:.*steps"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ConfigError, match="'nope'"):
        TrainConfig.from_overrides(["nope=1"])


@pytest.mark.parametrize("key, value", [("steps", "10"), ("batch_size", True), ("lr", "fast"), ("residual", 1),
                                        ("betas", (0.9,)), ("mixer_options", [1])])
def test_config_rejects_wrong_types(key, value):
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_dict({key: value})


@pytest.mark.parametrize("key, value", [("steps", 0), ("batch_size", 0), ("seq_len", -1), ("bptt", 0),
                                        ("dropout", 1.0), ("lr", 0.0), ("min_lr", 1.0), ("grad_clip", -1.0),
                                        ("betas", (0.9, 1.0)), ("eval_batches", 0), ("device", "gpu7"),
                                        ("max_minutes", 0.0)])
def test_config_rejects_values_out_of_range(key, value):
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_dict({key: value})


def test_config_refuses_a_gradient_horizon_past_the_chunk_without_carried_state():
    with pytest.raises(ConfigError, match="carry_state"):
        TrainConfig.from_dict({"seq_len": 8, "bptt": 12, "carry_state": False})


def test_overrides_are_typed_and_round_trip_through_json():
    cfg = TrainConfig.from_overrides(["steps=5", "lr=1e-3", "betas=0.8,0.9", "bptt=none", "residual=true",
                                      "mixer_options={'hidden_size': 8}", "out_dir=123", "data=none"],
                                     base={"bptt": 4, "mixer": "gru"})
    assert (cfg.steps, cfg.lr, cfg.betas, cfg.bptt, cfg.residual) == (5, 1e-3, (0.8, 0.9), None, True)
    assert (cfg.mixer_options, cfg.out_dir, cfg.data, cfg.mixer) == ({"hidden_size": 8}, "123", None, "gru")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ("steps", "steps=abc", "=3"):
        with pytest.raises(ConfigError):
            TrainConfig.from_overrides([bad])


def test_learning_rate_warms_up_then_follows_a_cosine_to_min_lr():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=4, steps=20)
    assert [loop.lr_at(s, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert loop.lr_at(4, cfg) == 1.0
    assert loop.lr_at(12, cfg) == pytest.approx(0.55)  # halfway down the cosine
    assert loop.lr_at(20, cfg) == pytest.approx(0.1)
    short = TrainConfig(lr=1.0, min_lr=0.1, warmup_steps=0, steps=20, decay_steps=10)
    assert loop.lr_at(5, short) == pytest.approx(0.55) and loop.lr_at(15, short) == 0.1



def tiny_model(vocab: int = 7) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(vocab, "elman", 8, 2)


def grads(model, loss) -> list[torch.Tensor]:
    return torch.autograd.grad(loss, list(model.parameters()))


@settings(max_examples=25, deadline=None)
@given(k1=st.integers(1, 6), k2=st.integers(1, 14), c=st.integers(0, 8), b=st.integers(1, 3),
       seed=st.integers(0, 100))
def test_forward_chunk_matches_one_forward_over_the_window(k1, k2, c, b, seed):
    model = tiny_model()
    g = torch.Generator().manual_seed(seed)
    c = min(c, max(k2 - k1, 0))
    context, x = torch.randint(0, 7, (b, c), generator=g), torch.randint(0, 7, (b, k1), generator=g)
    y = torch.randint(0, 7, (b, k1), generator=g)
    state0 = detach_state(model(torch.randint(0, 7, (b, 3), generator=g))[1])
    logits, carry = loop.forward_chunk(model, x, loop.Carry(state0, context), k2)

    window = torch.cat([context, x], 1)
    full, _ = model(window, state0)  # (b, c + k1, V)
    torch.testing.assert_close(logits, full[:, c:])
    keep = max(c + k1 - max(k2 - k1, 0), 0)
    assert torch.equal(carry.context, window[:, keep:])
    expected_state = model(window[:, :keep], state0)[1] if keep else state0
    for got, want in zip(flatten_state(carry.state), flatten_state(expected_state)):
        torch.testing.assert_close(got, want)
        assert not got.requires_grad

    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    if k2 >= k1:  # the gradient flows through the whole window: same as one forward
        want = grads(model, F.cross_entropy(full[:, c:].flatten(0, 1), y.flatten()))
    else:  # the state is cut every k2 tokens: the gradient is the sum over segments started from fixed states
        with torch.no_grad():
            states = [state0] + [model(x[:, :s], state0)[1] for s in range(k2, k1, k2)]
        total = sum(F.cross_entropy(model(x[:, s:s + k2], s0)[0].flatten(0, 1), y[:, s:s + k2].flatten(),
                                    reduction="sum") for s, s0 in zip(range(0, k1, k2), states))
        want = grads(model, total / y.numel())
    for got_g, want_g in zip(grads(model, loss), want):
        torch.testing.assert_close(got_g, want_g)



def test_evaluate_equals_one_forward_per_stream():
    model = tiny_model(vocab=5)
    ids = torch.randint(0, 5, (203,), generator=torch.Generator().manual_seed(0))
    batches = StreamBatches(ids, 3, 7)
    xs, ys = zip(*(batches.get(i)[:2] for i in range(len(batches))))
    x, y = torch.cat(xs, 1), torch.cat(ys, 1)  # (3, n * 7): each row a whole stream
    with torch.no_grad():
        want = F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten()).item()
        first_two = F.cross_entropy(model(x[:, :14])[0].flatten(0, 1), y[:, :14].flatten()).item()
    model.train()
    assert evaluate(model, ids, 3, 7) == pytest.approx(want, rel=1e-5)
    assert evaluate(model, ids, 3, 7, max_batches=2) == pytest.approx(first_two, rel=1e-5)
    assert model.training
    with pytest.raises(ConfigError):
        evaluate(model, ids, 3, 7, max_batches=0)


def test_evaluate_without_carried_state_scores_each_chunk_alone():
    model = tiny_model(vocab=5)
    ids = torch.randint(0, 5, (203,), generator=torch.Generator().manual_seed(0))
    batches = StreamBatches(ids, 3, 7)
    xs, ys = zip(*(batches.get(i)[:2] for i in range(len(batches))))
    x, y = torch.stack(xs, 1).flatten(0, 1), torch.stack(ys, 1).flatten(0, 1)  # (3 n, 7): every chunk a sequence
    with torch.no_grad():
        want = F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten()).item()
    got = evaluate(model, ids, 3, 7, carry_state=False)
    assert got == pytest.approx(want, rel=1e-5)
    assert got != pytest.approx(evaluate(model, ids, 3, 7), rel=1e-5)  # the carried state does matter here


def test_training_without_carried_state_starts_every_chunk_fresh(data, tmp_path, monkeypatch):
    """Every forward of the run, training and evaluation, gets state None; with the default, later ones do not."""
    seen = {}
    for carry in (False, True):
        states = seen[carry] = []
        forward = LanguageModel.forward

        def spy(self, tokens, state=None, states=states, forward=forward):
            states.append(state is None)
            return forward(self, tokens, state)

        monkeypatch.setattr(LanguageModel, "forward", spy)
        cfg = dict(TINY, bptt=None, carry_state=carry, save_every=0)
        train(TrainConfig(**cfg, data=data, out_dir=str(tmp_path / str(carry))), progress=False)
        monkeypatch.setattr(LanguageModel, "forward", forward)
    assert all(seen[False]) and len(seen[False]) > TINY["steps"]
    assert not all(seen[True])


def test_memory_layers_reach_the_model_and_its_checkpoint(data, tmp_path):
    cfg = TrainConfig.from_overrides(["memory_layers=[1]", "memory_options={\"n_keys\": 4, \"top_k\": 2}",
                                      "residual=true"], dict(TINY, bptt=None, steps=2, save_every=0, data=data,
                                                             out_dir=str(tmp_path)))
    assert cfg.memory_layers == [1]
    result = train(cfg, progress=False)
    assert result.model.config.memory_layers == [1] and result.model.config.memory_options["n_keys"] == 4
    assert type(result.model.stack.layers[1].mlp).__name__ == "ProductKeyMemory"
    assert_same_weights(load_checkpoint(tmp_path / "checkpoint").model, result.model)
    with pytest.raises(ConfigError, match="memory_layers"):
        train(TrainConfig(**dict(TINY, memory_layers=[5]), data=data, out_dir=str(tmp_path / "bad")),
              progress=False)


def test_unigram_entropy():
    assert unigram_entropy(torch.tensor([0, 1, 2, 3] * 5), 6) == pytest.approx(2.0)
    p = torch.tensor([0.75, 0.25])
    assert unigram_entropy(torch.tensor([0, 0, 0, 1]), 2) == pytest.approx(float(-(p * p.log2()).sum()))



def test_run_writes_metrics_plot_and_a_checkpoint_of_the_final_weights(reference):
    out = reference.out_dir
    rows = open(out / "metrics.csv").read().splitlines()
    assert rows[0] == "step,train_loss,val_loss,val_bpc,lr,grad_norm,tokens_per_s"
    assert [int(r.split(",")[0]) for r in rows[1:]] == [2, 3, 4, 6, 8]  # log_every=2, eval_every=3, the end
    assert (out / "learning_curve.png").stat().st_size > 1000
    ckpt = load_checkpoint(out / "checkpoint")
    assert_same_weights(ckpt.model, reference.model)
    assert ckpt.trainer_state["step"] == 8 and ckpt.train_config["bptt"] == 12
    ids = reference.vocab.encode(TEXT)
    val = ids[len(ids) - round(len(ids) * 0.1):]  # the last 10%
    assert reference.val_loss == pytest.approx(evaluate(reference.model, val, 4, 8))
    assert reference.bits_per_char == pytest.approx(reference.val_loss / math.log(2))


def test_same_seed_same_weights(data, tmp_path, reference):
    again = train(TrainConfig(**TINY, data=data, out_dir=str(tmp_path)), progress=False)
    assert_same_weights(again.model, reference.model)


def test_stopping_early_and_resuming_ends_with_the_same_weights(data, tmp_path, reference):
    out = str(tmp_path)
    first = train(TrainConfig(**dict(TINY, steps=5, decay_steps=8), data=data, out_dir=out), progress=False)
    assert first.steps == 5
    resumed = train(TrainConfig(**TINY, data=data, out_dir=out), resume=True, progress=False)
    assert resumed.steps == 8
    assert_same_weights(resumed.model, reference.model)
    # rows cover the steps since the previous row; the one at 6 covers only step 6 after the resume at 5
    same = (2, 3, 4, 8)
    assert [r["train_loss"] for r in resumed.history if r["step"] in same] == \
        [r["train_loss"] for r in reference.history if r["step"] in same]


def interrupt_at(monkeypatch, call: int, action):
    """Make loop.train_step run ``action`` when it is called for the ``call``-th time."""
    real, calls = loop.train_step, []

    def patched(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            action()
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", patched)


def raise_interrupt():
    raise KeyboardInterrupt


def test_keyboard_interrupt_saves_a_checkpoint_that_resumes_exactly(data, tmp_path, reference, monkeypatch):
    cfg = TrainConfig(**TINY, data=data, out_dir=str(tmp_path))
    interrupt_at(monkeypatch, 7, raise_interrupt)  # during step 7: steps 1-6 are complete
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint").trainer_state["step"] == 6
    monkeypatch.undo()
    assert_same_weights(train(cfg, resume=True, progress=False).model, reference.model)


def test_ctrl_c_finishes_the_step_then_saves_and_resumes_exactly(data, tmp_path, reference, monkeypatch):
    cfg = TrainConfig(**TINY, data=data, out_dir=str(tmp_path))
    interrupt_at(monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGINT))  # a real Ctrl-C during step 3
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint").trainer_state["step"] == 3
    assert signal.getsignal(signal.SIGINT) is handler
    monkeypatch.undo()
    assert_same_weights(train(cfg, resume=True, progress=False).model, reference.model)


def test_time_budget_ends_the_run_after_a_step_and_resume_finishes_it_exactly(data, tmp_path, reference,
                                                                            monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock[0])
    real = loop.train_step

    def one_minute_step(*args, **kwargs):
        clock[0] += 60.0
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", one_minute_step)
    cfg = TrainConfig(**TINY, data=data, out_dir=str(tmp_path), max_minutes=2.5)
    stopped = train(cfg, progress=False)
    assert stopped.steps == 3 and stopped.history[-1]["step"] == 3
    assert stopped.history[-1]["val_loss"] is not None  # the last step is evaluated like a final one
    assert load_checkpoint(tmp_path / "checkpoint").trainer_state["step"] == 3
    monkeypatch.undo()
    assert_same_weights(train(TrainConfig(**TINY, data=data, out_dir=str(tmp_path)), resume=True,
                              progress=False).model, reference.model)


def test_a_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(data, tmp_path, monkeypatch):
    real = loop.train_step
    calls = []

    def nan_at_step_6(*args, **kwargs):
        calls.append(1)
        loss, grad_norm, carry = real(*args, **kwargs)
        return (loss * float("nan") if len(calls) == 6 else loss), grad_norm, carry

    monkeypatch.setattr(loop, "train_step", nan_at_step_6)
    with pytest.raises(DivergedError, match="at step 6: the model diverged"):
        train(TrainConfig(**TINY, data=data, out_dir=str(tmp_path)), progress=False)
    assert load_checkpoint(tmp_path / "checkpoint").trainer_state["step"] == 4  # save_every=4


def test_a_model_learns_a_simple_text(tmp_path):
    path = tmp_path / "abc.txt"
    path.write_text("the cat sat on the mat. " * 200)
    cfg = TrainConfig(data=str(path), out_dir=str(tmp_path / "run"), mixer="gru", d_model=16, steps=60,
                      batch_size=8, seq_len=16, lr=0.02, min_lr=0.002, warmup_steps=5, eval_every=0)
    result = train(cfg, progress=False)
    ids = result.vocab.encode(path.read_text())
    assert result.bits_per_char < 0.5 * unigram_entropy(ids, len(result.vocab))


def test_resume_refuses_a_different_model_or_text_and_keeps_the_checkpoint(data, tmp_path, reference):
    out = str(reference.out_dir)
    before = snapshot(reference.out_dir / "checkpoint")
    with pytest.raises(ConfigError, match="d_model=16 there, 32 here"):
        train(TrainConfig(**dict(TINY, d_model=32, steps=9), data=data, out_dir=out), resume=True, progress=False)
    with pytest.raises(ConfigError, match="seq_len"):
        train(TrainConfig(**dict(TINY, seq_len=4, steps=9), data=data, out_dir=out), resume=True, progress=False)
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    with pytest.raises(ConfigError, match="training text differs"):
        train(TrainConfig(**dict(TINY, steps=9), data=str(other), out_dir=out), resume=True, progress=False)
    with pytest.raises(ConfigError, match="already at step 8"):
        train(TrainConfig(**TINY, data=data, out_dir=out), resume=True, progress=False)
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        train(TrainConfig(**TINY, data=data, out_dir=out), progress=False)
    assert snapshot(reference.out_dir / "checkpoint") == before


def test_resume_without_a_checkpoint(data, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        train(TrainConfig(**TINY, data=data, out_dir=str(tmp_path)), resume=True, progress=False)


def test_texts_too_short_for_a_batch_or_for_validation(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("x" * 40)
    with pytest.raises(DataError, match="smaller batch_size or seq_len"):
        train(TrainConfig(data=str(path), out_dir=str(tmp_path), batch_size=8, seq_len=8), progress=False)
    with pytest.raises(DataError, match="validation split"):
        train(TrainConfig(data=str(path), out_dir=str(tmp_path), batch_size=2, seq_len=8), progress=False)
