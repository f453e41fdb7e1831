"""The reading pane's routes: a message's body, its parts, its inline images, and trusting its sender.

Every route is ``auth="user"`` and starts the same way: the index row is
browsed as the user and ``check_access("read")`` applies their access
rights and record rules, exactly as for any ORM read. Only then is the
body read from the cache (or fetched) in SQL (orm/read_context.py). A
message the user may not read answers as one that does not exist.
"""

import logging

from odoo import http
from odoo.exceptions import AccessError, MissingError, UserError
from odoo.http import Response, content_disposition, request
from werkzeug.exceptions import NotFound

from ..application.errors import MailboxError
from ..application.message_view import PartNotFound, clean_content_id, content_id_part, open_part, parse_message
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

    def _open(self, message, with_raw=False, rendered=True):
        try:
            opened = open_index_message(message, with_raw=with_raw, rendered=rendered)
        except MessageGone as error:
            raise UserError(str(error)) from error
        except MailboxError as error:
            _logger.info("Opening message %s failed: %s", message.id, error)
            raise UserError(request.env._("The mail server could not be reached: %s", error)) from error
        if opened is None:
            raise MissingError(request.env._("This message does not exist."))
        return opened

    def _body_or_404(self, message):
        """The opened body (its ``raw`` set; ``attachments`` None when too big to cache), or 404."""
        try:
            return self._open(message, with_raw=True, rendered=False).body
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
        """One part, as a download (never shown in the page: it is the sender's content), streamed."""
        message = self._message_or_404(index_id)
        body = self._body_or_404(message)
        listed = next((part for part in body.attachments or () if part.get("part_id") == part_id), None)
        try:
            part = open_part(body.raw, part_id, listed)
        except PartNotFound as error:
            raise NotFound() from error
        return self._send(part, part.content_type, as_attachment=True)

    @http.route("/maildesk/message/<int:index_id>/cid/<path:cid>", type="http", auth="user", methods=["GET"])
    def maildesk_message_cid(self, index_id, cid, part=None, **_kw):
        """The inline image a ``cid:`` reference of the message's HTML points at."""
        message = self._message_or_404(index_id)
        body = self._body_or_404(message)
        if part or body.attachments is None:
            # a message nested in this one (its parts are not in the list), or one too big to be
            # cached (it has no list): read it, once
            found = content_id_part(body.raw, cid, part or None)
            listed = found.as_dict() if found is not None else None
        else:
            wanted = clean_content_id(cid)
            listed = next((item for item in body.attachments
                           if wanted and item.get("content_id") == wanted), None)
        if listed is None:
            raise NotFound()
        try:
            stream = open_part(body.raw, listed["part_id"], listed)
        except PartNotFound as error:
            raise NotFound() from error
        if stream.content_type in _INLINE_IMAGES:
            return self._send(stream, stream.content_type, as_attachment=False)
        return self._send(stream, "application/octet-stream", as_attachment=True)

    def _send(self, part, content_type, as_attachment):
        """The part's bytes as they are decoded, never all in memory (``direct_passthrough``)."""
        disposition = content_disposition(part.filename)
        if not as_attachment:
            disposition = "inline" + disposition[len("attachment"):]
        headers = [
            ("Content-Type", content_type or "application/octet-stream"),
            ("Content-Length", str(part.size)),
            ("Content-Disposition", disposition),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", _DOWNLOAD_CSP),
            ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "private, no-cache"),
        ]
        return Response(part.chunks, status=200, headers=headers, direct_passthrough=True)

    # -- trust ------------------------------------------------------------------------

    @http.route("/maildesk/trust_sender", type="json", auth="user")
    def maildesk_trust_sender(self, index_id, **_kw):
        """Always show this message's sender's remote content, for this user."""
        message = self._message(index_id)
        email = request.env["maildesk.trusted_sender"]._maildesk_trust(message.from_address)
        if not email:
            raise UserError(request.env._("This message has no sender address to trust."))
        return {"email": email, "trusted": True}
