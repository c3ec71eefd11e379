"""The graph tap's C filter (native/tap_filter.c): llama.cpp's scheduler asks it
about every node, and it says yes, without calling into Python, exactly for
"<base>-<layer>" names whose base a listener asked for; a computed node goes
to the Python callback. Called here as the scheduler calls it, on ggml_tensor
structs made in Python (the routing it serves is tested in test_experts.py)."""
import ctypes

import pytest

from shimmy_py.errors import NativeError
from shimmy_py.native.binding import ggml_backend_sched_eval_callback, ggml_tensor
from shimmy_py.native.runtime import tap_filter_lib
from shimmy_py.native.tap import Tap


def node(name: bytes) -> ggml_tensor:
    t = ggml_tensor()
    t.name = name
    return t


@pytest.fixture
def tap():
    t = Tap()
    calls = []
    # the callback for computed nodes, swapped for one that records (a real one
    # would read the node's data, which these tensors do not have)
    t.recorded = calls
    t.filter.computed = t._record = ggml_backend_sched_eval_callback(
        lambda tensor, ask, _: calls.append((ggml_tensor.from_address(tensor).name, ask)) or True)
    return t


def ask(tap: Tap, name: bytes) -> bool:
    t = node(name)
    return tap_filter_lib().shimmy_tap_eval(ctypes.addressof(t), True, tap.user_data)


def test_asks_are_answered_by_name_in_c(tap):
    assert not ask(tap, b"ffn_moe_weights-3"), "nothing listens: every node is declined"
    tap.listen(lambda *a: None, {"ffn_moe_weights": "ffn_moe_topk", "ffn_moe_logits": True})
    yes = [b"ffn_moe_weights-3", b"ffn_moe_weights-0", b"ffn_moe_logits-27", b"ffn_moe_weights-123456"]
    no = [b"ffn_moe_weights-3 (reshaped)", b"ffn_moe_weights", b"ffn_moe_weights-", b"ffn_moe_weights-3a",
          b"ffn_moe_weights_sum-3", b"ffn_moe_weight-3", b"ffn_moe_weightsX-3", b"ffn_moe_topk-3",
          b"-3", b"", b"x" * 63]
    assert [ask(tap, n) for n in yes] == [True] * len(yes)
    assert [ask(tap, n) for n in no] == [False] * len(no)
    assert tap.recorded == [], "an ask never reaches Python"
    tap.stop()
    assert not any(ask(tap, n) for n in yes)


def test_a_computed_node_goes_to_the_python_callback(tap):
    tap.listen(lambda *a: None, {"ffn_moe_weights": False})
    t = node(b"ffn_moe_weights-3")
    assert tap_filter_lib().shimmy_tap_eval(ctypes.addressof(t), False, tap.user_data)
    assert tap.recorded == [(b"ffn_moe_weights-3", False)]


def test_the_listener_names_are_checked(tap):
    with pytest.raises(NativeError, match="at most 8 node names"):
        tap.listen(lambda *a: None, {f"n{i}": False for i in range(9)})
    with pytest.raises(NativeError, match="1 to 63 bytes"):
        tap.listen(lambda *a: None, {"x" * 64: False})
    # a refused listen leaves the tap as it was: declining everything
    assert not ask(tap, b"n0-1")
