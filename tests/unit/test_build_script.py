"""native/build.sh's output contract: stdout is the install path alone.

`make test-invariant` reads the path as $(native/build.sh --batch-invariant).
Before this was held, a build from nothing printed its output on stdout too
(ninja's progress and the compiler's warnings, over a megabyte), and the
captured text, one environment variable, failed the next command with
"Argument list too long" (CI on a clean machine, where that build is not
cached). The script runs here with a stand-in toolchain: a
`cmake` that prints a build's worth of progress on stdout and leaves the files
a build leaves, over a source tree of empty files, so no compiler is needed.
"""
import os
import stat
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]
BUILD = HERE / "native" / "build.sh"

FAKE_CMAKE = """#!/usr/bin/env bash
# configure: nothing; --build DIR ...: progress on stdout, the build's outputs
if [[ "$1" == --build ]]; then
    for i in $(seq 1 3000); do
        echo "[$i/3000] Building CXX object ggml/src/CMakeFiles/ggml-base.dir/some/long/path/to/a/source/file_$i.cpp.o"
    done
    mkdir -p "$2/bin"
    touch "$2/bin/libllama.so" "$2/bin/libggml.so"
    for t in llama-completion llama-bench llama-server ggml-rpc-server llama-quantize llama-perplexity; do
        touch "$2/bin/$t"
    done
fi
"""


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _source_tree(src: Path) -> None:
    for rel in ("include/llama.h", "ggml/include/ggml.h", "tests/test-json-schema-to-grammar.cpp",
                "models/ggml-vocab-deepseek-llm.gguf.inp", "models/ggml-vocab-deepseek-llm.gguf.out"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).touch()
    for v in ("deepseek-llm", "qwen2", "llama-spm", "llama-bpe"):
        (src / "models" / f"ggml-vocab-{v}.gguf").touch()
    (src / "models" / "templates").mkdir()
    for v in ("openai-gpt-oss-120b", "GLM-4.6", "deepseek-ai-DeepSeek-V3.1", "Qwen-Qwen3-0.6B"):
        (src / "models" / "templates" / f"{v}.jinja").touch()


def test_stdout_is_the_install_path_alone_when_it_builds(tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    _script(tools / "cmake", FAKE_CMAKE)
    _script(tools / "ninja", "#!/bin/sh\nexit 0\n")
    # a compiler that compiles nothing: the ISA probe is skipped, said on stderr
    for cc in ("cc", "c++"):
        _script(tools / cc, "#!/bin/sh\nexit 1\n")
    src = tmp_path / "llama.cpp"
    _source_tree(src)
    cache = tmp_path / "cache"
    env = dict(os.environ, PATH=f"{tools}:/usr/bin:/bin", LLAMA_CPP_DIR=str(src),
               SHIMMY_PY_CACHE=str(cache))
    # --stock: the mode that compiles nothing of ours after the build (the other
    # modes compile the struct probe, which a stand-in compiler cannot)
    got = subprocess.run(["bash", str(BUILD), "--stock"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert "Building CXX object" in got.stderr, "the build's progress should still be shown, on stderr"
    lines = got.stdout.splitlines()
    assert len(lines) == 1, f"stdout carried {len(lines)} lines, not only the install path"
    install = Path(lines[0])
    assert install.parent.parent == cache and (install / "BUILD_OK").exists()
    assert (cache / "stock").resolve() == install.resolve()
    # cached: the same single line
    again = subprocess.run(["bash", str(BUILD), "--stock"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.splitlines() == lines
