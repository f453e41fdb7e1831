"""Pytest fixtures for a real PostgreSQL with the engine's tables.

One cluster per test session (or the server named by ``PG*``), one template
database with ``schema.sql``, and a fresh copy of it per test: creating a
database from a template takes a few tens of milliseconds.
"""

import os
import uuid

import pytest

from maildesk_mail_client.repositories.message_index import create_indexes

from . import postgres

SCHEMA = os.path.join(os.path.dirname(__file__), "schema.sql")


@pytest.fixture(scope="session")
def pg_server():
    env = postgres.server_from_env()
    cluster = None
    if env is None:
        cluster = postgres.ThrowawayCluster()
        try:
            env = cluster.start()
        except (RuntimeError, OSError) as error:
            pytest.skip(f"no PostgreSQL: set PGHOST, or install PostgreSQL for a throwaway cluster ({error})")
    postgres.wait_ready(env)
    yield env
    if cluster:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server):
    name = f"maildesk_tpl_{uuid.uuid4().hex[:8]}"
    admin = postgres.connect(pg_server, "postgres", autocommit=True)
    with admin.cursor() as cr:
        cr.execute(f'CREATE DATABASE "{name}"')
    conn = postgres.connect(pg_server, name, autocommit=True)
    with conn.cursor() as cr, open(SCHEMA) as schema:
        cr.execute(schema.read())
        create_indexes(cr)
    conn.close()
    yield name
    with admin.cursor() as cr:
        cr.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


@pytest.fixture
def pg_db(pg_server, pg_template):
    """A fresh database with the engine's tables; yields a connect(autocommit=False) function."""
    name = f"maildesk_t_{uuid.uuid4().hex[:10]}"
    admin = postgres.connect(pg_server, "postgres", autocommit=True)
    with admin.cursor() as cr:
        cr.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    connections = []

    def connect(autocommit=False):
        conn = postgres.connect(pg_server, name, autocommit=autocommit)
        connections.append(conn)
        return conn

    connect.dbname = name
    connect.server = pg_server
    yield connect
    for conn in connections:
        conn.close()
    with admin.cursor() as cr:
        cr.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()
