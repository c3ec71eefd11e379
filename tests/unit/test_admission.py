"""Memory admission (serving/admission.py) as a pure function, every branch
of the policy in milliseconds: no worker, no model, no libllama. The
figures are bytes per device, as plans give them."""
import pytest

from shimmy_py.errors import Unavailable
from shimmy_py.serving.models.admission import Holder, Limits, Loading, Newcomer, admit

G = 1 << 30


def holder(name, cpu=0, acc=0, active=0, last_used=0.0, rpc=(), cache=0):
    need = {k: v for k, v in (("CPU", cpu), ("RPC0", acc)) if v}
    return Holder(name, need, active, last_used, frozenset(rpc), cache)


def new(name="new", cpu=0, acc=0, rpc=(), cache=0):
    return Newcomer(name, {k: v for k, v in (("CPU", cpu), ("RPC0", acc)) if v}, frozenset(rpc), cache)


def fit_into(need_after: dict):
    """A replan seam: the newcomer re-planned with fit holds `need_after`, if the room allows."""
    calls = []

    def replan(name, room):
        calls.append((name, dict(room)))
        return dict(need_after), f"plan of {name}"
    replan.calls = calls
    return replan


def test_a_model_that_fits_loads_beside_the_residents():
    d = admit([holder("a", cpu=2 * G)], [], new(cpu=2 * G), Limits({"CPU": 8 * G}))
    assert d.unload == () and d.plan is None and d.need == {"CPU": 2 * G}


def test_max_models_unloads_the_least_recently_used_idle_model():
    residents = [holder("a", last_used=5), holder("b", last_used=1), holder("c", last_used=3, active=1)]
    d = admit(residents, [], new(), Limits({}, max_models=3))
    assert [n for n, _ in d.unload] == ["b"] and "--max-models 3" in d.unload[0][1]


def test_every_model_busy_at_max_models_is_unavailable_with_retry():
    with pytest.raises(Unavailable, match="2 models are resident") as e:
        admit([holder("a", active=1), holder("b", active=1)], [], new(), Limits({}, max_models=2))
    assert e.value.retry_after == 5


def test_memory_short_unloads_idle_models_oldest_first_until_it_fits():
    residents = [holder("a", cpu=3 * G, last_used=1), holder("b", cpu=3 * G, last_used=2),
                 holder("c", cpu=3 * G, last_used=3)]
    d = admit(residents, [], new(cpu=5 * G), Limits({"CPU": 10 * G}, max_models=9))
    assert [n for n, _ in d.unload] == ["a", "b"] and "memory on CPU" in d.unload[0][1]


def test_the_models_being_loaded_count_as_held():
    d = admit([holder("a", cpu=3 * G)], [Loading("b", {"CPU": 4 * G})], new(cpu=2 * G),
              Limits({"CPU": 8 * G}, max_models=9))
    assert [n for n, _ in d.unload] == ["a"]


def test_an_idle_holder_of_the_same_rpc_server_is_unloaded_a_busy_one_refuses():
    d = admit([holder("a", rpc=["h:1"]), holder("b")], [], new(rpc=["h:1"]), Limits({}, max_models=9))
    assert [n for n, _ in d.unload] == ["a"] and "serves one client at a time" in d.unload[0][1]
    with pytest.raises(Unavailable, match="'a' holds the same ggml-rpc-server"):
        admit([holder("a", rpc=["h:1"], active=1), holder("b")], [], new(rpc=["h:1"]), Limits({}, max_models=9))


def test_a_model_loading_on_the_same_rpc_server_means_wait():
    with pytest.raises(Unavailable, match="'b' is loading on the same ggml-rpc-server") as e:
        admit([], [Loading("b", {}, frozenset({"h:1"}))], new(rpc=["h:1"]), Limits({}))
    assert e.value.retry_after == 5


def test_a_plan_over_the_whole_budget_is_replanned_with_fit_or_refused_without_retry():
    replan = fit_into({"CPU": 6 * G, "RPC0": 3 * G})
    d = admit([], [], new(acc=9 * G), Limits({"RPC0": 4 * G, "CPU": 8 * G}), replan)
    assert d.need == {"CPU": 6 * G, "RPC0": 3 * G} and d.plan == "plan of new"
    assert replan.calls == [("new", {"RPC0": 4 * G, "CPU": 8 * G})] and "its own plan is over the budget" in d.log[0]
    with pytest.raises(Unavailable, match="more than the server's budget of 4.00 GiB there, even with fit") as e:
        admit([], [], new(acc=9 * G), Limits({"RPC0": 4 * G}), fit_into({"RPC0": 5 * G}))
    assert e.value.retry_after is None       # waiting will not make it fit


def test_policy_offload_replans_the_newcomer_and_keeps_the_residents():
    replan = fit_into({"CPU": 1 * G, "RPC0": 2 * G})
    d = admit([holder("a", acc=5 * G)], [], new(acc=4 * G), Limits({"RPC0": 8 * G, "CPU": 8 * G}, 9, "offload"),
              replan)
    assert d.unload == () and d.need == {"CPU": 1 * G, "RPC0": 2 * G}
    assert replan.calls[0][1] == {"RPC0": 3 * G, "CPU": 8 * G}     # the room the resident leaves
    d = admit([holder("a", acc=5 * G)], [], new(acc=4 * G), Limits({"RPC0": 8 * G}, 9, "unload"), replan)
    assert [n for n, _ in d.unload] == ["a"] and d.plan is None      # unload: the newcomer keeps its plan


def test_busy_models_leaving_too_little_replan_the_newcomer_or_refuse():
    busy = [holder("a", acc=5 * G, active=1)]
    d = admit(busy, [], new(acc=4 * G), Limits({"RPC0": 8 * G}, 9), fit_into({"RPC0": 2 * G, "CPU": 2 * G}))
    assert d.unload == () and d.need["RPC0"] == 2 * G and "the busy models leave too little" in d.log[0]
    with pytest.raises(Unavailable, match="every resident model that could make room is busy") as e:
        admit(busy, [], new(acc=4 * G), Limits({"RPC0": 8 * G}, 9))
    assert e.value.retry_after == 5 and "it needs 4.00 GiB on RPC0 beside the 5.00 GiB" in str(e.value)


def test_conversation_caches_yield_before_any_model_and_the_newcomer_gets_what_is_left():
    residents = [holder("a", cpu=2 * G, cache=3 * G, last_used=1), holder("b", cpu=2 * G, cache=1 * G, last_used=2)]
    d = admit(residents, [], new(cpu=2 * G, cache=4 * G), Limits({"CPU": 9 * G}, 9))
    assert d.unload == ()                                            # a cache is worth less than a model
    assert d.cache_cuts == (("a", 2 * G),)                           # the largest cache gives 1 GiB back
    assert d.cache == 0                                              # nothing left for the newcomer's
    d = admit(residents, [], new(cpu=1 * G, cache=4 * G), Limits({"CPU": 12 * G}, 9))
    assert d.cache_cuts == () and d.cache == 3 * G                   # 12 - 4 - 4 - 1
    assert admit([], [], new(cache=7 * G), Limits({}, 9)).cache == 7 * G   # no host budget: what it asked


def test_an_unloaded_models_cache_cut_is_not_reported():
    residents = [holder("a", cpu=6 * G, cache=2 * G, last_used=1)]
    d = admit(residents, [], new(cpu=6 * G), Limits({"CPU": 8 * G}, 9))
    assert [n for n, _ in d.unload] == ["a"] and d.cache_cuts == ()
