"""Adapters from mail providers' protocols and APIs to the engine's ports.

Plain Python like the engine: no Odoo import here (tests/test_layering.py).
"""
