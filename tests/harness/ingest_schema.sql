-- The ingest flow's tables, as Odoo creates them (models/maildesk_ingest_queue.py), added to
-- schema.sql's by the ingest engine tests; mail_message holds only what the flow reads.
ALTER TABLE mailbox_account ADD COLUMN ingest_scan_mark int4;

CREATE TABLE maildesk_ingest_queue (
    id serial PRIMARY KEY,
    account_id int4 NOT NULL REFERENCES mailbox_account(id) ON DELETE CASCADE,
    index_id int4 REFERENCES maildesk_message_index(id) ON DELETE SET NULL,
    message_id varchar NOT NULL,
    state varchar NOT NULL DEFAULT 'pending',
    attempts int4,
    max_attempts int4,
    next_attempt_at timestamp,
    last_error text,
    mail_message_id int4,
    create_date timestamp,
    write_date timestamp,
    CONSTRAINT maildesk_ingest_queue_message_uniq UNIQUE (account_id, message_id)
);

CREATE TABLE mail_message (
    id serial PRIMARY KEY,
    message_id varchar,
    model varchar,
    res_id int4,
    message_type varchar DEFAULT 'email',
    author_id int4 DEFAULT 1
);
CREATE INDEX mail_message__message_id_index ON mail_message (message_id);
