"""Per-architecture facts in one table, as llama.cpp keeps them in
src/llama-arch.cpp and the per-architecture branches of llama-model.cpp: what
the tensor table, the planner and the expert tracer need to know of an
architecture beyond what its GGUF keys say. Where a key says it (a file's
own sliding-window pattern, recurrent-layer flags, expert_gating_func), the
key wins; these are the defaults llama.cpp applies without one.

Chat formats are not architecture facts: llama.cpp recognises them from the
template's text (common/chat.cpp), and so does generation/chat.py.
"""
from __future__ import annotations

from dataclasses import dataclass

SOFTMAX, SIGMOID, SOFTMAX_AFTER_TOPK = "softmax", "sigmoid", "softmax-after-topk"


@dataclass(frozen=True)
class ArchFacts:
    name: str
    swa_pattern: int = 0          # llama.cpp's load_swa_pattern default: with n, layer il slides unless il % n == n-1
    recurrent_interval: int = 0   # hybrids: layer il attends when (il + 1) % n == 0, the others keep recurrent state
    router: str = SOFTMAX         # experts chosen by top-k of a softmax, of a sigmoid (plus a selection bias),
    #                               or softmax over the chosen k logits (gpt-oss)
    reserve_checked: bool = False  # tests/test_families.py checks the planner's compute-reserve estimate within 10%


ARCHES = {a.name: a for a in (
    ArchFacts("deepseek", reserve_checked=True),
    ArchFacts("deepseek2", router=SIGMOID, reserve_checked=True),   # V3/R1; V2 files say softmax by their key
    ArchFacts("glm4moe", router=SIGMOID, reserve_checked=True),
    ArchFacts("qwen2moe", reserve_checked=True),
    ArchFacts("qwen3moe", reserve_checked=True),
    ArchFacts("qwen3next", recurrent_interval=4, reserve_checked=True),
    ArchFacts("llama", reserve_checked=True),                       # Mixtral
    ArchFacts("gpt-oss", swa_pattern=2, router=SOFTMAX_AFTER_TOPK, reserve_checked=True),
)}


def facts(arch: str) -> ArchFacts:
    """The facts of `arch`; an architecture not in the table has the defaults."""
    return ARCHES.get(arch) or ArchFacts(arch)
