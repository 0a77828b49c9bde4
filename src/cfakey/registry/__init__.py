"""The OPCO registry: its typed model, loader and name resolution."""
