"""The pipeline language: load YAML with positions, validate, build the typed IR."""
