"""Key stores: where secrets live (OS keyring, encrypted file, later a remote engine)."""
