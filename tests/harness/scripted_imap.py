"""A tiny IMAP server for behaviours Dovecot cannot produce.

Gmail and Yahoo answer a UID FETCH that touches one broken message with the
other messages' data and a tagged ``NO Some messages could not be FETCHed
(Failure)``. Dovecot instead drops the connection, so this scripted server
speaks just enough IMAP4rev1 over a real socket (greeting, CAPABILITY,
LOGIN, LIST, EXAMINE, UID SEARCH, UID FETCH, LOGOUT) to let the production
adapter, and a whole sync run of the engine, meet it.

``refused`` and ``garbled`` are plain sets of UIDs, read at every FETCH, so
a test changes the server's mind between two passes by changing them:

- ``refused``: a UID FETCH of message data that touches one of them gets
  the others' data and a tagged ``NO`` (a FETCH of FLAGS alone is answered
  in full, as Gmail does);
- ``garbled``: the message's full answer is one imapclient cannot parse
  (its ENVELOPE never closes its quote); its flags, date and size are fine.

The server has one folder, INBOX, with UIDVALIDITY 7 and the UIDs 1..n.
"""

import re
import socketserver
import threading

_FETCH = re.compile(rb"^(\S+) UID FETCH (\S+) ?(.*)$", re.IGNORECASE)
_SEARCH = re.compile(rb"^(\S+) UID SEARCH (.*)$", re.IGNORECASE)
_UID_CRITERION = re.compile(rb"\bUID ([0-9:*,]+)", re.IGNORECASE)
# Items a client asks for when it wants only the flags (a flag scan, a reconciliation).
_FLAG_ITEMS = {b"UID", b"FLAGS", b"MODSEQ"}


def _uids(uid_set, top):
    for piece in uid_set.split(b","):
        first, _, last = piece.partition(b":")
        low = top if first == b"*" else int(first)
        high = top if last == b"*" else int(last or first)
        yield from range(min(low, high), max(low, high) + 1)


def _items(text):
    """The words of a FETCH's item list, upper case: enough to tell FLAGS alone from message data."""
    return {item.upper() for item in re.findall(rb"[A-Z0-9.]+", text, re.IGNORECASE)}


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        server = self.server
        self.wfile.write(b"* OK [CAPABILITY IMAP4rev1] scripted server ready\r\n")
        while line := self.rfile.readline():
            line = line.rstrip(b"\r\n")
            tag, _, rest = line.strip().partition(b" ")
            command = rest.split(b" ", 1)[0].upper()
            if command == b"CAPABILITY":
                self.wfile.write(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
            elif command in (b"LOGIN", b"NOOP"):
                self.wfile.write(tag + b" OK done\r\n")
            elif command == b"LIST":
                self.wfile.write(b'* LIST (\\HasNoChildren) "/" INBOX\r\n' + tag + b" OK done\r\n")
            elif command in (b"EXAMINE", b"SELECT"):
                count = len(server.messages)
                self.wfile.write(
                    b"* FLAGS (\\Seen)\r\n* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT %d] ok\r\n"
                    % (count, count + 1) + tag + b" OK [READ-ONLY] done\r\n")
            elif command == b"UID" and (match := _FETCH.match(line)):
                self._fetch(tag, match.group(2), _items(match.group(3)))
            elif command == b"UID" and (match := _SEARCH.match(line)):
                self._search(tag, match.group(2))
            elif command == b"LOGOUT":
                self.wfile.write(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            else:
                self.wfile.write(tag + b" BAD unknown command\r\n")

    def _search(self, tag, criteria):
        top = len(self.server.messages)
        found = range(1, top + 1)
        if match := _UID_CRITERION.search(criteria):
            found = sorted({uid for uid in _uids(match.group(1), top) if 1 <= uid <= top})
        self.wfile.write(b"* SEARCH" + b"".join(b" %d" % uid for uid in found) + b"\r\n" + tag + b" OK done\r\n")

    def _fetch(self, tag, uid_set, items):
        server = self.server
        flags_only = bool(items) and items <= _FLAG_ITEMS
        full = b"ENVELOPE" in items
        refused = False
        for uid in _uids(uid_set, len(server.messages)):
            if not 1 <= uid <= len(server.messages):
                continue
            if flags_only:
                self.wfile.write(b"* %d FETCH (UID %d FLAGS ())\r\n" % (uid, uid))
                continue
            if uid in server.refused:
                refused = True
                continue
            if full and uid in server.garbled:
                self.wfile.write(b'* %d FETCH (UID %d FLAGS () ENVELOPE ("Mon, 1 Jan 2024 10:00:00 +0000 NIL)\r\n'
                                 % (uid, uid))
                continue
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

    def __init__(self, subjects, refused=(), garbled=()):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.messages = [subject.encode() for subject in subjects]
        self.refused = set(refused)  # mutable: clear it and the server answers again
        self.garbled = set(garbled)
        self.host, self.port = self.server_address
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
