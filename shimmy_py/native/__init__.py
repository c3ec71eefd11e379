"""The native layer: llama.cpp's libraries, their ctypes binding, and the
owners of every native pointer. The only package that imports ctypes."""
