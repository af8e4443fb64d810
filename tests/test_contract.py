"""The mixer contract (rnnzoo/mixers/base.py), checked for every registered mixer and option set.

Cases come from the registry crossed with tests/mixer_configs.py, so a newly registered mixer is covered.
Sizes are tiny and the dtype is float64, so the comparisons can be tight.
"""
from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mixer_configs import MODES, mixer_cases
from torch.func import functional_call

from rnnzoo.errors import ConfigError, NotCausalError, ShapeError, StateError, UnknownNameError
from rnnzoo.mixers import available_mixers, build_mixer, describe_mixers, mixer_options
from rnnzoo.mixers.bidirectional import BidirectionalState
from rnnzoo.mixers.state import check_state, flatten_state, map_state, select_state, unflatten_state

D, B = 8, 3
TIGHT = dict(rtol=1e-10, atol=1e-10)
CASES = pytest.mark.parametrize("name, options", mixer_cases())


def make(name, options, **extra):
    """A float64 mixer in eval mode (no dropout), with seeded weights."""
    torch.manual_seed(0)
    return build_mixer(name, D, **options, **extra).double().eval()


def randn(*shape, gen=None):
    return torch.randn(*shape, dtype=torch.float64, generator=gen)


def warm_state(mixer, batch=B, steps=3):
    """A typical, non-zero state: the one left after reading a short random prefix."""
    _, state = mixer(randn(batch, steps, mixer.d_model))
    return map_state(torch.Tensor.detach, state)


def leaf_state(state):
    """A copy of ``state`` whose floating tensors are leaves that require grad."""
    return map_state(lambda t: t.detach().clone().requires_grad_(t.is_floating_point()), state)


def float_tensors(state):
    return [t for t in flatten_state(state) if t.is_floating_point()]


def assert_states_close(actual, expected, **tol):
    assert type(actual) is type(expected)
    a, e = flatten_state(actual), flatten_state(expected)
    assert len(a) == len(e)
    for ta, te in zip(a, e):
        torch.testing.assert_close(ta, te, **tol)


def probe_loss(y, state):
    """A fixed, non-symmetric scalar of the output and the final state, to take gradients of."""
    return sum((t * torch.linspace(-1, 2, t.numel(), dtype=t.dtype).reshape(t.shape)).sum()
               for t in [y, *float_tensors(state)])


def run_steps(mixer, x, state):
    ys = []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)
        ys.append(y_t)
    return torch.stack(ys, dim=1), state


def skip_unless_causal(mixer):
    if not mixer.causal:
        pytest.skip("not causal: no step() and no carried state to split on")


@CASES
def test_step_loop_equals_forward(name, options):
    mixer = make(name, options)
    skip_unless_causal(mixer)
    x = randn(B, 7, D)
    for s0 in (None, warm_state(mixer)):
        y, s = mixer(x, s0)
        y_steps, s_steps = run_steps(mixer, x, s0)
        torch.testing.assert_close(y_steps, y, **TIGHT)
        assert_states_close(s_steps, s, **TIGHT)


@CASES
def test_forward_in_two_chunks_equals_one(name, options):
    mixer = make(name, options)
    skip_unless_causal(mixer)
    s0 = warm_state(mixer)

    @settings(max_examples=10, deadline=None)
    @given(T=st.integers(1, 12), seed=st.integers(0, 2**31 - 1), data=st.data())
    def check(T, seed, data):
        x = randn(B, T, D, gen=torch.Generator().manual_seed(seed))
        y, s = mixer(x, s0)
        for t in (0, T, data.draw(st.integers(0, T), label="t")):
            y1, s1 = mixer(x[:, :t], s0)
            y2, s2 = mixer(x[:, t:], s1)
            torch.testing.assert_close(torch.cat([y1, y2], dim=1), y, **TIGHT)
            assert_states_close(s2, s, **TIGHT)

    check()


@CASES
def test_causal_and_rows_independent(name, options):
    mixer = make(name, options)
    skip_unless_causal(mixer)
    T = 8
    x, s0 = randn(B, T, D), warm_state(mixer)
    y, _ = mixer(x, s0)
    for t in range(1, T):
        x_new = x.clone()
        x_new[:, t:] += 3 * randn(B, T - t, D)
        y_new, _ = mixer(x_new, s0)
        torch.testing.assert_close(y_new[:, :t], y[:, :t])
        assert not torch.allclose(y_new[:, t:], y[:, t:]), "the perturbed steps should change the output"
    x_new = x.clone()
    x_new[1:] += 3 * randn(B - 1, T, D)
    y_new, _ = mixer(x_new, s0)
    torch.testing.assert_close(y_new[:1], y[:1], msg="batch row 0 changed when only the other rows did")


@CASES
def test_gradients_reach_initial_state(name, options):
    mixer = make(name, options)
    s0 = leaf_state(warm_state(mixer))
    x = randn(B, 5, D).requires_grad_()
    y, s = mixer(x, s0)
    probe_loss(y, s).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for i, t in enumerate(float_tensors(s0)):
        assert t.grad is not None and t.grad.abs().sum() > 0, f"no gradient reaches initial-state tensor {i}"


