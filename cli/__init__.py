"""Typer commands: thin wrappers over dlrun.core."""
