"""What batching does to a sequence's logits, per build: nothing at all on a
`--batch-invariant` build; on the default build (llama.cpp's own kernels) a
rounding-level spread, measured here and used by the tests that compare
sequences decoded alone and batched (tests/batch_noise.py)."""
from support.batch_noise import spread

from shimmy_py.native import install

PROMPT = "Explain the architecture of DeepSeek MoE, layer by layer"


def test_batching_moves_logits_only_as_the_build_says(model):
    noise = spread(model, model.tokenize(PROMPT))
    if install.batch_invariant():
        assert noise == 0.0          # bit for bit: every output element is the same dot product
    else:
        # llamafile's tinyBLAS for batches, ggml's kernels for one token: the
        # tolerance exists for a reason, and it is float32 reassociation only
        assert 0.0 < noise < 1e-3
