"""Where GGUF models are found, as shimmy looks for them, and what each is.

Sources, in order (a file found twice keeps its first source):
  model-dirs          --model-dirs "DIR;DIR", searched recursively
  SHIMMY_BASE_GGUF    one GGUF file (or a folder of them)
  SHIMMY_MODEL_PATHS  files or folders, separated by ";" (or the OS path separator)
  ./models            the working directory's models folder, recursively
  huggingface         the Hugging Face hub cache ($HF_HUB_CACHE, $HF_HOME/hub,
                      ~/.cache/huggingface/hub): models--ORG--REPO/snapshots/REV/**.gguf
  ollama              Ollama's store ($OLLAMA_MODELS, ~/.ollama/models): a manifest
                      per NAME:TAG names its GGUF blob (media type ...ollama.image.model)
A split GGUF (NAME-00001-of-00003.gguf ...) is one model: its first part,
the size of all of them. Only file names and Ollama's small JSON manifests
are read here; `describe()` reads a model's header (never its weights).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$", re.IGNORECASE)
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
MAX_MANIFEST = 1 << 20          # Ollama's manifests are a few KB


@dataclass(frozen=True)
class Found:
    """One model: the file llama.cpp opens, and where it was found."""
    name: str          # lowercased file stem (split parts: their common stem); Ollama's NAME:TAG
    path: Path
    source: str
    size_bytes: int    # all parts of a split model
    parts: int = 1


def _gguf_files(root: Path, recursive: bool = True) -> list[Path]:
    if root.is_file():
        return [root] if root.name.lower().endswith(".gguf") else []
    if not root.is_dir():
        return []
    pattern = "**/*.gguf" if recursive else "*.gguf"
    return sorted(p for p in root.glob(pattern) if p.is_file())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _from_files(files: list[Path], source: str) -> Iterator[Found]:
    """Plain files and split sets: one Found per model (split: its first part)."""
    splits: dict[tuple[Path, str], list[Path]] = {}
    for f in files:
        m = _SPLIT.match(f.name)
        if m:
            splits.setdefault((f.parent, m.group("stem")), []).append(f)
        else:
            yield Found(f.name[:-5].lower(), f, source, _size(f))
    for (_, stem), parts in sorted(splits.items()):
        parts.sort()
        total = int(_SPLIT.match(parts[0].name).group("total"))
        if len(parts) == total and _SPLIT.match(parts[0].name).group("part") == "00001":
            yield Found(stem.lower(), parts[0], source, sum(_size(p) for p in parts), total)


def _paths(value: str) -> list[Path]:
    items = re.split(r"[;" + re.escape(os.pathsep) + r"]", value)
    return [Path(p).expanduser() for p in items if p.strip()]


def _hf_hub(env: Mapping[str, str], home: Path) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    return home / ".cache" / "huggingface" / "hub"


def _huggingface(hub: Path) -> Iterator[Found]:
    if not hub.is_dir():
        return
    for repo in sorted(hub.glob("models--*")):
        yield from _from_files(_gguf_files(repo / "snapshots"), "huggingface")


def _ollama(store: Path) -> Iterator[Found]:
    """Each manifest manifests/REGISTRY/NAMESPACE/MODEL/TAG names its model
    blob by digest; only a digest that is sha256 and 64 hex digits names a
    file (inside blobs/, never a path), and a manifest over MAX_MANIFEST
    bytes is not read."""
    manifests = store / "manifests"
    if not manifests.is_dir():
        return
    for manifest in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
        namespace, model, tag = manifest.parts[-3:]
        try:
            if manifest.stat().st_size > MAX_MANIFEST:
                continue
            layers = json.loads(manifest.read_text()).get("layers", [])
        except (OSError, ValueError, AttributeError, RecursionError):
            continue
        for layer in layers if isinstance(layers, list) else []:
            if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER:
                digest = layer.get("digest")
                if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
                    continue
                blob = store / "blobs" / digest.replace(":", "-")
                if blob.is_file():
                    name = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
                    yield Found(name.lower(), blob, "ollama", _size(blob))



def discover(model_dirs=(), env: Mapping[str, str] | None = None, cwd: Path | None = None,
             home: Path | None = None) -> list[Found]:
    """Every model the sources hold, first source first, each file once.
    `model_dirs`: folders, or --model-dirs' "DIR;DIR" text."""
    if isinstance(model_dirs, str):
        model_dirs = [d for d in model_dirs.split(";") if d]
    env = os.environ if env is None else env
    cwd, home = cwd or Path.cwd(), home or Path.home()
    sources: list[Iterator[Found]] = [
        _from_files([f for d in model_dirs for f in _gguf_files(Path(d).expanduser())], "model-dirs")]
    if env.get("SHIMMY_BASE_GGUF"):
        sources.append(_from_files(_gguf_files(Path(env["SHIMMY_BASE_GGUF"]).expanduser()), "SHIMMY_BASE_GGUF"))
    if env.get("SHIMMY_MODEL_PATHS"):
        files = [f for p in _paths(env["SHIMMY_MODEL_PATHS"]) for f in _gguf_files(p)]
        sources.append(_from_files(files, "SHIMMY_MODEL_PATHS"))
    sources.append(_from_files(_gguf_files(cwd / "models"), "./models"))
    sources.append(_huggingface(_hf_hub(env, home)))
    sources.append(_ollama(Path(env["OLLAMA_MODELS"]).expanduser() if env.get("OLLAMA_MODELS")
                           else home / ".ollama" / "models"))
    seen, out = set(), []
    for source in sources:
        for found in source:
            key = found.path.resolve()
            if key not in seen:
                seen.add(key)
                out.append(found)
    return out


@dataclass(frozen=True)
class Description:
    """What a model is, from its header: for `shimmy-py list` and /api/models."""
    architecture: str
    params: int
    active_params: int
    quantization: str     # the type most of the weight bytes are stored in
    n_ctx_train: int = 0  # the context it was trained for (0: its header does not say)
    n_expert: int = 0     # routed experts per MoE layer, and how many each token takes (0: a dense model)
    n_expert_used: int = 0


def describe(found: Found) -> Description:
    """Reads `found`'s header and tensor table (no weights). Raises GGUFError."""
    from ...gguf_io.tensors import read_table
    table = read_table(found.path)
    total = table.total()
    by_type: dict[str, int] = {}
    for t in table.tensors:
        by_type[t.ggml_type] = by_type.get(t.ggml_type, 0) + t.nbytes
    quant = max(by_type, key=by_type.get) if by_type else "?"
    hp = table.hparams
    return Description(hp.arch, total.n_params, total.n_active, quant, hp.n_ctx_train or 0, hp.n_expert or 0,
                       hp.n_expert_used or 0)
