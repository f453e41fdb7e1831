"""The errors that mean "another transaction got there first".

Odoo's cursors run at REPEATABLE READ. A transaction there works on the
snapshot taken at its first statement, and when it then tries to update,
delete or lock (``FOR UPDATE``) a row that another transaction changed and
committed after that snapshot, PostgreSQL refuses with
``SerializationFailure`` ("could not serialize access due to concurrent
update") instead of waiting and re-reading, as READ COMMITTED would. A
``DeadlockDetected`` is the same story with two transactions waiting on
each other: PostgreSQL aborts one of them.

Neither is a bug nor a broken row: the other worker won this race, and the
same work, retried later in a fresh transaction, succeeds. So the engine
catches ``CONFLICTS`` around such a step, rolls back and treats it as
"busy" (try again next run) rather than as a failed cron job.
"""

from psycopg2 import errorcodes, errors

#: catch these around a transaction that may race other workers; retry later
CONFLICTS = (errors.lookup(errorcodes.SERIALIZATION_FAILURE), errors.lookup(errorcodes.DEADLOCK_DETECTED))
