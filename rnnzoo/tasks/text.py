"""Character-level text: reading files, a character vocabulary and contiguous stateful batches.

    text = read_text("input.txt")                   # or: text, about = default_corpus()
    vocab = CharVocab.from_text(text)
    train_ids, val_ids = split_ids(vocab.encode(text), val_fraction=0.1)
    batches = StreamBatches(train_ids, batch_size=32, seq_len=128)
    x, y, reset = batches.get(i)                    # x, y (B, T); y[:, t] is the token after x[:, t]
"""
from __future__ import annotations

import platform
import sysconfig
from pathlib import Path

import torch

from rnnzoo.errors import CheckpointError, ConfigError, DataError, ShapeError

# Larger pure-Python modules that every CPython 3.11+ ships as single files (sorted).
DEFAULT_CORPUS_MODULES = (
    "argparse.py", "ast.py", "configparser.py", "contextlib.py", "dataclasses.py", "difflib.py",
    "doctest.py", "enum.py", "fractions.py", "functools.py", "inspect.py", "ipaddress.py", "mailbox.py",
    "optparse.py", "pickle.py", "random.py", "shutil.py", "smtplib.py", "statistics.py", "subprocess.py",
    "tarfile.py", "tempfile.py", "textwrap.py", "threading.py", "traceback.py", "typing.py",
)


def read_text(path: str | Path) -> str:
    """The whole file as a string; a DataError names what is wrong with a path that is not UTF-8 text."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"text file {str(path)!r} does not exist; check the path "
                        "(or leave it out to use the default corpus)")
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a directory; pass one text file inside it")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {str(path)!r}: {e.strerror}; check its permissions") from None
    if not data:
        raise DataError(f"text file {str(path)!r} is empty; pass a file with some text in it")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{str(path)!r} looks binary (NUL byte at offset {nul}); pass a plain text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{str(path)!r} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                        "convert it first, e.g. iconv -f latin1 -t utf-8") from None
    return text.removeprefix("\ufeff")


def default_corpus() -> tuple[str, str]:
    """(text, description): source of the stdlib modules in DEFAULT_CORPUS_MODULES, joined, about 1.6 MB.

    Already on every machine that runs Python, so nothing is downloaded. Missing modules are skipped and
    named in the description.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    found = [name for name in DEFAULT_CORPUS_MODULES if (root / name).is_file()]
    if not found:
        raise DataError(f"none of the default corpus modules ({', '.join(DEFAULT_CORPUS_MODULES)}) "
                        f"are in the Python standard library at {root}; pass a text file of your own")
    text = "\n".join(read_text(root / name) for name in found)
    missing = [name for name in DEFAULT_CORPUS_MODULES if name not in found]
    about = (f"Python {platform.python_version()} standard library source, {len(found)} modules "
             f"({', '.join(found)}), {len(text):,} characters")
    if missing:
        about += f"; not found: {', '.join(missing)}"
    return text, about


