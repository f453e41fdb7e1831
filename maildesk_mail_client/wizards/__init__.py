from . import maildesk_log_message
