"""Convert between torch.nn.RNN / LSTM / GRU and rnnzoo models holding the same weights.

    model = rnnzoo.convert.from_torch(torch_lstm)        # Stack of per-layer LSTM mixers
    y, state = model(x, rnnzoo.convert.state_from_torch(model, h_0, c_0))
    h_n, c_n = rnnzoo.convert.state_to_torch(model, state)
    torch_lstm = rnnzoo.convert.to_torch(model)

Layer l of the torch module becomes ``model.layers[l]``: an Elman (for nn.RNN, with its nonlinearity), LSTM
or GRU mixer with ``project_output=False``, or for a bidirectional module
``Bidirectional(forward, backward, merge="concat")``; torch's dropout between layers becomes the Stack's.

rnnzoo models are always batch-first, x (B, T, D). A torch module built with ``batch_first=False`` reads
(T, B, D), so pass ``x.transpose(0, 1)`` to the rnnzoo model and transpose its output back. Final states
keep torch's layout in both cases: (num_layers * num_directions, B, H), row ``layer * num_directions +
direction``, where H is proj_size for an LSTM's h when it has a projection.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rnnzoo.blocks import Bidirectional, Stack, StackState
from rnnzoo.errors import ConfigError, StateError
from rnnzoo.mixers.base import Mixer
from rnnzoo.mixers.bidirectional import BidirectionalState
from rnnzoo.mixers.elman import Elman, ElmanState
from rnnzoo.mixers.gru import GRU, GRUState
from rnnzoo.mixers.lstm import LSTM, LSTMState
from rnnzoo.mixers.state import check_state, flatten_state

# torch.nn class -> rnnzoo mixer class; parameter names are shared, torch adds _l{layer}[_reverse].
MIXER_OF = {nn.RNN: Elman, nn.LSTM: LSTM, nn.GRU: GRU}
TORCH_OF = {mixer: module for module, mixer in MIXER_OF.items()}
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
SUFFIXES = ("", "_reverse")


def from_torch(module: nn.Module) -> Stack:
    """The rnnzoo Stack computing what ``module`` (a torch.nn.RNN, LSTM or GRU) computes, with its weights
    copied (same dtype and device) and its train/eval mode. See the module docstring for batch_first."""
    cls = next((mixer for torch_cls, mixer in MIXER_OF.items() if isinstance(module, torch_cls)), None)
    if cls is None:
        raise ConfigError(f"from_torch takes a torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
    n_dir = 2 if module.bidirectional else 1
    width = module.proj_size or module.hidden_size
    options: dict[str, Any] = dict(hidden_size=module.hidden_size, bias=module.bias, project_output=False)
    if cls is LSTM:
        options["proj_size"] = module.proj_size
    if cls is Elman:
        options["nonlinearity"] = module.nonlinearity
    layers = []
    for layer in range(module.num_layers):
        d_in = module.input_size if layer == 0 else n_dir * width
        directions = []
        for suffix in SUFFIXES[:n_dir]:
            ref = getattr(module, f"weight_ih_l{layer}{suffix}")
            mixer = cls(d_in, **options).to(device=ref.device, dtype=ref.dtype)
            _copy_weights(module, mixer, f"_l{layer}{suffix}", to_mixer=True)
            directions.append(mixer)
        layers.append(Bidirectional(*directions, merge="concat") if n_dir == 2 else directions[0])
    model = Stack(layers, dropout=float(module.dropout))
    return model.train(module.training)


def to_torch(model: Mixer) -> nn.RNNBase:
    """The torch.nn.RNN / LSTM / GRU (batch_first=True) computing what ``model`` computes.

    ``model`` is a Stack of Elman, LSTM or GRU mixers (or of Bidirectional(..., merge="concat") pairs of
    them), or one such layer alone. Raises ConfigError naming what torch.nn cannot represent.
    """
    cls, spec, layers = _torch_spec(model, "to_torch")
    ref = next(model.parameters())
    module = TORCH_OF[cls](**spec, batch_first=True).to(device=ref.device, dtype=ref.dtype)
    for layer, directions in enumerate(layers):
        for suffix, mixer in zip(SUFFIXES, directions):
            _copy_weights(module, mixer, f"_l{layer}{suffix}", to_mixer=False)
    return module.train(model.training)


def state_from_torch(model: Mixer, h_n: torch.Tensor, c_n: torch.Tensor | None = None) -> Any:
    """torch's final (or initial) state -> the state ``model`` takes; ``c_n`` for an LSTM only.

    h_n (num_layers * num_directions, B, H); ``model`` is one that to_torch accepts (e.g. from from_torch).
    """
    cls, spec, layers = _torch_spec(model, "state_from_torch")
    rows = len(layers) * len(layers[0])
    width = spec.get("proj_size") or spec["hidden_size"]
    _check_torch_state("h_n", h_n, rows, width)
    if (cls is LSTM) != (c_n is not None):
        raise StateError(f"state_from_torch: an LSTM needs both h_n and c_n, other cells only h_n; "
                         f"this model is a {cls.__name__} and c_n was {'given' if c_n is not None else 'not given'}")
    if c_n is not None:
        _check_torch_state("c_n", c_n, rows, spec["hidden_size"])
        if c_n.shape[1] != h_n.shape[1]:
            raise StateError(f"state_from_torch: h_n has batch {h_n.shape[1]} but c_n has {c_n.shape[1]}")
    states = []
    for layer, directions in enumerate(layers):
        per_dir = []
        for k in range(layer * len(directions), (layer + 1) * len(directions)):
            per_dir.append(LSTMState(h_n[k], c_n[k]) if cls is LSTM else
                           (ElmanState if cls is Elman else GRUState)(h_n[k]))
        states.append(BidirectionalState(*per_dir) if len(per_dir) == 2 else per_dir[0])
    return StackState(tuple(states)) if isinstance(model, Stack) else states[0]


def state_to_torch(model: Mixer, state: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """A state of ``model`` -> torch's h_n (num_layers * num_directions, B, H), or (h_n, c_n) for an LSTM."""
    cls, _, _ = _torch_spec(model, "state_to_torch")
    tensors = flatten_state(state)
    if not tensors:
        raise StateError("state_to_torch: the state holds no tensors; pass a state returned by this model")
    first = tensors[0]
    check_state(state, model.init_state(first.shape[0], device="meta", dtype=first.dtype), first.device,
                "state_to_torch")
    layer_states = state.layers if isinstance(model, Stack) else (state,)
    per_dir = [s for ls in layer_states for s in (ls if isinstance(ls, BidirectionalState) else (ls,))]
    h_n = torch.stack([s.h for s in per_dir])  # (L * num_directions, B, H)
    if cls is LSTM:
        return h_n, torch.stack([s.c for s in per_dir])
    return h_n


