"""Clients for the platform's vendors: Stripe (official SDK) and Clerk (httpx + pyjwt).

The same code talks to the emulator (in-process or over loopback) and to the real
services; only base URLs and keys differ (see `settings.py`).
"""
