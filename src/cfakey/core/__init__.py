"""Use-cases over the registry, the stores and the metadata; no terminal I/O here."""
