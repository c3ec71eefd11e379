"""The figures of an expert trace, on routings written by hand, and the
recorder's assembly of ubatches (pure: no libllama)."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from shimmy_py.errors import GenerationError
from shimmy_py.generation.experts import ExpertRecorder, ExpertTrace


def trace(ids, n_experts=4, starts=(0,)):
    ids = np.asarray(ids, dtype=np.int32)
    return ExpertTrace(ids=ids, weights=np.ones(ids.shape, np.float32) / ids.shape[2],
                       layers=tuple(range(ids.shape[1])), n_experts=n_experts, starts=starts)


def test_counts_balance_and_overlap():
    # one layer, top-2 over 4 experts: tokens choose {0,1}, {0,1}, {0,2}, {3,0}
    t = trace([[[0, 1]], [[0, 1]], [[0, 2]], [[3, 0]]])
    assert t.counts().tolist() == [[4, 2, 1, 1]]
    bal = t.load_balance()
    assert bal["max_over_mean"][0] == pytest.approx(4 / 2)
    p = np.array([4, 2, 1, 1]) / 8
    assert bal["entropy"][0] == pytest.approx(-(p * np.log(p)).sum() / np.log(4))
    # adjacent pairs share 2, 1, 1 of 2 experts
    assert t.adjacent_overlap()[0] == pytest.approx((1 + 0.5 + 0.5) / 3)


def test_a_uniform_layer_is_balanced():
    t = trace([[[0, 1]], [[2, 3]]])
    assert t.load_balance()["max_over_mean"][0] == 1.0
    assert t.load_balance()["entropy"][0] == pytest.approx(1.0)


def test_lru_hit_rate_by_hand():
    # one layer, top-1: 0 1 0 2 0 1
    t = trace([[[e]] for e in [0, 1, 0, 2, 0, 1]])
    # capacity 1: a hit only on a repeat of the previous token's expert: none
    assert t.lru_hit_rate(1)[0] == 0
    # capacity 2: 0m 1m 0h 2m(evicts 1) 0h 1m -> 2/6
    assert t.lru_hit_rate(2)[0] == pytest.approx(2 / 6)
    # capacity 3 holds all: only the first use of each misses -> 3/6
    assert t.lru_hit_rate(3)[0] == pytest.approx(3 / 6)
    caps, curve = t.lru_curve([1, 2, 3])
    assert caps.tolist() == [1, 2, 3] and curve[:, 0].tolist() == pytest.approx([0, 2 / 6, 3 / 6])
    with pytest.raises(GenerationError):
        t.lru_hit_rate(0)


def test_merge_keeps_segments_apart():
    a, b = trace([[[0, 1]], [[0, 1]]]), trace([[[2, 3]], [[2, 3]]])
    m = ExpertTrace.merge([a, b])
    assert m.starts == (0, 2) and len(m.ids) == 4
    assert m.adjacent_overlap()[0] == 1.0      # the pair across prompts (1 -> 2) is not counted
    assert m.counts().tolist() == [[2, 2, 2, 2]]


def test_save_and_load(tmp_path):
    t = trace([[[0, 1], [2, 3]], [[1, 0], [3, 2]]])
    t.tokens, t.pieces, t.n_prompt = [5, 6], ["a", "b"], 1
    t.save(tmp_path / "t.npz")
    back = ExpertTrace.load(tmp_path / "t.npz")
    assert (back.ids == t.ids).all() and back.tokens == [5, 6] and back.pieces == ["a", "b"]
    assert back.n_prompt == 1 and back.layers == (0, 1) and back.generated.tolist() == [False, True]


def read_png(path):
    """(width, height, pixels) of an 8-bit RGB PNG, every chunk's CRC checked."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[y * (3 * w + 1):(y + 1) * (3 * w + 1)] for y in range(h)]
    assert all(r[0] == 0 for r in rows)
    return w, h, np.frombuffer(b"".join(r[1:] for r in rows), np.uint8).reshape(h, w, 3)


