"""Generation: equal to llama.cpp's own tool, streamed = whole, seeded, stopped."""
import subprocess

import numpy as np
import pytest
from support.batch_noise import EXACT_LLAMA_ARGS, assert_decisive

from shimmy_py import GenerationError, Model
from shimmy_py.generation.loop import drain
from shimmy_py.native import install as native

PROMPT = "Explain the architecture of DeepSeek MoE"


def test_greedy_equals_llama_completion(model, tiny_path):
    ours = model.generate(PROMPT, max_tokens=24, temperature=0)
    cmd = [str(native.tool("llama-completion")), "-m", str(tiny_path), "-p", PROMPT, "-n", "24",
           "--temp", "0", "-c", "512", "-t", "2", "--no-display-prompt", "-no-cnv", "--no-warmup",
           "-s", "1", *EXACT_LLAMA_ARGS]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    theirs = proc.stdout.decode("utf-8", errors="replace")
    assert ours.completion_tokens == 24 and ours.finish_reason == "length"
    assert theirs.strip("\n") == ours.text.strip("\n")
    assert len(ours.text) > 0


def test_repeat_penalty_looks_back_over_the_prompt(model):
    """A prompt token is biased to lead the greedy choice by a hair; the
    repeat penalty (as in llama.cpp, over the prompt too) must then demote it,
    while without the penalty it is chosen."""
    from shimmy_py.generation.inline import InlineSequence
    from shimmy_py.generation.loop import run
    from shimmy_py.generation.sampling import SamplingParams
    tokens = model.tokenize(PROMPT)
    logits = model.eval_logits(tokens)[-1]
    top = float(logits.max())
    assert top > 0   # the penalty divides positive logits
    target = tokens[2]
    bias = ((target, top - float(logits[target]) + 0.01),)

    def first_token(penalty: float) -> int:
        params = SamplingParams(temperature=0, repeat_penalty=penalty, logit_bias=bias)
        model.reset()
        return drain(run(InlineSequence(model.context, tokens, params), model.vocab, 1)).tokens[0]
    assert first_token(1.0) == target
    assert first_token(1.5) != target


def test_stream_concatenates_to_generate(model):
    for kwargs in ({"temperature": 0}, {"temperature": 0.9, "seed": 7}):
        whole = model.generate(PROMPT, max_tokens=20, **kwargs)
        gen = model.stream(PROMPT, max_tokens=20, **kwargs)
        pieces = list(gen)
        assert "".join(pieces) == whole.text
        assert all(pieces)


def test_stream_returns_the_completion(model):
    gen = model.stream(PROMPT, max_tokens=5, temperature=0)
    result = drain(gen)
    assert result.completion_tokens == 5 and result.prompt_tokens == len(model.tokenize(PROMPT))
    assert result.ttft_s > 0 and result.tokens_per_s > 0


def test_text_is_the_detokenized_tokens(model):
    r = model.generate(PROMPT, max_tokens=20, temperature=1.0, seed=3)
    assert r.text == model.detokenize(r.tokens)


def test_seeded_sampling_repeats(model):
    a = model.generate(PROMPT, max_tokens=16, temperature=1.0, seed=42)
    b = model.generate(PROMPT, max_tokens=16, temperature=1.0, seed=42)
    c = model.generate(PROMPT, max_tokens=16, temperature=1.0, seed=43)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


def test_stop_string_cuts_the_text(model):
    full = model.generate(PROMPT, max_tokens=24, temperature=0)
    stop = full.text[len(full.text) // 2:len(full.text) // 2 + 3]
    cut = model.generate(PROMPT, max_tokens=24, temperature=0, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:full.text.index(stop)]
    assert stop not in cut.text


def test_context_full_ends_with_length(tiny_path):
    with Model(tiny_path, n_ctx=64, n_threads=2) as m:
        r = m.generate("word " * 40, max_tokens=10_000, temperature=0)
        assert r.finish_reason == "length"
        # every position of the context was used; the last token was sampled, not fed back
        assert r.prompt_tokens + r.completion_tokens == m.n_ctx + 1


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": ""}, "empty prompt"),
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens must be >= 1"),
    ({"prompt": "hi", "temperature": -1.0}, "temperature must be >= 0"),
    ({"prompt": "word " * 600}, "context holds"),
])
def test_bad_requests_are_clear_errors(model, kwargs, message):
    with pytest.raises(GenerationError, match=message):
        model.generate(**kwargs)


