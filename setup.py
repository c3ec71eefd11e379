"""shimmy_py: a thin Python runtime over a self-built llama.cpp for MoE models.

The native libraries are not built by pip: `make native` (native/build.sh)
builds them once into a cache that the package finds by itself.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "(.+)"', (Path(__file__).parent / "shimmy_py" / "version.py").read_text())[1]

setup(
    name="shimmy-py",
    version=VERSION,
    description="Run Mixture-of-Experts GGUF models from Python with planned tensor placement",
    packages=find_packages(include=["shimmy_py", "shimmy_py.*"]),
    package_data={"shimmy_py.serving": ["page/*"]},     # the page at / (dialects/page.py)
    python_requires=">=3.10",
    install_requires=["numpy", "gguf>=0.17", "psutil", "nvidia-ml-py", "jinja2", "h11>=0.16"],
    # the client libraries the tests drive a served model with (tests/test_clients.py), pinned
    # to the versions the suite was last run with, so that a fresh install resolves at once
    extras_require={"test": ["pytest", "hypothesis", "jsonschema", "rfc3339-validator", "openai==2.54.0",
                             "langchain-openai==1.4.3", "instructor==1.17.0", "litellm==1.110.2",
                             "openai-agents==0.20.0", "ollama==0.6.3", "anthropic==2.15.0",
                             "llama-index-llms-ollama==0.11.0", "playwright==1.63.0"],
                    # training/: the stdlib model's recipe (python -m training.train), not the runtime's
                    "train": ["torch", "tokenizers"]},
    entry_points={"console_scripts": ["shimmy-py = shimmy_py.cli:main"]},
)
