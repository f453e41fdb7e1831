"""The reading pane's routes: a message's body, its parts, its inline images, and trusting its sender.

Every route is ``auth="user"`` and starts the same way: the index row is
browsed as the user and ``check_access("read")`` applies their access
rights and record rules, exactly as for any ORM read. Only then is the
body read from the cache (or fetched) in SQL (orm/read_context.py). A
message the user may not read answers as one that does not exist.
"""

import hashlib
import logging

from odoo import http
from odoo.exceptions import AccessError, MissingError, UserError
from odoo.http import Stream, request
from werkzeug.exceptions import NotFound

from ..application.errors import MailboxError
from ..application.message_view import PartNotFound, content_id_part, parse_message, part_bytes
from ..application.use_cases.read_message import MessageGone, render_view
from ..orm.read_context import cid_url, open_index_message

_logger = logging.getLogger(__name__)

# Served inline (the image of a cid: reference); anything else is a download. Not SVG: an
# SVG opened on its own is a document that runs scripts, on Odoo's origin.
_INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/gif", "image/webp",
                            "image/bmp"})
_DOWNLOAD_CSP = "default-src 'none'; sandbox"


class MaildeskInbox(http.Controller):
    # -- access -------------------------------------------------------------------

    def _message(self, index_id):
        """The index row, if the user may read it; MissingError otherwise (never "exists, not yours")."""
        message = request.env["maildesk.message_index"].browse(int(index_id))
        try:
            message.check_access("read")
            if not message.exists():
                raise MissingError(request.env._("This message does not exist."))
        except AccessError as error:
            raise MissingError(request.env._("This message does not exist.")) from error
        return message

    def _message_or_404(self, index_id):
        try:
            return self._message(index_id)
        except MissingError as error:
            raise NotFound() from error

    def _open(self, message, with_raw=False):
        try:
            opened = open_index_message(message, with_raw=with_raw)
        except MessageGone as error:
            raise UserError(str(error)) from error
        except MailboxError as error:
            _logger.info("Opening message %s failed: %s", message.id, error)
            raise UserError(request.env._("The mail server could not be reached: %s", error)) from error
        if opened is None:
            raise MissingError(request.env._("This message does not exist."))
        return opened

    def _raw_or_404(self, message):
        try:
            return self._open(message, with_raw=True).body.raw
        except (UserError, MissingError) as error:
            raise NotFound() from error

    # -- the message ------------------------------------------------------------------

    @http.route("/maildesk/message/<int:index_id>", type="json", auth="user")
    def maildesk_message(self, index_id, remote=False, part_id=None, **_kw):
        """The message as the reading pane shows it; ``part_id``: a message nested in it."""
        message = self._message(index_id)
        if part_id:
            raw = self._open(message, with_raw=True).body.raw
            try:
                view = parse_message(raw, str(part_id))
            except PartNotFound as error:
                raise MissingError(request.env._("This message has no such part.")) from error
            body = render_view(view, cid_url(message.id, str(part_id)))
            sender = view.from_
        else:
            body = self._open(message).body
            sender = body.headers.get("from") or message.from_address
        trusted = request.env["maildesk.trusted_sender"]._maildesk_is_trusted(sender)
        allow_remote = bool(remote) or trusted
        html = body.html_remote if allow_remote and body.html_remote is not None else body.html
        headers = body.headers
        return {
            "id": message.id,
            "part_id": part_id or None,
            "subject": headers.get("subject") or "",
            "from": headers.get("from") or "",
            "to": headers.get("to") or "",
            "cc": headers.get("cc") or "",
            "date": headers.get("date"),
            "html": html or None,
            "text": body.text,
            "text_html": body.text_html,
            "blocked_remote": 0 if allow_remote else body.remote_blocked,
            "sender_trusted": trusted,
            "sender_email": request.env["maildesk.trusted_sender"]._maildesk_normalize(sender) or None,
            "attachments": [
                {
                    "part_id": part["part_id"],
                    "filename": part["filename"],
                    "size": part["size"],
                    "content_type": part["content_type"],
                    "is_message": part["content_type"] in ("message/rfc822", "message/global"),
                    "url": f"/maildesk/message/{message.id}/part/{part['part_id']}",
                }
                for part in body.attachments if not part.get("referenced")
            ],
        }

    @http.route("/maildesk/message/<int:index_id>/part/<string:part_id>", type="http", auth="user",
                methods=["GET"])
    def maildesk_message_part(self, index_id, part_id, **_kw):
        """One part, as a download (never shown in the page: it is the sender's content)."""
        message = self._message_or_404(index_id)
        raw = self._raw_or_404(message)
        try:
            content_type, filename, data = part_bytes(raw, part_id)
        except PartNotFound as error:
            raise NotFound() from error
        return self._send(data, content_type, filename, as_attachment=True)

    @http.route("/maildesk/message/<int:index_id>/cid/<path:cid>", type="http", auth="user", methods=["GET"])
    def maildesk_message_cid(self, index_id, cid, part=None, **_kw):
        """The inline image a ``cid:`` reference of the message's HTML points at."""
        message = self._message_or_404(index_id)
        raw = self._raw_or_404(message)
        found = content_id_part(raw, cid, part or None)
        if found is None:
            raise NotFound()
        content_type, filename, data = part_bytes(raw, found.part_id)
        if content_type in _INLINE_IMAGES:
            return self._send(data, content_type, filename, as_attachment=False)
        return self._send(data, "application/octet-stream", filename, as_attachment=True)

    def _send(self, data, content_type, filename, as_attachment):
        stream = Stream(type="data", data=data, mimetype=content_type or "application/octet-stream",
                        as_attachment=as_attachment, download_name=filename, size=len(data),
                        etag=hashlib.sha256(data).hexdigest(), conditional=True, last_modified=None)
        response = stream.get_response(content_security_policy=_DOWNLOAD_CSP)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    # -- trust ------------------------------------------------------------------------

    @http.route("/maildesk/trust_sender", type="json", auth="user")
    def maildesk_trust_sender(self, index_id, **_kw):
        """Always show this message's sender's remote content, for this user."""
        message = self._message(index_id)
        email = request.env["maildesk.trusted_sender"]._maildesk_trust(message.from_address)
        if not email:
            raise UserError(request.env._("This message has no sender address to trust."))
        return {"email": email, "trusted": True}
