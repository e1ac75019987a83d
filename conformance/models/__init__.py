"""Executable models: plain-Python, in-memory statements of each family's contract."""
