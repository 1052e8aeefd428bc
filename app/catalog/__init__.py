"""Models: the catalog of known models, checking GGUF files, and fetching and verifying model files."""
