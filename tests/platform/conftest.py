"""Platform behaviour tests use the `platform` and `connected` fixtures of tests/conftest.py."""
