"""Synthetic sequences for tests and small experiments."""
from __future__ import annotations

import torch

from rnnzoo.errors import ConfigError


def mackey_glass(length: int, tau: float = 17.0, dt: float = 0.1, subsample: int = 10, discard: int = 500,
                 beta: float = 0.2, gamma: float = 0.1, power: float = 10.0, x0: float = 1.2) -> torch.Tensor:
    """The Mackey-Glass delay differential equation (Mackey & Glass 1977), chaotic for tau >= 17:

        dx/dt = beta x(t - tau) / (1 + x(t - tau)^power) - gamma x(t),   x(t) = x0 for t <= 0

    integrated by fourth-order Runge-Kutta with step ``dt`` (the delayed value at half steps is the mean of its
    two neighbours on the grid) and sampled every ``subsample`` steps, after dropping the first ``discard``
    samples of transient. Returns a float64 tensor (length,); with the defaults one sample per time unit.
    """
    lag = tau / dt
    for name, value in (("length", length), ("subsample", subsample), ("discard", discard)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "subsample" else 0):
            raise ConfigError(f"mackey_glass: {name} must be an int >= {int(name == 'subsample')}, got {value!r}")
    if not dt > 0 or not tau > 0 or abs(lag - round(lag)) > 1e-9:
        raise ConfigError(f"mackey_glass: tau and dt must be positive with tau / dt a whole number of steps, got "
                          f"tau={tau!r}, dt={dt!r}")
    lag = round(lag)

    def f(x, x_lag):
        return beta * x_lag / (1 + x_lag ** power) - gamma * x

    xs = [x0] * (lag + 1)  # the constant history on t in [-tau, 0]
    for _ in range((discard + length) * subsample):
        x, past, past_next = xs[-1], xs[-1 - lag], xs[-lag]
        past_mid = (past + past_next) / 2
        k1 = f(x, past)
        k2 = f(x + dt / 2 * k1, past_mid)
        k3 = f(x + dt / 2 * k2, past_mid)
        k4 = f(x + dt * k3, past_next)
        xs.append(x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
    samples = xs[lag + subsample * discard::subsample]
    return torch.tensor(samples[:length], dtype=torch.float64)
