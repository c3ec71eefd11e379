"""The header reader: fast on big vocabularies, clear on broken files."""
import pytest

from shimmy_py import GGUFError, Model, synth
from shimmy_py.gguf_io.reader import ArrayRef, read_header


def test_reads_tiny_model_table(tiny_path):
    h = read_header(tiny_path)
    assert h.architecture == "deepseek"
    names = {t.name for t in h.tensors}
    assert {"token_embd.weight", "blk.1.ffn_up_exps.weight", "blk.1.ffn_down_shexp.weight",
            "blk.0.ffn_gate.weight", "output.weight"} <= names
    exps = next(t for t in h.tensors if t.name == "blk.2.ffn_gate_exps.weight")
    assert exps.shape == (64, 32, 8) and exps.nbytes == 64 * 32 * 8 * 4
    assert isinstance(h.metadata["tokenizer.ggml.tokens"], ArrayRef)
    assert h.metadata["tokenizer.ggml.tokens"].count == 102400


def test_vocabulary_arrays_are_skipped_and_load_on_demand():
    h = read_header(synth.vocab_path())
    tokens = h.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, ArrayRef) and tokens.count == 102400
    assert tokens.load()[100000] == "<｜begin▁of▁sentence｜>"
    assert h.metadata["tokenizer.ggml.bos_token_id"] == 100000


def test_missing_file():
    with pytest.raises(GGUFError, match="no such file"):
        Model("/nonexistent/model.gguf")


def test_not_a_gguf_file(tmp_path):
    p = tmp_path / "notes.gguf"
    p.write_text("this is not a model")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        Model(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        Model(p)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_file(tiny_path, tmp_path, keep):
    data = tiny_path.read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(GGUFError, match="truncated"):
        Model(p)


def test_truncated_header(tiny_path, tmp_path):
    p = tmp_path / "head.gguf"
    p.write_bytes(tiny_path.read_bytes()[:1000])
    with pytest.raises(GGUFError, match="truncated GGUF file: metadata"):
        Model(p)
