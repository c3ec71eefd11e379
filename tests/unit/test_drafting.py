"""Speculative decoding's pure parts: the n-gram drafter as llama.cpp's
common_ngram_simple_draft behaves, the acceptance rule, the options record
and its flags, and the engine's batch with drafts."""
import argparse

import numpy as np
import pytest

from shimmy_py.errors import ShimmyError
from shimmy_py.fields import add_flags, from_flags, from_mapping
from shimmy_py.generation.batch import Slot, SlotState, build_batch
from shimmy_py.generation.options import ModelOptions
from shimmy_py.generation.spec_modes import SpeculativeOptions
from shimmy_py.generation.speculative import ngram_draft, top_choice, verify


def test_ngram_draft_copies_what_followed_the_last_occurrence():
    loop = list(range(10, 20))
    tokens = loop * 3 + loop[:4]            # ... 10 11 12 13, then 14 is sampled
    draft = ngram_draft(tokens, 14, n=3, m=5)
    assert draft == [15, 16, 17, 18, 19]    # after "12 13 14" came "15 16 ..."


def test_ngram_draft_finds_the_latest_match_and_skips_the_current_one():
    tokens = [1, 2, 3, 7, 7, 7, 7, 9, 9, 9, 1, 2, 3, 8, 8, 8, 8, 5, 5, 5, 1, 2]
    assert ngram_draft(tokens, 3, n=3, m=4) == [8, 8, 8, 8]      # the later "1 2 3" wins


def test_ngram_draft_needs_history_a_match_and_n_tokens_after_it():
    assert ngram_draft([1, 2, 3], 1, n=2, m=2) == []                             # too short: <= n + m + 1
    assert ngram_draft(list(range(100)), 100, n=3, m=4) == []                    # no repeat
    tokens = list(range(50)) + [1, 2, 3]
    assert ngram_draft(tokens, 4, n=3, m=8) == list(range(5, 13))
    near_end = list(range(40)) + [1, 2, 3, 4, 90, 1, 2, 3]
    # the latest "2 3 4" is at 41..43 and 4 tokens follow it: all drafted (4 >= n); but
    assert ngram_draft(near_end, 4, n=3, m=8) == [90, 1, 2, 3]
    assert ngram_draft(near_end, 4, n=4, m=8) == [90, 1, 2, 3]     # "1 2 3 4" at 40..43: the same 4
    assert ngram_draft(near_end, 4, n=5, m=8) == []                # "90 1 2 3 4" never occurred
    assert ngram_draft(near_end, 4, n=3, m=3) == [90, 1, 2]        # at most m (and at least n)


def test_verify_keeps_samples_while_they_equal_the_drafts():
    def sampler(values):
        return lambda row: values[row]
    assert verify(sampler([5, 6, 7, 8]), 0, [5, 6, 7]) == [5, 6, 7, 8]     # all kept, and one more
    assert verify(sampler([5, 9, 7, 8]), 0, [5, 6, 7]) == [5, 9]           # the first disagreement is kept
    assert verify(sampler([4, 6, 7, 8]), 0, [5, 6, 7]) == [4]
    assert verify(sampler([0, 0, 3]), 2, []) == [3]                        # no drafts: one sample at its row


def test_verify_samples_rows_in_order_and_no_row_after_a_disagreement():
    seen = []
    assert verify(lambda row: seen.append(row) or 1, 4, [1, 1, 2, 1]) == [1, 1, 1]
    assert seen == [4, 5, 6]


def test_top_choice_is_the_probability_among_the_ten_best():
    logits = np.full(100, -50.0, np.float32)
    logits[7], logits[3] = 2.0, 2.0 - np.log(3.0)
    token, p = top_choice(logits)
    assert token == 7 and p == pytest.approx(0.75, abs=1e-6)


