"""Discovery from each source shimmy searches, built in temporary folders."""
import json
from pathlib import Path

from shimmy_py.serving.models.discovery import discover
from shimmy_py.serving.models.names import name_table

FEED = "feed" * 16


def touch(path: Path, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_each_source(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "work"
    touch(tmp_path / "dirs" / "nested" / "deep" / "A-Q8_0.gguf")            # --model-dirs, recursive
    base = touch(tmp_path / "base" / "Base-F16.gguf")                      # SHIMMY_BASE_GGUF
    touch(tmp_path / "paths1" / "p1.gguf")                                 # SHIMMY_MODEL_PATHS (folders, files)
    p2 = touch(tmp_path / "p2.gguf")
    touch(cwd / "models" / "local.gguf")                                   # ./models
    snap = home / ".cache" / "huggingface" / "hub" / "models--org--repo" / "snapshots" / "abc123"
    touch(snap / "sub" / "Hf-Q4_K_M.gguf")                                 # Hugging Face cache
    store = home / ".ollama" / "models"                                    # Ollama: manifest -> blob
    touch(store / "blobs" / f"sha256-{FEED}", size=20)
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / "qwen3" / "30b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:0000"},
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + FEED, "size": 20}]}))
    env = {"SHIMMY_BASE_GGUF": str(base), "SHIMMY_MODEL_PATHS": f"{tmp_path / 'paths1'};{p2}"}
    found = discover([tmp_path / "dirs"], env=env, cwd=cwd, home=home)
    assert [(f.name, f.source) for f in found] == [
        ("a-q8_0", "model-dirs"), ("base-f16", "SHIMMY_BASE_GGUF"), ("p1", "SHIMMY_MODEL_PATHS"),
        ("p2", "SHIMMY_MODEL_PATHS"), ("local", "./models"), ("hf-q4_k_m", "huggingface"),
        ("qwen3:30b", "ollama")]
    ollama = found[-1]
    assert ollama.path == store / "blobs" / f"sha256-{FEED}" and ollama.size_bytes == 20
    assert {"a", "base", "hf", "qwen3:30b"} <= set(name_table(found))


def test_env_locations_of_the_caches(tmp_path):
    touch(tmp_path / "hf" / "hub" / "models--o--r" / "snapshots" / "1" / "m.gguf")
    store = tmp_path / "ol"
    touch(store / "blobs" / ("sha256-" + "a" * 64))
    m = store / "manifests" / "r" / "someone" / "mix" / "latest"
    m.parent.mkdir(parents=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + "a" * 64}
    m.write_text(json.dumps({"layers": [layer]}))
    found = discover([], env={"HF_HOME": str(tmp_path / "hf"), "OLLAMA_MODELS": str(store)}, cwd=tmp_path,
                     home=tmp_path / "nohome")
    assert [(f.name, f.source) for f in found] == [("m", "huggingface"), ("someone/mix:latest", "ollama")]


def test_a_split_model_is_one_model(tmp_path):
    for i in (1, 2, 3):
        touch(tmp_path / f"Big-Q4_K_M-0000{i}-of-00003.gguf", size=10 * i)
    touch(tmp_path / "Half-00001-of-00002.gguf")                          # part 2 missing: not a model
    [big] = discover([tmp_path], env={}, cwd=tmp_path / "none", home=tmp_path / "none")
    assert big.name == "big-q4_k_m" and big.parts == 3 and big.size_bytes == 60
    assert big.path.name == "Big-Q4_K_M-00001-of-00003.gguf"


def test_a_file_found_twice_keeps_its_first_source(tmp_path):
    touch(tmp_path / "models" / "m.gguf")
    found = discover([tmp_path / "models"], env={"SHIMMY_MODEL_PATHS": str(tmp_path / "models" / "m.gguf")},
                     cwd=tmp_path, home=tmp_path / "none")
    assert [(f.name, f.source) for f in found] == [("m", "model-dirs")]


def test_broken_manifests_are_skipped(tmp_path):
    m = tmp_path / "manifests" / "r" / "library" / "x" / "1"
    m.parent.mkdir(parents=True)
    m.write_text("{not json")
    assert discover([], env={"OLLAMA_MODELS": str(tmp_path)}, cwd=tmp_path, home=tmp_path) == []


def test_ollama_digests_name_blobs_only_inside_the_store(tmp_path):
    """A digest is sha256 and 64 hex digits, a blob in blobs/, never a path
    (one that is an absolute path was followed out of the store); a manifest
    over a MiB is not read (a huge one killed start-up with a MemoryError)."""
    store = tmp_path / "ollama"
    touch(tmp_path / "secret.gguf")
    manifests = store / "manifests" / "registry.ollama.ai" / "library"
    cases = (("abs", str(tmp_path / "secret.gguf")), ("evil", "sha256:../../secret.gguf"), ("short", "sha256:abc"),
             ("upper", "SHA256:" + "A" * 64))
    for model, digest in cases:
        m = manifests / model / "latest"
        m.parent.mkdir(parents=True)
        m.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest}]}))
    touch(store / "blobs" / ("sha256-" + "b" * 64))
    big = manifests / "big" / "latest"
    big.parent.mkdir(parents=True)
    big.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                           "digest": "sha256:" + "b" * 64}], "pad": "x" * (2 << 20)}))
    found = discover([], env={"OLLAMA_MODELS": str(store)}, cwd=tmp_path, home=tmp_path)
    assert [f for f in found if f.source == "ollama"] == []
