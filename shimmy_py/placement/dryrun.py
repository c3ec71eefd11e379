"""The compute reserve measured instead of estimated: llama.cpp loads the
model as planned without allocating anything (no_alloc) and creates a
context, whose scheduler reserves the graphs it will run and logs the compute
buffer each device needs. `fit` on an architecture whose estimate the tests
have not checked (gguf_io/arch.py: reserve_checked) plans again with these figures.

Nothing is read from the file and nothing is allocated; the RPC servers of
the plan are asked, so this runs where the model will run (the CLI, Model, a
server's model worker), never in a server process while a worker holds them.
"""
from __future__ import annotations

import os

from .. import defaults
from ..native import log
from ..native.context_handle import ContextHandle, ContextSpec
from ..native.model_handle import LoadSpec, ModelHandle
from .devices import planned_buffer_devices
from .plan import Plan
from .report import build_report


def measure_compute(path: str | os.PathLike, plan_: Plan, load: LoadSpec) -> dict[str, int]:
    """Bytes of compute buffer per device llama.cpp reserves for `plan_`,
    loaded by `load` (no_alloc), with its request's context, ubatch, sequences
    and flash attention."""
    r = plan_.request
    spec = ContextSpec(n_ctx=r.n_ctx, n_batch=max(defaults.N_BATCH, r.n_ubatch), n_seq_max=r.n_seq, n_threads=1,
                       kv_unified=r.n_seq > 1, flash_attn="auto" if r.flash_attn else "off")
    with log.capture() as lines, log.expected_unused(plan_.not_loaded()):
        with ModelHandle(str(path), load) as model:
            ContextHandle(model, spec).close()
    report = build_report(plan_, lines, check_sizes=False, buffer_devices=planned_buffer_devices(plan_))
    return {d: b for d, b in report.compute.items() if d in plan_.accelerators}
