"""Speculative decoding's modes (llama-server's --spec-type), one class each
in one registry (MODES): its names, what it needs of the options
(`validate`) and of the model (`check`), what it loads beside it (a draft
model before the plan, so that the plan leaves it room; the model's MTP
head after the context), whether the plan holds the model's NextN block
(`nextn`), and the drafter a generation uses; and the options record
(`SpeculativeOptions`), whose --spec-type names are the registry's. A new
mode is a class here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from ..errors import GenerationError, NativeError, ShimmyError
from ..fields import opt
from ..gguf_io.arch import facts
from ..gguf_io.reader import GGUFHeader
from ..native.context_handle import ContextHandle, ContextSpec
from .mtp import MtpDrafter
from .speculative import Drafter, ModelDrafter, NgramDrafter, check_same_vocab


class Mode:
    """The base every mode extends. A mode's `part` is what it loaded beside
    the model (None, a draft Model, an MTP head), closed with the model."""
    name = ""
    aliases: tuple[str, ...] = ()   # other names it is asked for by ("ngram")
    drafts = True          # speculation is on
    nextn = False          # the plan loads the NextN/MTP block and the main context computes its input

    def meant(self, options: SpeculativeOptions) -> str:
        """The mode the options mean when they name this one."""
        return self.name

    def validate(self, options: SpeculativeOptions) -> None:
        """Raises ShimmyError where the options do not make this mode."""
        if options.draft_model:
            raise ShimmyError(f"a draft model was given with speculative type {self.name}: use draft-simple")

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
    """none: no speculation, on any model (a draft model alone means draft-simple)."""
    name, aliases, drafts = "none", ("off",), False

    def meant(self, options):
        return DraftModel.name if options.draft_model else self.name

    def check(self, header, path, options):
        pass


class Ngram(Mode):
    """ngram-simple: the tokens that followed the last time the context's last n did."""
    name, aliases = "ngram-simple", ("ngram",)

    def drafter(self, model, part, options):
        return NgramDrafter(options.ngram_n, options.ngram_m)


class DraftModel(Mode):
    """draft-simple: a small model of the same vocabulary, planned and loaded first."""
    name, aliases = "draft-simple", ("draft",)

    def validate(self, options):
        if not options.draft_model:
            raise ShimmyError("speculative type draft-simple needs a draft model: --spec-draft-model / -md "
                              "(draft_model in --config)")

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
    name, aliases, nextn = "draft-mtp", ("mtp",), True

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


def mode_aliases() -> dict[str, str]:
    """Each mode's other names, as {alias: its name} (read at the call: a registered mode's count)."""
    return {alias: m.name for m in MODES.values() for alias in m.aliases}


SPEC_TYPES = tuple(MODES)     # llama-server's --spec-type names for what MODES implements
SPEC_ALIASES = mode_aliases()


def _spec_type(value) -> str:
    """A mode's name, or one of its aliases, as its name."""
    aliases = mode_aliases()
    name = aliases.get(value, value)
    if name not in MODES:
        raise ShimmyError(f"speculative type {value!r}: choose one of {', '.join(MODES)} (or {', '.join(aliases)})")
    return name


def _count(lo: int, what: str):
    def parse(value) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= 1024:
            raise ShimmyError(f"{what} must be an integer in {lo}..1024, got {value!r}")
        return value
    return parse


def _probability(value) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ShimmyError(f"draft_p_min must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ShimmyError(f"draft_p_min must be in [0, 1], got {value!r}")
    return p


def _path(value) -> str:
    if not isinstance(value, str):
        raise ShimmyError(f"draft_model is a GGUF path, got {value!r}")
    return value


@dataclass(frozen=True)
class SpeculativeOptions:
    """Speculative decoding as llama-server's flags say it, with its defaults.
    spec_type: "none", "ngram-simple", "draft-simple" (a draft_model alone
    means draft-simple) or "draft-mtp" (the model's own NextN head, mtp.py).
    draft_max, draft_min, draft_p_min: the draft model's (or head's) longest
    draft, shortest kept draft and top-1 probability floor.
    ngram_n, ngram_m: ngram-simple's n-gram looked up and the longest m-gram
    drafted after it."""
    spec_type: str = opt("none", flags=("--spec-type",), parse=_spec_type, choices=SPEC_TYPES + tuple(SPEC_ALIASES),
                         help="speculative decoding: ngram-simple (drafts from text already seen), draft-simple "
                              "(a draft model, -md) or draft-mtp (the model's own NextN/MTP head)")
    draft_model: str = opt("", flags=("-md", "--spec-draft-model"), parse=_path, metavar="GGUF",
                           help="draft model with the target's vocabulary (implies --spec-type draft-simple)")
    draft_max: int = opt(3, flags=("--spec-draft-n-max",), parse=_count(1, "draft_max"),
                         help="most tokens the draft model drafts per step")
    draft_min: int = opt(0, flags=("--spec-draft-n-min",), parse=_count(0, "draft_min"),
                         help="a shorter draft is not verified")
    draft_p_min: float = opt(0.0, flags=("--spec-draft-p-min",), parse=_probability,
                             help="the draft model stops below this top-1 probability")
    ngram_n: int = opt(12, flags=("--spec-ngram-simple-size-n",), parse=_count(1, "ngram_n"),
                       help="ngram-simple: tokens matched")
    ngram_m: int = opt(48, flags=("--spec-ngram-simple-size-m",), parse=_count(1, "ngram_m"),
                       help="ngram-simple: most tokens drafted")

    def __post_init__(self):
        kind = MODES[_spec_type(self.spec_type)].meant(self)
        object.__setattr__(self, "spec_type", kind)
        _count(1, "draft_max")(self.draft_max)
        _count(0, "draft_min")(self.draft_min)
        _probability(self.draft_p_min)
        _count(1, "ngram_n")(self.ngram_n)
        _count(1, "ngram_m")(self.ngram_m)
        MODES[kind].validate(self)

    @property
    def on(self) -> bool:
        return MODES[self.spec_type].drafts

    @classmethod
    def of(cls, value) -> "SpeculativeOptions":
        """A record, a type name ("ngram-simple", "off", ...) or a mapping of fields."""
        if isinstance(value, cls):
            return value
        if value is None or value is False:
            return cls()
        if isinstance(value, str):
            return cls(spec_type=value)
        if isinstance(value, dict):
            return cls(**value)
        raise ShimmyError(f"speculative= takes SpeculativeOptions, a type name or a dict, got {value!r}")


FIELDS = frozenset(f.name for f in dataclasses.fields(SpeculativeOptions))   # their flags, for commands that skip them




def mode_of(options: SpeculativeOptions) -> Mode:
    return MODES[options.spec_type]
