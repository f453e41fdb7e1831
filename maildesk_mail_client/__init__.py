# The engine (application/, providers/, repositories/) is plain Python and is
# imported without Odoo by the engine tests; only Odoo loads the ORM side.
if __name__.startswith("odoo.addons."):
    from . import models
    from . import controllers
    from . import wizards
