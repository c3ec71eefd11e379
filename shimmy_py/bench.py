"""`shimmy-py bench`: load time, time to first token, prompt and decode speed,
weights per device and memory, per placement, through the same generation path
the API and the server use.

Like llama-bench, a run processes a prompt of `n_prompt` random tokens and
generates `n_gen` tokens; here generation samples greedily through llama.cpp's
sampler chain and the Python loop, so their cost is in the figures. With
`feed="random"` (`--feed random`) each decoded token is instead followed by a
random one, as llama-bench's generation test feeds them: an MoE model's
routing, so which experts a token reads, follows its input, and a greedy
model with random weights repeats itself, reading the same experts again
(what a streamed model's page cache rewards), where llama-bench's tokens
spread over all of them.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import psutil

from .errors import GenerationError
from .generation.loop import Completion, drain
from .generation.model import Model
from .generation.spec_modes import SpeculativeOptions
from .generation.streaming import StreamStats
from .placement.devices import process_vram_bytes
from .placement.machine import make_plan
from .placement.options import PlacementOptions, parse_placement_spec
from .placement.predict import predicted
from .sizes import gib


@dataclass
class BenchResult:
    placement: str
    load_s: float
    ttft_s: float
    prefill_tps: float
    decode_tps: float
    decode_tps_min: float
    decode_tps_max: float
    devices: dict
    vram_bytes: int | None
    peak_rss_bytes: int
    n_prompt: int
    n_gen: int
    repetitions: int
    speculative: str = "none"    # the --spec-type decoding used
    drafted: int = 0             # draft tokens verified, over all runs
    draft_accepted: int = 0      # of which kept
    predicted_decode_tps: float | None = None    # the cost model's (predict.py), with a machine profile
    predicted_prefill_tps: float | None = None
    streamed: dict | None = None                 # experts streamed from the file: the streamer's figures
    feed: str = "sampled"                        # what followed each decoded token: the sampled one or a random one


class _Progress:
    def __init__(self, total: int):
        self.total, self.done, self.on = total, 0, sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        if self.on:
            bar = "#" * (30 * self.done // self.total)
            sys.stderr.write(f"\r[{bar:<30}] {self.done}/{self.total} {label:<24}")
            sys.stderr.flush()
            if self.done == self.total:
                sys.stderr.write("\n")


def random_prompt(model: Model, n: int, seed: int) -> list[int]:
    """BOS and n-1 tokens drawn uniformly from the vocabulary, as llama-bench
    draws its prompts (the MoE routing, so the work, depends on the tokens)."""
    rng = np.random.default_rng(seed)
    return [model.bos] + rng.integers(0, model.n_vocab, size=n - 1).tolist()


FEEDS = ("sampled", "random")


def fed_random(m: Model, prompt: list[int], n_gen: int, seed: int, at_first) -> Completion:
    """The prompt, then n_gen - 1 decode steps each fed a random token, as
    llama-bench's generation test does; `at_first()` is called after the
    prompt. The Completion's tokens are the model's greedy choice after the
    prompt and after each fed token (none of them fed back)."""
    tokens = np.random.default_rng(seed + 1).integers(0, m.n_vocab, size=max(n_gen - 1, 0)).tolist()
    with m.context.session() as ctx:
        t0 = time.perf_counter()
        ctx.prefill(prompt)
        chosen = [ctx.argmax(-1)]                     # reading the logits waits for the batch
        t1 = time.perf_counter()
        at_first(None)
        for pos, token in enumerate(tokens, len(prompt)):
            ctx.step(token, pos)
            chosen.append(ctx.argmax(-1))
        t2 = time.perf_counter()
    return Completion(tokens=chosen, prompt_tokens=len(prompt), completion_tokens=n_gen, ttft_s=t1 - t0,
                      tokens_per_s=len(tokens) / (t2 - t1) if tokens else None,
                      prefill_tokens_per_s=len(prompt) / (t1 - t0))


def bench_one(path: str, spec: str, n_prompt: int, n_gen: int, reps: int, threads: int | None,
              rpc=(), progress: _Progress | None = None,
              speculative: SpeculativeOptions = SpeculativeOptions(), load_mode: str | None = None,
              base: PlacementOptions | None = None, feed: str = "sampled") -> BenchResult:
    """`base`: the placement options besides the strategy (--ram-budget, --expert-profile, ...);
    `feed`: what follows each decoded token, the sampled one or a random one (FEEDS)."""
    n_ctx = n_prompt + n_gen + 16
    options = parse_placement_spec(spec, rpc, n_ctx)
    if base is not None:
        options = replace(base, strategy=options.strategy, rpc=tuple(rpc), n_ctx=n_ctx)
    plan = make_plan(path, options)
    guess = predicted(plan, path, threads)
    t0 = time.perf_counter()
    # the plan, loaded with the rest of its options (how streamed experts are read is one: not in the plan)
    with Model(path, n_ctx=n_ctx, n_threads=threads, placement=replace(options, strategy=plan), rpc=rpc,
               speculative=speculative, load_mode=load_mode) as m:
        load_s = time.perf_counter() - t0
        drain(m.stream_tokens(random_prompt(m, 8, 0), max_tokens=2, temperature=0))  # warm-up
        runs, decoding = [], StreamStats()
        for r in range(reps):
            m.reset()  # the whole prompt is processed, as llama-bench does: no prefix reused
            at_first = []                   # the streamer's figures at the first token: decode's are what follow

            def first_piece(_piece, streamer=m.streamer):
                if streamer is not None and not at_first:
                    at_first.append(replace(streamer.stats))
            if feed == "random":
                c = fed_random(m, random_prompt(m, n_prompt, r), n_gen, r, first_piece)
            else:
                c = drain(m.stream_tokens(random_prompt(m, n_prompt, r), max_tokens=n_gen, temperature=0),
                          first_piece)
            if at_first:
                decoding = decoding + m.streamer.stats.since(at_first[0])
            runs.append(c)
            if progress:
                progress.step(f"{spec} run {r + 1}")
        vram = process_vram_bytes()
        streamed = {**m.streamer.stats.as_dict(), "method": m.streamer.method,
                    "decode": decoding.as_dict()} if m.streamer is not None else None
    decode = [c.tokens_per_s for c in runs if c.tokens_per_s]
    return BenchResult(
        placement=spec, load_s=load_s, ttft_s=statistics.median(c.ttft_s for c in runs),
        prefill_tps=statistics.median(c.prefill_tokens_per_s for c in runs),
        decode_tps=statistics.median(decode) if decode else 0.0,
        decode_tps_min=min(decode, default=0.0), decode_tps_max=max(decode, default=0.0),
        devices=plan.weights_by_device(), vram_bytes=vram,
        peak_rss_bytes=_peak_rss(), n_prompt=n_prompt, n_gen=n_gen, repetitions=reps,
        speculative=speculative.spec_type, drafted=sum(c.drafted for c in runs),
        draft_accepted=sum(c.draft_accepted for c in runs),
        predicted_decode_tps=guess.decode_tps if guess else None,
        predicted_prefill_tps=guess.prefill_tps if guess else None, streamed=streamed, feed=feed)


def _peak_rss() -> int:
    """The process's peak resident set so far (VmHWM), in bytes: a high-water
    mark over every placement benchmarked before this one too."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return psutil.Process().memory_info().rss


