"""The demo mailbox: realistic mail for ``scripts/run`` and ``docker compose up``.

About 1,200 messages in INBOX over the last six months, from colleagues,
customers, services and newsletters, most of the older ones read, a few
flagged, some with attachments, some with non-ASCII (RFC 2047) subjects, and
conversations whose replies sit in Sent (In-Reply-To / References); plus a few
messages in Drafts, Archive and Trash.

The mailbox is deterministic: the same ``until`` gives the same bytes, flags
and dates. Seeding is idempotent and resumable: each folder only gets the
messages it does not hold yet, appended oldest first, so UIDs follow dates.

    python3 scripts/demo_mailbox.py --host dovecot --port 143 --login demo --password demo --wait 60

Standard library only, so the Docker seeding container needs nothing installed.
"""

import argparse
import dataclasses
import datetime as dt
import hashlib
import imaplib
import random
import struct
import sys
import time
import zlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

ME = Address("Demo User", "demo", "acme.example")
INBOX_SIZE = 1200
DAYS = 183
FOLDERS = ("INBOX", "Sent", "Drafts", "Archive", "Trash")


@dataclasses.dataclass(frozen=True)
class DemoMessage:
    date: dt.datetime
    flags: tuple
    raw: bytes


# ---------------------------------------------------------------------------
# Who writes, and what about
# ---------------------------------------------------------------------------

COLLEAGUES = [
    Address("Priya Raman", "priya.raman", "acme.example"),
    Address("Tom Becker", "tom.becker", "acme.example"),
    Address("Sofia Lindqvist", "sofia.lindqvist", "acme.example"),
    Address("Marcus Chen", "marcus.chen", "acme.example"),
    Address("Julia Kowalski", "julia.kowalski", "acme.example"),
    Address("Ahmed Haddad", "ahmed.haddad", "acme.example"),
    Address("Léa Dubois", "lea.dubois", "acme.example"),
    Address("Jürgen Weiß", "juergen.weiss", "acme.example"),
    Address("Carmen Núñez", "carmen.nunez", "acme.example"),
    Address("田中 健二", "kenji.tanaka", "acme.example"),
]
CUSTOMERS = [
    Address("Olivia Grant", "olivia.grant", "northwind.example"),
    Address("Daniel Okafor", "d.okafor", "globex.example"),
    Address("Hannah Schmidt", "h.schmidt", "initech.example"),
    Address("Raúl Ortega", "raul", "vandelay.example"),
    Address("Mei Lin", "mei.lin", "umbrella-logistics.example"),
    Address("Łukasz Wiśniewski", "lukasz.wisniewski", "contoso.example"),
]
SERVICES = {
    "ci": Address("Acme CI", "ci", "acme.example"),
    "tracker": Address("Acme Issues", "issues", "acme.example"),
    "calendar": Address("Calendar", "calendar-noreply", "acme.example"),
    "billing": Address("CloudBill", "invoices", "cloudbill.example"),
    "shipping": Address("ShipFast", "tracking", "shipfast.example"),
    "security": Address("Acme IT", "it-security", "acme.example"),
}
NEWSLETTERS = [
    Address("The Ops Weekly", "news", "opsweekly.example"),
    Address("Product Digest", "digest", "productdigest.example"),
    Address("DevTalks", "hello", "devtalks.example"),
]

PROJECTS = ["Atlas", "Beacon", "Comet", "Delta", "Everest", "Portal", "Billing v2"]
DOCS = ["design doc", "rollout plan", "Q3 roadmap", "pricing proposal", "onboarding checklist", "postmortem"]
TOPICS = ["observability", "PostgreSQL tuning", "incident response", "API design", "hiring", "cost control"]
REPOS = ["acme/portal", "acme/billing", "acme/infra", "acme/mobile"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]

# Colleagues who also write in their own language (by username), with what they write about.
LOCAL_SUBJECTS = {
    "lea.dubois": ["Réunion de lundi - ordre du jour", "Café ☕ vendredi ?", "Compte rendu de l'atelier {project}"],
    "juergen.weiss": ["Angebot Nr. {n} - Überarbeitung", "Grüße aus München", "Rückfrage zur Lieferung"],
    "carmen.nunez": ["Reunión de seguimiento, ¿martes?", "Presentación para el cliente", "Año nuevo, nuevos retos"],
    "kenji.tanaka": ["{project}の会議の議事録", "来週の出張について", "見積書の確認をお願いします"],
}
COLLEAGUE_SUBJECTS = [
    "{project}: status update", "Can you review the {doc}?", "Notes from today's sync on {project}",
    "Lunch on {weekday}?", "Offsite logistics", "Heads-up: {project} deploy tonight", "Quick question about the {doc}",
    "1:1 agenda", "Updated {doc} attached", "Hiring: interview loop for the {project} team",
]
CUSTOMER_SUBJECTS = [
    "Quote #{n} for {project}", "Question about invoice INV-{n}", "Renewal of our contract",
    "Follow-up from our call", "Meeting request: {topic}", "Issue with the export in {project}",
]
BODY_LINES = [
    "Thanks for the quick turnaround on this.", "See the thread below for context.",
    "Could we move this to later in the week?", "Let me know if anything is unclear.",
    "The numbers look good, but I'd like a second pair of eyes on the assumptions.",
    "I talked to the team and we're aligned on the next steps.", "No rush, but it would help to have it by Friday.",
    "I left a few comments inline.", "We should loop in finance before we commit to a date.",
    "Happy to jump on a call if that's easier.",
]


