"""The model pool with a fake worker in place of the Supervisor (its
worker_factory seam, as Ollama's scheduler tests swap in fake runners):
loading on demand, keep_alive, making room, load failures; in milliseconds."""
import threading
import time

import pytest

from shimmy_py.errors import ShimmyError, Unavailable
from shimmy_py.generation.options import ModelOptions
from shimmy_py.serving.models.pool import LoadFailed, ModelPool
from shimmy_py.serving.worker.supervisor import WorkerSpec


class FakeWorker:
    started: list = []
    stopped: list = []
    events: list = []          # ("start" | "stop", model) in the order they happened

    def __init__(self, spec: WorkerSpec):
        self.spec, self.ready, self.info, self.restarts, self.stalls = spec, threading.Event(), {"devices": {}}, 0, 0
        self.cache_limits, self.shares, self.threads, self.stats = [], [], None, None

    def counters(self):
        return {"steps": 0}

    def start(self):
        if "broken" in self.spec.model_path:
            raise ShimmyError("llama.cpp could not load it: missing tensor")
        FakeWorker.started.append(self.spec.model_path)
        FakeWorker.events.append(("start", self.spec.model_path.rsplit("/", 1)[1]))
        self.ready.set()

    def stop(self):
        time.sleep(0.1)                           # a process takes a while to end
        FakeWorker.stopped.append(self.spec.model_path)
        FakeWorker.events.append(("stop", self.spec.model_path.rsplit("/", 1)[1]))

    def limit_cache(self, n):
        self.cache_limits.append(n)

    def share_threads(self, n):
        self.threads = n
        self.shares.append(n)


@pytest.fixture
def pool(tmp_path):
    FakeWorker.started, FakeWorker.stopped, FakeWorker.events = [], [], []
    for name in ("a", "b", "c", "broken"):
        (tmp_path / name).write_bytes(b"x" * 10)

    def make(max_models=2, keep_alive=60.0, **kw):
        p = ModelPool(lambda name: WorkerSpec(str(tmp_path / name), ModelOptions(n_threads=2), 4, 0),
                      lambda name: keep_alive,
                      max_models, worker_factory=FakeWorker, **kw)
        made.append(p)
        return p
    made = []
    yield make
    for p in made:
        p.close()


def test_a_model_loads_once_on_demand_and_stays(pool):
    p = pool()
    r = p.acquire("a")
    assert r.active == 1 and FakeWorker.started[-1].endswith("/a") and p.stats.loads == 1
    p.release(r)
    assert p.acquire("a") is r and len(FakeWorker.started) == 1
    assert any("loaded 'a'" in m for m in p.stats.reasons)


def test_keep_alive_zero_unloads_after_the_request(pool):
    p = pool()
    r = p.acquire("a", keep_alive=0)
    p.release(r)
    assert "a" not in p.residents and p.stats.unloads == 1


def test_beyond_max_models_the_least_recently_used_idle_one_goes(pool):
    p = pool(max_models=2)
    a = p.acquire("a")
    p.release(a)
    time.sleep(0.01)
    b = p.acquire("b")
    p.release(b)
    p.acquire("c")
    assert sorted(p.residents) == ["b", "c"] and any("unloading 'a'" in m for m in p.stats.reasons)


def test_all_busy_is_unavailable_and_nothing_is_unloaded(pool):
    p = pool(max_models=1)
    p.acquire("a")
    with pytest.raises(Unavailable, match="every resident model is busy"):
        p.acquire("b")
    assert list(p.residents) == ["a"]


def test_a_failed_load_is_named_and_leaves_nothing_behind(pool):
    p = pool()
    with pytest.raises(LoadFailed, match="model 'broken' failed to load: llama.cpp could not load it"):
        p.acquire("broken")
    assert p.residents == {} and p._loading == {}
    assert p.acquire("a").name == "a"          # and the next model loads


def test_a_memory_budget_is_weighed_by_the_admission_policy(pool):
    needs = {"a": {"CPU": 6}, "b": {"CPU": 6}}
    p = pool(max_models=9, need_for=lambda name: needs[name], budget={"CPU": 10})
    p.release(p.acquire("a"))
    b = p.acquire("b")
    assert list(p.residents) == ["b"] and b.need == {"CPU": 6}
    assert any("memory on CPU" in m for m in p.stats.reasons)


def test_with_admit_wait_a_request_waits_for_the_busy_model_and_the_swap_is_complete(pool):
    """The newcomer loads only once the evicted worker has stopped: never two
    workers for --max-models 1."""
    p = pool(max_models=1)
    p.admit_wait = 10.0
    a = p.acquire("a")
    threading.Timer(0.2, lambda: p.release(a)).start()
    b = p.acquire("b")
    assert list(p.residents) == ["b"] and b.name == "b"
    assert FakeWorker.events == [("start", "a"), ("stop", "a"), ("start", "b")]   # a ended before b started


def test_models_computing_at_once_are_told_their_share_of_the_cores(pool, tmp_path):
    """Two models with a request each on a 2-core machine compute with 1
    thread each; when one goes idle the other gets its own count back, and
    the idle one is told its own count before its next request."""
    p = pool(cores=2)
    a = p.acquire("a")
    assert a.supervisor.shares == []                  # alone: its own count, nothing to tell
    b = p.acquire("b")
    assert (a.supervisor.threads, b.supervisor.threads) == (1, 1)
    p.release(b)
    assert a.supervisor.threads == 2 and b.supervisor.threads == 2
    p.release(a)
    assert a.supervisor.shares == [1, 2] and b.supervisor.shares == [1, 2]
    p.acquire("a")
    assert a.supervisor.shares == [1, 2]              # nothing changed: no message
