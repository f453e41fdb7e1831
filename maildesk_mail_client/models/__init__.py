from . import mailbox_account
from . import maildesk_account_lease
from . import maildesk_folder
from . import maildesk_folder_seen
from . import maildesk_ingest_queue
from . import maildesk_message_index
from . import maildesk_outbox
from . import maildesk_signature
from . import maildesk_trusted_sender
from . import maildesk_ui_cache
from . import maildesk_inbox  # extends mailbox.account and maildesk.message_index: after them