class CharVocab:
    """One id per character: id i is ``chars[i]``; ``from_text`` sorts the characters it finds."""

    def __init__(self, chars: list[str]):
        if not chars:
            raise DataError("a vocabulary needs at least one character; the text was empty")
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and self.chars == other.chars

    def encode(self, s: str) -> torch.Tensor:
        """Ids of the characters of ``s``, a 1-D int64 tensor of length len(s)."""
        unknown = set(s) - self.index.keys()
        if unknown:
            shown = ", ".join(repr(c) for c in sorted(unknown)[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise DataError(f"characters not in the vocabulary: {shown}{more}; "
                            "use only characters of the training text (vocabulary is fixed by it)")
        return torch.tensor([self.index[c] for c in s], dtype=torch.long)

    def decode(self, ids) -> str:
        """The text of a 0-D or 1-D tensor of ids, or of a list of ints."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() > 1:
                raise ShapeError(f"decode takes a 0-D or 1-D tensor of ids, got shape {tuple(ids.shape)}; "
                                 "decode one row at a time")
            ids = ids.reshape(-1).tolist()
        bad = [i for i in ids if not isinstance(i, int) or not 0 <= i < len(self.chars)]
        if bad:
            raise DataError(f"ids {bad[:10]} are not in the vocabulary of {len(self.chars)} characters")
        return "".join(self.chars[i] for i in ids)

    def to_json(self) -> dict:
        return {"type": "char", "chars": list(self.chars)}

    @classmethod
    def from_json(cls, d: dict) -> CharVocab:
        if not isinstance(d, dict) or d.get("type") != "char" or not isinstance(d.get("chars"), list):
            raise CheckpointError('vocabulary must be a dict {"type": "char", "chars": [...]}, '
                                  f"got {str(d)[:100]}; the vocab.json file is damaged")
        chars = d["chars"]
        if not chars or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise CheckpointError("vocabulary chars must be a non-empty list of single characters; "
                                  "the vocab.json file is damaged")
        if len(set(chars)) != len(chars):
            raise CheckpointError("vocabulary lists a character twice; the vocab.json file is damaged")
        return cls(chars)


def split_ids(ids: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): the first (1 - val_fraction) of the stream and the rest, in order (no shuffling,
    so validation text is unseen and still contiguous). ``val_fraction=0`` gives an empty val."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    check_ids(ids)
    n_val = int(round(len(ids) * val_fraction))
    if n_val == len(ids) or (val_fraction > 0 and n_val == 0):
        raise DataError(f"{len(ids)} tokens cannot be split with val_fraction={val_fraction}; "
                        "use a longer text or another val_fraction")
    return ids[: len(ids) - n_val], ids[len(ids) - n_val:]


def check_ids(ids) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.is_floating_point() or ids.is_complex():
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ShapeError(f"token ids must be a 1-D integer tensor (e.g. vocab.encode(text)), got {shape}")


class StreamBatches:
    """Contiguous batches for truncated BPTT with the state carried (char-rnn style).

    The ids are cut into ``batch_size`` equal streams of length L = (N - 1) // batch_size (the remainder
    is dropped); batch i holds columns [j T, (j + 1) T) of every stream, j = i mod len(self), so row b of
    batch i + 1 continues row b of batch i. With ``world_size`` > 1, rank r gets rows [r b, (r + 1) b) of
    the global batch, b = batch_size // world_size. ``get`` depends on i alone, so a resumed run sees the
    same batches.
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1):
        check_ids(ids)
        for name, value, lo in (("batch_size", batch_size, 1), ("seq_len", seq_len, 1),
                                ("world_size", world_size, 1), ("rank", rank, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ConfigError(f"StreamBatches: {name} must be an int >= {lo}, got {value!r}")
        if rank >= world_size:
            raise ConfigError(f"StreamBatches: rank {rank} is out of range for world_size {world_size}")
        if batch_size % world_size:
            raise ConfigError(f"StreamBatches: batch_size {batch_size} must be divisible by world_size "
                              f"{world_size}; use a batch_size that is a multiple of {world_size}")
        stream_len = (len(ids) - 1) // batch_size
        self.n_batches = stream_len // seq_len
        if self.n_batches == 0:
            raise DataError(f"the text has {len(ids)} tokens but one batch of {batch_size} x {seq_len} needs "
                            f"{batch_size * seq_len + 1}; use a smaller batch_size or seq_len, or a longer text")
        self.batch_size, self.seq_len = batch_size, seq_len
        rows = slice(rank * (batch_size // world_size), (rank + 1) * (batch_size // world_size))
        n = batch_size * stream_len
        self.x = ids[:n].reshape(batch_size, stream_len)[rows]  # (b, L)
        self.y = ids[1:n + 1].reshape(batch_size, stream_len)[rows]  # (b, L), one token ahead

    def __len__(self) -> int:
        return self.n_batches

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(x, y, reset) for batch i (any i >= 0; epochs wrap). ``reset`` is True at the start of an epoch,
        where the streams restart and the carried state must be dropped."""
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise ConfigError(f"StreamBatches.get: batch index must be an int >= 0, got {i!r}")
        j = i % self.n_batches
        cols = slice(j * self.seq_len, (j + 1) * self.seq_len)
        return self.x[:, cols].clone(), self.y[:, cols].clone(), j == 0  # (b, T), (b, T)
