"""Invoke task collections; tasks.py at the top assembles them."""
