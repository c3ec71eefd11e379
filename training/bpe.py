"""The stdlib model's tokenizer: a byte-level BPE trained on the training
files, written as a GGUF vocabulary llama.cpp loads (`tokenizer.ggml.model`
"gpt2", pre-tokenizer "gpt-2": GPT-2's split regex, which is also the split
Hugging Face's ByteLevel pre-tokenizer makes).

Why a BPE of our own and not an existing llama.cpp vocabulary cut down: a
model this small spends most of its parameters on the embedding and the head,
so the vocabulary must be small (4096), and a vocabulary cut from a 100k one
would keep its merges' order but lose the tokens the text needs (a cut
vocabulary cannot spell what its removed merges made). A BPE trained on the
same text spends its 4096 entries on Python's own words and indentation.
"""
from __future__ import annotations

from pathlib import Path

from gguf import GGUFValueType, TokenType

from shimmy_py.gguf_io.format import TOKENIZER
from shimmy_py.gguf_io.writer import GGUFBuilder

ENDOFTEXT = "<|endoftext|>"     # id 0: begins every file (BOS) and ends one (EOS)
U32 = GGUFValueType.UINT32


def train(files: list[Path], vocab_size: int = 4096):
    """A Hugging Face `tokenizers` byte-level BPE trained on `files`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[ENDOFTEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([str(f) for f in files], trainer)
    return tok


def write_gguf(tok, out: Path) -> Path:
    """The tokenizer keys alone (no tensors), as a vocabulary file that
    shimmy_py's writer copies into the model (synthetic.families.write(vocab=))."""
    import json
    model = json.loads(tok.to_str())["model"]
    vocab = model["vocab"]
    tokens = [None] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [int(TokenType.CONTROL if t == ENDOFTEXT else TokenType.NORMAL) for t in tokens]
    b = GGUFBuilder()
    b.add(TOKENIZER.MODEL, "gpt2", GGUFValueType.STRING)
    b.add(TOKENIZER.PRE, "gpt-2", GGUFValueType.STRING)
    b.add(TOKENIZER.LIST, tokens, GGUFValueType.ARRAY, GGUFValueType.STRING)
    b.add(TOKENIZER.TOKEN_TYPE, types, GGUFValueType.ARRAY, GGUFValueType.INT32)
    b.add(TOKENIZER.MERGES, merges, GGUFValueType.ARRAY, GGUFValueType.STRING)
    b.add(TOKENIZER.BOS_ID, vocab[ENDOFTEXT], U32)
    b.add(TOKENIZER.EOS_ID, vocab[ENDOFTEXT], U32)
    b.add(TOKENIZER.ADD_BOS, True, GGUFValueType.BOOL)
    b.add(TOKENIZER.ADD_EOS, False, GGUFValueType.BOOL)
    b.write(out)
    return out


def encode(tok, text: str) -> list[int]:
    return tok.encode(text).ids
