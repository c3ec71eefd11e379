"""Speculative decoding's modes (llama-server's --spec-type), one class each
in one registry (MODES): what a mode needs of the model (`check`), what it
loads beside it (a draft model before the plan, so that the plan leaves it
room; the model's MTP head after the context), whether the plan holds the
model's NextN block (`nextn`), and the drafter a generation uses. A new mode
is a class here and its name in speculative.SPEC_TYPES."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import GenerationError, NativeError, ShimmyError
from ..gguf_io.arch import facts
from ..gguf_io.reader import GGUFHeader
from ..native.context_handle import ContextHandle, ContextSpec
from .mtp import MtpDrafter
from .speculative import Drafter, ModelDrafter, NgramDrafter, SpeculativeOptions, check_same_vocab


class Mode:
    """The base every mode extends. A mode's `part` is what it loaded beside
    the model (None, a draft Model, an MTP head), closed with the model."""
    name = ""
    nextn = False          # the plan loads the NextN/MTP block and the main context computes its input

    def check(self, header: GGUFHeader, path: str, options: SpeculativeOptions) -> None:
        if facts(header.architecture).recurrent_interval:
            raise GenerationError(f"speculative decoding ({options.spec_type}) needs a KV cache that drops rejected "
                                  f"drafts; {header.architecture} keeps a recurrent state that cannot go back")

    def before_plan(self, model) -> Any:
        """A part loaded before the model's plan, which leaves it room."""
        return None

    def held_bytes(self, part) -> dict | None:
        """Accelerator bytes per device the plan leaves to `part`."""
        return None

    def after_context(self, model, spec: ContextSpec) -> Any:
        """A part made once the model's main context is."""
        return None

    def loaded(self, model, part) -> None:
        """Checks once the model (its vocabulary too) is loaded."""

    def drafter(self, model, part, options: SpeculativeOptions) -> Drafter | None:
        return None


class Off(Mode):
    """none: no speculation, on any model."""
    name = "none"

    def check(self, header, path, options):
        pass


class Ngram(Mode):
    """ngram-simple: the tokens that followed the last time the context's last n did."""
    name = "ngram-simple"

    def drafter(self, model, part, options):
        return NgramDrafter(options)


class DraftModel(Mode):
    """draft-simple: a small model of the same vocabulary, planned and loaded first."""
    name = "draft-simple"

    def before_plan(self, model):
        o = model.options
        try:
            return type(model)(o.speculative.draft_model, o.for_draft())
        except ShimmyError as e:   # a missing or broken file: say it is the draft
            raise type(e)(f"draft model: {e}") from None

    def held_bytes(self, part):
        return part.plan.accelerator_bytes()

    def loaded(self, model, part):
        check_same_vocab(model, part)

    def drafter(self, model, part, options):
        if part is None or options.draft_model != model.options.speculative.draft_model:
            raise GenerationError("draft-simple drafts with the model loaded beside this one: load it with "
                                  "Model(..., speculative=SpeculativeOptions(draft_model=PATH))")
        return ModelDrafter(part.context, options)


class Mtp(Mode):
    """draft-mtp: the model's own NextN/MTP head, a context of its own over the same weights."""
    name = "draft-mtp"
    nextn = True

    def check(self, header, path, options):
        super().check(header, path, options)
        if not header.arch_key("nextn_predict_layers", 0):
            raise GenerationError(f"draft-mtp drafts with the model's own NextN/MTP head, and {path} has none "
                                  f"({header.architecture}.nextn_predict_layers is not set)")

    def after_context(self, model, spec):
        try:
            head = ContextHandle(model.handle, replace(spec, nextn="mtp"))
        except NativeError as e:
            raise GenerationError(f"llama.cpp could not make the MTP context of {model.path} "
                                  f"({model.header.architecture}): {e}") from None
        drafter = MtpDrafter(head, model.options.speculative, model.handle.n_embd_out)
        drafter.attach(model.context)
        return drafter

    def drafter(self, model, part, options):
        if not isinstance(part, MtpDrafter):
            raise GenerationError("draft-mtp needs the model loaded with it: "
                                  "Model(..., speculative=\"draft-mtp\") (it loads the NextN/MTP block)")
        return part


MODES: dict[str, Mode] = {m.name: m for m in (Off(), Ngram(), DraftModel(), Mtp())}


def mode_of(options: SpeculativeOptions) -> Mode:
    return MODES[options.spec_type]
