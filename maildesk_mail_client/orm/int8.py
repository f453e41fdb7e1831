"""A 64-bit integer field.

``fields.Integer`` is int4, but IMAP UIDs and UIDVALIDITY are unsigned
32-bit (up to 4,294,967,295), MODSEQ is 63-bit and a Gmail historyId is
64-bit. Only the column type changes; reading, writing and searching are
Integer's. (``read()`` still turns values above 2^31 into floats for
XML-RPC's sake; server code reads the attribute and keeps the int.)
"""

from odoo import fields


class Int8(fields.Integer):
    _column_type = ("int8", "int8")
