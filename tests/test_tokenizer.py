"""Tokenization matches llama.cpp's own DeepSeek LLM test vectors."""
from shimmy_py import synth


def read_vectors():
    vocab = synth.vocab_path()
    raw = vocab.with_name(vocab.name + ".inp").read_text(encoding="utf-8")
    inputs = raw.split("\n__ggml_vocab_test__\n")
    if inputs and inputs[-1] == "":  # the file ends with a separator, as llama.cpp reads it
        inputs.pop()
    outputs = vocab.with_name(vocab.name + ".out").read_text(encoding="utf-8").splitlines()
    assert len(inputs) == len(outputs), "the .inp and .out files disagree on the number of tests"
    return [(text, [int(t) for t in line.split()]) for text, line in zip(inputs, outputs)]


def test_vectors_are_read_whole():
    vectors = read_vectors()
    assert len(vectors) > 30
    assert dict(vectors)["Hello world"] == [17464, 1843]


def test_tokenize_matches_llama_cpp_vectors(vocab_model):
    failures = []
    for text, expected in read_vectors():
        got = vocab_model.tokenize(text, add_special=False)
        if got != expected:
            failures.append((text, expected, got))
    assert failures == []


def test_detokenize_round_trips(vocab_model):
    for text, expected in read_vectors():
        if expected:
            assert vocab_model.detokenize(expected) == text


def test_bos_is_added_as_the_model_asks(vocab_model):
    assert vocab_model.tokenize("Hi")[0] == 100000
    assert vocab_model.tokenize("Hi", add_special=False)[0] != 100000


def test_a_long_run_without_whitespace_tokenizes_instead_of_overflowing_the_stack(vocab_model):
    """llama.cpp's pre-tokenizer regex recursed past the 8 MiB stack on
    ~26,000 characters of one run (SIGSEGV); such text runs on a larger stack."""
    ids = vocab_model.tokenize("a" * 200_000, add_special=False)
    assert len(ids) > 10_000 and vocab_model.detokenize(ids) == "a" * 200_000
    assert vocab_model.tokenize("ab " * 50_000, add_special=False)


def test_a_text_beyond_the_limit_is_refused_clearly(vocab_model):
    import pytest

    from shimmy_py import GenerationError
    from shimmy_py.native.model_handle import MAX_TEXT
    with pytest.raises(GenerationError, match="can be tokenized safely"):
        vocab_model.tokenize("a " * (MAX_TEXT // 2 + 1))
