"""Long short-term memory (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000).

Weights in torch.nn.LSTM's layout and gate order (i, f, g, o): weight_ih (4H, D), weight_hh (4H, P),
bias_ih and bias_hh (4H,), weight_hr (P, H) when there is a projection, else P = H.
Shapes: x (B, T, D), h (B, P), c (B, H); the output is h_t at every step, y (B, T, P).

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi + w_ci * c_{t-1})
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf + w_cf * c_{t-1})
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    c_t = f_t * c_{t-1} + i_t * g_t
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho + w_co * c_t)
    h_t = W_hr (o_t * tanh(c_t))

Variants, each off when its argument is None:
- peepholes (Gers & Schmidhuber 2000): the diagonal terms w_ci, w_cf, w_co (H,) above; without them it is
  torch.nn.LSTM's cell.
- projection (Sak et al. 2014, torch's proj_size): W_hr; without it h_t = o_t * tanh(c_t).
- layer norm (Ba et al. 2016): the 4H pre-activations from the input and from the recurrence are
  normalised separately, the biases added after, and c_t is normalised before the output tanh:
      [i f g o] = LN_x(W_ih x_t) + LN_h(W_hh h_{t-1}) + b_ih + b_hh   (+ the peephole terms)
      h_t = W_hr (o_t * tanh(LN_c(c_t)))
  Each LN has its own gain and bias; c_t itself (the carried cell) is not normalised.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from rnnzoo.errors import ConfigError
from rnnzoo.ops.checks import CLASSIC_MODES, check_choice
from rnnzoo.ops.loop import scan_cell

LN_EPS = 1e-5


class LSTMPeephole(NamedTuple):
    w_ci: torch.Tensor  # (H,) c_{t-1} into the input gate
    w_cf: torch.Tensor  # (H,) c_{t-1} into the forget gate
    w_co: torch.Tensor  # (H,) c_t into the output gate


class LSTMLayerNorm(NamedTuple):
    ih_weight: torch.Tensor  # (4H,) gain of LN_x
    ih_bias: torch.Tensor    # (4H,)
    hh_weight: torch.Tensor  # (4H,) gain of LN_h
    hh_bias: torch.Tensor    # (4H,)
    c_weight: torch.Tensor   # (H,) gain of LN_c
    c_bias: torch.Tensor     # (H,)


def lstm_input(x: torch.Tensor, weight_ih: torch.Tensor, bias_ih: torch.Tensor | None = None,
               layer_norm: LSTMLayerNorm | None = None) -> torch.Tensor:
    """The input's share of the gate pre-activations, W_ih x + b_ih (or LN_x(W_ih x) + b_ih); x (..., D) -> (..., 4H).

    It does not depend on the state, so the sequence op computes it for all steps at once.
    """
    xw = x @ weight_ih.T  # (..., 4H)
    if layer_norm is not None:
        xw = F.layer_norm(xw, xw.shape[-1:], layer_norm.ih_weight, layer_norm.ih_bias, LN_EPS)
    if bias_ih is not None:
        xw = xw + bias_ih
    return xw


def lstm_cell(xw_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], weight_hh: torch.Tensor,
              bias_hh: torch.Tensor | None = None, *, weight_hr: torch.Tensor | None = None,
              peephole: LSTMPeephole | None = None,
              layer_norm: LSTMLayerNorm | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step given ``xw_t = lstm_input(x_t, ...)`` (B, 4H) and state (h (B, P), c (B, H)); returns (h_t, c_t)."""
    h, c = state
    hw = h @ weight_hh.T  # (B, 4H)
    if layer_norm is not None:
        hw = F.layer_norm(hw, hw.shape[-1:], layer_norm.hh_weight, layer_norm.hh_bias, LN_EPS)
    pre = xw_t + hw
    if bias_hh is not None:
        pre = pre + bias_hh
    i, f, g, o = pre.chunk(4, dim=-1)  # each (B, H)
    if peephole is not None:
        i = i + peephole.w_ci * c
        f = f + peephole.w_cf * c
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
    if peephole is not None:
        o = o + peephole.w_co * c
    c_out = c
    if layer_norm is not None:
        c_out = F.layer_norm(c, c.shape[-1:], layer_norm.c_weight, layer_norm.c_bias, LN_EPS)
    h = torch.sigmoid(o) * torch.tanh(c_out)  # (B, H)
    if weight_hr is not None:
        h = h @ weight_hr.T  # (B, P)
    return h, c


def lstm(x: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor, bias_ih: torch.Tensor | None = None,
         bias_hh: torch.Tensor | None = None, *, weight_hr: torch.Tensor | None = None,
         peephole: LSTMPeephole | None = None, layer_norm: LSTMLayerNorm | None = None,
         initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
         mode: str = "auto") -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Run an LSTM over ``x``; returns (y (B, T, P), (h_T (B, P), c_T (B, H))).

    ``mode='fused'`` is torch.lstm, the kernel behind torch.nn.LSTM, which has no peepholes or layer norm;
    ``mode='auto'`` takes it when it applies and the reference loop otherwise.
    """
    check_choice("lstm", "mode", mode, CLASSIC_MODES)
    if (bias_ih is None) != (bias_hh is None):
        raise ConfigError("lstm: pass both bias_ih and bias_hh, or neither")
    B, H = x.shape[0], weight_hh.shape[0] // 4
    P = H if weight_hr is None else weight_hr.shape[0]
    if initial_state is None:
        initial_state = (x.new_zeros(B, P), x.new_zeros(B, H))
    extras = [name for name, v in (("peepholes", peephole), ("layer norm", layer_norm)) if v is not None]
    if weight_hr is not None and P >= H:
        extras.append(f"a projection to {P} >= hidden size {H}")
    if mode == "fused" and extras:
        raise ConfigError(f"lstm: torch's fused kernel does not support {', '.join(extras)}; "
                          "use mode='reference' or mode='auto'")
    if mode != "reference" and not extras:
        return lstm_fused(x, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, initial_state)
    xw = lstm_input(x, weight_ih, bias_ih, layer_norm)  # (B, T, 4H), hoisted out of the loop

    def cell(xw_t, state):
        state = lstm_cell(xw_t, state, weight_hh, bias_hh, weight_hr=weight_hr, peephole=peephole,
                          layer_norm=layer_norm)
        return state[0], state

    return scan_cell(cell, xw, tuple(initial_state))


def lstm_fused(x, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, initial_state):
    """torch's fused kernel; it takes the projection as the last weight and spots it from h's width."""
    has_bias = bias_ih is not None
    params = [weight_ih, weight_hh] + ([bias_ih, bias_hh] if has_bias else [])
    if weight_hr is not None:
        params.append(weight_hr)
    h0, c0 = (s.unsqueeze(0).contiguous() for s in initial_state)
    # Training mode when autograd is on: cuDNN's backward needs it; with dropout 0 it changes nothing else.
    y, h_n, c_n = torch.lstm(x, (h0, c0), params, has_bias, 1, 0.0, torch.is_grad_enabled(), False, True)
    return y, (h_n[0], c_n[0])
