"""Checks the hyper-parameters llama.cpp asserts on (it aborts the process on
a bad one) against each other and against the tensor table, before llama.cpp
sees the file: a corrupt value becomes a GGUFError naming the key and value.

Only what is present is checked; a key llama.cpp does not need for an
architecture is left to it. Files without tensors (vocabulary files) pass.
"""
from __future__ import annotations

import math
import re

from ..errors import GGUFError
from .format import ATTENTION, LLM, ROPE, key
from .reader import GGUFHeader

_LAYER = re.compile(r"^blk\.(\d+)\.")
_EXPERTS = re.compile(r"^blk\.\d+\.ffn_(gate|up|down|gate_up)_exps\.weight$")
MAX_LAYERS = 4096        # far above any released model (DeepSeek-V3: 61, Llama 3.1 405B: 126)


def check_model(h: GGUFHeader) -> None:
    """Raises GGUFError naming the first hyper-parameter that cannot be right."""
    if not h.tensors:
        return
    arch = h.architecture
    if not arch:
        raise GGUFError(f"{h.path}: no general.architecture in the metadata")
    def value(template: str):
        return h.metadata.get(key(template, arch))

    def bad(template: str, why: str) -> GGUFError:
        return GGUFError(f"{h.path}: {key(template, arch)} = {value(template)!r}: {why}")

    _check_layers(h, value, bad)
    _check_heads(h, value, bad)
    _check_experts(h, value, bad)
    for template in (ATTENTION.LAYERNORM_RMS_EPS, ATTENTION.LAYERNORM_EPS):
        eps = value(template)
        if eps is not None and not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise bad(template, "an epsilon must be a positive finite number")


def _ints(v) -> list:
    """A scalar or a per-layer array, as a list."""
    return list(v) if isinstance(v, list) else [v]


def _check_layers(h, value, bad) -> None:
    layers = {int(m.group(1)) for t in h.tensors if (m := _LAYER.match(t.name))}
    n_layer = value(LLM.BLOCK_COUNT)
    if n_layer is None:
        return
    if not isinstance(n_layer, int) or not 1 <= n_layer <= MAX_LAYERS:
        raise bad(LLM.BLOCK_COUNT, f"must be a layer count from 1 to {MAX_LAYERS}")
    if layers and max(layers) + 1 != n_layer:
        raise bad(LLM.BLOCK_COUNT, f"the tensor table has layers 0..{max(layers)}")
    lead = value(LLM.LEADING_DENSE_BLOCK_COUNT)
    if lead is not None and not 0 <= lead <= n_layer:
        raise bad(LLM.LEADING_DENSE_BLOCK_COUNT, f"more than the {n_layer} layers")
    nextn = value(LLM.NEXTN_PREDICT_LAYERS)
    if nextn is not None and (not isinstance(nextn, int) or not 0 <= nextn < n_layer):
        raise bad(LLM.NEXTN_PREDICT_LAYERS, f"must be fewer than the {n_layer} layers")


def _check_heads(h, value, bad) -> None:
    n_embd = value(LLM.EMBEDDING_LENGTH)
    embd = next((t for t in h.tensors if t.name == "token_embd.weight"), None)
    if n_embd is not None and embd is not None and embd.shape[0] != n_embd:
        raise bad(LLM.EMBEDDING_LENGTH, f"token_embd.weight rows are {embd.shape[0]} wide")
    heads = [x for x in _ints(value(ATTENTION.HEAD_COUNT)) if x is not None]
    if any(not isinstance(x, int) or x < 0 or x > 65536 for x in heads) or (heads and max(heads) == 0):
        raise bad(ATTENTION.HEAD_COUNT, "must be head counts from 1 to 65536")
    kv = [x for x in _ints(value(ATTENTION.HEAD_COUNT_KV)) if x is not None]
    if any(not isinstance(x, int) or x < 0 for x in kv):
        raise bad(ATTENTION.HEAD_COUNT_KV, "must be non-negative head counts")
    if heads and kv and len(heads) == len(kv):
        for q, k in zip(heads, kv):
            if k and q % k:
                raise bad(ATTENTION.HEAD_COUNT_KV, f"{q} query heads do not share {k} key/value heads evenly")
    rope = value(ROPE.DIMENSION_COUNT)
    head_dim = value(ATTENTION.KEY_LENGTH) or (n_embd // max(heads) if n_embd and heads and max(heads) else None)
    if rope is not None and (not isinstance(rope, int) or rope < 0 or (head_dim and rope > head_dim)):
        raise bad(ROPE.DIMENSION_COUNT, f"must be at most the head size {head_dim}")


def _check_experts(h, value, bad) -> None:
    exps = [t for t in h.tensors if _EXPERTS.match(t.name)]
    n_expert, n_used = value(LLM.EXPERT_COUNT), value(LLM.EXPERT_USED_COUNT)
    if n_expert is None:
        if exps:
            raise GGUFError(f"{h.path}: routed-expert tensors ({exps[0].name}) but no "
                            f"{key(LLM.EXPERT_COUNT, h.architecture)}")
        return
    if not isinstance(n_expert, int) or n_expert < 0 or n_expert > 65536:
        raise bad(LLM.EXPERT_COUNT, "must be an expert count from 0 to 65536")
    stored = {t.shape[-1] for t in exps}
    if exps and stored != {n_expert}:
        raise bad(LLM.EXPERT_COUNT, f"the expert tensors hold {', '.join(map(str, sorted(stored)))} experts")
    if n_expert and (not isinstance(n_used, int) or not 1 <= n_used <= n_expert):
        raise bad(LLM.EXPERT_USED_COUNT, f"must be 1 to the {n_expert} experts")
