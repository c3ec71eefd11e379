"""Synthetic models: GGUF files with random weights and real tokenizers,
written by the project for its tests, demos and benchmarks (nothing is
downloaded), and real-size tensor tables for planning."""