def test_model_still_works_after_errors(model):
    with pytest.raises(GenerationError):
        model.generate("")
    assert model.generate(PROMPT, max_tokens=3, temperature=0).completion_tokens == 3


def test_chat_uses_the_models_template(model):
    prompt = model.apply_chat_template([{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "Hi"}])
    assert prompt == "Be brief.\n\nUser: Hi\n\nAssistant:"
    r = model.chat([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
    assert r.completion_tokens >= 1
    assert r.prompt_tokens == len(model.tokenize("User: Hi\n\nAssistant:"))


def test_chat_rejects_malformed_messages(model):
    with pytest.raises(GenerationError, match="role"):
        model.chat([{"content": "no role"}])


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_other_dtypes_load_and_stay_close_to_f32(tmp_path, model, dtype):
    import numpy as np

    from shimmy_py import synth
    path = synth.write(tmp_path / f"tiny-{dtype}.gguf", "tiny", seed=1, dtype=dtype)
    tokens = model.tokenize(PROMPT)
    with Model(path, n_ctx=128, n_threads=2) as m:
        assert m.generate(PROMPT, max_tokens=4, temperature=0).completion_tokens == 4
        ours = m.eval_logits(tokens)
    ref = model.eval_logits(tokens)           # the F32 model of the same seed
    err = np.abs(ours - ref)
    assert err.max() > 1e-6                    # really another weight type
    if dtype == "f16":
        assert err.max() < 0.05, err.max()
    else:                                      # 8-bit weights and activations: close, not equal
        assert err.mean() < 0.05 and np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.99


def test_a_prompt_extending_the_last_one_reuses_its_cache_and_gives_the_same_tokens(model):
    first = model.tokenize(PROMPT)
    longer = first + model.tokenize(" and the routing of its experts", add_special=False)
    model.reset()
    fresh = drain(model.stream_tokens(longer, max_tokens=24, temperature=0))
    assert fresh.cached_tokens == 0
    assert_decisive(model, longer, fresh.tokens)   # reuse decodes the tail in a smaller batch
    model.reset()
    drain(model.stream_tokens(first, max_tokens=4, temperature=0))
    reused = drain(model.stream_tokens(longer, max_tokens=24, temperature=0))
    assert reused.cached_tokens >= len(first)
    assert reused.tokens == fresh.tokens
    again = drain(model.stream_tokens(longer, max_tokens=24, temperature=0))
    assert again.cached_tokens == len(longer) - 1   # the last token is decoded again for its logits
    assert again.tokens == fresh.tokens


def test_the_reuse_check_would_see_a_stale_cache(model):
    """The test above has power: a cache whose contents differ from what
    was recorded (here: another prompt's KV under this prompt's tokens)
    changes the generated tokens."""
    tokens = model.tokenize(PROMPT)
    other = model.tokenize("Something else entirely, of other words!")[:len(tokens)]
    model.reset()
    fresh = drain(model.stream_tokens(tokens, max_tokens=24, temperature=0))
    model.reset()
    drain(model.stream_tokens(other, max_tokens=1, temperature=0))
    model.context.kv.forget(0)
    model.context.kv.extend(0, tokens[:len(other)])   # a false record of what seq 0 holds
    stale = drain(model.stream_tokens(tokens, max_tokens=24, temperature=0))
    assert stale.cached_tokens > 1 and stale.tokens != fresh.tokens
    model.reset()


def test_reset_and_eval_logits_forget_the_cache(model):
    tokens = model.tokenize(PROMPT)
    drain(model.stream_tokens(tokens, max_tokens=2, temperature=0))
    model.eval_logits(tokens[:4])
    assert drain(model.stream_tokens(tokens, max_tokens=2, temperature=0)).cached_tokens == 4
    model.reset()
    assert model.context.kv.cached(0) == 0
    assert drain(model.stream_tokens(tokens, max_tokens=2, temperature=0)).cached_tokens == 0


def test_plain_greedy_picks_what_llama_cpps_greedy_sampler_picks(model):
    """Plain greedy reads the argmax in place (sampling.Argmax); a zero logit
    bias changes no logit but routes through llama.cpp's chain and its greedy
    sampler, so both must give the same tokens."""
    from shimmy_py.generation.inline import InlineSequence
    from shimmy_py.generation.loop import run
    from shimmy_py.generation.sampling import Argmax, SamplingParams, build_sampler
    plain, biased = SamplingParams(temperature=0), SamplingParams(temperature=0, logit_bias=((7, 0.0),))
    assert isinstance(build_sampler(plain, model.n_vocab), Argmax)
    assert not isinstance(build_sampler(biased, model.n_vocab), Argmax)
    for prompt in (PROMPT, "Once upon a time", "1 2 3 4"):
        tokens = model.tokenize(prompt)
        results = []
        for params in (plain, biased):
            model.reset()
            results.append(drain(run(InlineSequence(model.context, tokens, params), model.vocab, 32)).tokens)
        assert len(results[0]) > 0 and results[0] == results[1]


def test_logits_rows_are_read_where_llama_cpp_puts_them_now(model):
    """The context keeps a view per logits address llama.cpp hands out
    (ContextHandle._logits_view). Batches of other sizes in between (llama.cpp
    may move its output buffer for them) must not leave a row read from an
    old place: the same batch gives the same floats before and after, and
    each row is the one llama.cpp returns for its index now."""
    import ctypes

    from shimmy_py.native.runtime import lib
    ids = model.tokenize(PROMPT + " and why its experts are small")
    first = model.eval_logits(ids[:9])
    for n in (1, 3, len(ids), 2):
        model.eval_logits(ids[:n])
    again = model.eval_logits(ids[:9])
    assert np.array_equal(first, again)
    native = model.context.native
    for i in range(9):
        addr = lib().llama_get_logits_ith(native.ptr(), i)
        fresh = np.ctypeslib.as_array(ctypes.cast(addr, ctypes.POINTER(ctypes.c_float)), shape=(model.n_vocab,))
        assert np.array_equal(native.logits(i), fresh) and np.array_equal(fresh, again[i])
    model.reset()


def test_a_context_below_llama_cpps_padding_generates_in_batches_it_accepts(tiny_path):
    """llama.cpp pads a 16-token context to 256 but clamps its batch to 16: a
    150-token prompt is decoded 16 tokens at a time (it used to abort on
    GGML_ASSERT(n_tokens_all <= cparams.n_batch)); one that cannot fit is a clear error."""
    with Model(tiny_path, n_ctx=16, n_threads=2) as m:
        assert m.context.n_batch == 16 and m.n_ctx == 256
        r = m.generate("word " * 150, max_tokens=3, temperature=0)
        assert r.completion_tokens == 3 and r.prompt_tokens > 100
        with pytest.raises(GenerationError, match="context holds 256"):
            m.generate("word " * 300, max_tokens=3)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_tokens": "5"}, "max_tokens must be an integer"),
    ({"max_tokens": 2.5}, "max_tokens must be an integer"),
    ({"stop": [5]}, "stop strings must be strings"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"top_k": 2.5}, "top_k must be an integer"),
])
def test_wrong_types_in_the_python_api_are_generation_errors(model, kwargs, message):
    with pytest.raises(GenerationError, match=message):
        model.generate("Hi", **kwargs)
