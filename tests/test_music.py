import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import ConfigError, DataError, ShapeError
from rnnzoo.tasks import music
from rnnzoo.tasks.music import N_KEYS, PianoRollModel, dataset_nll, pad_rolls, piano_roll, split_names

m21 = pytest.importorskip("music21")
from music21 import chord, meter, note, stream, tie  # noqa: E402


def roll_from_sets(frames: list[set[int]]) -> torch.Tensor:
    roll = torch.zeros(len(frames), N_KEYS)
    for t, pitches in enumerate(frames):
        for midi in pitches:
            roll[t, midi - 21] = 1.0
    return roll


def measure(number, *items, padding=0.0):
    m = stream.Measure(number=number)
    m.paddingLeft = padding
    for item in items:
        m.append(item)
    return m


def test_piano_roll_hand_made_score():
    grace = note.Note("D5").getGrace()  # no duration: dropped
    held = note.Note("C5", quarterLength=2)
    held.tie = tie.Tie("start")
    held_end = note.Note("C5", quarterLength=1)
    held_end.tie = tie.Tie("stop")
    upper = stream.Part([
        measure(1, meter.TimeSignature("4/4"), grace, note.Note("C4"), note.Note("D4", quarterLength=2),
                note.Rest()),
        measure(2, chord.Chord(["E4", "G4"]), note.Note("F4", quarterLength=0.5),
                note.Note("A4", quarterLength=0.5), held),  # A4 sounds at no grid time
        measure(3, held_end, note.Note("B3", quarterLength=1.5), note.Note("G3", quarterLength=0.5)),
    ])
    lower = stream.Part([
        measure(1, meter.TimeSignature("4/4"), note.Note("C3", quarterLength=4)),
        measure(2, note.Note("C8"), note.Rest(quarterLength=3)),
        measure(3, note.Note("A0", quarterLength=3)),
    ])
    score = stream.Score([upper, lower])
    expected = roll_from_sets([{60, 48}, {62, 48}, {62, 48}, {48}, {64, 67, 108}, {65}, {72}, {72}, {72, 21},
                               {59, 21}, {59, 21}])
    got = piano_roll(score)
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)


def test_piano_roll_grid_follows_the_barlines_after_a_pickup():
    # a 4/4 pickup of one eighth: the grid sits on the beats of the full bars, 0.5 + t
    part = stream.Part([measure(0, meter.TimeSignature("4/4"), note.Note("G4", quarterLength=0.5), padding=3.5),
                        measure(1, note.Note("C4"), note.Note("D4"), note.Note("E4", quarterLength=2))])
    assert torch.equal(piano_roll(part), roll_from_sets([{60}, {62}, {64}, {64}]))
    # the same notes without the pickup marking are sampled from time 0
    part = stream.Part([measure(1, note.Note("G4", quarterLength=0.5), note.Note("C4"), note.Note("D4"),
                                note.Note("E4", quarterLength=2))])
    assert torch.equal(piano_roll(part), roll_from_sets([{67}, {60}, {62}, {64}, {64}]))


voice = st.lists(st.tuples(st.one_of(st.none(), st.integers(21, 108)), st.integers(1, 6)), min_size=1, max_size=12)


@settings(max_examples=30, deadline=None)
@given(st.lists(voice, min_size=1, max_size=3))
def test_piano_roll_matches_an_eighth_note_grid(voices):
    """Notes and rests of whole eighths: the roll is every second column of the eighth-resolution roll."""
    if not any(p is not None for v in voices for p, _ in v):
        voices = [[(60, 2)] + voices[0]]
    parts, total = [], max(sum(d for _, d in v) for v in voices)
    fine = torch.zeros(total, N_KEYS)  # (eighths, 88)
    last_end = 0
    for v in voices:
        part, at = stream.Part(), 0
        for pitch, eighths in v:
            if pitch is None:
                part.append(note.Rest(quarterLength=eighths / 2))
            else:
                part.append(note.Note(pitch, quarterLength=eighths / 2))
                fine[at:at + eighths, pitch - 21] = 1.0
                last_end = max(last_end, at + eighths)
            at += eighths
        parts.append(part)
    expected = fine[0::2][:math.ceil(last_end / 2)]
    assert torch.equal(piano_roll(stream.Score(parts)), expected)


def test_piano_roll_errors():
    with pytest.raises(DataError, match="music21 stream"):
        piano_roll([60, 62])
    with pytest.raises(DataError, match="no pitched notes"):
        piano_roll(stream.Part([note.Rest(quarterLength=4)]))
    with pytest.raises(DataError, match="MIDI 12 .*transpose"):
        piano_roll(stream.Part([note.Note("C0")]))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text("abcxyz/.0123456789", min_size=1, max_size=8), max_size=40), st.integers(0, 3))
def test_split_is_deterministic_disjoint_and_complete(names, seed):
    splits = split_names(names, seed)
    again = split_names(list(reversed(names)), seed)  # the input order does not matter
    assert splits == again
    parts = [set(splits[k]) for k in ("train", "valid", "test")]
    assert sum(len(p) for p in parts) == len(set(names)) == len(set().union(*parts))
    n = len(set(names))
    assert len(splits["train"]) == round(0.6 * n) and len(splits["valid"]) == round(0.8 * n) - round(0.6 * n)


