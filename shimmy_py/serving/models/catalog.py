"""The models a server answers to (Catalog): every name and its file (a
mapping, name -> path), the --model's names, what a client sees instead of a
path, each file's description read once from its header, and a request's
model name resolved to the name it is resident under."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping

from ...errors import BrokenModel, GenerationError, NotFound, ShimmyError
from .discovery import Found, describe
from .names import name_table


class Catalog(Mapping):
    """name -> file, for every name a model answers to."""

    def __init__(self, model_path: Path | None, known_paths):
        known = list(known_paths)                    # discovered models (Found: Ollama's name:tag) or paths
        main = [next((k for k in known if isinstance(k, Found) and Path(k.path) == Path(model_path)),
                     model_path)] if model_path is not None else []
        self._table = name_table([*main, *known])
        self.names = sorted(name_table(main), key=len, reverse=True)
        self.name = self.names[0] if self.names else None   # the --model's: requests without "model" get it
        # what a client may see instead of a path: the model's name
        self.path_names: dict[str, str] = {}
        for name, path in sorted(self._table.items(), key=lambda kv: -len(kv[0])):
            self.path_names.setdefault(str(Path(path).resolve()), name)
            self.path_names.setdefault(str(path), name)
        self._descriptions: dict = {}

    def __getitem__(self, name: str) -> Path:
        return self._table[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def canonical(self, name: str) -> str:
        """The name a model is resident under: its file's own (longest) name."""
        path = self._table[name]
        return max((n for n, p in self._table.items() if p == path), key=len)

    def resolve(self, requested: str | None) -> str:
        """The resident name of the model a request names (the --model's, or the
        only model's, when it names none)."""
        if requested is None:
            files = set(self._table.values())
            if self.name is None and len(files) != 1:
                raise GenerationError(f"'model' is required: this server serves {len(files)} models "
                                      "(GET /api/models lists them)")
            return self.canonical(self.name or next(iter(self._table)))
        if requested.lower() in self._table:
            return self.canonical(requested.lower())
        raise NotFound(f"model {requested!r} not found; this server serves "
                       f"{', '.join(repr(n) for n in sorted(self._table))}")

    def describe(self, path: Path):
        """What the file at `path` is, from its header (cached; None if unreadable)."""
        found = self._read_header(path)
        return None if isinstance(found, str) else found

    def _read_header(self, path: Path):
        """The file's description, or why it cannot be read (cached per file, size and time)."""
        try:
            key = (path, path.stat().st_size, path.stat().st_mtime_ns)
        except OSError as e:
            return f"{path.name} is gone ({e.strerror or e})"
        if key not in self._descriptions:
            try:
                self._descriptions[key] = describe(Found(path.stem.lower(), path, "", 0))
            except ShimmyError as e:
                self._descriptions[key] = str(e)
        return self._descriptions[key]

    def check_file(self, name: str) -> None:
        """A model whose file vanished or is not a GGUF it can load is named
        as such (404, 422), never loaded into a worker that would fail."""
        path = Path(self._table[name])
        if not path.exists():
            raise NotFound(f"model {name!r} is no longer there: its file {path.name} was removed since discovery")
        found = self._read_header(path)
        if isinstance(found, str):
            raise BrokenModel(f"model {name!r} cannot be used: {found}")
