"""rnnzoo.mixers.state on real (nested) mixer states: each utility against running the mixer on the rows."""
from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

from rnnzoo.blocks import Stack, StackState
from rnnzoo.errors import StateError
from rnnzoo.mixers import build_mixer
from rnnzoo.mixers.bidirectional import BidirectionalState
from rnnzoo.mixers.elman import ElmanState
from rnnzoo.mixers.jordan import JordanState
from rnnzoo.mixers.state import (detach_state, flatten_state, map_state, reset_state, select_state,
                                 unflatten_state)

D, B, T = 5, 4, 6


def stack():
    """A mixer with a nested state: StackState((ElmanState, JordanState, IndRNNState))."""
    return Stack([build_mixer(name, D) for name in ("elman", "jordan", "indrnn")]).double()


def warm(mixer, batch=B):
    return mixer(torch.randn(batch, 3, D, dtype=torch.float64))[1]


def assert_same(a, b):
    assert type(a) is type(b)
    for ta, tb in zip(flatten_state(a), flatten_state(b), strict=True):
        torch.testing.assert_close(ta, tb, rtol=0, atol=0)


def test_map_state_keeps_types():
    s = warm(stack())
    doubled = map_state(lambda t: 2 * t, s)
    assert type(doubled) is StackState and type(doubled.layers) is tuple
    assert [type(layer) for layer in doubled.layers] == [type(layer) for layer in s.layers]
    assert type(doubled.layers[1]) is JordanState
    torch.testing.assert_close(doubled.layers[0].h, 2 * s.layers[0].h)
    bi = BidirectionalState(ElmanState(torch.ones(2, 3)), None)
    mapped = map_state(torch.neg, bi)
    assert type(mapped) is BidirectionalState and mapped.backward is None
    torch.testing.assert_close(mapped.forward.h, -torch.ones(2, 3))
    with pytest.raises(StateError, match="list"):
        map_state(torch.neg, [torch.ones(1)])


def test_detach_state_cuts_the_graph():
    mixer = stack()
    s = warm(mixer)
    assert all(t.requires_grad for t in flatten_state(s))
    d = detach_state(s)
    assert type(d) is StackState and not any(t.requires_grad for t in flatten_state(d))
    assert_same(d, map_state(lambda t: t.detach().clone(), s))
    y, _ = mixer(torch.randn(B, 2, D, dtype=torch.float64), d)
    y.sum().backward()
    assert all(p.grad is not None for p in mixer.parameters())


@pytest.mark.parametrize("index", [
    torch.tensor([2, 0]),
    [3, 1, 1],
    slice(1, 3),
    torch.tensor([True, False, True, True]),
], ids=["tensor", "list", "slice", "mask"])
def test_select_state_equals_running_the_selected_rows(index):
    mixer = stack()
    s, x = warm(mixer), torch.randn(B, T, D, dtype=torch.float64)
    y, s_T = mixer(x, s)
    rows = torch.arange(B)[index if not isinstance(index, list) else torch.tensor(index)]
    y_sel, s_sel = mixer(x[rows], select_state(s, index))
    torch.testing.assert_close(y_sel, y[rows])
    for a, b in zip(flatten_state(s_sel), flatten_state(select_state(s_T, index)), strict=True):
        torch.testing.assert_close(a, b)
    assert type(s_sel) is StackState


def test_reset_state_restarts_the_done_rows():
    mixer = stack()
    s, x = warm(mixer), torch.randn(B, T, D, dtype=torch.float64)
    done = torch.tensor([True, False, False, True])
    fresh = mixer.init_state(B, dtype=torch.float64)
    y, _ = mixer(x, reset_state(s, done, fresh))
    y_fresh, _ = mixer(x)
    y_kept, _ = mixer(x, s)
    torch.testing.assert_close(y[done], y_fresh[done])
    torch.testing.assert_close(y[~done], y_kept[~done])
    with pytest.raises(StateError, match="structure"):
        reset_state(s, done, ElmanState(torch.zeros(B, D)))


def test_flatten_unflatten_round_trip():
    s = warm(stack())
    flat = flatten_state(s)
    assert len(flat) == 3 and all(isinstance(t, torch.Tensor) for t in flat)
    assert_same(unflatten_state(s, flat), s)
    loaded = unflatten_state(stack().init_state(B), [t.detach().clone() for t in flat])
    assert_same(loaded, detach_state(s))
    with pytest.raises(StateError, match="fewer"):
        unflatten_state(s, flat[:2])
    with pytest.raises(StateError, match="more"):
        unflatten_state(s, flat + flat[:1])


class _Pair(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor


def test_utilities_on_a_plain_namedtuple():
    s = _Pair(torch.arange(6.0).reshape(3, 2), torch.arange(3.0))
    picked = select_state(s, [2, 0])
    assert type(picked) is _Pair
    torch.testing.assert_close(picked.b, torch.tensor([2.0, 0.0]))
    reset = reset_state(s, torch.tensor([False, True, False]), _Pair(torch.zeros(3, 2), -torch.ones(3)))
    torch.testing.assert_close(reset.b, torch.tensor([0.0, -1.0, 2.0]))
    torch.testing.assert_close(reset.a[1], torch.zeros(2))
    torch.testing.assert_close(reset.a[[0, 2]], s.a[[0, 2]])


def test_select_state_with_a_list_of_bools_masks_rows():
    s = _Pair(torch.arange(4.0), torch.arange(4.0) * 10)
    picked = select_state(s, [True, False, True, True])
    torch.testing.assert_close(picked.a, torch.tensor([0.0, 2.0, 3.0]))
    assert select_state(s, []).a.shape == (0,)
