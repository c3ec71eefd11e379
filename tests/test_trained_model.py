"""The trained stdlib model (training/stdlib-moe.gguf, issue 36): llama.cpp's
own llama-perplexity and `shimmy-py perplexity` give it the same figure on
Python it never saw in training (training/heldout/), and that figure is low
(a model of its 4096-token vocabulary that learned nothing scores thousands);
the NumPy reference forward pass agrees with libllama on it, as on the
synthetic models; its tokenizer gives the text back whole."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.reference import Reference

from shimmy_py import Model
from shimmy_py.generation.perplexity import of_file
from training import corpus
from training.check import llama_perplexity

TRAINED = corpus.MODEL
PPL_BOUND = 40.0     # issue 36's bar


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("heldout") / "heldout.py"
    path.write_text(corpus.heldout_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model():
    with Model(TRAINED, n_ctx=512, n_threads=2) as m:
        yield m


def test_llama_perplexity_and_ours_agree_and_the_model_learned(heldout):
    theirs = llama_perplexity(TRAINED, heldout)
    ours = of_file(TRAINED, heldout.read_text(encoding="utf-8"), 512, n_threads=2)
    assert abs(ours.ppl - theirs) <= 1e-6 * theirs, (ours.ppl, theirs)     # both printed to 4 decimals
    assert ours.chunks >= 40 and ours.count == ours.chunks * 255
    assert ours.ppl <= PPL_BOUND, ours.ppl


def test_the_reference_forward_pass_agrees_with_libllama(model):
    text = corpus.read(corpus.HELDOUT_DIR / "graphlib.py")[:400]
    tokens = model.tokenize(text)[:64]
    ours = model.eval_logits(tokens)
    ref = Reference(TRAINED).logits(tokens)
    # the reference computes in float64 from the file's F16 weights, llama.cpp in F32 with an F16 KV cache:
    # 0.006 apart at most on logits whose spread is 2 to 7 (2026-12-07)
    err = np.abs(ours - ref).max(axis=1)
    assert np.all(err < 0.02), err
    assert ref.std(axis=1).min() > 1.0 and (ours.argmax(axis=1) == ref.argmax(axis=1)).all()


def test_the_tokenizer_gives_the_text_back(model):
    """Token by token, as a stream hands out pieces (llama-server's and ours);
    llama_detokenize itself tidies spaces for every GPT-2-style pre-tokenizer
    as Hugging Face's clean_up_tokenization_spaces does (" 's" becomes "'s":
    "'a', 'shorten'" comes back "'a','shorten'"), and Model.detokenize keeps
    llama.cpp's answer."""
    text = corpus.heldout_text()
    ids = model.tokenize(text, add_special=False)
    assert b"".join(model.vocab.token_bytes(t) for t in ids).decode("utf-8") == text
    assert len(text) / len(ids) > 2.5         # a BPE that learned Python's words, not single bytes
    assert model.detokenize(model.tokenize("['a', 'shorten']", add_special=False)) == "['a','shorten']"


def test_the_cli_prints_the_figure_and_names_a_text_too_short(heldout, tmp_path):
    import json
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "shimmy_py", "perplexity", str(TRAINED), "--threads", "2"]
    run = subprocess.run([*cmd, "-f", str(heldout), "--json"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["chunks"] == 42 and out["tokens_scored"] == 42 * 255 and out["ppl"] <= PPL_BOUND
    short = tmp_path / "short.py"
    short.write_text("def f():\n    return 1\n")
    run = subprocess.run([*cmd, "-f", str(short)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "needs at least 1024" in run.stderr, run.stderr
