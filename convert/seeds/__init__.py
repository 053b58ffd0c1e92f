"""Models made by code from what an installed package ships, for recipes whose source is not a file
a user has (e.g. the mtcnn wheel's trained Keras nets, frozen to .pb the Keras way).

Each module has `make(path)` writing the model where the recipe's `source.path` says,
deterministically, so the file (and its sha256) is the same on every machine with the same
package and framework versions.
"""
