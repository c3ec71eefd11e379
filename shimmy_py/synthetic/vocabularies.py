"""The tokenizers and chat templates the synthetic models carry, from the
pinned llama.cpp source as native/build.sh ships them (install/share): the
vocabulary files' tokenizer keys copied byte for byte, padded with unused
tokens where a real model's vocabulary is larger than the file's."""
from __future__ import annotations

import struct
from pathlib import Path

from gguf import GGUFValueType, TokenType

from ..errors import ShimmyError
from ..gguf_io.format import TOKENIZER
from ..gguf_io.writer import GGUFBuilder


def vocabulary_path(name: str) -> Path:
    """ggml-vocab-NAME.gguf of the pinned source, as the build ships it."""
    from ..native.install import find_install
    path = find_install() / "share" / f"ggml-vocab-{name}.gguf"
    if not path.exists():
        raise ShimmyError(f"{path} is missing; run `make native` (native/build.sh)")
    return path


def template_text(name: str) -> str:
    """A chat template of the pinned source's models/templates, by file name."""
    path = vocabulary_path("qwen2").parent / "templates" / name
    if not path.exists():
        raise ShimmyError(f"{path} is missing; run `make native` (native/build.sh)")
    return path.read_text(encoding="utf-8")


def n_tokens(vocab) -> int:
    """Tokens in a vocabulary file's header."""
    tokens = vocab.metadata.get("tokenizer.ggml.tokens")
    return len(tokens) if isinstance(tokens, list) else tokens.count   # a large array stays undecoded


def add_tokenizer(b: GGUFBuilder, vocab, n_vocab: int, template: str | None = None) -> None:
    """The family's tokenizer (and chat template) byte for byte; padded with
    unused tokens up to n_vocab where the real model's vocabulary is larger
    (gpt-oss's o200k), so that the embedding and head have the real sizes.
    `template`: the real model's chat template, instead of the vocabulary's."""
    n_pad = n_vocab - n_tokens(vocab)
    if template is not None:
        b.add(TOKENIZER.CHAT_TEMPLATE, template, GGUFValueType.STRING)
    for name in vocab.metadata:
        if not name.startswith("tokenizer.") or (template is not None and name == TOKENIZER.CHAT_TEMPLATE):
            continue
        raw = vocab.raw_kv(name)
        if n_pad and name in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
            at = 8 + len(name.encode()) + 4 + 4            # key, value type, element type, then the count
            count = struct.unpack_from("<Q", raw, at)[0]
            raw = raw[:at] + struct.pack("<Q", count + n_pad) + raw[at + 8:] + _padding(name, count, n_pad)
        b.add_raw(name, raw)


def _padding(name: str, first: int, n: int) -> bytes:
    if name == "tokenizer.ggml.tokens":
        texts = (f"<|unused_{first + i}|>".encode() for i in range(n))
        return b"".join(struct.pack("<Q", len(t)) + t for t in texts)
    if name == "tokenizer.ggml.token_type":
        return struct.pack("<i", TokenType.UNUSED) * n
    return b"\0\0\0\0" * n            # scores: 0.0
