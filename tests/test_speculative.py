"""Speculative decoding is lossless: every family's greedy output with each
mode equals plain decoding, a seeded sampled run draws the same tokens, and
the server's engine verifies drafts beside plain sequences.

The models are `looper`s (shimmy_py/synthetic/behaviours.py): a family's
layout with its random layers, whose embeddings and head are set so that
greedy decoding enters a 24-token loop at once. Its output repeats, so the
n-gram drafter has something to draft (random weights alone rarely repeat a
12-gram within a few hundred tokens), and every greedy choice leads its
runner-up by far more than batching moves a logit (asserted): equal tokens
are a proof, not luck. Draft models: the looper itself (every draft agrees)
and the family's random-weight model (same vocabulary, drafts mostly wrong),
so both the accepting and the rejecting paths run.
"""
from __future__ import annotations

import threading

import pytest
from support.batch_noise import EXACT, assert_decisive
from support.http import metric, post_json
from support.servers import config, options

from shimmy_py import Model
from shimmy_py.errors import GenerationError, ShimmyError
from shimmy_py.generation.engine import Engine
from shimmy_py.generation.loop import drain, run
from shimmy_py.generation.sampling import SamplingParams
from shimmy_py.generation.spec_modes import SpeculativeOptions
from shimmy_py.serving.server import Server
from shimmy_py.synthetic import families
from shimmy_py.synthetic.behaviours import LOOP_TOKENS, looper

FAMILIES = ["deepseek", "qwen3moe", "qwen2moe", "mixtral", "deepseek2", "glm4moe", "gpt-oss"]
PROMPT = "Once upon a time"
N = 200


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("spec")

    def paths(family: str) -> tuple:
        loop, rand = root / f"loop-{family}.gguf", root / f"{family}.gguf"
        if not loop.exists():
            looper(loop, family=family)
            families.write(rand, family, seed=3)
        return loop, rand
    return paths


def greedy(m: Model, speculative=None, n: int = N):
    m.reset()
    return m.generate(PROMPT, max_tokens=n, temperature=0, speculative=speculative)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_mode_decodes_what_plain_decoding_does(models, family):
    loop, rand = models(family)
    with Model(loop, n_ctx=512, n_threads=2, **EXACT) as m:
        plain = greedy(m, "none")
        assert set(plain.tokens[2:]) <= set(LOOP_TOKENS) and plain.drafted == 0
        assert_decisive(m, m.tokenize(PROMPT), plain.tokens)
        ngram = greedy(m, "ngram-simple")
        short = greedy(m, SpeculativeOptions("ngram-simple", ngram_n=2, ngram_m=5))
    assert ngram.tokens == plain.tokens and short.tokens == plain.tokens
    assert ngram.drafted > N / 2 and ngram.draft_accepted == ngram.drafted     # a loop: every draft holds
    assert short.drafted > N / 2
    for draft, all_kept in ((loop, True), (rand, False)):
        spec = SpeculativeOptions(draft_model=str(draft), draft_max=4)
        with Model(loop, n_ctx=512, n_threads=2, speculative=spec, **EXACT) as m:
            c = greedy(m)
        assert c.tokens == plain.tokens, f"draft model {draft.name}"
        assert c.drafted > 0 and (c.draft_accepted == c.drafted) == all_kept


def test_a_seeded_sampled_run_draws_the_same_tokens(models):
    """A random-weight model drafting for itself greedily while the request
    samples (temperature 0.8, a seed): the sampler keeps a draft only where
    it drew that very token, so some are refused, and the draws are those of
    plain decoding (a draw moves only if a logit's 1e-6 batching noise lands
    on a boundary of the sampler's CDF)."""
    _, rand = models("deepseek")
    spec = SpeculativeOptions(draft_model=str(rand), draft_max=4)
    with Model(rand, n_ctx=512, n_threads=2, speculative=spec, **EXACT) as m:
        runs = {}
        for mode in ("none", None):
            m.reset()
            runs[mode] = m.generate(PROMPT, max_tokens=N, temperature=0.8, seed=7, speculative=mode)
    plain, drafted = runs["none"], runs[None]
    assert drafted.tokens == plain.tokens
    assert 0 < drafted.draft_accepted < drafted.drafted


