from . import test_account_actions
from . import test_bus_channels
from . import test_engine_schema
from . import test_imap_sync_odoo
from . import test_int8_fields
from . import test_oauth_tokens
from . import test_security
from . import test_tls_stack
