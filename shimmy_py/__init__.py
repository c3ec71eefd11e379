"""shimmy_py: run Mixture-of-Experts GGUF models from Python over a self-built
llama.cpp, with every weight's placement planned (routed experts in CPU RAM,
the rest on the accelerator).

    import shimmy_py
    shimmy_py.synth.write("tiny.gguf", "tiny")          # random weights: gibberish text
    with shimmy_py.Model("tiny.gguf") as m:
        print(m.generate("Hello", max_tokens=16, temperature=0).text)
"""
from .errors import GenerationError, GGUFError, NativeError, PlacementError, ShimmyError
from .generation.experts import ExpertRecorder, ExpertTrace
from .generation.loop import Completion
from .generation.model import Model
from .placement.machine import make_plan, simulate_placement
from .placement.options import PlacementOptions
from .placement.plan import Plan, PlanRequest
from .synthetic import synth
from .version import __version__

__all__ = ["Model", "Completion", "ExpertTrace", "ExpertRecorder", "synth", "make_plan", "simulate_placement",
           "Plan", "PlanRequest", "PlacementOptions", "ShimmyError", "GGUFError", "NativeError",
           "GenerationError", "PlacementError", "__version__"]
