"""The testing toolkit: temporary roots, contention simulation, crash injection.

May import pytest; the core never imports this package.
"""
