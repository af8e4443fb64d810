"""Polyphonic music as binary piano rolls: the Bach chorales shipped with music21, and a frame-level model.

    splits = load_chorales()                       # {"train": [...], "valid": [...], "test": [...]}, (T, 88) each
    model = PianoRollModel("gru", d_model=48)
    x, lengths = pad_rolls(splits["train"][:8])    # x (B, T, 88), lengths (B,)
    loss = model.nll_per_step(x, lengths)          # nats per time step
    test_nll = dataset_nll(model, splits["test"])

Piano roll (``piano_roll``): 88 keys, column k is MIDI pitch 21 + k (A0..C8), one row per quarter note. Row t
holds the pitches that sound at grid time g_t, a note with onset a and end b (offsets in quarter notes) sounding
at g when a <= g < b. So a held note fills every row it spans, a tied note is the union of its tied pieces (it
is held), a rest leaves its voice's keys at 0, and a note that starts off the grid appears only in the rows
whose grid time it still sounds at (an eighth on an off-beat, sounding at no grid time, is dropped; grace notes
have no duration and are dropped too). Every part of the score goes into the same roll. The grid is aligned to
the barlines: when the first measure is a pickup (music21's ``paddingLeft`` > 0), g_t = f + t with f the least
time >= 0 such that f + paddingLeft is a whole number of quarters; otherwise f = 0. Repeats are not expanded.
This follows the quarter-note quantisation of the JSB Chorales set (Boulanger-Lewandowski et al. 2012).

Corpus (``chorale_names``): the distinct files of music21's Riemenschneider chorale list (371 numbers, 350
distinct files in music21 10.5), sorted by name. Split (``split_names``): the sorted names shuffled by a seeded
generator, then 60 / 20 / 20 % for train / valid / test (210 / 70 / 70 here; JSB has 229 / 76 / 77 of 382).
Parsing all of them takes one to two minutes, so ``load_chorales`` keeps the rolls in ``cache_dir()/bach_chorales.pt``.

Model (``PianoRollModel``): 88 independent Bernoulli outputs per step,
    p(v_t | v_<t) = prod_k sigmoid(s_tk)^v_tk (1 - sigmoid(s_tk))^(1 - v_tk),  s_t = head(stack(W v_{t-1})),
with v_{-1} = 0, as in Chung et al. 2014 ("Empirical evaluation of gated recurrent neural networks on sequence
modeling"). The NLL of a step is sum_k BCE(s_tk, v_tk) in nats; a data set's NLL per step is the sum over all of
its steps divided by their number (every chorale's steps pooled, the first included).
"""
from __future__ import annotations

import math
import os
import warnings
from fractions import Fraction
from pathlib import Path

import torch

from rnnzoo.errors import ConfigError, DataError, ShapeError
from rnnzoo.models.piano_roll import N_KEYS, PianoRollModel

LOWEST_MIDI = 21  # A0, the lowest piano key; the highest is 21 + 87 = 108 (C8)
CACHE_FORMAT = 1  # bump when the roll definition changes, so that old caches are rebuilt
CACHE_FILE = "bach_chorales.pt"


def _music21():
    try:
        import music21
    except ImportError:
        raise DataError("the Bach chorales come from music21, which is not installed; "
                        "pip install 'rnnzoo[bench]' (or music21)") from None
    return music21


def piano_roll(score) -> torch.Tensor:
    """The binary roll (T, 88) float32 of a music21 stream on the quarter-note grid of the module docstring.

    T is the number of grid times before the end of the last note. A DataError names a stream with no pitched
    notes or a pitch off the 88 keys."""
    m21 = _music21()
    if not isinstance(score, m21.stream.Stream):
        raise DataError(f"piano_roll needs a music21 stream (e.g. music21.corpus.parse(...)), "
                        f"got {type(score).__name__}")
    first_measure = score.recurse().getElementsByClass(m21.stream.Measure).first()
    pickup = Fraction(first_measure.paddingLeft) if first_measure is not None else Fraction(0)
    first = -pickup % 1  # grid time of row 0, in [0, 1)
    spans = []  # (first row, end row, MIDI pitches)
    for n in score.flatten().getElementsByClass((m21.note.Note, m21.chord.Chord)):
        on = Fraction(n.offset)
        end = on + Fraction(n.duration.quarterLength)
        # rows t with on <= first + t < end
        spans.append((math.ceil(on - first), math.ceil(end - first), [p.midi for p in n.pitches], on))
    if not spans:
        raise DataError("piano_roll: the stream has no pitched notes or chords; nothing to put on the keys")
    T = max(0, max(stop for _, stop, _, _ in spans))
    roll = torch.zeros(T, N_KEYS)  # (T, 88)
    for start, stop, pitches, on in spans:
        for midi in pitches:
            if not LOWEST_MIDI <= midi < LOWEST_MIDI + N_KEYS:
                raise DataError(f"piano_roll: pitch MIDI {midi} at offset {float(on):g} is off the 88 piano keys "
                                f"(MIDI {LOWEST_MIDI}..{LOWEST_MIDI + N_KEYS - 1}); transpose the stream first")
            roll[max(start, 0):stop, midi - LOWEST_MIDI] = 1.0
    return roll


