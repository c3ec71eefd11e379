"""What the tests share: HTTP helpers over real loopback (http.py), test
server configurations (servers.py), llama.cpp's ggml-rpc-server (rpc.py),
batching noise (batch_noise.py) and the NumPy reference of the DeepSeekMoE
forward pass (reference.py). The tests import them as `support.NAME`."""