# ---------------------------------------------------------------------------
# Small attachments that open in their viewers
# ---------------------------------------------------------------------------

def _pdf(text):
    """A one-page PDF showing ``text`` (ASCII)."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _png(rgb, size=32):
    """A ``size`` x ``size`` PNG of one colour."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _ics(summary, start):
    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    end = (start + dt.timedelta(minutes=30)).strftime("%Y%m%dT%H%M%SZ")
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Acme//Calendar//EN\r\nMETHOD:REQUEST\r\n"
            f"BEGIN:VEVENT\r\nUID:{stamp}@acme.example\r\nDTSTAMP:{stamp}\r\nDTSTART:{stamp}\r\n"
            f"DTEND:{end}\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------

class _Writer:
    """Builds the messages of one mailbox from one seeded random generator."""

    def __init__(self, until):
        self.rng = random.Random(20240601)
        self.until = until
        self.count = 0

    def pick(self, items):
        return self.rng.choice(items)

    def fill(self, template):
        return template.format(project=self.pick(PROJECTS), doc=self.pick(DOCS), topic=self.pick(TOPICS),
                               weekday=self.pick(WEEKDAYS), n=self.rng.randint(1000, 9999))

    def message_id(self, sender):
        self.count += 1
        digest = hashlib.sha1(f"{self.count}".encode()).hexdigest()[:16]
        return f"<{digest}.{self.count}@{sender.domain}>"

    def body(self, sender, to):
        first = to.display_name.split()[0] if to.display_name else "there"
        lines = self.rng.sample(BODY_LINES, self.rng.randint(1, 3))
        return f"Hi {first},\n\n" + "\n".join(lines) + f"\n\nBest,\n{sender.display_name}\n"

    def message(self, sender, to, subject, date, body=None, html=None, attachments=(), reply_to=None):
        """(Message-ID, raw bytes); ``reply_to`` is the (Message-ID, References) of the message answered."""
        msg = EmailMessage(policy=SMTP)
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject  # the SMTP policy encodes non-ASCII as RFC 2047
        msg["Date"] = format_datetime(date)
        message_id = msg["Message-ID"] = self.message_id(sender)
        if reply_to:
            parent_id, parent_refs = reply_to
            msg["In-Reply-To"] = parent_id
            msg["References"] = f"{parent_refs} {parent_id}".strip()
        msg.set_content(body or self.body(sender, to))
        if html:
            msg.add_alternative(html, subtype="html")
        for filename, content, mime_type in attachments:
            maintype, subtype = mime_type.split("/")
            msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
        for number, part in enumerate(msg.walk()):
            if part.is_multipart():  # the email package draws boundaries at random
                part.set_boundary(f"=_part{number}_{message_id.strip('<>')}")
        return message_id, msg.as_bytes()

    def when(self, days_ago_max=DAYS, days_ago_min=0.0):
        """A plausible moment: weekdays and office hours, mostly."""
        while True:
            moment = self.until - dt.timedelta(days=self.rng.uniform(days_ago_min, days_ago_max))
            if (moment.weekday() < 5 and 7 <= moment.hour < 20) or self.rng.random() < 0.15:
                return moment.replace(second=self.rng.randint(0, 59), microsecond=0)

    # -- kinds of mail --------------------------------------------------------

    def single(self, date):
        """One message on its own: (raw, important)."""
        kind = self.rng.choices(["colleague", "customer", "service", "newsletter", "local"], [34, 14, 34, 12, 6])[0]
        attachments, html, important = [], None, False
        if kind == "local":
            username = self.pick(sorted(LOCAL_SUBJECTS))
            sender = next(person for person in COLLEAGUES if person.username == username)
            subject, body = self.fill(self.pick(LOCAL_SUBJECTS[username])), None
        elif kind == "colleague":
            sender, subject, body = self.pick(COLLEAGUES), self.fill(self.pick(COLLEAGUE_SUBJECTS)), None
            if "attached" in subject:
                doc = self.pick(DOCS)
                attachments.append((f"{doc.replace(' ', '-')}.pdf", _pdf(f"Acme - {doc}"), "application/pdf"))
        elif kind == "customer":
            sender, important = self.pick(CUSTOMERS), self.rng.random() < 0.2
            subject, body = self.fill(self.pick(CUSTOMER_SUBJECTS)), None
        elif kind == "service":
            subject, body, sender, attachments = self.service_mail(date)
        else:
            sender = self.pick(NEWSLETTERS)
            topic = self.pick(TOPICS)
            subject = f"This week in {topic}" if self.rng.random() < 0.6 else f"Webinar: {topic} in practice"
            body = f"The best reads on {topic} this week.\n\n1. Five lessons from a year on-call\n" \
                   f"2. How we halved our cloud bill\n3. Reader questions\n\nUnsubscribe: reply STOP.\n"
            html = f"<h1>{subject}</h1><ol><li>Five lessons from a year on-call</li>" \
                   f"<li>How we halved our cloud bill</li><li>Reader questions</li></ol>"
        return self.message(sender, ME, subject, date, body=body, html=html, attachments=attachments)[1], important

    def service_mail(self, date):
        service = self.rng.choices(list(SERVICES), [40, 35, 8, 1, 5, 5])[0]
        sender, n, attachments = SERVICES[service], self.rng.randint(100, 9999), []
        if service == "ci":
            repo = self.pick(REPOS)
            status = self.rng.choices(["failed", "fixed", "passed"], [3, 2, 5])[0]
            subject = f"[{repo}] Build {status}: main #{n}"
            body = f"Pipeline #{n} on main {status}.\n\nCommit {hashlib.sha1(str(n).encode()).hexdigest()[:8]}.\n"
        elif service == "tracker":
            title = self.pick(["{project} is slow on login", "Rotate the {project} keys", "Document the {doc}"])
            subject = f"[OPS-{n}] {self.fill(title)}"
            body = f"{self.pick(COLLEAGUES).display_name} commented:\n\n> {self.pick(BODY_LINES)}\n"
            if "slow" in title and self.rng.random() < 0.3:
                attachments.append(("screenshot.png", _png((200, 60, 40)), "image/png"))
        elif service == "calendar":
            meeting = self.fill(self.pick(["{project} weekly", "Design review: {doc}", "1:1", "All hands"]))
            subject = f"Invitation: {meeting} @ {self.pick(WEEKDAYS)} 10:00"
            body = f"You have been invited to {meeting}.\n"
            attachments.append(("invite.ics", _ics(meeting, date + dt.timedelta(days=2)), "text/calendar"))
        elif service == "billing":
            month = date.strftime("%B %Y")
            subject, body = f"Your CloudBill invoice for {month}", f"Invoice INV-{n} for {month} is attached.\n"
            attachments.append((f"INV-{n}.pdf", _pdf(f"Invoice INV-{n} - {month}"), "application/pdf"))
        elif service == "shipping":
            subject, body = f"Your order #{n} has shipped", f"Track order #{n}: it arrives in 2-3 business days.\n"
        else:
            subject = "New sign-in to your Acme account"
            body = "We noticed a new sign-in from Firefox on Linux. If this was you, nothing to do.\n"
        return subject, body, sender, attachments

    def conversation(self):
        """A thread started by a colleague or customer; my replies go to Sent.

        Returns [(folder, date, raw)] in date order.
        """
        other = self.pick(COLLEAGUES + CUSTOMERS)
        subject = self.fill(self.pick(CUSTOMER_SUBJECTS if other in CUSTOMERS else COLLEAGUE_SUBJECTS))
        date = self.when(days_ago_max=DAYS - 10, days_ago_min=1)
        parent, refs, out = None, "", []
        for turn in range(self.rng.randint(2, 5)):
            mine = turn % 2 == 1
            sender, to = (ME, other) if mine else (other, ME)
            message_id, raw = self.message(sender, to, subject if turn == 0 else f"Re: {subject}", date,
                                           reply_to=parent and (parent, refs))
            out.append(("Sent" if mine else "INBOX", date, raw))
            refs = f"{refs} {parent}".strip() if parent else ""  # the References of this message
            parent = message_id
            date += dt.timedelta(hours=self.rng.uniform(0.3, 30))
            if date >= self.until:
                break
        return out


