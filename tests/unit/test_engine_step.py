"""The engine's step, as a pure function of its slots: which tokens of which
sequences go into one llama_decode."""
from shimmy_py.generation.batch import Slot, SlotState, build_batch


def slot(seq, pending=(), last=None, n_past=0, state=SlotState.PREFILL):
    return Slot(seq, req=None, sampler=None, pending=list(pending), n_past=n_past, last=last, state=state)


def test_decoding_sequences_come_first_then_prompt_chunks():
    a = slot(0, last=11, n_past=5, state=SlotState.DECODE)
    b = slot(1, pending=range(100, 110))
    batch = build_batch([b, a], n_batch=64, prefill_chunk=4)
    assert batch.tokens == [11, 100, 101, 102, 103]
    assert batch.positions == [5, 0, 1, 2, 3] and batch.seqs == [0, 1, 1, 1, 1]
    assert batch.want == [True, False, False, False, False]     # b's prompt is not done: nothing sampled
    assert batch.owners == [a, None, None, None, None]
    assert (a.n_past, b.n_past, b.pending) == (6, 4, list(range(104, 110)))


def test_the_last_prompt_token_is_sampled():
    b = slot(1, pending=[7, 8], n_past=3)                       # 3 tokens reused from the cache
    batch = build_batch([b], n_batch=64, prefill_chunk=512)
    assert batch.positions == [3, 4] and batch.want == [False, True] and batch.owners == [None, b]
    assert b.pending == []


def test_the_batch_budget_holds():
    slots = [slot(s, last=s, n_past=1, state=SlotState.DECODE) for s in range(3)] + \
        [slot(3, pending=range(50)), slot(4, pending=range(50))]
    batch = build_batch(slots, n_batch=10, prefill_chunk=512)
    assert len(batch.tokens) == 10 and batch.seqs == [0, 1, 2] + [3] * 7
    assert len(slots[3].pending) == 43 and len(slots[4].pending) == 50


def test_done_slots_decode_nothing():
    done = slot(0, last=5, n_past=9, state=SlotState.DONE)
    assert build_batch([done], n_batch=8, prefill_chunk=8).tokens == []