def test_chorale_split_sizes_and_seed():
    names = music.chorale_names()
    assert names == sorted(set(names)) and len(names) >= 300
    assert all(n.startswith("bach/") for n in names)
    a, b = split_names(names, 0), split_names(names, 1)
    assert {k: len(v) for k, v in a.items()} == {k: len(v) for k, v in b.items()}
    assert a["test"] != b["test"]
    with pytest.raises(ConfigError, match="fractions"):
        split_names(names, 0, (0.7, 0.5))


def test_load_rolls_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNZOO_CACHE", str(tmp_path / "cache"))
    name = music.chorale_names()[0]
    direct = music.load_rolls([name], cache=False)[name]
    assert not (tmp_path / "cache").exists()
    assert direct.shape[1] == N_KEYS and direct.shape[0] > 10
    assert set(direct.unique().tolist()) == {0.0, 1.0}
    assert int(direct.sum(1).max()) <= 8  # a chorale sounds a handful of voices at a time
    assert torch.equal(music.load_rolls([name])[name], direct)
    path = tmp_path / "cache" / music.CACHE_FILE
    assert path.exists() and not list(path.parent.glob("*.tmp"))

    def no_parsing(n):
        raise AssertionError(f"parsed {n} although it is cached")

    monkeypatch.setattr(music, "parse_chorale", no_parsing)
    assert torch.equal(music.load_rolls([name])[name], direct)
    path.write_bytes(b"not a torch file")
    monkeypatch.setattr(music, "parse_chorale", lambda n: direct)
    with pytest.warns(UserWarning, match="unreadable roll cache"):
        assert torch.equal(music.load_rolls([name])[name], direct)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten, so read cleanly again
        music.load_rolls([name])


def random_rolls(lengths, p=0.1):
    return [(torch.rand(T, N_KEYS) < p).float() for T in lengths]


@pytest.mark.parametrize("mixer", ["elman", "gru", "lstm"])
def test_nll_matches_direct_bce(mixer):
    model = PianoRollModel(mixer, d_model=12)
    rolls = random_rolls([7, 3, 11])
    x, lengths = pad_rolls(rolls)
    assert x.shape == (3, 11, N_KEYS) and lengths.tolist() == [7, 3, 11]
    total, steps = torch.zeros((), dtype=torch.float64), 0
    for r in rolls:  # each roll alone, unpadded, with the Bernoulli log-likelihood written out
        with torch.no_grad():
            logits = model(r[None])[0].double()  # (T, 88)
        prob = torch.sigmoid(logits)
        total -= (r * prob.log() + (1 - r) * (1 - prob).log()).sum()
        steps += r.shape[0]
    direct = float(total / steps)
    assert dataset_nll(model, rolls, batch_size=2) == pytest.approx(direct, rel=1e-4)
    with torch.no_grad():
        assert float(model.nll_per_step(x, lengths)) == pytest.approx(direct, rel=1e-4)
        # without lengths every padded frame is scored too
        full = F.binary_cross_entropy_with_logits(model(x), x, reduction="sum") / x.shape[:2].numel()
        assert float(model.nll_per_step(x)) == pytest.approx(float(full), rel=1e-5)


def test_model_shapes_and_causality():
    model = PianoRollModel("gru", d_model=16, n_layers=2)
    x, _ = pad_rolls(random_rolls([9, 9]))
    logits = model(x)
    assert logits.shape == (2, 9, N_KEYS)
    changed = x.clone()
    changed[:, 5:] = 1 - changed[:, 5:]
    other = model(changed)
    # frame t reads only frames < t: logits up to t = 5 are unchanged, later ones move
    assert torch.allclose(other[:, :6], logits[:, :6]) and not torch.allclose(other[:, 6:], logits[:, 6:])
    loss = model.nll_per_step(x)
    loss.backward()
    assert loss.shape == () and all(p.grad is not None for p in model.parameters())
    deep = PianoRollModel("mingru", d_model=16, n_layers=2, residual=True)
    assert deep(x).shape == (2, 9, N_KEYS)


def test_model_errors():
    model = PianoRollModel("elman", d_model=8)
    with pytest.raises(ShapeError, match=r"\(B, T, 88\)"):
        model(torch.zeros(4, N_KEYS))
    with pytest.raises(ShapeError, match="floating"):
        model(torch.zeros(1, 4, N_KEYS, dtype=torch.long))
    with pytest.raises(ShapeError, match="lengths"):
        model.nll_per_step(torch.zeros(2, 4, N_KEYS), torch.tensor([4, 5]))
    with pytest.raises(ShapeError, match=r"roll 1 .*\(T, 88\)"):
        pad_rolls([torch.zeros(3, N_KEYS), torch.zeros(3, 87)])
    with pytest.raises(ConfigError, match="causal"):
        PianoRollModel("gru", d_model=8, bidirectional=True)
