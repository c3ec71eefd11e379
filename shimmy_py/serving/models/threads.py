"""How many CPU threads each resident model computes with: a pure policy.

Every model's worker is a process of its own with llama.cpp's thread pool
(OpenMP: threads that spin at each barrier). Two models computing at once
with a thread per core each put twice as many threads as cores on the CPU,
and each barrier then waits for a thread that is not running: on a 2-core
machine two stock llama-bench runs of the bench model with 2 threads each
decoded at 9.9 tok/s each, one alone at 36.5, two with 1 thread each at 20.9
each (benchmarks/concurrent_models.py; docs/BENCHMARKS.md, history of
2026-12-02). So while the models computing at once want more threads than
the machine has cores, they share the cores (no less than one thread each);
a model computing alone, or among models that fit, keeps its own count
(`--threads`, or its `threads` in --config).
"""
from __future__ import annotations

from typing import Iterable


def thread_shares(wanted: dict[str, int], active: Iterable[str], cores: int) -> dict[str, int]:
    """The threads each model of `wanted` (name -> its own count) computes
    with, given the models with requests in flight (`active`) and the
    machine's physical cores. A model computing alone keeps its own count,
    even beyond the cores (what its --threads asked for); so do idle models
    (a request that makes one active gives it a share again). Among several
    active ones the cores are shared out evenly, never beyond a model's own
    count, and what a smaller model leaves goes to the others."""
    shares = dict(wanted)
    busy = sorted((n for n in set(active) if n in wanted), key=lambda n: (wanted[n], n))
    if len(busy) < 2 or sum(wanted[n] for n in busy) <= cores:   # alone: as many as it was told
        return shares
    left = cores
    for i, name in enumerate(busy):
        shares[name] = max(1, min(wanted[name], left // (len(busy) - i)))
        left -= shares[name]
    return shares
