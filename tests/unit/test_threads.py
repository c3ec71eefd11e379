"""The share of the cores each resident model computes with (serving/threads.py):
models computing at once never put more threads on the CPU than it has cores."""
from shimmy_py.serving.models.threads import thread_shares


def test_a_model_alone_keeps_its_own_count():
    assert thread_shares({"a": 8, "b": 8}, ["a"], 8) == {"a": 8, "b": 8}
    assert thread_shares({"a": 8, "b": 8}, ["a"], 2) == {"a": 8, "b": 8}   # beyond the cores: as asked


def test_models_that_fit_keep_their_counts():
    assert thread_shares({"a": 2, "b": 2}, ["a", "b"], 8) == {"a": 2, "b": 2}


def test_models_computing_at_once_share_the_cores_evenly():
    assert thread_shares({"a": 2, "b": 2}, ["a", "b"], 2) == {"a": 1, "b": 1}
    assert thread_shares({"a": 16, "b": 16, "c": 16}, ["a", "b", "c"], 16) == {"a": 5, "b": 5, "c": 6}


def test_what_a_small_model_leaves_goes_to_the_others():
    assert thread_shares({"small": 2, "big": 16}, ["small", "big"], 16) == {"small": 2, "big": 14}


def test_every_active_model_keeps_one_thread_however_many():
    shares = thread_shares({n: 2 for n in "abcde"}, "abcde", 2)
    assert set(shares.values()) == {1}


def test_idle_models_keep_their_own_count_and_unknown_names_are_ignored():
    assert thread_shares({"a": 4, "b": 4, "c": 4}, ["a", "b", "gone"], 4) == {"a": 2, "b": 2, "c": 4}