def mailbox(until=None):
    """{folder: [DemoMessage, oldest first]} for the mailbox as it looks at ``until`` (default now)."""
    until = (until or dt.datetime.now(dt.timezone.utc)).replace(second=0, microsecond=0)
    w = _Writer(until)

    folders = {name: [] for name in FOLDERS}  # name: [(date, raw, answered, important)]

    for _ in range(35):
        thread = w.conversation()
        for position, (folder, date, raw) in enumerate(thread):
            answered = folder == "INBOX" and position + 1 < len(thread)  # the next one is my reply
            folders[folder].append((date, raw, answered, False))

    for _ in range(INBOX_SIZE - len(folders["INBOX"])):
        date = w.when()
        raw, important = w.single(date)
        folders["INBOX"].append((date, raw, False, important))

    for _ in range(8):
        date = w.when()
        subject = w.fill(w.pick(COLLEAGUE_SUBJECTS))
        folders["Sent"].append((date, w.message(ME, w.pick(COLLEAGUES), subject, date)[1], False, False))
    for subject in ("Proposal for Northwind (draft)", "Re: Offsite logistics", "Notes for the board meeting"):
        date = w.when(days_ago_max=5)
        folders["Drafts"].append((date, w.message(ME, w.pick(CUSTOMERS), subject, date)[1], False, False))
    for folder, count, newest, oldest in (("Archive", 30, DAYS, 365), ("Trash", 8, 0, 20)):
        for _ in range(count):
            date = w.when(days_ago_max=oldest, days_ago_min=newest)
            folders[folder].append((date, w.single(date)[0], False, False))

    # Newest of all, so a mailbox seeded by an earlier version gets it appended.
    folders["INBOX"].append((until, aliased_application(until), False, False))

    result = {}
    for folder, items in folders.items():
        items.sort(key=lambda item: item[0])
        result[folder] = [DemoMessage(date, _flags(w.rng, folder, date, until, answered, important), raw)
                          for date, raw, answered, important in items]
    return result


