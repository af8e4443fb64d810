"""The mixer contract every architecture in rnnzoo obeys.

    y, state = mixer(x, state=None)        # x (B, T, d_model) -> y (B, T, d_out), state after the last step
    y, state = mixer(x, state, lengths)    # right-padded batch: each row's state after its own last step
    y_t, state = mixer.step(x_t, state)    # x_t (B, d_model) -> y_t (B, d_out), one time step
    state = mixer.init_state(batch_size, device=None, dtype=None)
    mixer.causal                           # False when y_t depends on x after t; step() then raises

``d_out`` equals ``d_model`` for every mixer built by ``build_mixer``; layers converted from torch.nn keep
their own output width. Subclasses implement ``_forward`` and ``_step`` on a checked, non-None state and
``init_state``; this class does the checking, the T = 0 case and the non-causal guard once for all.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from rnnzoo.errors import ConfigError, NotCausalError, ShapeError
from rnnzoo.mixers.state import check_state, flatten_state, map_state, reset_state, unflatten_state
from rnnzoo.ops.loop import scan_cell

READ_BUDGET = 2 ** 24  # state elements Mixer.read's fallback copies at once (64 MiB in float32)


def check_input(x: torch.Tensor, rank: int, width: int, owner: str, name: str = "x") -> None:
    """Raise a ShapeError unless ``x`` is a floating tensor of the given rank and last-dimension width."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    layout = "(B, T, d_model)" if rank == 3 else "(B, d_model)"
    if x.dim() != rank:
        raise ShapeError(f"{owner}: {name} must have shape {layout}, got {x.dim()} dims {tuple(x.shape)}")
    if x.shape[-1] != width:
        raise ShapeError(f"{owner}: {name} has width {x.shape[-1]} but this mixer was built for {width}")
    if not x.is_floating_point():
        raise ShapeError(f"{owner}: {name} must be a floating tensor, got {x.dtype} (embed token ids first)")


