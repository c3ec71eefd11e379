"""The one place the llama.cpp version is pinned (native/build.sh reads it too).

llama.cpp's source comes from the sdist of llama-cpp-python at this version on
the package index, whose vendor/llama.cpp tree is built by native/build.sh.
"""
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