def _gradcheck_fn(mixer, template, param_names):
    """(x, *state tensors, *parameters) -> (y, *final state tensors), for gradcheck."""
    n_state = len(flatten_state(template))

    def fn(x, *flat):
        state = unflatten_state(template, list(flat[:n_state]))
        params = dict(zip(param_names, flat[n_state:]))
        y, s = functional_call(mixer, params, (x, state))
        return (y, *float_tensors(s))

    return fn


@CASES
def test_gradcheck(name, options):
    mixer = make(name, options)
    s0 = leaf_state(warm_state(mixer, batch=2))
    x = randn(2, 3, D).requires_grad_()
    flat = flatten_state(s0)
    fn = _gradcheck_fn(mixer, s0, [])
    assert torch.autograd.gradcheck(fn, (x, *flat))
    params = {n: p.detach().clone().requires_grad_() for n, p in mixer.named_parameters()}
    fn = _gradcheck_fn(mixer, s0, list(params))
    assert torch.autograd.gradcheck(fn, (x, *flat, *params.values()), fast_mode=True)


@CASES
def test_empty_sequence(name, options):
    mixer = make(name, options)
    s0 = warm_state(mixer)
    y, s = mixer(randn(B, 0, D), s0)
    assert y.shape == (B, 0, mixer.d_out)
    assert_states_close(s, s0, rtol=0, atol=0)
    y, s = mixer(randn(B, 0, D))
    assert y.shape == (B, 0, mixer.d_out)
    assert_states_close(s, mixer.init_state(B, dtype=torch.float64), rtol=0, atol=0)


@CASES
def test_input_state_is_not_modified(name, options):
    mixer = make(name, options)
    s0, x = warm_state(mixer), randn(B, 4, D)
    x_before = x.clone()
    before = [(t, t.clone(), t._version) for t in flatten_state(s0)]
    _, s = mixer(x, s0)
    if mixer.causal:
        before += [(t, t.clone(), t._version) for t in flatten_state(s)]
        mixer.step(x[:, 0], s0)
        mixer.step(x[:, 1], s)
    for t, value, version in before:
        assert t._version == version, "forward/step edited a state passed in, in place"
        torch.testing.assert_close(t, value, rtol=0, atol=0)
    torch.testing.assert_close(x, x_before, rtol=0, atol=0)


def _foreign_state(name, batch):
    """The state of some other registered mixer, of a different type."""
    own = type(build_mixer(name, D).init_state(1))
    for other in available_mixers():
        state = build_mixer(other, D).init_state(batch, dtype=torch.float64)
        if type(state) is not own:
            return state
    pytest.skip("no other registered mixer has a different state type")


@CASES
def test_bad_inputs_raise_clear_errors(name, options):
    mixer = make(name, options)
    x = randn(B, 4, D)
    calls = [mixer.forward] + ([lambda x, s=None: mixer.step(x[:, 0], s)] if mixer.causal else [])
    with pytest.raises(ShapeError, match="shape"):
        mixer(x[:, 0])
    if mixer.causal:
        with pytest.raises(ShapeError, match="shape"):
            mixer.step(x)
    with pytest.raises(ShapeError, match="width"):
        mixer(randn(B, 4, D + 1))
    with pytest.raises(ShapeError, match="floating"):
        mixer(torch.ones(B, 4, D, dtype=torch.long))
    bad_states = {
        "batch size": mixer.init_state(B + 1, dtype=torch.float64),
        "dtype": mixer.init_state(B, dtype=torch.float32),
        "type (a state from another mixer)": _foreign_state(name, B),
        "type (a bare tensor)": torch.zeros(B, D, dtype=torch.float64),
    }
    for what, state in bad_states.items():
        for call in calls:
            try:
                call(x, state)
            except StateError as err:
                assert "Pass state=None" in str(err)
            else:
                pytest.fail(f"a state with the wrong {what} was accepted")


@CASES
def test_bad_options_raise_config_errors(name, options):
    valid = mixer_options(name)
    with pytest.raises(ConfigError) as err:
        build_mixer(name, D, **options, no_such_option=1)
    for option in valid:
        assert option in str(err.value), f"the error should list the valid option {option!r}"
    for option, default in valid.items():
        if isinstance(default, bool):
            with pytest.raises(ConfigError, match=option):
                build_mixer(name, D, **{**options, option: "yes"})
    if "mode" in valid:
        with pytest.raises(ConfigError, match="mode"):
            build_mixer(name, D, **{**options, "mode": "no-such-mode"})
    with pytest.raises((ShapeError, ConfigError)):
        build_mixer(name, 0, **options)


