"""The shared core both convert/ and verify/ stand on: the recipe schema, errors, artifacts (hashes,
atomic writes, provenance), pixels (images as a model receives them), output comparison and the
runner protocol. It imports nothing from convert/ or verify/ (tests/test_layers.py checks it)."""
