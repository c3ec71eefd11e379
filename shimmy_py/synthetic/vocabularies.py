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


# Qwen3's added tokens where the Qwen2 vocabulary file has [PADn] (its
# tokenizer_config.json: "special" ones are CONTROL in a GGUF, the others,
# the tool-call and thinking tags, USER_DEFINED: shown in the output as text)
QWEN3_ADDED = tuple((151646 + i, text, TokenType.CONTROL if i < 11 else TokenType.USER_DEFINED)
                    for i, text in enumerate((
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>")))


def add_tokenizer(b: GGUFBuilder, vocab, n_vocab: int, template: str | None = None,
                  added: tuple = ()) -> None:
    """The family's tokenizer (and chat template) byte for byte; padded with
    unused tokens up to n_vocab where the real model's vocabulary is larger
    (gpt-oss's o200k), so that the embedding and head have the real sizes.
    `template`: the real model's chat template, instead of the vocabulary's;
    `added`: (id, text, type) of the real model's added tokens, written over
    the file's placeholders at those ids."""
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
        if added and name in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
            raw = _with_added(raw, name, added)
        b.add_raw(name, raw)


def _with_added(raw: bytes, name: str, added: tuple) -> bytes:
    at = 8 + len(name.encode()) + 4 + 4 + 8          # the first element
    if name == "tokenizer.ggml.token_type":
        out = bytearray(raw)
        for i, _, ttype in added:
            struct.pack_into("<i", out, at + 4 * i, int(ttype))
        return bytes(out)
    texts = {i: text.encode() for i, text, _ in added}
    parts, pos, i = [raw[:at]], at, 0
    while pos < len(raw):
        n = struct.unpack_from("<Q", raw, pos)[0]
        if i in texts:
            parts.append(struct.pack("<Q", len(texts[i])) + texts[i])
        else:
            parts.append(raw[pos:pos + 8 + n])
        pos, i = pos + 8 + n, i + 1
    return b"".join(parts)


def _padding(name: str, first: int, n: int) -> bytes:
    if name == "tokenizer.ggml.tokens":
        texts = (f"<|unused_{first + i}|>".encode() for i in range(n))
        return b"".join(struct.pack("<Q", len(t)) + t for t in texts)
    if name == "tokenizer.ggml.token_type":
        return struct.pack("<i", TokenType.UNUSED) * n
    return b"\0\0\0\0" * n            # scores: 0.0
