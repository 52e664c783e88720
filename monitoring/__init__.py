"""Monitoring: data profiles for drift (whylogs stays behind this package)."""
