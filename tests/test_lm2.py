"""LM2's memory module (rnnzoo/mixers/lm2.py) against the paper's equations computed here one row and one token at
a time from the weights; both forms, split invariance, top-k and the gates."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError
from rnnzoo.mixers import build_mixer

D, B, T = 6, 2, 7
TIGHT = dict(rtol=1e-10, atol=1e-10)
OPTIONS = [
    {"n_slots": 4},
    {"n_slots": 9, "d_mem": 4, "top_k": 3},
    {"n_slots": 5, "top_k": 2, "learn_memory": False},
]


def make(**options):
    torch.manual_seed(0)
    return build_mixer("lm2", D, **options).double()


def sigmoid(z):
    return 1 / (1 + torch.exp(-z))


def by_hand(m, x, memory):
    """y (B, T, d_model), the final bank and the gates (g_in, g_forget, g_out), each (B, T, D): the equations of
    the module docstring for one row and one token at a time."""
    Wq, Wk, Wv = m.q_proj.weight, m.k_proj.weight, m.v_proj.weight
    ys, banks, gates = [], [], []
    for b in range(x.shape[0]):
        M, row_y, row_gates = memory[b], [], []
        for t in range(x.shape[1]):
            x_t = x[b, t]
            q, K, V = Wq @ x_t, M @ Wk.T, M @ Wv.T
            s = K @ q / math.sqrt(m.d_mem)
            if m.top_k is not None:
                s = torch.where(s >= s.sort(descending=True).values[m.top_k - 1], s, -math.inf)
            a = torch.exp(s - s.max()) / torch.exp(s - s.max()).sum()
            e = a @ V
            g_out = sigmoid(m.out_gate.weight @ e + m.out_gate.bias)
            g_in = sigmoid(m.in_gate.weight @ x_t + m.in_gate.bias)
            g_forget = sigmoid(m.forget_gate.weight @ e + m.forget_gate.bias)
            read = g_out * e
            row_y.append(x_t + (read if m.o_proj is None else m.o_proj.weight @ read))
            M = g_in * torch.tanh(e) + g_forget * M  # the same write for every slot (row)
            row_gates.append(torch.stack([g_in, g_forget, g_out]))
        ys.append(torch.stack(row_y))
        banks.append(M)
        gates.append(torch.stack(row_gates, 1))  # (3, T, D)
    return torch.stack(ys), torch.stack(banks), torch.stack(gates, 1)  # (3, B, T, D)


def warm(m):
    """A bank that is not the starting one, so the tests do not lean on the identity start."""
    gen = torch.Generator().manual_seed(1)
    return m.init_state(B)._replace(memory=torch.randn(B, m.n_slots, m.d_mem, dtype=torch.float64, generator=gen))


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("mode", ["fused", "reference"])
def test_forward_and_step_equal_the_equations(options, mode):
    m = make(**options, mode=mode)
    x = torch.randn(B, T, D, dtype=torch.float64)
    for s0 in (None, warm(m)):
        bank0 = (s0 or m.init_state(B)).memory
        y_ref, bank_ref, _ = by_hand(m, x, bank0)
        y, s = m(x, s0)
        torch.testing.assert_close(y, y_ref, **TIGHT)
        torch.testing.assert_close(s.memory, bank_ref, **TIGHT)
        state = s0
        for t in range(T):
            y_t, state = m.step(x[:, t], state)
            torch.testing.assert_close(y_t, y_ref[:, t], **TIGHT)
        torch.testing.assert_close(state.memory, bank_ref, **TIGHT)


def test_starting_bank_is_identity_like_and_learned():
    m = make(n_slots=3, d_mem=5)
    torch.testing.assert_close(m.init_state(2).memory, torch.eye(3, 5, dtype=torch.float64).expand(2, 3, 5))
    wide = make(n_slots=8, d_mem=5)
    bank = wide.memory.detach()
    torch.testing.assert_close(bank[:5], torch.eye(5, dtype=torch.float64))
    assert torch.linalg.matrix_rank(bank[5:]) == 3, "slots past the width should start distinct"
    y, s = wide(torch.randn(B, T, D, dtype=torch.float64))
    (y.sum() + s.memory.sum()).backward()
    assert wide.memory.grad.abs().sum() > 0, "a learned bank should receive gradients"
    fixed = make(learn_memory=False)
    assert "memory" not in dict(fixed.named_parameters()) and "memory" in fixed.state_dict()


@pytest.mark.parametrize("mode", ["fused", "reference"])
def test_split_invariance(mode):
    m = make(n_slots=5, top_k=3, mode=mode)
    s0 = warm(m)

    @settings(max_examples=10, deadline=None)
    @given(length=st.integers(1, 10), seed=st.integers(0, 2**31 - 1), data=st.data())
    def check(length, seed, data):
        x = torch.randn(B, length, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        y, s = m(x, s0)
        cut = data.draw(st.integers(0, length), label="cut")
        y1, s1 = m(x[:, :cut], s0)
        y2, s2 = m(x[:, cut:], s1)
        torch.testing.assert_close(torch.cat([y1, y2], 1), y, **TIGHT)
        torch.testing.assert_close(s2.memory, s.memory, **TIGHT)

    check()


@pytest.mark.parametrize("mode", ["fused", "reference"])
def test_top_k_of_all_slots_equals_dense_and_fewer_differ(mode):
    dense = make(n_slots=5, mode=mode)
    x, s0 = torch.randn(B, T, D, dtype=torch.float64), warm(dense)
    y, s = dense(x, s0)
    every = make(n_slots=5, top_k=5, mode=mode)
    every.load_state_dict(dense.state_dict())
    y_all, s_all = every(x, s0)
    torch.testing.assert_close(y_all, y, **TIGHT)
    torch.testing.assert_close(s_all.memory, s.memory, **TIGHT)
    sparse = make(n_slots=5, top_k=2, mode=mode)
    sparse.load_state_dict(dense.state_dict())
    assert not torch.allclose(sparse(x, s0)[0], y), "reading 2 of 5 slots should change the output"


def test_gates_are_the_equations_and_lie_in_0_1():
    m = make(n_slots=9, d_mem=4, top_k=3)
    x, s0 = torch.randn(B, T, D, dtype=torch.float64), warm(m)
    gates = m.gates(x, s0)
    _, _, expected = by_hand(m, x, s0.memory)
    for got, want in zip(gates, expected):
        torch.testing.assert_close(got, want, **TIGHT)
        assert got.shape == (B, T, 4) and bool(((got > 0) & (got < 1)).all())
    loud = 1e4 * x
    for g in m.gates(loud, s0):
        assert bool(((g >= 0) & (g <= 1)).all())
    y, s = m(loud, s0)
    assert torch.isfinite(y).all() and torch.isfinite(s.memory).all()
    bound = s0.memory.abs().amax() + T  # |M_{t+1}| <= |g_in tanh e| + |g_forget M_t| < 1 + |M_t|
    assert s.memory.abs().amax() <= bound
    assert m.gates(x[:, :0]).g_in.shape == (B, 0, 4)


def test_bad_options():
    with pytest.raises(ConfigError, match="top_k"):
        build_mixer("lm2", D, n_slots=4, top_k=5)
    with pytest.raises(ConfigError, match="n_slots"):
        build_mixer("lm2", D, n_slots=0)
    with pytest.raises(ConfigError, match="d_mem"):
        build_mixer("lm2", D, d_mem=2.5)



def test_window_adds_the_memory_read_to_sliding_window_attention():
    torch.manual_seed(3)
    mixer = build_mixer("lm2", D, n_slots=4, window=3, n_heads=3).double()
    x = torch.randn(2, 9, D, dtype=torch.float64)
    y, state = mixer(x)
    attention_out, _ = mixer.attention(x)
    attention, mixer.attention = mixer.attention, None  # the same memory module with E_attn = x
    bare, bare_state = mixer(x)
    mixer.attention = attention
    torch.testing.assert_close(y - attention_out, bare - x)
    torch.testing.assert_close(state.memory, bare_state.memory)
    with pytest.raises(ConfigError, match="n_heads is the attention's"):
        build_mixer("lm2", D, n_heads=2)
