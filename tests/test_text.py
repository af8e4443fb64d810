import json
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnzoo.errors import CheckpointError, ConfigError, DataError, ShapeError
from rnnzoo.tasks import CharVocab, StreamBatches, default_corpus, read_text, split_ids
from rnnzoo.tasks import text as text_module


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet="ab\n\té€ \U0001f600", min_size=1, max_size=50))
def test_vocab_round_trip(s):
    vocab = CharVocab.from_text(s)
    assert vocab.chars == sorted(set(s))
    ids = vocab.encode(s)
    assert ids.dtype == torch.long and ids.shape == (len(s),)
    assert [vocab.chars[i] for i in ids.tolist()] == list(s)
    assert vocab.decode(ids) == s
    assert vocab.decode(ids.tolist()) == s
    again = CharVocab.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again == vocab and torch.equal(again.encode(s), ids)


def test_vocab_decode_single_and_bad_ids():
    vocab = CharVocab.from_text("hello")
    assert vocab.decode(torch.tensor(1)) == vocab.chars[1]
    with pytest.raises(DataError, match="not in the vocabulary"):
        vocab.decode([0, len(vocab)])
    with pytest.raises(ShapeError, match="one row at a time"):
        vocab.decode(torch.zeros(2, 3, dtype=torch.long))


def test_vocab_unknown_characters_are_named():
    vocab = CharVocab.from_text("abc")
    with pytest.raises(DataError, match=r"'x'.*'z'|'z'.*'x'"):
        vocab.encode("abxcz")


@pytest.mark.parametrize("bad", [
    None, [], {"chars": ["a"]}, {"type": "char", "chars": "ab"}, {"type": "char", "chars": []},
    {"type": "char", "chars": ["a", "bc"]}, {"type": "char", "chars": ["a", 1]},
    {"type": "char", "chars": ["a", "a"]},
])
def test_vocab_from_bad_json(bad):
    with pytest.raises(CheckpointError):
        CharVocab.from_json(bad)


def test_read_text_ok(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes("\ufeffhéllo\nworld".encode("utf-8"))
    assert read_text(f) == "héllo\nworld"
    assert read_text(str(f)) == "héllo\nworld"


def test_read_text_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="directory"):
        read_text(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_text(empty)
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"abc\x00def")
    with pytest.raises(DataError, match="binary.*offset 3"):
        read_text(binary)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("naïve".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8.*0xef at offset 2"):
        read_text(latin)


def test_default_corpus():
    text, about = default_corpus()
    assert len(text) > 500_000
    assert "def " in text and "class " in text
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in about and "argparse.py" in about
    assert default_corpus()[0] == text


def test_default_corpus_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(text_module.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    with pytest.raises(DataError, match="pass a text file"):
        default_corpus()
    (tmp_path / "textwrap.py").write_text("import re\n")
    text, about = default_corpus()
    assert text == "import re\n" and "not found: argparse.py" in about


def test_split_ids():
    ids = torch.arange(100)
    train, val = split_ids(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    train, val = split_ids(ids, 0.0)
    assert len(train) == 100 and len(val) == 0
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(ConfigError):
            split_ids(ids, bad)
    with pytest.raises(DataError):
        split_ids(torch.arange(3), 0.1)
    with pytest.raises(ShapeError):
        split_ids(torch.zeros(2, 5, dtype=torch.long))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(10, 300), batch_size=st.integers(1, 6), seq_len=st.integers(1, 9))
def test_stream_batches_are_contiguous(n, batch_size, seq_len):
    ids = torch.randperm(n)  # distinct values, so positions can be recovered
    if n - 1 < batch_size * seq_len:
        with pytest.raises(DataError, match=f"needs {batch_size * seq_len + 1}"):
            StreamBatches(ids, batch_size, seq_len)
        return
    sb = StreamBatches(ids, batch_size, seq_len)
    position = {v: i for i, v in enumerate(ids.tolist())}
    batches = [sb.get(i) for i in range(len(sb))]
    rows = [torch.cat([x[b] for x, _, _ in batches]).tolist() for b in range(batch_size)]
    seen = set()
    for row in rows:
        start = position[row[0]]
        assert row == ids[start:start + len(row)].tolist()  # each row reads the text in order
        assert seen.isdisjoint(row)
        seen.update(row)
    for x, y, _ in batches:
        assert x.shape == y.shape == (batch_size, seq_len)
        for b in range(batch_size):
            for t in range(seq_len):
                assert position[y[b, t].item()] == position[x[b, t].item()] + 1
    for i in range(len(sb) - 1):
        for b in range(batch_size):
            assert position[batches[i + 1][0][b, 0].item()] == position[batches[i][1][b, -1].item()]
    # (n - 1) // batch_size tokens per stream, so at most batch_size * seq_len + batch_size - 1 are unused
    assert len(seen) > n - 1 - batch_size * (seq_len + 1)


def test_stream_batches_reset_and_wrap():
    sb = StreamBatches(torch.arange(200), batch_size=4, seq_len=7)
    n = len(sb)
    assert n == (199 // 4) // 7
    assert [sb.get(i)[2] for i in range(2 * n + 1)] == [i % n == 0 for i in range(2 * n + 1)]
    for i in range(n):
        x1, y1, _ = sb.get(i)
        x2, y2, _ = sb.get(i + 3 * n)
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_stream_batches_batch_is_a_copy():
    ids = torch.arange(100)
    x, _, _ = StreamBatches(ids, 1, 10).get(0)
    x.zero_()
    assert ids[:10].tolist() == list(range(10))


@pytest.mark.parametrize("world_size", [2, 3])
def test_stream_batches_ranks_split_the_global_batch(world_size):
    ids = torch.randint(0, 50, (1000,))
    full = StreamBatches(ids, 6, 11)
    parts = [StreamBatches(ids, 6, 11, rank=r, world_size=world_size) for r in range(world_size)]
    assert all(len(p) == len(full) for p in parts)
    for i in (0, 1, len(full) - 1, len(full) + 2):
        x, y, reset = full.get(i)
        got = [p.get(i) for p in parts]
        assert torch.equal(torch.cat([g[0] for g in got]), x)
        assert torch.equal(torch.cat([g[1] for g in got]), y)
        assert all(g[2] == reset for g in got)


def test_stream_batches_bad_arguments():
    ids = torch.arange(100)
    with pytest.raises(ConfigError, match="divisible"):
        StreamBatches(ids, 3, 5, world_size=2)
    with pytest.raises(ConfigError, match="rank"):
        StreamBatches(ids, 4, 5, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="seq_len"):
        StreamBatches(ids, 4, 0)
    with pytest.raises(ShapeError):
        StreamBatches(ids.float(), 4, 5)
    with pytest.raises(DataError, match="smaller batch_size or seq_len"):
        StreamBatches(ids, 10, 10)
    with pytest.raises(ConfigError):
        StreamBatches(ids, 4, 5).get(-1)
