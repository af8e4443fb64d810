"""Exceptions with messages that name the problem and the fix.

Each subclasses the builtin a user would expect (ValueError, KeyError, ...), so generic handlers still work.
"""


class RnnzooError(Exception):
    """Base of every error rnnzoo raises on purpose."""


class ShapeError(RnnzooError, ValueError):
    """A tensor has the wrong rank, width or dtype."""


class StateError(RnnzooError, ValueError):
    """A recurrent state does not belong to the mixer it was passed to."""


class ConfigError(RnnzooError, ValueError):
    """An unknown option or a value of the wrong type or range."""


class UnknownNameError(RnnzooError, KeyError):
    """An unknown mixer (or other registry) name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotCausalError(RnnzooError, RuntimeError):
    """step() on a mixer that sees the future (bidirectional)."""


class DataError(RnnzooError, ValueError):
    """A data file that is missing, empty, binary, not UTF-8 or too short."""


class CheckpointError(RnnzooError, ValueError):
    """A checkpoint that is missing, corrupt or does not match the model."""


class DivergedError(RnnzooError, RuntimeError):
    """Training produced a non-finite loss."""


class NotFittedError(ConfigError, AttributeError):
    """predict / score before fit (an AttributeError as in scikit-learn, a ConfigError as in rnnzoo)."""
