"""Presets and their sources: the schema, YAML files with line numbers, vLLM recipes, the flag
table per release, tool parsers, and the launch plan (argv + env) a preset renders to."""