def chorale_names() -> list[str]:
    """The corpus paths (e.g. 'bach/bwv10.7') of music21's Riemenschneider chorales, distinct and sorted."""
    m21 = _music21()
    return sorted(set(m21.corpus.chorales.Iterator(returnType="filename")))


def split_names(names: list[str], seed: int = 0, fractions: tuple[float, float] = (0.6, 0.2)) -> dict[str, list[str]]:
    """{"train", "valid", "test"}: the sorted distinct ``names`` in a seeded random order, cut at
    round(fractions[0] n) and round((fractions[0] + fractions[1]) n); each list keeps that random order."""
    if len(fractions) != 2 or not all(isinstance(f, (int, float)) and f >= 0 for f in fractions) \
            or sum(fractions) > 1:
        raise ConfigError(f"split_names: fractions must be (train, valid) >= 0 with a sum <= 1 (test gets the "
                          f"rest), got {fractions!r}")
    names = sorted(set(names))
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [names[i] for i in order]
    a = round(fractions[0] * len(names))
    b = round((fractions[0] + fractions[1]) * len(names))
    return {"train": shuffled[:a], "valid": shuffled[a:b], "test": shuffled[b:]}


def cache_dir() -> Path:
    """$RNNZOO_CACHE when set, else ~/.cache/rnnzoo."""
    env = os.environ.get("RNNZOO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rnnzoo"


def parse_chorale(name: str) -> torch.Tensor:
    """The roll of one corpus chorale, parsed now (no cache)."""
    m21 = _music21()
    try:
        score = m21.corpus.parse(name)
    except Exception as e:  # music21 raises many kinds for a missing or broken file
        raise DataError(f"music21 could not parse the corpus file {name!r} ({type(e).__name__}: {e}); "
                        "check the name against chorale_names()") from None
    return piano_roll(score)


def load_rolls(names: list[str], cache: bool = True, progress: bool = False) -> dict[str, torch.Tensor]:
    """name -> roll (T, 88) float32 for each of ``names``. With ``cache``, rolls already in the cache file are
    read from it and the missing ones parsed and added (the file is replaced atomically); a cache that cannot be
    read or written is skipped with a warning."""
    path = cache_dir() / CACHE_FILE
    stored: dict[str, torch.Tensor] = {}
    if cache and path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            if blob.get("format") == CACHE_FORMAT:
                stored = blob["rolls"]
        except Exception as e:  # a truncated or foreign file: rebuild it
            warnings.warn(f"ignoring the unreadable roll cache {path} ({type(e).__name__}); it will be rebuilt")
    missing = [n for n in dict.fromkeys(names) if n not in stored]
    for i, name in enumerate(missing):
        if progress:
            print(f"\rparsing chorale {i + 1}/{len(missing)} {name}", end="", flush=True)
        stored[name] = parse_chorale(name).to(torch.bool)  # bool: 1 byte per cell on disk
    if progress and missing:
        print()
    if cache and missing:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            torch.save({"format": CACHE_FORMAT, "rolls": stored}, tmp)
            os.replace(tmp, path)  # readers see the old file or the new one, never half of one
        except OSError as e:
            warnings.warn(f"could not write the roll cache {path} ({e.strerror}); set RNNZOO_CACHE to a writable "
                          "folder to skip parsing next time")
    return {name: stored[name].float() for name in names}


def load_chorales(seed: int = 0, cache: bool = True, progress: bool = False) -> dict[str, list[torch.Tensor]]:
    """{"train", "valid", "test"} lists of rolls (T, 88), split by ``split_names(chorale_names(), seed)``."""
    splits = split_names(chorale_names(), seed)
    rolls = load_rolls([n for part in splits.values() for n in part], cache=cache, progress=progress)
    return {part: [rolls[n] for n in names] for part, names in splits.items()}


def pad_rolls(rolls: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad rolls (T_i, 88) with zeros into x (B, max T_i, 88) float32 and lengths (B,) long."""
    if not rolls:
        raise DataError("pad_rolls: no rolls to pad; pass a non-empty list of (T, 88) tensors")
    for i, r in enumerate(rolls):
        if not isinstance(r, torch.Tensor) or r.dim() != 2 or r.shape[1] != N_KEYS:
            shape = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise ShapeError(f"pad_rolls: roll {i} must be a tensor (T, {N_KEYS}), got {shape}")
    lengths = torch.tensor([r.shape[0] for r in rolls])  # (B,)
    x = torch.zeros(len(rolls), int(lengths.max()), N_KEYS)  # (B, T, 88)
    for i, r in enumerate(rolls):
        x[i, :r.shape[0]] = r
    return x, lengths


@torch.no_grad()
def dataset_nll(model: PianoRollModel, rolls: list[torch.Tensor], batch_size: int = 16) -> float:
    """NLL per time step over all frames of ``rolls`` pooled (sum of frame NLLs / number of frames), in eval
    mode; the model's train/eval mode is restored afterwards."""
    if not rolls:
        raise DataError("dataset_nll: no rolls to score")
    was_training = model.training
    model.eval()
    total, steps = 0.0, 0
    try:
        for i in range(0, len(rolls), batch_size):
            x, lengths = pad_rolls(rolls[i:i + batch_size])
            total += float(model.frame_nll(x, lengths).sum())
            steps += int(lengths.sum())
    finally:
        model.train(was_training)
    return total / max(steps, 1)
