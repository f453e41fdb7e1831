"""The sync engine. Plain Python: no Odoo import here (a test enforces it)."""
