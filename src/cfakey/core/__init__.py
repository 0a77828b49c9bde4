"""Use-cases: plain functions over the registry, the stores and the metadata; no I/O to the terminal."""