def test_pictures_are_valid_pngs_of_the_expected_size(tmp_path):
    t = trace([[[0, 1], [2, 3]], [[0, 2], [3, 1]], [[0, 3], [1, 2]]], n_experts=4)
    assert t.heatmap(tmp_path / "h.png", cell=5) == (4 * 5, 2 * 5)
    w, h, px = read_png(tmp_path / "h.png")
    assert (w, h) == (20, 10)
    # layer 0: expert 0 chosen 3 times (the row's peak: yellow); a never-chosen expert is dark
    assert tuple(px[0, 0]) == (253, 231, 37)
    assert t.strip(tmp_path / "s.png", cell=3) == (3 * 3, 2 * 3)
    w, h, px = read_png(tmp_path / "s.png")
    assert (w, h) == (9, 6)
    assert (px[0, 0] == px[0, 3]).all() and not (px[3, 0] == px[3, 3]).all()   # layer 0 keeps 0; layer 1 moves


def test_recorder_assembles_ubatches():
    r = ExpertRecorder()
    for ubatch in ([[0, 1], [2, 3]], [[1, 2]]):               # 2 tokens, then 1
        ids, n = np.array(ubatch, np.int32)[None, None], len(ubatch)       # ne [k, tokens, 1, 1]
        for layer in (1, 2):                                  # MoE layers 1 and 2 (0 is dense)
            # as the tap hands them: ne [1, k, tokens] is NumPy's (1, tokens, k, 1); the ids, the operand
            r(f"ffn_moe_weights-{layer}", np.full((1, n, 2, 1), 0.1, np.float32), ids + layer)
            r(f"ffn_moe_weights_norm-{layer}", np.full((1, 1, n, 2), 0.5, np.float32), None)
    t = r.trace([7, 8, 9], ["x", "y", "z"], n_prompt=2, n_experts=8)
    assert t.layers == (1, 2) and t.ids.shape == (3, 2, 2)
    assert t.ids[:, 0].tolist() == [[1, 2], [3, 4], [2, 3]] and t.ids[2, 1].tolist() == [3, 4]
    assert (t.weights == 0.5).all()              # the last weight stage is the one that counts


def test_recorder_caps_memory():
    r = ExpertRecorder(cap_tokens=3)
    for _ in range(5):
        r("ffn_moe_weights-0", np.zeros((2, 2, 1), np.float32), np.zeros((2, 2), np.int32))
    t = r.trace(list(range(10)), ["."] * 10, n_prompt=2, n_experts=4)
    assert len(t.ids) == 3 and t.truncated and len(t.tokens) == 3


def test_recorder_refuses_a_layer_that_routed_fewer_tokens():
    r = ExpertRecorder()
    r("ffn_moe_weights-0", np.zeros((4, 2, 1), np.float32), np.zeros((4, 2), np.int32))
    r("ffn_moe_weights-1", np.zeros((1, 2, 1), np.float32), np.zeros((1, 2), np.int32))   # the last layer: 1 of 4
    with pytest.raises(GenerationError, match="layer"):
        r.trace([1, 2, 3, 4], ["."] * 4, 4, 4)


def test_step_routing_and_batch_rows():
    """The engine's sink: two ubatches of one decode concatenated per layer; the
    last layer routed only the rows with logits (rows 1 and 3 of 4)."""
    from shimmy_py.generation.experts import StepRouting, batch_rows
    s = StepRouting()
    for ids in (np.array([[0, 1], [2, 3]]), np.array([[4, 5], [6, 7]])):    # layer 1, ubatches of 2 rows
        s("ffn_moe_weights-1", np.full((1, 2, 2, 1), 0.5, np.float32), ids[None, None])
        # layer 2: only the row with logits
        s("ffn_moe_weights-2", np.full((1, 1, 2, 1), 0.25, np.float32), ids[1:][None, None] + 10)
    routed = s.take()
    assert routed[1][0].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]] and routed[2][0].tolist() == [[12, 13], [16, 17]]
    assert (routed[2][1] == 0.25).all() and s.take() == {}
    rows = batch_rows(routed, [False, True, False, True])
    assert rows[1].tolist() == [0, 1, 2, 3] and rows[2].tolist() == [1, 3]
    with pytest.raises(GenerationError, match="layer 1 routed 4 rows of a batch of 3"):
        batch_rows(routed, [True, False, False])