def test_the_engine_verifies_drafts_beside_plain_sequences(models):
    """Two requests at once: one whose prompt already loops (drafts from its
    first step) and one too short for an n-gram match within its 40 tokens
    (never drafts), decoding in the same steps."""
    loop, _ = models("deepseek")
    greedy_params = SamplingParams(temperature=0)
    with Model(loop, n_ctx=1024, n_seq_max=2, n_threads=2, **EXACT) as m:
        looping = m.detokenize(list(LOOP_TOKENS) * 3)
        prompts = {"loops": (m.tokenize(looping), 80), "short": (m.tokenize("Hello"), 40)}
        plain = {k: drain(m.stream_tokens(t, max_tokens=n, temperature=0, speculative="none")).tokens
                 for k, (t, n) in prompts.items()}
        engine = Engine(m.context, m.vocab, drafter=m.drafter("ngram-simple"))
        try:
            got = {}
            threads = [threading.Thread(target=lambda k=k, t=t, n=n: got.__setitem__(
                k, drain(run(engine.submit(t, greedy_params, n), m.vocab, n)))) for k, (t, n) in prompts.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            engine.close()
    assert {k: c.tokens for k, c in got.items()} == plain
    assert got["loops"].drafted > 40 and got["short"].drafted == 0
    assert engine.stats.draft_tokens == got["loops"].drafted


def test_a_draft_model_must_share_the_vocabulary(models):
    loop, _ = models("deepseek")
    other, _ = models("gpt-oss")
    with pytest.raises(GenerationError, match="does not share the vocabulary"):
        Model(loop, n_ctx=256, speculative=SpeculativeOptions(draft_model=str(other)))
    with pytest.raises(ShimmyError, match="draft model: .*no-such.gguf: no such file"):
        Model(loop, n_ctx=256, speculative=SpeculativeOptions(draft_model="/nonexistent/no-such.gguf"))


def test_recurrent_models_refuse_speculation(tmp_path):
    path = families.write(tmp_path / "qwen3next.gguf", "qwen3next")
    with pytest.raises(GenerationError, match="recurrent state"):
        Model(path, n_ctx=256, speculative="ngram-simple")
    with Model(path, n_ctx=256) as m:
        with pytest.raises(GenerationError, match="recurrent state"):
            m.generate("Hi", max_tokens=4, speculative="ngram-simple")


def test_draft_simple_per_call_needs_the_loaded_draft(models):
    loop, _ = models("deepseek")
    with Model(loop, n_ctx=256, n_threads=2) as m:
        with pytest.raises(GenerationError, match="load it with"):
            m.generate("Hi", max_tokens=4, speculative={"draft_model": str(loop)})


def test_the_server_speculates_and_counts_drafts(models):
    loop, _ = models("deepseek")
    with Model(loop, n_ctx=512, n_threads=2, **EXACT) as m:
        plain = m.generate(PROMPT, max_tokens=N, temperature=0)
    cfg = config(loop, ctx=512, parallel=2, model=options(exact=True, speculative="ngram-simple"))
    with Server(cfg).start() as srv:
        _, body = post_json(srv.url, "/v1/completions", {"prompt": PROMPT, "max_tokens": N, "temperature": 0})
        assert body["choices"][0]["text"] == plain.text
        timings = body["timings"]
        assert timings["draft_n"] > N / 2 and timings["draft_n_accepted"] == timings["draft_n"]
        assert metric(srv.url, "shimmy_draft_tokens_total") == timings["draft_n"]
        assert metric(srv.url, "shimmy_draft_tokens_accepted_total") == timings["draft_n_accepted"]


def test_a_draft_model_is_planned_and_fit_leaves_it_room(models):
    from shimmy_py.generation.options import ModelOptions
    from shimmy_py.placement.machine import make_plan
    loop, rand = models("deepseek")
    o = ModelOptions.build(n_ctx=512, fit=True, target_vram="600MiB",
                           speculative=SpeculativeOptions(draft_model=str(rand)))
    draft = make_plan(rand, o.for_draft().placement)
    held = draft.accelerator_bytes()
    assert draft.request.strategy == "gpu" and held["GPU"] > 0
    alone, beside = make_plan(loop, o.placement), make_plan(loop, o.placement, held=held)
    assert beside.device("GPU").capacity_bytes == alone.device("GPU").capacity_bytes - held["GPU"]


def test_the_cli_speculates_and_says_how_many_drafts_it_kept(models):
    import json
    import subprocess
    import sys
    loop, _ = models("deepseek")
    out = subprocess.run([sys.executable, "-m", "shimmy_py", "generate", str(loop), "-p", PROMPT, "-n", str(N),
                          "--temperature", "0", "--spec-type", "ngram-simple", "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout)
    assert result["completion_tokens"] == N and result["drafted"] > N / 2
    assert result["draft_accepted"] == result["drafted"]


@pytest.fixture(scope="module")
def mtp_models(tmp_path_factory):
    """glm4moe loopers (the family whose files carry a NextN/MTP block): one
    whose head predicts the loop too, one whose head is random."""
    root = tmp_path_factory.mktemp("mtp")
    return (looper(root / "loop-glm4moe.gguf", family="glm4moe"),
            looper(root / "loop-glm4moe-random-head.gguf", family="glm4moe", mtp_loops=False))


def test_the_mtp_head_decodes_what_plain_decoding_does(mtp_models):
    """draft-mtp: llama.cpp's MTP context over the model's own NextN block,
    fed the target's hidden states; lossless whether its drafts hold or not."""
    good, random_head = mtp_models
    for path, all_kept in ((good, True), (random_head, False)):
        with Model(path, n_ctx=512, n_threads=2, **EXACT) as m:
            plain = greedy(m)
            assert "blk.3.nextn.eh_proj.weight" in m.plan.not_loaded()     # plain: the block stays on disk
            assert_decisive(m, m.tokenize(PROMPT), plain.tokens)
        with Model(path, n_ctx=512, n_threads=2, speculative=SpeculativeOptions("draft-mtp", draft_max=4),
                   **EXACT) as m:
            assert not m.plan.not_loaded()                                   # draft-mtp: planned and loaded
            first, again = greedy(m), greedy(m)       # again: the head's cache follows the target's reset
        for c in (first, again):
            assert c.tokens == plain.tokens, path.name
            assert c.drafted > N / 2 and (c.draft_accepted == c.drafted) == all_kept
        if not all_kept:
            assert first.draft_accepted < first.drafted / 2


def test_the_server_drafts_with_the_mtp_head_for_each_sequence(mtp_models):
    good, _ = mtp_models
    with Model(good, n_ctx=512, n_threads=2, **EXACT) as m:
        plain = [m.generate(p, max_tokens=N, temperature=0).text for p in (PROMPT, "Hello")]
    cfg = config(good, ctx=512, parallel=2, model=options(exact=True, speculative="draft-mtp"))
    with Server(cfg).start() as srv:
        answers = [None, None]

        def ask(i, p):
            answers[i] = post_json(srv.url, "/v1/completions", {"prompt": p, "max_tokens": N, "temperature": 0})[1]
        threads = [threading.Thread(target=ask, args=(i, p)) for i, p in enumerate((PROMPT, "Hello"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [a["choices"][0]["text"] for a in answers] == plain
    assert all(a["timings"]["draft_n_accepted"] == a["timings"]["draft_n"] > N / 2 for a in answers)


def test_draft_mtp_needs_a_nextn_block(models):
    loop, _ = models("deepseek")
    with pytest.raises(GenerationError, match="has none"):
        Model(loop, n_ctx=256, speculative="draft-mtp")


def test_a_share_of_the_cores_reaches_every_context_that_generates(models, mtp_models):
    """The server's share of the cores (serving/threads.py) is applied by
    Model.set_threads: to the main context, the draft model's and the MTP
    head's; decoding and drafting go on with it."""
    loop, _ = models("deepseek")
    with Model(loop, n_ctx=256, n_threads=2, speculative=SpeculativeOptions(draft_model=str(loop))) as m:
        m.set_threads(1)
        assert m.context.native.n_threads == m.draft.context.native.n_threads == 1
        c = m.generate(PROMPT, max_tokens=32, temperature=0)
        assert c.completion_tokens == 32 and c.draft_accepted == c.drafted > 0
    with Model(mtp_models[0], n_ctx=256, n_threads=2, speculative="draft-mtp") as m:
        m.set_threads(1)
        assert m.context.native.n_threads == m.mtp.head.n_threads == 1
        c = m.generate(PROMPT, max_tokens=32, temperature=0)
        assert c.completion_tokens == 32 and c.draft_accepted == c.drafted > 0
