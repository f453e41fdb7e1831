"""A tiny IMAP server for behaviours Dovecot cannot produce.

Gmail and Yahoo answer a UID FETCH that touches one broken message with the
other messages' data and a tagged ``NO Some messages could not be FETCHed
(Failure)``. Dovecot instead drops the connection, so this scripted server
speaks just enough IMAP4rev1 over a real socket (greeting, CAPABILITY,
LOGIN, EXAMINE, UID FETCH, LOGOUT) to let the production adapter meet it.
"""

import re
import socketserver
import threading

_FETCH = re.compile(rb"^(\S+) UID FETCH (\S+) ", re.IGNORECASE)


def _uids(uid_set, top):
    for piece in uid_set.split(b","):
        first, _, last = piece.partition(b":")
        low = int(first)
        high = top if last == b"*" else int(last or first)
        yield from range(low, high + 1)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        server = self.server
        self.wfile.write(b"* OK [CAPABILITY IMAP4rev1] scripted server ready\r\n")
        while line := self.rfile.readline():
            tag, _, rest = line.strip().partition(b" ")
            command = rest.split(b" ", 1)[0].upper()
            if command == b"CAPABILITY":
                self.wfile.write(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
            elif command in (b"LOGIN", b"NOOP"):
                self.wfile.write(tag + b" OK done\r\n")
            elif command in (b"EXAMINE", b"SELECT"):
                count = len(server.messages)
                self.wfile.write(
                    b"* FLAGS (\\Seen)\r\n* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT %d] ok\r\n"
                    % (count, count + 1) + tag + b" OK [READ-ONLY] done\r\n")
            elif command == b"UID" and (match := _FETCH.match(line)):
                self._fetch(tag, match.group(2))
            elif command == b"LOGOUT":
                self.wfile.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            else:
                self.wfile.write(tag + b" BAD unknown command\r\n")

    def _fetch(self, tag, uid_set):
        server = self.server
        refused = False
        for uid in _uids(uid_set, len(server.messages)):
            if uid in server.refused:
                refused = True
                continue
            if 1 <= uid <= len(server.messages):
                subject = server.messages[uid - 1]
                self.wfile.write(
                    b'* %d FETCH (UID %d FLAGS () INTERNALDATE "01-Jan-2024 10:00:00 +0000" RFC822.SIZE 42 '
                    b'ENVELOPE ("Mon, 1 Jan 2024 10:00:00 +0000" "%s" (("Ann" NIL "ann" "example.com")) NIL NIL '
                    b'(("Bob" NIL "bob" "example.com")) NIL NIL NIL "<m%d@example.com>") '
                    b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 1 NIL NIL NIL NIL) '
                    b'BODY[HEADER.FIELDS (REFERENCES)] {2}\r\n\r\n BODY[1]<0> {5}\r\nhello)\r\n'
                    % (uid, uid, subject, uid))
        status = b" NO Some messages could not be FETCHed (Failure)" if refused else b" OK Success"
        self.wfile.write(tag + status + b"\r\n")


class ScriptedImapServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, subjects, refused=()):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.messages = [subject.encode() for subject in subjects]
        self.refused = set(refused)
        self.host, self.port = self.server_address
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

