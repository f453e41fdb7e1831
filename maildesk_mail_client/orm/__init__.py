"""The Odoo side of the engine: ORM field types and the ports built on ``env``."""
