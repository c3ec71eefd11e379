"""The engine hands a step's tokens to their requests after it has sampled
every sequence of the step: a request thread woken while the engine still
samples competes with it for the GIL and the cores. (`make bench`'s
profile line, the engine's step time outside llama_decode over its HTTP
runs: 1.8% before, 0.9% after; docs/BENCHMARKS.md, history of 2026-12-02.)"""
import collections

from shimmy_py.generation.engine import Engine
from shimmy_py.generation.model import Model
from shimmy_py.generation.sampling import SamplingParams

N = 4


def test_a_steps_requests_are_woken_after_all_are_sampled(tiny_path):
    with Model(tiny_path, n_ctx=512, n_seq_max=N, n_threads=2) as m:
        engine = Engine(m.context, m.vocab)
        seen = collections.defaultdict(set)     # step -> tokens queued to requests when each row was sampled
        sample_row = engine._sample_row

        def recording(slot, idx):
            seen[engine.stats.steps].add(sum(s.out.qsize() for s in requests))
            return sample_row(slot, idx)
        engine._sample_row = recording
        try:
            # nobody reads: every token handed stays queued, so a row sampled after another's
            # token was handed in the same step would see one more
            requests = [engine.submit(m.tokenize(f"Prompt {i} of four"), SamplingParams(temperature=0), 6)
                        for i in range(N)]
            for req in requests:
                for _ in range(6):
                    if req.next_token() is None:
                        break
        finally:
            engine.close()
    assert len(seen) >= 5 and all(len(queued) == 1 for queued in seen.values()), dict(seen)
