"""A package, so that conftest.py's package-scoped environment is removed
after this folder's last test: pytest gives a folder without __init__.py no
package scope, and such a fixture then lives until the session ends."""
