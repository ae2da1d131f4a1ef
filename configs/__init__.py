"""Packaged YAML configs (installed as ``mbiapo.configs``)."""