def test_unknown_mixer_name():
    with pytest.raises(UnknownNameError) as err:
        build_mixer("no-such-mixer", D)
    assert isinstance(err.value, KeyError)
    for name in available_mixers():
        assert re.search(rf"\b{re.escape(name)}\b", str(err.value))


def test_registry_describes_every_mixer():
    descriptions = describe_mixers()
    assert sorted(descriptions) == available_mixers()
    assert all(isinstance(d, str) and d.strip() for d in descriptions.values())
    for name in available_mixers():
        assert "d_model" not in mixer_options(name) and mixer_options(name)["bidirectional"] is False


@CASES
def test_bidirectional(name, options):
    bi = make(name, options, bidirectional=True)
    T = 6
    x = randn(B, T, D)
    assert not bi.causal
    with pytest.raises(NotCausalError):
        bi.step(x[:, 0])
    s0 = BidirectionalState(warm_state(bi.fwd), warm_state(bi.bwd))
    y, s = bi(x, s0)
    assert y.shape == (B, T, D) and bi.d_out == D
    if bi.fwd.causal:
        y_f, s_f = run_steps(bi.fwd, x, s0.forward)
        y_b, s_b = run_steps(bi.bwd, x.flip(1), s0.backward)
    else:
        (y_f, s_f), (y_b, s_b) = bi.fwd(x, s0.forward), bi.bwd(x.flip(1), s0.backward)
    expected = bi.out_proj(torch.cat([y_f, y_b.flip(1)], dim=-1))
    torch.testing.assert_close(y, expected, **TIGHT)
    assert_states_close(s, BidirectionalState(s_f, s_b), **TIGHT)
    y_late, _ = bi(torch.cat([x[:, :3], randn(B, T - 3, D)], dim=1), s0)
    assert not torch.allclose(y_late[:, 0], y[:, 0]), "the first output should see the end of the sequence"


@CASES
def test_output_width_and_dtype(name, options):
    torch.manual_seed(0)
    mixer = build_mixer(name, D, **options).eval()
    assert mixer.d_model == D and mixer.d_out == D
    x = torch.randn(B, 5, D)
    y, s = mixer(x)
    assert y.shape == (B, 5, D) and y.dtype == torch.float32
    check_state(s, mixer.init_state(B, device="meta", dtype=torch.float32), x.device, name)
    assert all(t.dtype == torch.float32 for t in float_tensors(s))


@CASES
def test_modes_agree(name, options):
    valid = mixer_options(name)
    if "mode" not in valid:
        pytest.skip("no mode option")
    mixers = {}
    for mode in MODES:
        try:
            mixers[mode] = make(name, {**options, "mode": mode})
        except ConfigError:
            continue
    if len(mixers) < 2:
        pytest.skip(f"accepts only one mode of {MODES}")
    (first, base), *rest = mixers.items()
    x, s0 = randn(B, 6, D), warm_state(base)

    def run(mixer):
        xm, sm = x.clone().requires_grad_(), leaf_state(s0)
        y, s = mixer(xm, sm)
        probe_loss(y, s).backward()
        return [y, *flatten_state(s), xm.grad, *[t.grad for t in float_tensors(sm)]]

    expected = run(base)
    for mode, mixer in rest:
        mixer.load_state_dict(base.state_dict())
        for got, want in zip(run(mixer), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8,
                                       msg=lambda m: f"mode {mode!r} vs {first!r}: {m}")


def test_build_mixer_refuses_an_output_width_other_than_d_model():
    with pytest.raises(ConfigError, match="width d_model=8"):
        build_mixer("elman", 8, hidden_size=4, project_output=False)


@CASES
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@settings(max_examples=5, deadline=None)
@given(lengths=st.lists(st.integers(0, 9), min_size=B, max_size=B), with_state=st.booleans())
def test_padded_batch_equals_each_row_alone(name, options, bidirectional, lengths, with_state):
    mixer = make(name, options, bidirectional=bidirectional)
    T = max(lengths) + 1
    x = randn(B, T, D)
    state = warm_state(mixer) if with_state else None
    y, final = mixer(x, state, lengths=torch.tensor(lengths))
    assert y.shape == (B, T, D)
    for b, L in enumerate(lengths):
        row_state = None if state is None else select_state(state, [b])
        y_b, s_b = mixer(x[b:b + 1, :L], row_state)
        torch.testing.assert_close(y[b:b + 1, :L], y_b, **TIGHT)
        assert not y[b, L:].any(), "padded positions must be zero"
        assert_states_close(select_state(final, [b]), s_b, **TIGHT)


def test_lengths_are_checked():
    mixer = make("elman", {})
    x = randn(B, 4, D)
    with pytest.raises(ShapeError, match="lengths must lie in"):
        mixer(x, lengths=torch.tensor([1, 5, 2]))
    with pytest.raises(ShapeError, match="shape"):
        mixer(x, lengths=torch.tensor([1, 2]))
    with pytest.raises(ShapeError, match="integers"):
        mixer(x, lengths=torch.tensor([1.0, 2.0, 3.0]))
