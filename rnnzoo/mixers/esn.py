"""Echo state network (Jaeger 2001; Lukosevicius 2012, "A practical guide to applying echo state networks"): a
fixed random recurrent reservoir and a trained linear readout."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError, DataError, ShapeError
from rnnzoo.mixers.base import Mixer, check_bool, check_input, check_int, check_lengths, check_real
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.reservoir import esn

# Time steps per block when fit_readout accumulates the normal equations, to bound the float64 copies.
FIT_CHUNK = 4096


class ESNState(NamedTuple):
    h: torch.Tensor  # (B, N)


@register_mixer("esn", "Echo state network (Jaeger 2001): fixed sparse leaky tanh reservoir, linear readout")
class ESN(Mixer):
    """Leaky-integrator echo state network with a linear readout, the only trained part.

        u_t = W_in x_t + b,   h_t = (1 - a) h_{t-1} + a tanh(u_t + W h_{t-1}),   y_t = W_out [h_t, x_t] + b_out

    W_in (N, d_model) ~ U(-input_scaling, input_scaling), b (N,) ~ U(-bias_scaling, bias_scaling), and W (N, N)
    sparse (each entry nonzero with probability ``density``, U(-1, 1)) and rescaled to the exact
    ``spectral_radius`` (the largest |eigenvalue|, computed at init). These are fixed buffers, saved in the
    state_dict; the readout ``nn.Linear`` is the only parameter, so gradient training works as for any mixer,
    and ``fit_readout`` solves for it in closed form (ridge regression), the classic way to train an ESN.

    Options: ``n_reservoir`` N (default 4 d_model), ``spectral_radius``, ``leak`` a in (0, 1], ``input_scaling``,
    ``density``, ``bias_scaling``, ``seed`` (an int draws the reservoir from its own generator, independent of
    torch's global one; None draws from the global one, like every other initialisation), ``include_input``
    (the readout also sees x_t, as in the guide's recommended architecture).
    """

    def __init__(self, d_model: int, n_reservoir: int | None = None, spectral_radius: float = 0.9,
                 leak: float = 1.0, input_scaling: float = 1.0, density: float = 0.1, bias_scaling: float = 0.1,
                 seed: int | None = None, include_input: bool = True):
        super().__init__(d_model)
        N = 4 * d_model if n_reservoir is None else n_reservoir
        check_int("esn", "n_reservoir", N)
        check_real("esn", "spectral_radius", spectral_radius, 0)
        check_real("esn", "leak", leak, 0, 1, low_open=True)
        check_real("esn", "input_scaling", input_scaling, 0)
        check_real("esn", "density", density, 0, 1, low_open=True)
        check_real("esn", "bias_scaling", bias_scaling, 0)
        if seed is not None:
            check_int("esn", "seed", seed, minimum=0)
        check_bool("esn", "include_input", include_input)
        self.n_reservoir, self.leak, self.include_input = N, float(leak), include_input
        W_in, b, W = draw_reservoir(d_model, N, spectral_radius, input_scaling, density, bias_scaling, seed)
        dtype = torch.get_default_dtype()
        self.register_buffer("W_in", W_in.to(dtype))  # (N, d_model)
        self.register_buffer("b", b.to(dtype))  # (N,)
        self.register_buffer("W", W.to(dtype))  # (N, N)
        self.readout = nn.Linear(N + (d_model if include_input else 0), d_model)

    def init_state(self, batch_size, device=None, dtype=None) -> ESNState:
        dtype = dtype or self.W.dtype
        return ESNState(torch.zeros(batch_size, self.n_reservoir, device=device, dtype=dtype))

    def _forward(self, x, state):
        h, h_T = self._reservoir(x, state.h)  # (B, T, N)
        return self.readout(self._features(h, x)), ESNState(h_T)

    def _step(self, x_t, state):
        h, _ = self._reservoir(x_t.unsqueeze(1), state.h)  # (B, 1, N)
        h = h[:, 0]  # (B, N)
        return self.readout(self._features(h, x_t)), ESNState(h)

    def _reservoir(self, x, h0):
        u = F.linear(x, self.W_in, self.b)  # (B, T, N): the input drive of every step in one matmul
        return esn(u, self.W, self.leak, h0)

    def _features(self, h, x):
        return torch.cat([h, x], dim=-1) if self.include_input else h  # (..., N [+ d_model])

    def fit_readout(self, x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-6, washout: int = 0,
                    lengths: torch.Tensor | None = None) -> float:
        """Set the readout to the ridge-regression fit of targets ``y`` from the reservoir run over ``x``.

        x, y (B, T, d_model); the reservoir starts from zeros in every row. The first ``washout`` steps of each
        row (the transient from the zero state) and, with ``lengths`` (B,), the padding at t >= lengths[b] are
        left out. With H the (M, F) matrix of the remaining readout inputs ([h_t, x_t]) and a column of ones
        for the bias, solves

            (H^T H + ridge I') W = H^T Y      (I' = I with a 0 for the bias: the bias is not penalised)

        accumulating H^T H and H^T Y in float64, and writes W into ``readout``. Returns the training NRMSE,
        sqrt(sum (y_hat - y)^2 / sum (y - mean y)^2) over the fitted steps, of the readout as written.
        """
        owner = "ESN.fit_readout"
        check_input(x, 3, self.d_model, owner)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape or not y.is_floating_point():
            got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise ShapeError(f"{owner}: y must be floating targets of x's shape (B, T, d_model) = "
                             f"{tuple(x.shape)}, got {got}")
        if y.device != x.device:
            raise ShapeError(f"{owner}: x is on {x.device} but y on {y.device}; move both to one device")
        if x.dtype != self.W.dtype:
            raise ShapeError(f"{owner}: x is {x.dtype} but the mixer is {self.W.dtype}; cast x, or the mixer "
                             "with .to(dtype)")
        check_real(owner, "ridge", ridge, 0)
        if isinstance(washout, bool) or not isinstance(washout, int) or washout < 0:
            raise ConfigError(f"{owner}: washout must be an int >= 0 (steps dropped at the start), got {washout!r}")
        for name, t in (("x", x), ("y", y)):
            if not bool(torch.isfinite(t).all()):
                raise DataError(f"{owner}: {name} holds NaN or inf; clean the data before fitting")
        B, T = x.shape[:2]
        lengths = check_lengths(lengths, x, owner)
        ends = torch.full((B,), T, device=x.device) if lengths is None else lengths
        valid = torch.arange(T, device=x.device) >= washout  # (T,)
        valid = valid & (torch.arange(T, device=x.device) < ends[:, None])  # (B, T)
        if not bool(valid.any()):
            raise DataError(f"{owner}: no steps left to fit: washout={washout} drops every step of sequences "
                            f"of length {ends.tolist() if lengths is not None else T}; lower washout or pass "
                            "longer sequences")
        n_inputs = self.readout.in_features + 1
        if ridge == 0 and int(valid.sum()) < n_inputs:
            raise DataError(f"{owner}: {int(valid.sum())} fitted steps cannot determine {n_inputs} readout weights "
                            "per output without regularisation; pass ridge > 0 (e.g. 1e-6) or more steps")
        y_fit = y[valid].double()  # (M, d_model)
        y_spread = (y_fit - y_fit.mean(0)).pow(2).sum()  # the NRMSE's denominator
        if y_spread == 0:
            raise DataError(f"{owner}: the targets y are constant over the fitted steps; there is nothing to fit")

        with torch.no_grad():
            h, _ = self._reservoir(x, self.init_state(B, x.device, x.dtype).h)  # (B, T, N)
            gram = torch.zeros(n_inputs, n_inputs, dtype=torch.float64, device=x.device)
            cross = torch.zeros(n_inputs, self.d_model, dtype=torch.float64, device=x.device)
            for sl, v in fit_blocks(valid):
                H = self._features(h[:, sl], x[:, sl])[v].double()  # (M_c, F)
                H = torch.cat([H, H.new_ones(H.shape[0], 1)], dim=1)  # (M_c, F + 1): the bias column
                gram += H.T @ H
                cross += H.T @ y[:, sl][v].double()
            penalty = torch.full((n_inputs,), float(ridge), dtype=torch.float64, device=x.device)
            penalty[-1] = 0
            W, info = torch.linalg.solve_ex(gram + torch.diag(penalty), cross)  # (F + 1, d_model)
            if int(info) != 0 or not bool(torch.isfinite(W).all()):
                raise DataError(f"{owner}: the normal equations are singular with ridge={ridge}; pass a larger "
                                "ridge (e.g. 1e-6) or more varied data")
            self.readout.weight.copy_(W[:-1].T)
            self.readout.bias.copy_(W[-1])
            sse = 0.0
            for sl, v in fit_blocks(valid):
                y_hat = self.readout(self._features(h[:, sl], x[:, sl])[v])  # (M_c, d_model)
                sse += (y_hat.double() - y[:, sl][v].double()).pow(2).sum().item()
        return math.sqrt(sse / y_spread.item())


def fit_blocks(valid: torch.Tensor):
    """(time slice, (B, C) mask) for blocks of FIT_CHUNK steps that hold at least one fitted step."""
    for start in range(0, valid.shape[1], FIT_CHUNK):
        sl = slice(start, start + FIT_CHUNK)
        if bool(valid[:, sl].any()):
            yield sl, valid[:, sl]


def draw_reservoir(d_model: int, N: int, spectral_radius: float, input_scaling: float, density: float,
                   bias_scaling: float, seed: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W_in (N, d_model), b (N,) and W (N, N) in float64, W scaled to the exact spectral radius."""
    gen = None if seed is None else torch.Generator().manual_seed(seed)

    def uniform(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1

    W_in = input_scaling * uniform(N, d_model)
    b = bias_scaling * uniform(N)
    W = uniform(N, N) * (torch.rand(N, N, generator=gen, dtype=torch.float64) < density)
    radius = torch.linalg.eigvals(W).abs().max().item()
    if spectral_radius == 0:
        return W_in, b, torch.zeros_like(W)
    if radius < 1e-12:
        raise ConfigError(f"esn: the reservoir drawn with density={density} and n_reservoir={N} has spectral "
                          "radius 0 (too few nonzero weights to form a cycle), so it cannot be scaled to "
                          f"spectral_radius={spectral_radius}; raise density or n_reservoir, or change seed")
    return W_in, b, W * (spectral_radius / radius)
