"""The graph tap's operand check (native/tap.py): the routing ids are read as
the operand of `ffn_moe_weights`, so a graph that puts another node there (a
family that casts the ids first) is refused by name, never read as ids."""
import ctypes

import pytest

from shimmy_py.errors import NativeError
from shimmy_py.native.binding import ggml_tensor
from shimmy_py.native.tap import _operand


def node(name: str, operand: ggml_tensor | None = None) -> ggml_tensor:
    t = ggml_tensor()
    t.name = name.encode()
    if operand is not None:
        t.src[1] = ctypes.addressof(operand)
    return t


def test_the_operand_is_read_when_it_is_the_node_named():
    ids = node("ffn_moe_topk-3")
    weights = node("ffn_moe_weights-3", ids)
    assert ctypes.addressof(_operand(weights, b"ffn_moe_topk", b"ffn_moe_weights-3")) == ctypes.addressof(ids)
    assert ctypes.addressof(_operand(weights, True, b"ffn_moe_weights-3")) == ctypes.addressof(ids)


def test_another_operand_or_none_is_refused_by_name():
    cast = node("ffn_moe_topk-3 (cast)")
    with pytest.raises(NativeError, match=r"weights-3: its operand is ffn_moe_topk-3 \(cast\), not ffn_moe_topk"):
        _operand(node("ffn_moe_weights-3", cast), b"ffn_moe_topk", b"ffn_moe_weights-3")
    with pytest.raises(NativeError, match="its operand is nothing"):
        _operand(node("ffn_moe_weights-3"), b"ffn_moe_topk", b"ffn_moe_weights-3")
    assert _operand(node("ffn_moe_logits-3"), True, b"ffn_moe_logits-3") is None