def _copy_weights(module: nn.RNNBase, mixer: Mixer, suffix: str, to_mixer: bool) -> None:
    with torch.no_grad():
        for name in WEIGHT_NAMES:
            theirs, ours = getattr(module, name + suffix, None), getattr(mixer, name, None)
            if theirs is not None:
                src, dst = (theirs, ours) if to_mixer else (ours, theirs)
                dst.copy_(src)


def _torch_spec(model: Mixer, owner: str) -> tuple[type, dict[str, Any], list[list[Mixer]]]:
    """(mixer class, torch constructor options, each layer's direction mixers), or a ConfigError naming
    what torch.nn cannot represent."""
    layers = list(model.layers) if isinstance(model, Stack) else [model]
    per_layer = []
    for i, layer in enumerate(layers):
        if isinstance(layer, Bidirectional):
            if layer.merge != "concat":
                raise ConfigError(f"{owner}: layer {i} merges its two directions with {layer.merge!r}; torch.nn "
                                  "concatenates them (build it with merge='concat')")
            per_layer.append([layer.fwd, layer.bwd])
        else:
            per_layer.append([layer])
    mixers = [m for directions in per_layer for m in directions]
    cls = type(mixers[0])
    for m in mixers:
        if type(m) not in TORCH_OF:
            raise ConfigError(f"{owner}: a {type(m).__name__} has no torch.nn equivalent; torch.nn has RNN "
                              "(rnnzoo Elman), LSTM and GRU, in a Stack, optionally bidirectional")
        if type(m) is not cls:
            raise ConfigError(f"{owner}: the layers mix {cls.__name__} and {type(m).__name__}; "
                              "a torch.nn module has one cell type")
        problems = [what for what, present in (
            ("an output projection (build it with project_output=False)", m.out_proj is not None),
            ("peepholes", getattr(m, "weight_ci", None) is not None),
            ("layer norm", getattr(m, "ln_ih", None) is not None),
        ) if present]
        if problems:
            raise ConfigError(f"{owner}: torch.nn.{TORCH_OF[cls].__name__} cannot represent "
                              f"{' and '.join(problems)}")
    if len({len(d) for d in per_layer}) > 1:
        raise ConfigError(f"{owner}: some layers are bidirectional and some not; torch.nn needs all or none")
    if len({p.dtype for p in model.parameters()}) > 1:
        raise ConfigError(f"{owner}: the parameters have mixed dtypes; cast the model with .to(dtype) first")
    spec = dict(input_size=model.d_model, hidden_size=mixers[0].hidden_size, num_layers=len(layers),
                bias=mixers[0].bias_ih is not None, bidirectional=len(per_layer[0]) == 2,
                dropout=model.dropout.p if isinstance(model, Stack) else 0.0)
    if cls is LSTM:
        spec["proj_size"] = mixers[0].proj_size
    if cls is Elman:
        spec["nonlinearity"] = mixers[0].nonlinearity
    for m in mixers:
        mine = dict(hidden_size=m.hidden_size, bias=m.bias_ih is not None, proj_size=getattr(m, "proj_size", None),
                    nonlinearity=getattr(m, "nonlinearity", None))
        for key, value in mine.items():
            if key in spec and spec[key] != value:
                raise ConfigError(f"{owner}: the layers differ in {key} ({spec[key]!r} and {value!r}); "
                                  "a torch.nn module has one value for all layers")
    return cls, spec, per_layer


def _check_torch_state(name: str, t: Any, rows: int, width: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 3 or t.shape[0] != rows or t.shape[2] != width:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise StateError(f"state_from_torch: {name} must have torch's shape (num_layers * num_directions, B, "
                         f"width) = ({rows}, B, {width}) for this model, got {got}")
