"""GGUF files: the header reader, the writer, the tensor table and the
synthetic models written for tests, demos and benchmarks."""
