"""GGUF files: the header reader, the writer, the tensor table, format facts
and the values llama.cpp would abort on (synthetic models live in ..synthetic)."""