def run_bench(path: str, placements: list[str], n_prompt: int = 512, n_gen: int = 128, reps: int = 3,
              threads: int | None = None, rpc=(),
              speculative: SpeculativeOptions = SpeculativeOptions(),
              load_mode: str | None = None, base: PlacementOptions | None = None,
              feed: str = "sampled") -> list[BenchResult]:
    """Benchmarks each placement spec in turn (each is checked before any
    loads), decoding with `speculative` (llama-bench has no such mode: its
    prompts are random tokens, which an n-gram drafter rarely finds again),
    each decoded token followed by the sampled one or, `feed="random"`, a
    random one (llama-bench's way)."""
    if feed not in FEEDS:
        raise GenerationError(f"bench feed {feed!r}: use one of {', '.join(FEEDS)}")
    if feed == "random" and speculative.spec_type != "none":
        raise GenerationError(f"--feed random decodes random tokens, which leave nothing to draft: it does not "
                              f"apply with --spec-type {speculative.spec_type}")
    for spec in placements:
        parse_placement_spec(spec)
    progress = _Progress(len(placements) * reps)
    return [bench_one(path, spec, n_prompt, n_gen, reps, threads, rpc, progress, speculative, load_mode, base,
                      feed) for spec in placements]


def markdown(results: list[BenchResult]) -> str:
    spec = any(r.speculative != "none" for r in results)
    pred = any(r.predicted_decode_tps for r in results)
    stream = any(r.streamed for r in results)
    rows = ["| placement | load s | TTFT ms | prefill tok/s | decode tok/s (min-max) | weights per device "
            "| VRAM | peak RSS |" + (" drafts kept |" if spec else "")
            + (" predicted prefill, decode |" if pred else "")
            + (" streamed while decoding: MiB/token, miss rate |" if stream else ""),
            "|---|---|---|---|---|---|---|---|" + ("---|" if spec else "") + ("---|" if pred else "")
            + ("---|" if stream else "")]
    for r in results:
        devs = ", ".join(f"{d} {gib(b)}" for d, b in r.devices.items() if b)
        vram = f"{gib(r.vram_bytes)}" if r.vram_bytes is not None else "n/a (no NVML)"
        kept = f" {r.speculative}: {r.draft_accepted}/{r.drafted} |" if spec else ""
        if pred:
            kept += (f" {r.predicted_prefill_tps:.1f}, {r.predicted_decode_tps:.2f} |" if r.predicted_decode_tps
                     else " - |")
        if stream:
            s = r.streamed and r.streamed["decode"]
            kept += f" {s['file_bytes_per_token'] / 2**20:.1f}, {s['miss_rate']:.0%} |" if s else " - |"
        rows.append(f"| {r.placement} | {r.load_s:.2f} | {r.ttft_s * 1000:.0f} | {r.prefill_tps:.1f} | "
                    f"{r.decode_tps:.2f} ({r.decode_tps_min:.2f}-{r.decode_tps_max:.2f}) | {devs} | {vram} | "
                    f"{gib(r.peak_rss_bytes)} |" + kept)
    return "\n".join(rows)


def to_json(results: list[BenchResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=1)
