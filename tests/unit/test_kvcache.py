"""KVTokens, the record of what each sequence's KV cache holds."""
from shimmy_py.generation.kvcache import KVTokens, common_prefix


class Cache:
    """llama_memory_seq_rm's contract as KVTokens uses it: remove [p0, end) of
    a sequence, or refuse (llama.cpp refuses partial removal for recurrent state)."""

    def __init__(self, refuse_partial=False):
        self.calls, self.refuse_partial = [], refuse_partial

    def seq_rm(self, seq, p0=-1, p1=-1):
        self.calls.append((seq, p0, p1))
        return not (self.refuse_partial and p0 > 0)


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2 and common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2


def test_reuse_keeps_the_shared_prefix_but_always_the_last_token_to_decode():
    kv, cache = KVTokens(2), Cache()
    kv.extend(0, [5, 6, 7, 8])
    assert kv.reuse(cache, 0, [5, 6, 9]) == 2 and cache.calls[-1] == (0, 2, -1)
    assert kv.cached(0) == 2
    kv.extend(0, [9])
    assert kv.reuse(cache, 0, [5, 6, 9]) == 2          # all shared: the last is decoded again


def test_pick_prefers_the_longest_prefix_then_the_lowest_id():
    kv = KVTokens(3)
    kv.extend(1, [1, 2, 3])
    kv.extend(2, [1, 2, 3, 4])
    assert kv.pick([0, 1, 2], [1, 2, 3, 4, 5]) == 2
    assert kv.pick([0, 1], [1, 2, 9]) == 1
    assert kv.pick([0, 1], [7]) == 0


def test_a_refused_trim_starts_the_sequence_afresh():
    kv, cache = KVTokens(1), Cache(refuse_partial=True)
    kv.extend(0, [1, 2, 3])
    assert kv.reuse(cache, 0, [1, 2, 4]) == 0
    assert cache.calls == [(0, 2, -1), (0, -1, -1)] and kv.cached(0) == 0


def test_forget():
    kv = KVTokens(2)
    kv.extend(0, [1]), kv.extend(1, [2])
    kv.forget(1)
    assert (kv.cached(0), kv.cached(1)) == (1, 0)
    kv.forget()
    assert kv.cached(0) == 0
