"""struct llama_model *: loading (from a plain LoadSpec) and the vocabulary
work on it: tokenize, detokenize, token pieces, special tokens, chat template.

Callers above this layer pass and receive Python values only: strings, token
id lists and bytes; every buffer and pointer stays here.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Sequence

from ..errors import GenerationError, NativeError
from . import backend
from .binding import llama_chat_message, llama_token
from .buffers import char_buffer, grown
from .owned import Owned
from .runtime import lib

# Measured: an 8 MiB stack overflows at about 26,000 characters of one run
# (about 320 bytes per character); 64 MiB held 100,000 and 512 MiB 1,000,000.
SAFE_RUN = 8_000                 # texts this short tokenize on the caller's own stack
STACK_BASE = 8 << 20
STACK_PER_CHAR = 1024            # three times what was measured
MAX_TEXT = 2_000_000             # a 2 GiB stack (virtual: pages are committed as touched); longer is refused
_stack_lock = threading.Lock()


def on_large_stack(fn, stack_bytes: int):
    """Runs fn() on a new thread with a stack of `stack_bytes` (virtual memory:
    pages are committed only as the recursion touches them); returns its result."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:   # handed to the caller's thread
            result["error"] = e
    with _stack_lock:                # threading.stack_size is process-wide
        old = threading.stack_size(stack_bytes)
        try:
            worker = threading.Thread(target=target, name="shimmy-tokenize")
            worker.start()
        except RuntimeError as e:    # the system would not map such a stack
            raise GenerationError(f"cannot start a tokenizer thread with a {stack_bytes >> 20} MiB stack: {e}") \
                from None
        finally:
            threading.stack_size(old)
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


# enum llama_load_mode
LOAD_MODES = {"auto": -1, "none": 0, "mmap": 1, "mlock": 2, "mmap+mlock": 3}


@dataclass(frozen=True)
class LoadSpec:
    """How llama.cpp loads a model: llama_model_params in Python values."""
    vocab_only: bool = False          # the tokenizer only: no weights, no context
    no_alloc: bool = False            # run the loader without allocating or reading weights
    load_mode: str | None = None      # a LOAD_MODES name; None keeps llama.cpp's default
    n_gpu_layers: int | None = None   # None keeps llama.cpp's default
    devices: tuple[str, ...] | None = ()  # devices to offload to, by name (() none); None lets llama.cpp choose
    overrides: tuple[tuple[str, str], ...] = ()  # (pattern, buffer type or device name), first match wins
    tensor_split: tuple[float, ...] = ()  # share of the layers per device of `devices`; () lets llama.cpp choose
    load_mtp: bool = False            # also load the NextN/MTP block (speculative draft-mtp)
    repack: bool = True               # let the CPU backend copy weights into repacked buffers (use_extra_bufts)


