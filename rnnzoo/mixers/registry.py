"""Build mixers by name. Each architecture registers its class with a one-line description."""
from __future__ import annotations

import inspect
from dataclasses import dataclass

from rnnzoo.errors import ConfigError, UnknownNameError
from rnnzoo.mixers.base import Mixer


@dataclass(frozen=True)
class MixerEntry:
    name: str
    cls: type[Mixer]
    description: str


_REGISTRY: dict[str, MixerEntry] = {}

# Options build_mixer handles itself for every registered mixer.
WRAPPER_OPTIONS = ("bidirectional",)


def register_mixer(name: str, description: str):
    """Class decorator: make ``cls`` buildable as ``build_mixer(name, d_model, **options)``."""
    def wrap(cls: type[Mixer]) -> type[Mixer]:
        if name in _REGISTRY:
            raise ValueError(f"mixer name {name!r} is registered twice")
        _REGISTRY[name] = MixerEntry(name, cls, description)
        return cls
    return wrap


def available_mixers() -> list[str]:
    """Names of every registered mixer, sorted."""
    return sorted(_REGISTRY)


def describe_mixers() -> dict[str, str]:
    """Mixer name -> one-line description."""
    return {name: _REGISTRY[name].description for name in available_mixers()}


def mixer_options(name: str) -> dict[str, object]:
    """The options a mixer accepts (beside d_model) with their defaults."""
    sig = inspect.signature(_entry(name).cls.__init__)
    opts = {p.name: p.default for p in list(sig.parameters.values())[2:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    opts.update({w: False for w in WRAPPER_OPTIONS})
    return opts


def _entry(name: str) -> MixerEntry:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UnknownNameError(f"unknown mixer {name!r}; available: {', '.join(available_mixers())}")
    return _REGISTRY[name]


def build_mixer(name: str, d_model: int, **options) -> Mixer:
    """Build a registered mixer. ``bidirectional=True`` wraps two copies (forward and reversed)."""
    entry = _entry(name)
    valid = mixer_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listing = ", ".join(f"{k}={v!r}" for k, v in valid.items())
        raise ConfigError(f"mixer {name!r} has no option {', '.join(map(repr, unknown))}; valid options: {listing}")
    bidirectional = options.pop("bidirectional", False)
    if not isinstance(bidirectional, bool):
        raise ConfigError(f"bidirectional must be a bool, got {bidirectional!r}")
    mixer = entry.cls(d_model, **options)
    if mixer.d_out != d_model:
        raise ConfigError(f"mixer {name!r} built with {options} writes width {mixer.d_out}, but build_mixer's "
                          f"contract is y of width d_model={d_model}; construct {entry.cls.__name__} directly "
                          "for another output width")
    if bidirectional:
        from rnnzoo.mixers.bidirectional import Bidirectional
        return Bidirectional(mixer, entry.cls(d_model, **options))
    return mixer
