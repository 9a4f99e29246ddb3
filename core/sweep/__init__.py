"""Sweeps: sweep files and their trials (`spec`), the sweep directory (`plan`), which trials
share a vectorised group (`groups`), where tasks run (`executors`), and running it all (`run`)."""
