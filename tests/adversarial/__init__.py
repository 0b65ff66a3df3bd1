"""Attacks on Factory's walls, each run for real (see conftest.py for the shared harness)."""