def test_options_mirror_llama_server_and_refuse_contradictions():
    o = SpeculativeOptions()
    assert (o.spec_type, o.draft_max, o.draft_min, o.draft_p_min, o.ngram_n, o.ngram_m) == \
        ("none", 3, 0, 0.0, 12, 48)                 # llama.cpp's defaults
    assert not o.on and SpeculativeOptions("ngram").spec_type == "ngram-simple"
    assert SpeculativeOptions(draft_model="d.gguf").spec_type == "draft-simple"
    with pytest.raises(ShimmyError, match="needs a draft model"):
        SpeculativeOptions("draft-simple")
    with pytest.raises(ShimmyError, match="use draft-simple"):
        SpeculativeOptions("ngram-simple", draft_model="d.gguf")
    with pytest.raises(ShimmyError, match="choose one of"):
        SpeculativeOptions("draft-mtp-ish")
    for bad in ({"draft_max": 0}, {"draft_p_min": 1.5}, {"ngram_n": "x"}, {"draft_min": True}):
        with pytest.raises(ShimmyError):
            SpeculativeOptions(**bad)
    assert SpeculativeOptions.of("ngram-simple") == SpeculativeOptions("ngram-simple")
    assert SpeculativeOptions.of({"spec_type": "ngram", "ngram_n": 4}).ngram_n == 4
    assert ModelOptions.build(speculative="ngram").speculative.spec_type == "ngram-simple"


def test_options_come_from_llama_servers_flags_and_config_keys():
    parser = argparse.ArgumentParser()
    add_flags(parser, ModelOptions)
    ns = parser.parse_args(["-md", "small.gguf", "--spec-draft-n-max", "8", "--spec-draft-p-min", "0.6"])
    spec = from_flags(ModelOptions, ns).speculative
    assert (spec.spec_type, spec.draft_model, spec.draft_max, spec.draft_p_min) == \
        ("draft-simple", "small.gguf", 8, 0.6)
    ns = parser.parse_args(["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "4"])
    assert from_flags(ModelOptions, ns).speculative.ngram_n == 4
    from_config = from_mapping(ModelOptions, {"spec_type": "ngram-simple", "ngram_m": 16}, "models.x")
    assert from_config.speculative.ngram_m == 16
    with pytest.raises(ShimmyError, match="models.x: draft_max = 0"):
        from_mapping(ModelOptions, {"spec_type": "ngram-simple", "draft_max": 0}, "models.x")


def test_a_sequence_with_drafts_shares_the_batch_with_plain_ones():
    spec = Slot(0, req=None, sampler=None, pending=[], n_past=10, last=7, state=SlotState.DECODE, drafts=[8, 9])
    plain = Slot(1, req=None, sampler=None, pending=[], n_past=4, last=3, state=SlotState.DECODE)
    prompt = Slot(2, req=None, sampler=None, pending=[1, 2, 3], n_past=0)
    batch = build_batch([spec, plain, prompt], n_batch=16, prefill_chunk=8)
    assert batch.tokens == [7, 8, 9, 3, 1, 2, 3]
    assert batch.positions == [10, 11, 12, 4, 0, 1, 2] and batch.seqs == [0, 0, 0, 1, 2, 2, 2]
    assert batch.want == [True, True, True, True, False, False, True]   # every draft row has logits
    assert batch.owners == [spec, None, None, plain, None, None, prompt]  # the first row samples the drafts
    assert spec.n_past == 13


def test_draft_mtp_plans_the_nextn_block_and_its_kv_cache():
    from shimmy_py.placement.plan import DeviceSpec, PlanRequest
    from shimmy_py.placement.planner import plan
    from shimmy_py.synthetic import families
    from shimmy_py.synthetic.layouts import Shape
    table = families.table("glm4moe", Shape(n_vocab=32000))
    devices = [DeviceSpec("CPU", "cpu", 10**11, "CPU"), DeviceSpec("GPU", "accelerator", 10**10, "GPU")]
    plain, mtp = plan(table, devices, PlanRequest(n_ctx=4096)), plan(table, devices, PlanRequest(n_ctx=4096, mtp=True))
    block = {t.name for t in table.tensors if t.layer == table.hparams.n_layer_trunk}
    assert plain.not_loaded() == block and mtp.not_loaded() == set()
    assert mtp.device("GPU").weights_bytes - plain.device("GPU").weights_bytes == \
        sum(t.nbytes for t in table.tensors if t.name in block)
    one_layer = table.hparams.kv_layer_bytes(table.hparams.n_layer_trunk, 4096)
    assert mtp.device("GPU").kv_bytes - plain.device("GPU").kv_bytes == one_layer > 0
