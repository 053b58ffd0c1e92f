"""Untrained stand-ins made by code, for recipes whose trained weights are not available here.

Each module has `make(path)` writing the model where the recipe's `source.path` says, with
fixed seeds so the file (and its sha256) is the same on every machine with the same
framework version. They prove a conversion path; their accuracy proves nothing.
"""