#: The demo's Odoo alias (scripts/demo_account.py): mail to it becomes a contact, with the mail in its chatter.
JOBS_ALIAS = "jobs@acme.example"

# The smallest valid PDF, as a CV attached to the application.
_CV_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
           b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def aliased_application(date):
    """A job application mailed to the Odoo alias: the ingest crons make it a contact with this mail in its chatter."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Dana Whitfield <dana.whitfield@mailbox.example>"
    msg["To"] = f"Acme Jobs <{JOBS_ALIAS}>"
    msg["Cc"] = ME
    msg["Subject"] = "Application: Senior Accountant (Dana Whitfield)"
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = "<application-dana-whitfield@mailbox.example>"
    msg.set_content("Hello,\n\nPlease find my application for the Senior Accountant position attached.\n"
                    "I have eight years of experience in month-end close and audits.\n\nBest regards,\nDana")
    msg.add_attachment(_CV_PDF, maintype="application", subtype="pdf", filename="Dana_Whitfield_CV.pdf")
    for number, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_part{number}_application-dana-whitfield")
    return msg.as_bytes()


def _flags(rng, folder, date, until, answered, important):
    if folder == "Drafts":
        return ("\\Draft", "\\Seen")
    if folder != "INBOX":
        return ("\\Seen",)
    flags = []
    recent = until - date < dt.timedelta(days=2)
    if answered or rng.random() < (0.35 if recent else 0.93):
        flags.append("\\Seen")
    if answered:
        flags.append("\\Answered")
    if important or rng.random() < 0.03:
        flags.append("\\Flagged")
    return tuple(flags)


# ---------------------------------------------------------------------------
# Seeding over IMAP
# ---------------------------------------------------------------------------

def seed(host, port, login, password, until=None, wait=0.0):
    """Append what each folder is missing; returns {folder: messages appended}."""
    imap = _connect(host, port, wait)
    try:
        imap.login(login, password)
        appended = {}
        for folder, messages in mailbox(until).items():
            typ, data = imap.status(folder, "(MESSAGES)")
            if typ != "OK":
                imap.create(folder)
                present = 0
            else:
                present = int(data[0].decode().rsplit("MESSAGES", 1)[1].strip(" )"))
            for message in messages[present:]:
                imap.append(folder, f"({' '.join(message.flags)})", imaplib.Time2Internaldate(message.date),
                            message.raw)
            appended[folder] = max(0, len(messages) - present)
        return appended
    finally:
        imap.logout()


def _connect(host, port, wait):
    deadline = time.monotonic() + wait
    while True:
        try:
            return imaplib.IMAP4(host, port, timeout=30)
        except OSError:  # includes socket.timeout and refused connections
            if time.monotonic() >= deadline:
                raise
            time.sleep(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=143)
    parser.add_argument("--login", default="demo")
    parser.add_argument("--password", default="demo")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the server to accept connections")
    args = parser.parse_args()
    try:
        appended = seed(args.host, args.port, args.login, args.password, wait=args.wait)
    except (OSError, imaplib.IMAP4.error) as error:
        reason = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else error
        sys.exit(f"demo mailbox: cannot seed {args.login}@{args.host}:{args.port}: {reason}")
    print("demo mailbox:", ", ".join(f"{folder} +{count}" for folder, count in appended.items()))


if __name__ == "__main__":
    main()