def check_lengths(lengths: Any, x: torch.Tensor, owner: str) -> torch.Tensor | None:
    """None when every row is full; otherwise a long tensor (B,) on x's device with 0 <= lengths <= T."""
    if lengths is None:
        return None
    B, T = x.shape[:2]
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (B,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ShapeError(f"{owner}: lengths must be integers of shape (B,) = ({B},), got {lengths.dtype} "
                         f"{tuple(lengths.shape)}")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ShapeError(f"{owner}: lengths must lie in [0, T={T}], got {lengths.tolist()}")
    if B == 0 or bool((lengths == T).all()):
        return None
    return lengths.to(device=x.device, dtype=torch.long)


def mask_padding(y: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero y (B, T, ...) at t >= lengths[b]."""
    valid = torch.arange(y.shape[1], device=y.device) < lengths[:, None]  # (B, T)
    return y * valid.reshape(*valid.shape, *([1] * (y.dim() - 2))).to(y.dtype)


class Mixer(nn.Module):
    """Base class of all sequence mixers (see the module docstring for the contract)."""

    causal: bool = True

    def __init__(self, d_model: int, d_out: int | None = None):
        super().__init__()
        if not isinstance(d_model, int) or isinstance(d_model, bool) or d_model <= 0:
            raise ShapeError(f"{type(self).__name__}: d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model
        self.d_out = d_model if d_out is None else d_out

    def init_state(self, batch_size: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> Any:
        raise NotImplementedError

    def _forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def _step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: Any = None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """``lengths`` (B,) marks a right-padded batch: row b is valid for t < lengths[b]; the returned state is
        each row's state after its own last valid step, and y is zero at padded positions."""
        check_input(x, 3, self.d_model, type(self).__name__)
        state = self._checked_state(state, x)
        lengths = check_lengths(lengths, x, type(self).__name__)
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.d_out), state
        if lengths is None:
            return self._forward(x, state)
        return self._forward_padded(x, state, lengths)

    def _forward_padded(self, x: torch.Tensor, state: Any, lengths: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Run up to each distinct length in turn, freezing the rows that end there. Exact for any causal mixer,
        since forward over two pieces with the state carried equals one forward; costs one call per length."""
        ys, final, start = [], state, 0
        for end in sorted(set(lengths.tolist())):
            if end > start:
                y, state = self._forward(x[:, start:end], state)  # (B, end - start, d_out)
                ys.append(y)
                start = end
            final = reset_state(final, lengths == end, state)
        if start < x.shape[1]:
            ys.append(x.new_zeros(x.shape[0], x.shape[1] - start, self.d_out))
        return mask_padding(torch.cat(ys, dim=1), lengths), final

    def _forward_by_steps(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """``_forward`` as one ``_step`` per token: for mixers whose fast path needs every row at the same place
        in a segment, when a padded batch has left the rows at different places."""
        return scan_cell(self._step, x, state)

    def read(self, x: torch.Tensor, states: Any) -> torch.Tensor:
        """One step from each of S states for every token, the new states dropped: x (B, n, d_model) and a
        state whose every tensor has S slots after the batch, (B, S, ...) -> y (B, S, n, d_out) with
        y[:, s, t] = step(x[:, t], states[:, s])[0]. No checks: callers pass states made by this mixer.

        This fallback copies every state for every token (B S n copies), so it takes the tokens a few at a
        time, and under autograd recomputes each piece in the backward, keeping memory bounded. Mixers whose
        step output is linear in the state override it with one einsum against the stacked states."""
        flat = flatten_state(states)
        B, n = x.shape[:2]
        S = flat[0].shape[1]
        per_token = B * S * sum(t.shape[2:].numel() for t in flat)  # state elements copied for one token
        pieces = x.split(max(1, READ_BUDGET // max(1, per_token)), dim=1)

        def read_piece(piece, *tensors):
            xs, rows = token_rows(piece, unflatten_state(states, list(tensors)), S)
            return self._step(xs, rows)[0].unflatten(0, (B, S, piece.shape[1]))  # (B, S, m, d_out)

        if len(pieces) > 1 and torch.is_grad_enabled():
            return torch.cat([checkpoint(read_piece, p, *flat, use_reentrant=False) for p in pieces], dim=2)
        return torch.cat([read_piece(p, *flat) for p in pieces], dim=2)

    def step(self, x_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        if not self.causal:
            raise NotCausalError(
                f"{type(self).__name__} is not causal (it reads the sequence in both directions), "
                "so it has no step(); use forward() on the whole sequence"
            )
        check_input(x_t, 2, self.d_model, type(self).__name__, name="x_t")
        return self._step(x_t, self._checked_state(state, x_t))

    def _checked_state(self, state: Any, x: torch.Tensor) -> Any:
        if state is None:
            return self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        expected = self.init_state(x.shape[0], device="meta", dtype=x.dtype)
        check_state(state, expected, x.device, type(self).__name__)
        return state

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_out={self.d_out}, causal={self.causal}"


def token_rows(x: torch.Tensor, states: Any, slots: int) -> tuple[torch.Tensor, Any]:
    """x (B, n, ...) and a state of S = ``slots`` slots (every tensor (B, S, ...)) -> both on B S n rows, row
    (b S + s) n + t pairing token t with slot s: the inputs of one step from every slot for every token."""
    B, n = x.shape[:2]
    xs = x.unsqueeze(1).expand(B, slots, *x.shape[1:]).reshape(B * slots * n, *x.shape[2:])
    return xs, map_state(lambda t: t.unsqueeze(2).expand(B, slots, n, *t.shape[2:]).reshape(-1, *t.shape[2:]),
                         states)


def check_choice(owner: str, name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{owner}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")


def check_real(owner: str, name: str, value: Any, low: float, high: float = math.inf,
               low_open: bool = False) -> None:
    """Raise a ConfigError unless ``value`` is a real number in [low, high] ((low, high] when ``low_open``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value <= high
    ok = ok and (value > low if low_open else value >= low) and math.isfinite(value)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{']' if math.isfinite(high) else ')'}"
        raise ConfigError(f"{owner}: {name} must be a finite number in {interval}, got {value!r}")


def check_expand(owner: str, expand: Any, d_model: int) -> int:
    """The hidden width int(expand * d_model), or a ConfigError when it is not a positive number of units."""
    if (isinstance(expand, bool) or not isinstance(expand, (int, float)) or not 0 < expand < math.inf
            or int(expand * d_model) < 1):
        raise ConfigError(f"{owner}: expand must be a positive number with expand * d_model >= 1 "
                          f"(hidden width = expand * d_model), got {expand!r}")
    return int(expand * d_model)


def check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}: {name} must be True or False, got {value!r}")
