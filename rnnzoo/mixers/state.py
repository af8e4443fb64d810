"""States are explicit values: a NamedTuple of tensors (or of nested states), batch on dim 0 of every tensor.

These helpers work on any mixer's state without knowing its fields.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from rnnzoo.errors import StateError


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor of a (nested) state, keeping its type."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if state is None:
        return None
    if isinstance(state, tuple):
        mapped = [map_state(fn, s) for s in state]
        return type(state)(*mapped) if hasattr(state, "_fields") else tuple(mapped)
    raise StateError(f"a state holds tensors, tuples and NamedTuples only; found {type(state).__name__}")


def detach_state(state: Any) -> Any:
    """Cut the autograd graph at a state (truncated BPTT)."""
    return map_state(torch.Tensor.detach, state)


def select_state(state: Any, index: torch.Tensor | slice | list[int]) -> Any:
    """Keep the batch rows named by ``index`` (beam search reordering, dropping finished rows)."""
    if isinstance(index, list):
        # a list of bools is a mask, a list of ints names rows
        index = torch.as_tensor(index) if index else torch.zeros(0, dtype=torch.long)
    return map_state(lambda t: t[index], state)


def reset_state(state: Any, done: torch.Tensor, fresh: Any) -> Any:
    """Rows where ``done`` (bool, shape (B,)) is true take their value from ``fresh``; others keep ``state``."""
    flat_new, flat_fresh = flatten_state(state), flatten_state(fresh)
    if len(flat_new) != len(flat_fresh):
        raise StateError("reset_state: the fresh state has a different structure from the state")
    it = iter(flat_fresh)

    def pick(t: torch.Tensor) -> torch.Tensor:
        f = next(it)
        mask = done.to(device=t.device).reshape(-1, *([1] * (t.dim() - 1)))
        return torch.where(mask, f, t)

    return map_state(pick, state)


def flatten_state(state: Any) -> list[torch.Tensor]:
    """The tensors of a (nested) state in a fixed order."""
    out: list[torch.Tensor] = []
    map_state(lambda t: out.append(t) or t, state)
    return out


def unflatten_state(template: Any, tensors: list[torch.Tensor]) -> Any:
    """Inverse of ``flatten_state``: rebuild a state shaped like ``template`` (e.g. from a checkpoint)."""
    it = iter(tensors)
    try:
        state = map_state(lambda t: next(it), template)
    except StopIteration:
        raise StateError("unflatten_state: fewer tensors than the template holds") from None
    if next(it, None) is not None:
        raise StateError("unflatten_state: more tensors than the template holds")
    return state


def describe_state(state: Any) -> str:
    if isinstance(state, torch.Tensor):
        return f"Tensor{tuple(state.shape)}"
    if isinstance(state, tuple):
        inner = ", ".join(describe_state(s) for s in state)
        return f"{type(state).__name__}({inner})"
    return type(state).__name__


def check_state(state: Any, expected: Any, device: torch.device, owner: str) -> None:
    """Raise a StateError naming the mismatch when ``state`` does not fit ``expected``.

    ``expected`` is the mixer's own ``init_state`` on the meta device: it carries the type, shapes and dtype.
    """
    def fail(problem: str) -> None:
        raise StateError(
            f"{owner}: the state passed in does not fit this mixer ({problem}). "
            f"Expected {describe_state(expected)}, got {describe_state(state)}. "
            f"Pass state=None to start fresh, or a state returned by this same mixer."
        )

    if isinstance(expected, torch.Tensor):
        if not isinstance(state, torch.Tensor):
            fail(f"expected a tensor, got {type(state).__name__}")
        if state.shape != expected.shape:
            what = "batch size" if state.shape[1:] == expected.shape[1:] else "shape"
            fail(f"wrong {what}: {tuple(state.shape)} instead of {tuple(expected.shape)}")
        if state.dtype != expected.dtype:
            fail(f"dtype {state.dtype} instead of {expected.dtype}")
        if state.device.type != torch.device(device).type:
            fail(f"device {state.device} but the input is on {device}")
        return
    if not isinstance(state, tuple) or type(state) is not type(expected):
        fail(f"a {type(state).__name__} where a {type(expected).__name__} belongs (a state from another mixer?)")
    if len(state) != len(expected):
        fail(f"{len(state)} fields instead of {len(expected)}")
    for s, e in zip(state, expected):
        check_state(s, e, device, owner)
