#!/bin/bash
# The odoo service of docker-compose.yml. Every start is idempotent:
# 1. on the first start, create the database with both addons installed;
# 2. once Odoo serves, make sure the demo mailbox is connected (it also asks
#    for a sync at once, which the cron workers only hear while they run);
# 3. serve on 8069 with two cron workers.
set -euo pipefail

# The same defaults as the image's entrypoint, which passes them only to its own "odoo" command.
: "${HOST:=db}" "${PORT:=5432}" "${USER:=odoo}" "${PASSWORD:=odoo}" "${MAILDESK_DB:=maildesk}"
DB_ARGS=(--db_host "$HOST" --db_port "$PORT" --db_user "$USER" --db_password "$PASSWORD")
ADDONS=maildesk_mail_client,maildesk_mail_client_pro
ADDONS_SQL="'maildesk_mail_client', 'maildesk_mail_client_pro'"

wait-for-psql.py "${DB_ARGS[@]}" --timeout=60

installed=$(PGPASSWORD="$PASSWORD" psql -h "$HOST" -p "$PORT" -U "$USER" -d "$MAILDESK_DB" -XtAc \
    "SELECT count(*) FROM ir_module_module WHERE state = 'installed' AND name IN ($ADDONS_SQL)" \
    2>/dev/null || echo 0)  # no database yet
if [ "$installed" != 2 ]; then
    echo "MailDesk: creating database $MAILDESK_DB with $ADDONS (first start only)"
    odoo "${DB_ARGS[@]}" -d "$MAILDESK_DB" -i "$ADDONS" --without-demo=all --stop-after-init --no-http
fi

connect_demo_mailbox() {
    until curl -fsS -o /dev/null http://localhost:8069/web/login; do sleep 1; done
    odoo shell "${DB_ARGS[@]}" -d "$MAILDESK_DB" --no-http --log-level=warn < /opt/maildesk/demo_account.py
}
# Started from a subshell that exits at once, so the container's init (compose
# "init: true") adopts and reaps it, not Odoo.
(connect_demo_mailbox &)

exec odoo "${DB_ARGS[@]}" -d "$MAILDESK_DB" --db-filter="^${MAILDESK_DB}\$" --max-cron-threads=2
