"""Continuous batching: up to n_seq_max requests decode together through one
llama context, one sequence each, in the same llama_decode calls.

A scheduler thread owns the context (generation/context.py). Each step it admits queued requests into
free sequences, builds one batch (one token per decoding sequence, plus chunks
of prompts still being processed, so a long prompt never stalls the others for
more than one chunk), decodes it with the GIL released, samples each
sequence with its own sampler chain, and only then hands the tokens to
their requests (a request thread woken earlier would contend with the
sampling for the GIL and the cores). Requests consume their tokens through
`BatchedSequence`, a token source for generate.run(); closing it (a client
that went away) frees the sequence at the next step. A freed sequence keeps
its KV cache: a later prompt that starts the same way decodes only the rest
(kvcache.py). With a drafter (speculative decoding, generation/speculative.py)
a decoding sequence adds its drafts after its token, in the same batch as
the sequences that have none; its sampler then checks them row by row and
the rows it did not keep leave the cache.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import defaults
from ..errors import GenerationError, ShimmyError
from .batch import END, SHUTDOWN, BatchedSequence, Slot, SlotState, StepBatch, build_batch, token_logprobs
from .context import Context
from .experts import StepRouting, batch_rows, tap_names
from .hostcache import HostCache
from .kvcache import common_prefix
from .loop import check_request
from .sampling import SamplingParams, build_sampler
from .speculative import Drafter, verify
from .vocab import Vocab

logger = logging.getLogger("shimmy_py.engine")


class QueueFull(ShimmyError):
    """Every sequence is busy and the waiting queue is at its limit."""


class EngineFailed(ShimmyError):
    """The engine is stopping, or stopped after a native error."""


MIN_SAVED_TOKENS = 32   # a sequence holding fewer is not worth a copy to host RAM
MIN_RESTORE_GAIN = 8    # prompt tokens a restore must save over what the slot already holds
MIN_SHARED_PREFIX = 8   # prompt tokens another sequence must hold beyond a slot's own to be shared

@dataclass
class EngineStats:
    queue_depth: int = 0
    active: int = 0
    steps: int = 0
    batch_tokens: int = 0
    step_s: float = 0.0      # wall time of whole steps (batch building, decode, sampling)
    decode_s: float = 0.0    # of which inside llama_decode
    shared_tokens: int = 0   # prompt tokens taken from another sequence's cache instead of decoded
    draft_tokens: int = 0    # speculative decoding: draft tokens verified
    draft_accepted: int = 0  # of which kept
    threads: int = 0         # CPU threads the last step ran on (the server's share: threads.py)
    finished: collections.Counter = field(default_factory=collections.Counter)
    stream: object = None    # streaming.StreamStats of the model's streamed experts, if any


class Engine:
    """The scheduler over a context of n_seq_max sequences."""

    def __init__(self, context: Context, vocab: Vocab, queue_limit: int = defaults.QUEUE,
                 prefill_chunk: int = defaults.PREFILL_CHUNK, cache_bytes: int = 0, n_experts: int = 0,
                 drafter: Drafter | None = None, set_threads: Callable[[int], None] | None = None):
        self.context, self.vocab = context, vocab
        # sets the threads of every context a step decodes with (Model.set_threads); the context's alone by default
        self._set_threads = set_threads or context.set_threads
        self._threads_asked: int | None = None
        self.drafter = drafter                # speculative decoding (speculative.py), or None
        self.cache = HostCache(cache_bytes)   # conversations whose slot went to another request
        self.n_seq = context.n_seq_max
        self.queue_limit = queue_limit
        self.prefill_chunk = prefill_chunk
        self.stats = EngineStats(threads=context.native.n_threads)
        self._waiting: collections.deque[BatchedSequence] = collections.deque()
        self._slots: dict[int, Slot] = {}
        self._cv = threading.Condition()
        self._stopping = False
        self.failure: Exception | None = None
        self._session = context.session()
        self._session.__enter__()
        context.clear()
        # a context with a tap: every step's routing, counted per layer and expert (rows with logits:
        # those every layer routes) and kept for the requests that asked for theirs
        self.routing = StepRouting() if context.native.tap is not None else None
        self.n_experts, self.expert_counts = n_experts, {}
        if self.routing is not None:
            context.native.tap.listen(self.routing, tap_names())
        self._thread = threading.Thread(target=self._loop, name="shimmy-engine", daemon=True)
        self._thread.start()

    # --- the requests' side ---------------------------------------------------
    def submit(self, tokens: list[int], sampling: SamplingParams, max_tokens: int,
               logprobs: int | None = None, experts: bool = False) -> BatchedSequence:
        check_request(tokens, max_tokens, self.context.n_ctx)
        sampling.validate(self.vocab.n_vocab)
        if experts and self.routing is None:
            raise GenerationError("routed experts were asked for, but this model's server does not trace them: "
                                  "start it with --trace-experts (or trace_experts in its --config entry)")
        seq = BatchedSequence(self.wake, tokens, sampling, max_tokens, logprobs, experts)
        with self._cv:
            if self.failure is not None:
                raise EngineFailed(f"the engine stopped after a native error: {self.failure}")
            if self._stopping:
                raise EngineFailed("the server is shutting down")
            free = self.n_seq - len(self._slots)
            if len(self._waiting) >= self.queue_limit + max(0, free):
                raise QueueFull(f"{len(self._slots)} requests running and {len(self._waiting)} waiting")
            self._waiting.append(seq)
            self.stats.queue_depth = len(self._waiting)
            self._cv.notify()
        return seq

    def limit_cache(self, limit_bytes: int) -> None:
        """Bounds the host-RAM conversation cache anew (the server needs the RAM)."""
        with self._cv:
            self.cache.set_limit(limit_bytes)

    def share_threads(self, n: int) -> None:
        """Decode with `n` CPU threads from the next step on (the scheduler
        thread applies it between decodes)."""
        with self._cv:
            self._threads_asked = n

    def wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def close(self) -> None:
        """Ends every request (their streams see the end) and releases the context."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join()
        session, self._session = self._session, None
        if session is not None:
            session.__exit__(None, None, None)

    # --- the scheduler thread -------------------------------------------------
    def _loop(self) -> None:
        try:
            while True:
                with self._cv:
                    self._reap()
                    if self._stopping:
                        break
                    self._admit()
                    if not self._slots:
                        self._cv.wait(timeout=1.0)
                        continue
                    threads, self._threads_asked = self._threads_asked, None
                if threads is not None and threads != self.stats.threads:
                    self._set_threads(threads)
                    self.stats.threads = threads
                self._step()
        except BaseException as e:  # a native failure ends every open request with it
            logger.exception("engine stopped")
            self.failure = e if isinstance(e, Exception) else ShimmyError(str(e))
            self._fail_all(self.failure)
            return
        self._fail_all(None)

    def _fail_all(self, error) -> None:
        with self._cv:
            self._stopping = True
            for slot in list(self._slots.values()):
                slot.req.out.put(error or SHUTDOWN)
                self._release(slot)
            while self._waiting:
                self._waiting.popleft().out.put(error or SHUTDOWN)

    def _admit(self) -> None:
        free = [s for s in range(self.n_seq) if s not in self._slots]
        while free and self._waiting:
            req = self._waiting[0]
            if self._prefilling_same(req):
                break          # another sequence is decoding this prompt now: share it once decoded
            self._waiting.popleft()
            if req.cancelled:
                continue
            try:
                sampler = build_sampler(req.sampling, self.vocab.n_vocab, req.tokens, self.context.native.model)
            except ShimmyError as e:   # this request fails alone
                req.out.put(e)
                continue
            # the free sequence whose cache shares the longest prefix with this
            # prompt; only the rest of the prompt is decoded (llama-server's cache_prompt)
            seq = self.context.pick(free, req.tokens)
            free.remove(seq)
            self._swap(seq, req.tokens)
            if req.experts is not None:          # traced: the whole prompt routed, nothing reused
                self.context.empty(seq)
                kept = 0
            else:
                kept = self.context.reuse(seq, req.tokens)
                kept = req.cached_tokens = self._share(seq, req.tokens, kept)
            self._slots[seq] = Slot(seq, req, sampler, req.tokens[kept:], n_past=kept)
        self.stats.queue_depth, self.stats.active = len(self._waiting), len(self._slots)

    def _prefilling_same(self, req: BatchedSequence) -> bool:
        """Whether a slot is still decoding (nearly) this request's whole prompt
        (n > 1 choices, or the same prompt twice): it waits until that is
        decoded and then shares it instead of decoding it again."""
        if not self.context.unified or req.experts is not None:
            return False
        return any(slot.state is SlotState.PREFILL and slot.pending and
                   common_prefix(req.tokens, slot.req.tokens) >= max(MIN_SHARED_PREFIX, 0.9 * len(req.tokens))
                   for slot in self._slots.values())

    def _share(self, seq: int, prompt: list[int], kept: int) -> int:
        """The longest prefix of `prompt` another sequence holds, shared into
        `seq` if it is longer than what `seq` kept; how many tokens `seq` holds."""
        best, src = kept, None
        for other in self._slots if self.context.unified else ():
            n = min(common_prefix(self.context.kv.tokens(other), prompt), len(prompt) - 1)
            if n > best:
                best, src = n, other
        if src is None or best - kept < MIN_SHARED_PREFIX:
            return kept
        self.context.share(src, seq, best)
        self.stats.shared_tokens += best
        return best

    def _swap(self, seq: int, prompt: list[int]) -> None:
        """Host-RAM cache (hostcache.py): what `seq` holds and this prompt would
        discard is saved; a saved conversation this prompt continues further
        than `seq` does is put back into `seq`."""
        if not self.cache.limit:
            return
        held = self.context.kv.tokens(seq)
        shared = common_prefix(held, prompt)
        entry, saved_shared = self.cache.best(prompt)
        restore = entry is not None and saved_shared >= shared + MIN_RESTORE_GAIN
        if len(held) >= MIN_SAVED_TOKENS and (restore or len(held) - shared >= MIN_SAVED_TOKENS):
            self.cache.put(*self.context.save(seq))
        if restore:
            self.context.restore(seq, entry.tokens, self.cache.take(entry).state)

    def _reap(self) -> None:
        for slot in list(self._slots.values()):
            if slot.state is SlotState.DONE or slot.req.cancelled:
                self.stats.finished["done" if slot.state is SlotState.DONE else "cancelled"] += 1
                self._release(slot)
        self.stats.active = len(self._slots)

    def _release(self, slot: Slot) -> None:
        """Frees the slot; its cache stays for a later prompt that starts the same way."""
        slot.sampler.close()
        del self._slots[slot.seq]

    def _step(self) -> None:
        t0 = time.perf_counter()
        if self.drafter is not None:
            self._draft()
        batch = build_batch(self._slots.values(), self.context.n_batch, self.prefill_chunk)   # 1, 2
        if not batch.tokens:
            return
        t_decode = time.perf_counter()
        self.context.decode(batch.tokens, batch.positions, batch.seqs, batch.want)   # 3. GIL released inside
        self.stats.decode_s += time.perf_counter() - t_decode
        if self.routing is not None:
            self._route(batch)
        handed: list = []
        for idx, slot in enumerate(batch.owners):    # 4. sample each sequence
            if slot is not None:
                self._sample(slot, idx, handed)
        for out, item in handed:                     # 5. then wake their requests, none while sampling
            out.put(item)
        self.stats.steps += 1
        self.stats.batch_tokens += len(batch.tokens)
        self.stats.step_s += time.perf_counter() - t0

    def _route(self, batch: StepBatch) -> None:
        routed = self.routing.take()
        rows = batch_rows(routed, batch.want)
        for layer, (ids, _) in routed.items():
            counts = self.expert_counts.setdefault(layer, np.zeros(self.n_experts, np.int64))
            np.add.at(counts, ids[np.asarray(batch.want)[rows[layer]]].ravel(), 1)
        layers = sorted(routed)
        for r, slot in enumerate(batch.slots):
            if slot.req.experts is not None:       # its rows all have logits: every layer routed them
                at = [int(np.searchsorted(rows[la], r)) for la in layers]
                slot.req.experts.append((np.stack([routed[la][0][i] for la, i in zip(layers, at)]),
                                         np.stack([routed[la][1][i] for la, i in zip(layers, at)])))

    def _draft(self) -> None:
        """Drafts for every decoding sequence (not traced ones), as many as fit
        its context, its max_tokens and an equal share of the batch."""
        decoding = [s for s in self._slots.values()
                    if s.state is SlotState.DECODE and not s.req.cancelled and s.req.experts is None]
        if not decoding:
            return
        share = self.context.n_batch // len(decoding) - 1
        wants = []
        for slot in decoding:
            n_max = min(share, self.context.n_ctx - slot.n_past - 2, slot.req.max_tokens - slot.generated - 1)
            if n_max > 0:
                wants.append((slot, n_max))
        drafts = self.drafter.draft_many([(s.seq, self.context.kv.tokens(s.seq), s.last, n) for s, n in wants])
        for (slot, _), found in zip(wants, drafts):
            slot.drafts = found

    def _sample(self, slot: Slot, idx: int, handed: list) -> None:
        """Samples the slot's row `idx` (and, with drafts, the rows after it
        while the drafts hold); what its request gets goes to `handed` as
        (its queue, token or end)."""
        drafts, slot.drafts = slot.drafts, []
        if drafts:
            start = slot.n_past - len(drafts) - 1      # where `last` went
            kept = verify(lambda i: self._sample_row(slot, i), idx, drafts)
            slot.n_past = start + len(kept)
            if len(kept) <= len(drafts):
                self.context.truncate(slot.seq, slot.n_past)
            slot.req.draft_stats.add(len(drafts), len(kept) - 1)
            self.stats.draft_tokens += len(drafts)
            self.stats.draft_accepted += len(kept) - 1
        else:
            kept = [self._sample_row(slot, idx)]
        for tok in kept:
            slot.generated += 1
            handed.append((slot.req.out, tok))
            slot.last, slot.state = tok, SlotState.DECODE
            if self.vocab.is_eog(tok) or slot.generated >= slot.req.max_tokens:
                slot.state = SlotState.DONE
                return
        if slot.n_past >= self.context.n_ctx:       # no room to feed the last one back
            handed.append((slot.req.out, END))
            slot.state = SlotState.DONE

    def _sample_row(self, slot: Slot, idx: int) -> int:
        tok = slot.sampler.sample(self.context, idx)
        if slot.req.logprobs is not None:
            slot.req.token_logprobs.append(token_logprobs(self.context.logits(idx), tok, slot.req.logprobs))
        return tok
