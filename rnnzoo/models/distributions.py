"""Output heads for forecasting: a likelihood (or a quantile loss) over raw network outputs.

Every head reads ``raw`` (..., n_params) and a window's scaling (loc, scale), with the target in the
network's scaled space z = (y - loc) / scale:

    normal             y ~ loc + scale * N(mu, sigma),            sigma = softplus(.)
    student_t          y ~ loc + scale * t_nu(mu, sigma),         nu = 2 + softplus(.) (finite variance)
    negative_binomial  y ~ NB(mean m, shape r = 1/alpha),         m = scale * softplus(.),
                                                                  alpha = softplus(.) / sqrt(scale)
                       (counts: loc must be 0; the mean-scaling and alpha rule of DeepAR, Salinas et al. 2020)
    quantile           pinball loss at fixed levels; the outputs are the quantiles themselves
    mse                squared error on z; a point forecast, no intervals

``loss`` is the mean over unmasked entries of the negative log-likelihood of z (or y for counts), so windows
of very different magnitude weigh the same.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import distributions as D

from rnnzoo.errors import ConfigError


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class Head:
    """A likelihood over ``n_params`` raw outputs per forecast step."""

    name = ""
    n_params = 0
    stochastic = True  # sample() draws; False: it returns the point forecast (quantile, mse)

    def loss(self, raw, y, loc, scale, mask):
        z = (y - loc) / scale
        return _masked_mean(-self.scaled(raw).log_prob(torch.where(mask, z, torch.zeros_like(z))), mask)

    def scaled(self, raw) -> D.Distribution:
        raise NotImplementedError

    def sample(self, raw, loc, scale, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per entry, in the data's units."""
        u = torch.rand(raw.shape[:-1], generator=generator, dtype=raw.dtype)
        return self.quantile(raw, loc, scale, u)

    def point(self, raw, loc, scale) -> torch.Tensor:
        return loc + scale * self.scaled(raw).mean

    def quantile(self, raw, loc, scale, q: torch.Tensor) -> torch.Tensor:
        """Quantile at level q (broadcast with raw's leading shape), in the data's units."""
        return loc + scale * self.scaled(raw).icdf(q)


class NormalHead(Head):
    name, n_params = "normal", 2

    def scaled(self, raw):
        return D.Normal(raw[..., 0], F.softplus(raw[..., 1]) + 1e-4)


class StudentTHead(Head):
    name, n_params = "student_t", 3

    def scaled(self, raw):
        return D.StudentT(2.0 + F.softplus(raw[..., 2]), raw[..., 0], F.softplus(raw[..., 1]) + 1e-4)

    def sample(self, raw, loc, scale, generator=None):
        # t = mu + sigma * N / sqrt(G / nu) with G ~ chi2(nu) = Gamma(nu/2, 1/2): torch has no t icdf
        dist = self.scaled(raw)
        normal = torch.randn(raw.shape[:-1], generator=generator, dtype=raw.dtype)
        chi2 = _gamma(dist.df / 2, generator) * 2
        return loc + scale * (dist.loc + dist.scale * normal * torch.rsqrt(chi2 / dist.df))

    def quantile(self, raw, loc, scale, q):
        raise ConfigError("student_t quantiles come from samples; use sample()")


class NegativeBinomialHead(Head):
    name, n_params = "negative_binomial", 2

    def counts(self, raw, scale) -> D.NegativeBinomial:
        mean = scale * F.softplus(raw[..., 0]) + 1e-6
        alpha = F.softplus(raw[..., 1]) / scale.sqrt() + 1e-6
        r = 1.0 / alpha
        return D.NegativeBinomial(total_count=r, logits=torch.log(mean) - torch.log(r))  # p / (1 - p) = mean / r

    def loss(self, raw, y, loc, scale, mask):
        return _masked_mean(-self.counts(raw, scale).log_prob(torch.where(mask, y, torch.zeros_like(y))), mask)

    def point(self, raw, loc, scale):
        return self.counts(raw, scale).mean

    def sample(self, raw, loc, scale, generator=None):
        # Gamma-Poisson mixture: lambda ~ Gamma(r, rate r / mean), y ~ Poisson(lambda)
        dist = self.counts(raw, scale)
        r, mean = dist.total_count, dist.mean
        lam = _gamma(r, generator) * mean / r
        return torch.poisson(lam, generator=generator)

    def quantile(self, raw, loc, scale, q):
        raise ConfigError("negative_binomial quantiles come from samples; use sample()")


