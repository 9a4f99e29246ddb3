"""Experiment families that need more than the generic training loop."""
