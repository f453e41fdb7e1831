-- The tables the engine's repositories touch, as Odoo creates them for the
-- maildesk_mail_client models (column names and types). The engine tests
-- run the repositories' SQL against this schema on a real PostgreSQL; the
-- Odoo suite (test_engine_schema.py) checks every column here against the
-- real Odoo tables, so the two cannot drift apart.

CREATE TABLE mailbox_account (
    id serial PRIMARY KEY,
    name varchar NOT NULL,
    provider varchar NOT NULL DEFAULT 'imap',
    active bool DEFAULT true,
    sync_enabled bool DEFAULT true,
    auth_state varchar NOT NULL DEFAULT 'ok',
    last_sync_at timestamp,
    last_error text,
    last_error_at timestamp,
    failure_count int4 DEFAULT 0,
    backoff_until timestamp,
    folders_synced_at timestamp,
    mailbox_identity varchar,
    gmail_history_id int8,
    email varchar,
    write_date timestamp
);

CREATE TABLE maildesk_folder (
    id serial PRIMARY KEY,
    account_id int4 NOT NULL REFERENCES mailbox_account(id) ON DELETE CASCADE,
    path varchar NOT NULL,
    remote_id varchar,
    name varchar,
    delimiter varchar,
    role varchar NOT NULL DEFAULT 'other',
    role_sequence int4,
    selectable bool DEFAULT true,
    uidvalidity int8,
    uidnext int8,
    highest_modseq int8,
    last_uid int8,
    low_uid int8,
    server_exists int8,
    sync_state varchar NOT NULL DEFAULT 'new',
    backfill_state varchar NOT NULL DEFAULT 'pending',
    bootstrap_indexed int4,
    sync_cursor varchar,
    backfill_cursor varchar,
    reconcile_cursor varchar,
    reconciled_at timestamp,
    missing_runs int4,
    last_sync_at timestamp,
    last_error text,
    warning text,
    warning_at timestamp,
    create_date timestamp,
    write_date timestamp,
    CONSTRAINT maildesk_folder_account_path_uniq UNIQUE (account_id, path)
);

CREATE TABLE maildesk_message_index (
    id serial PRIMARY KEY,
    account_id int4 NOT NULL REFERENCES mailbox_account(id) ON DELETE CASCADE,
    folder_id int4 NOT NULL REFERENCES maildesk_folder(id) ON DELETE CASCADE,
    provider varchar NOT NULL,
    remote_id varchar NOT NULL,
    uid int8,
    delivery_key varchar NOT NULL,
    message_id varchar,
    in_reply_to varchar,
    references_header text,
    thread_key varchar,
    subject varchar,
    from_address varchar,
    to_addresses text,
    cc_addresses text,
    date timestamp,
    internal_date timestamp,
    size int4,
    is_seen bool,
    is_flagged bool,
    is_answered bool,
    is_draft bool,
    has_attachments bool,
    snippet varchar,
    modseq int8,
    deleted_on_server bool,
    deleted_at timestamp,
    parse_error text,
    needs_refetch bool,
    fetch_attempts int4,
    create_date timestamp,
    write_date timestamp,
    CONSTRAINT maildesk_message_index_delivery_key_uniq UNIQUE (delivery_key)
);
-- As Odoo creates them from the fields (index=True) and init(); the engine's
-- own indexes come from repositories/message_index.py::INDEXES (pg_fixtures).
CREATE INDEX maildesk_message_index__message_id_index ON maildesk_message_index (message_id)
    WHERE message_id IS NOT NULL;
CREATE INDEX maildesk_message_index__thread_key_index ON maildesk_message_index (thread_key);

CREATE TABLE maildesk_account_lease (
    id serial PRIMARY KEY,
    account_id int4 NOT NULL REFERENCES mailbox_account(id) ON DELETE CASCADE,
    purpose varchar NOT NULL,
    holder varchar,
    acquired_at timestamp,
    expires_at timestamp,
    create_date timestamp,
    write_date timestamp,
    CONSTRAINT maildesk_account_lease_account_purpose_uniq UNIQUE (account_id, purpose)
);

CREATE TABLE maildesk_ui_cache (
    id serial PRIMARY KEY,
    index_id int4 NOT NULL REFERENCES maildesk_message_index(id) ON DELETE CASCADE,
    account_id int4 NOT NULL REFERENCES mailbox_account(id) ON DELETE CASCADE,
    headers_json jsonb,
    body_html text,
    body_html_remote text,
    remote_blocked int4,
    body_text text,
    text_html text,
    attachments_json jsonb,
    raw_message bytea,
    raw_size int4,
    fetched_at timestamp,
    expires_at timestamp,
    create_date timestamp,
    write_date timestamp,
    CONSTRAINT maildesk_ui_cache_index_uniq UNIQUE (index_id)
);

CREATE TABLE maildesk_outbox (
    id serial PRIMARY KEY,
    account_id int4 NOT NULL REFERENCES mailbox_account(id) ON DELETE CASCADE,
    user_id int4,
    state varchar NOT NULL DEFAULT 'draft',
    message_id varchar,
    subject varchar,
    email_to varchar,
    email_cc varchar,
    email_bcc varchar,
    mime bytea,
    mime_size int4,
    send_after timestamp,
    attempts int4,
    max_attempts int4,
    next_attempt_at timestamp,
    last_attempt_at timestamp,
    last_error text,
    failure_kind varchar,
    sent_at timestamp,
    sent_remote_id varchar,
    sent_filed bool,
    handed_over bool,
    own_copy_pending bool,
    create_date timestamp,
    write_date timestamp,
    CONSTRAINT maildesk_outbox_message_id_uniq UNIQUE (message_id)
);

-- What a full delta round of a folder listed so far (repositories/folder_seen.py; Odoo: maildesk.folder.seen).
CREATE TABLE maildesk_folder_seen (
    id serial PRIMARY KEY,
    folder_id int4 NOT NULL REFERENCES maildesk_folder(id) ON DELETE CASCADE,
    remote_id varchar NOT NULL,
    CONSTRAINT maildesk_folder_seen_folder_remote_uniq UNIQUE (folder_id, remote_id)
);