class QuantileHead(Head):
    """Pinball loss at ``levels`` (sorted, in (0, 1)); the outputs are monotone by construction."""

    name, stochastic = "quantile", False

    def __init__(self, levels=(0.025, 0.1, 0.5, 0.9, 0.975)):
        levels = sorted(float(q) for q in levels)
        if not levels or any(not 0 < q < 1 for q in levels) or len(set(levels)) != len(levels):
            raise ConfigError(f"quantile levels must be distinct numbers in (0, 1), got {levels}")
        if 0.5 not in levels:
            levels = sorted(levels + [0.5])  # the point forecast is the median
        self.levels = levels
        self.n_params = len(levels)

    def values(self, raw):
        # cumulative softplus increments keep the quantiles ordered (no crossing)
        return torch.cat([raw[..., :1], raw[..., :1] + F.softplus(raw[..., 1:]).cumsum(-1)], -1)

    def loss(self, raw, y, loc, scale, mask):
        z = ((y - loc) / scale).unsqueeze(-1)  # (..., 1)
        q = torch.tensor(self.levels, dtype=raw.dtype)
        err = z - self.values(raw)  # (..., Q)
        pinball = torch.maximum(q * err, (q - 1) * err).mean(-1)
        return _masked_mean(torch.where(mask, pinball, torch.zeros_like(pinball)), mask)

    def point(self, raw, loc, scale):
        return loc + scale * self.values(raw)[..., self.levels.index(0.5)]

    def quantile_at(self, raw, loc, scale, level: float) -> torch.Tensor:
        if level not in self.levels:
            raise ConfigError(f"the quantile head was trained at levels {self.levels}; {level} is not one of them")
        return loc + scale * self.values(raw)[..., self.levels.index(level)]

    def sample(self, raw, loc, scale, generator=None):
        return self.point(raw, loc, scale)


class MSEHead(Head):
    name, n_params, stochastic = "mse", 1, False

    def loss(self, raw, y, loc, scale, mask):
        err = (y - loc) / scale - raw[..., 0]
        return _masked_mean(torch.where(mask, err * err, torch.zeros_like(err)), mask)

    def point(self, raw, loc, scale):
        return loc + scale * raw[..., 0]

    def sample(self, raw, loc, scale, generator=None):
        return self.point(raw, loc, scale)


def _gamma(concentration: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Gamma(concentration, rate 1) draws that honour ``generator`` (torch's own sampler ignores it).

    Marsaglia and Tsang (2000): for a >= 1, d = a - 1/3, c = 1/sqrt(9d), v = (1 + c x)^3 with x ~ N(0, 1),
    accept d v when log u < x^2/2 + d - d v + d log v; a < 1 uses Gamma(a + 1) * u^(1/a).
    """
    a = concentration
    boost = a < 1
    d = torch.where(boost, a + 1, a) - 1.0 / 3
    c = torch.rsqrt(9 * d)
    out = torch.full_like(a, float("nan"))
    todo = torch.ones_like(a, dtype=torch.bool)
    while bool(todo.any()):
        x = torch.randn(a.shape, generator=generator, dtype=a.dtype)
        u = torch.rand(a.shape, generator=generator, dtype=a.dtype)
        v = (1 + c * x) ** 3
        ok = todo & (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-30)))
        out = torch.where(ok, d * v, out)
        todo = todo & ~ok
    u = torch.rand(a.shape, generator=generator, dtype=a.dtype)
    return torch.where(boost, out * u ** (1 / a), out)


HEADS = {"normal": NormalHead, "student_t": StudentTHead, "negative_binomial": NegativeBinomialHead,
         "quantile": QuantileHead, "mse": MSEHead}


def build_head(loss: str, quantiles=None) -> Head:
    if loss not in HEADS:
        raise ConfigError(f"unknown loss {loss!r}; choose one of {', '.join(HEADS)}")
    if loss == "quantile":
        return QuantileHead(quantiles) if quantiles is not None else QuantileHead()
    if quantiles is not None:
        raise ConfigError(f"quantiles= is for loss='quantile', not {loss!r}")
    return HEADS[loss]()

