from . import inbox
