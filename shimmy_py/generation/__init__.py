"""Generation: the Model of the Python API, the context that prefills and
decodes, the generation loop, sampling, text streaming and prompt reuse."""
