"""llama.cpp's logits for the tiny synthetic model equal a NumPy reference of
the DeepSeekMoE forward pass.

Tolerance: 1e-2 absolute on logits of standard deviation ~1 (largest ~5). The
reference runs in float64; llama.cpp stores the KV cache in F16 (its default)
and computes in F32; the largest difference measured was 4e-3.
"""
import numpy as np
import pytest
from support.reference import Reference

TOL = 1e-2


@pytest.fixture(scope="module")
def reference(tiny_path):
    return Reference(tiny_path)


def test_logits_match_reference_at_every_position(model, reference):
    tokens = model.tokenize("The quick brown fox jumps over the lazy dog, again and again.")
    ours = model.eval_logits(tokens)
    ref = reference.logits(tokens)
    assert ours.shape == ref.shape == (len(tokens), model.n_vocab)
    err = np.abs(ours - ref).max(axis=1)
    assert np.all(err < TOL), f"max abs error per position: {err}"
    # the comparison is not vacuous: logits vary and the argmax agrees
    assert ref.std() > 0.5
    assert (ours.argmax(axis=1) == ref.argmax(axis=1)).all()


def test_reference_detects_a_wrong_weight(model, reference, tiny_path):
    tokens = model.tokenize("Hello there")
    broken = Reference(tiny_path)
    broken.w["blk.1.ffn_down_shexp.weight"] = broken.w["blk.1.ffn_down_shexp.weight"] * 1.5
    ours = model.eval_logits(tokens)
    assert np.abs(ours - broken.logits(tokens)).max() > 10 * TOL
