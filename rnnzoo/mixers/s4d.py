"""S4D (Gu et al. 2022, "On the parameterization and initialization of diagonal state space models"): the
standalone S4D layer, one diagonal complex SSM per channel, trained as a long convolution."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rnnzoo.errors import ConfigError
from rnnzoo.mixers.base import Mixer, check_choice, check_int
from rnnzoo.mixers.registry import register_mixer
from rnnzoo.ops.ssm import s4d

MODES = ("conv", "recurrent")
INITS = ("lin", "inv")


class S4DState(NamedTuple):
    x: torch.Tensor  # (B, H, N/2, 2): real and imaginary parts of the complex SSM state


def s4d_imag_init(init: str, N: int) -> torch.Tensor:
    """Im A_n for n = 0..N/2-1: S4D-Lin pi n, or S4D-Inv N/pi (N/(2n+1) - 1) (Re A_n = -1/2 in both)."""
    n = torch.arange(N // 2, dtype=torch.float64)
    if init == "lin":
        return math.pi * n
    return N / math.pi * (N / (2 * n + 1) - 1)


@register_mixer("s4d", "S4D (Gu et al. 2022): diagonal complex SSM per channel, FFT conv or recurrence; GELU, GLU")
class S4D(Mixer):
    """The S4D block: a diagonal SSM on each of the H = d_model channels, then GELU and a GLU output layer.

        x_t = Abar x_{t-1} + Bbar u_t,   s_t = 2 Re(C x_t) + D u_t     (per channel, x of N/2 complex pairs)
        y_t = GLU(W gelu(s_t) + b),  W (2 d_model, d_model)

    A = -exp(log_A_real) + i A_imag is initialised by S4D-Lin (A_n = -1/2 + i pi n) or S4D-Inv
    (A_n = -1/2 + i N/pi (N/(2n+1) - 1)), B = 1, C complex normal, D normal, log_dt uniform in
    [log dt_min, log dt_max]; Abar, Bbar by zero-order hold or the bilinear rule.

    Options: ``d_state`` (N, even, default 64), ``init`` ('lin' | 'inv'), ``discretization``
    ('zoh' | 'bilinear'), ``dt_min`` / ``dt_max``, ``mode`` ('conv': FFT convolution with the Vandermonde
    kernel; 'recurrent': the loop). The state is the complex x as a real (B, H, N/2, 2) tensor.
    The papers train the SSM parameters (log_dt, log_A_real, A_imag; B, C too in S4D) without weight decay
    and at lr 1e-3; rnnzoo's optimizer treats them like other parameters, so set that up yourself if wanted.
    """

    def __init__(self, d_model: int, d_state: int = 64, init: str = "lin", discretization: str = "zoh",
                 dt_min: float = 1e-3, dt_max: float = 1e-1, mode: str = "conv"):
        name = "s4d"
        check_int(name, "d_state", d_state, minimum=2)
        if d_state % 2:
            raise ConfigError(f"s4d: d_state must be even (N/2 conjugate pairs are stored), got {d_state}")
        check_choice(name, "init", init, INITS)
        check_choice(name, "discretization", discretization, ("zoh", "bilinear"))
        check_choice(name, "mode", mode, MODES)
        for opt, value in (("dt_min", dt_min), ("dt_max", dt_max)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigError(f"s4d: {opt} must be a positive number, got {value!r}")
        if dt_min > dt_max:
            raise ConfigError(f"s4d: dt_min={dt_min} must not exceed dt_max={dt_max}")
        super().__init__(d_model)
        H, N2 = d_model, d_state // 2
        self.d_state, self.init, self.discretization, self.mode = d_state, init, discretization, mode
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)  # (H,)
        self.log_A_real = nn.Parameter(torch.full((H, N2), math.log(0.5)))
        self.A_imag = nn.Parameter(s4d_imag_init(init, d_state).float().expand(H, N2).clone())
        # B and C are complex, kept as real (H, N/2, 2) views so that .double() and state_dict treat them as floats
        self.B = nn.Parameter(torch.view_as_real(torch.ones(H, N2, dtype=torch.cfloat)).clone())
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, N2, dtype=torch.cfloat)).clone())
        self.D = nn.Parameter(torch.randn(H))
        self.out_proj = nn.Linear(H, 2 * H)

    def init_state(self, batch_size, device=None, dtype=None) -> S4DState:
        dtype = dtype or self.log_dt.dtype
        return S4DState(torch.zeros(batch_size, self.d_model, self.d_state // 2, 2, device=device, dtype=dtype))

    def ssm(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """(A, B, C, log_dt, D) for the op, A, B, C complex, in ``dtype`` (float32 or float64)."""
        p = {name: getattr(self, name).to(dtype) for name in ("log_A_real", "A_imag", "B", "C", "log_dt", "D")}
        A = torch.complex(-p["log_A_real"].exp(), p["A_imag"])  # (H, N/2)
        B = torch.complex(p["B"][..., 0], p["B"][..., 1])
        C = torch.complex(p["C"][..., 0], p["C"][..., 1])
        return A, B, C, p["log_dt"], p["D"]

    def _run(self, u, state, mode):
        """u (B, T, H) -> the block's output (B, T, H) and the new state; the SSM runs in float32 at least."""
        wide = torch.promote_types(u.dtype, torch.float32)
        s, x = s4d(u.to(wide), *self.ssm(wide), initial_state=state.x.to(wide), disc=self.discretization,
                   mode=mode)  # (B, T, H)
        y = F.glu(self.out_proj(F.gelu(s.to(u.dtype))), dim=-1)  # (B, T, H)
        return y, S4DState(x.to(u.dtype))

    def _forward(self, x, state):
        return self._run(x, state, self.mode)

    def _step(self, x_t, state):
        y, state = self._run(x_t.unsqueeze(1), state, "recurrent")
        return y.squeeze(1), state