class ModelHandle(Owned):
    """struct llama_model *, loaded from `path` as `spec` says."""

    def __init__(self, path: str, spec: LoadSpec = LoadSpec()):
        self.path = path
        L = lib()
        params = L.llama_model_default_params()
        params.vocab_only, params.no_alloc, params.load_mtp = spec.vocab_only, spec.no_alloc, spec.load_mtp
        if not spec.repack:
            params.use_extra_bufts = False
        if spec.load_mode is not None:
            if spec.load_mode not in LOAD_MODES:
                raise NativeError(f"load mode {spec.load_mode!r}: choose one of {', '.join(LOAD_MODES)}")
            params.load_mode = LOAD_MODES[spec.load_mode]
        if spec.n_gpu_layers is not None:
            params.n_gpu_layers = spec.n_gpu_layers
        # arrays llama.cpp points into while loading: kept as long as the model
        self._keepalive = backend.fill_placement(params, spec.devices, list(spec.overrides),
                                                 list(spec.tensor_split))
        ptr = L.llama_model_load_from_file(path.encode(), params)
        super().__init__(ptr, f"llama_model_load_from_file({path})")
        self._vocab = L.llama_model_get_vocab(ptr)
        self.n_vocab = L.llama_vocab_n_tokens(self._vocab)
        self.n_embd_out = L.llama_model_n_embd_out(ptr)      # an embedding's size
        self.n_layer_nextn = L.llama_model_n_layer_nextn(ptr) if not spec.vocab_only else 0   # MTP blocks in the file

    def _free(self, ptr) -> None:
        lib().llama_model_free(ptr)

    @contextlib.contextmanager
    def vocab_in_use(self):
        """The vocabulary pointer, held open for the calls inside the block."""
        with self.using():
            yield self._vocab

    @property
    def bos(self) -> int:
        with self.vocab_in_use() as vocab:
            return lib().llama_vocab_bos(vocab)

    @property
    def eos(self) -> int:
        with self.vocab_in_use() as vocab:
            return lib().llama_vocab_eos(vocab)

    @property
    def adds_bos_eos(self) -> tuple[bool, bool]:
        """Whether tokenizing with add_special adds BOS, and EOS."""
        with self.vocab_in_use() as vocab:
            return bool(lib().llama_vocab_get_add_bos(vocab)), bool(lib().llama_vocab_get_add_eos(vocab))

    def is_eog(self, token: int) -> bool:
        with self.vocab_in_use() as vocab:
            return bool(lib().llama_vocab_is_eog(vocab, token))

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        """Token ids of `text`. llama.cpp's pre-tokenizer (std::regex, for the
        tokenizers without a hand-written splitter, DeepSeek LLM's among them)
        recurses once per character of a run its patterns match: a run of
        letters, digits, punctuation or whitespace alike overflows an 8 MiB
        stack at about 26,000 characters (SIGSEGV; benchmarks/tokenizer_runs.py
        measures it per tokenizer and class). Any text longer than SAFE_RUN is
        therefore tokenized on a thread whose stack is sized for the whole text:
        a regex match cannot be longer than the text, whatever its patterns."""
        raw = text.encode("utf-8")
        if len(text) <= SAFE_RUN:
            return self.tokenize_here(raw, add_special, parse_special)
        if len(text) > MAX_TEXT:
            raise GenerationError(f"a text of {len(text)} characters: at most {MAX_TEXT} can be tokenized safely "
                                  f"(llama.cpp's pre-tokenizer recurses per character; {self.path})")
        return on_large_stack(lambda: self.tokenize_here(raw, add_special, parse_special),
                              STACK_BASE + STACK_PER_CHAR * len(text))

    def tokenize_here(self, raw: bytes, add_special: bool, parse_special: bool) -> list[int]:
        """llama_tokenize on the caller's own stack (see tokenize())."""
        with self.vocab_in_use() as vocab:
            buf, n = grown(lambda b, cap: lib().llama_tokenize(vocab, raw, len(raw), b, cap, add_special,
                                                               parse_special),
                           lambda cap: (llama_token * max(1, cap))(), len(raw) + 8,
                           f"llama_tokenize ({self.path})")
        return list(buf[:n])

    def detokenize(self, ids: Sequence[int], special: bool) -> bytes:
        arr = (llama_token * max(1, len(ids)))(*ids)
        with self.vocab_in_use() as vocab:
            buf, n = grown(lambda b, cap: lib().llama_detokenize(vocab, arr, len(ids), b, cap, False, special),
                           char_buffer, 8 * len(ids) + 16, f"llama_detokenize ({self.path})")
        return buf.raw[:n]

    def token_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token's text (special tokens render as nothing, unless `special`)."""
        with self.vocab_in_use() as vocab:
            buf, n = grown(lambda b, cap: lib().llama_token_to_piece(vocab, token, b, cap, 0, special),
                           char_buffer, 64, f"llama_token_to_piece ({self.path})")
        return buf.raw[:n]

    def chat_template(self) -> str | None:
        """The GGUF's own tokenizer.chat_template, if it has one."""
        with self.using() as ptr:
            own = lib().llama_model_chat_template(ptr, None)
            return own.decode("utf-8", errors="replace") if own else None


def apply_chat_template(template: str, messages: Sequence[tuple[str, str]], add_assistant: bool) -> str:
    """llama_chat_apply_template: `messages` as (role, content) pairs formatted
    by `template` (Jinja text of a known family, or a llama.cpp template name)."""
    keep = [(r.encode(), c.encode()) for r, c in messages]
    arr = (llama_chat_message * max(1, len(keep)))(*[llama_chat_message(r, c) for r, c in keep])
    tmpl = template.encode()
    buf, n = grown(lambda b, cap: lib().llama_chat_apply_template(tmpl, arr, len(keep), add_assistant, b, cap),
                   char_buffer, 2 * sum(len(r) + len(c) for r, c in keep) + 256,
                   "llama_chat_apply_template (template not supported)", negative_is_size=False)
    return buf.raw[:n].decode("utf-8", errors="replace")
