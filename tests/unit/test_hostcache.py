"""The host-RAM conversation cache's bookkeeping."""
from shimmy_py.generation.hostcache import HostCache


def test_best_prefix_and_take():
    c = HostCache(1000)
    assert c.put([1, 2, 3, 4], b"a" * 100) and c.put([1, 2, 9], b"b" * 100)
    entry, shared = c.best([1, 2, 3, 4, 5])
    assert entry.tokens == (1, 2, 3, 4) and shared == 4
    assert c.take(entry).state == b"a" * 100 and c.hits == 1 and len(c) == 1 and c.bytes == 100
    assert c.best([7]) == (None, 0)


def test_the_limit_evicts_the_least_recently_saved():
    c = HostCache(250)
    c.put([1], b"x" * 100)
    c.put([2], b"x" * 100)
    c.put([3], b"x" * 100)                 # [1] goes
    assert c.best([1])[0] is None and c.best([2])[1] == 1 and c.bytes == 200
    assert not c.put([4], b"x" * 300)      # larger than the whole cache
    c.put([2], b"y" * 50)                  # saving the same tokens again replaces
    assert c.bytes == 150 and len(c) == 2


def test_off():
    c = HostCache(0)
    assert not c.put([1], b"x") and len(c) == 0
