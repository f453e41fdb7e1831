import { Component, onWillStart, onWillUpdateProps, useState } from "@odoo/owl";

import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";

import { formatFullDate, formatSize, senderEmail, senderName } from "./inbox_format";
import { buildSrcdoc, inlineLocalImages, messageBodyHtml } from "./message_body";

/**
 * The message's body in `<iframe sandbox srcdoc>`: no `allow-scripts`, ever, and no
 * `allow-same-origin`; a CSP and a no-referrer policy at the top of the document
 * (message_body.js). Links open in a new tab, outside the sandbox, without a referrer.
 */
export class MessageBody extends Component {
    static props = {
        messageId: { type: Number },
        html: { type: String },
        allowRemote: { type: Boolean },
    };
    static template = "maildesk_mail_client.MessageBody";

    setup() {
        this.state = useState({ srcdoc: "" });
        onWillStart(() => this.render_(this.props));
        onWillUpdateProps((next) => {
            if (next.html !== this.props.html || next.allowRemote !== this.props.allowRemote || next.messageId !== this.props.messageId) {
                return this.render_(next);
            }
        });
    }

    async render_({ messageId, html, allowRemote }) {
        const body = await inlineLocalImages(html, messageId);
        this.state.srcdoc = buildSrcdoc(body, { allowRemote });
    }
}

/** "Remote content blocked: Show once / Always trust <sender>". */
export class RemoteContentBanner extends Component {
    static props = {
        blocked: { type: Number },
        sender: { type: String },
        onShowOnce: { type: Function },
        onTrust: { type: Function, optional: true },
    };
    static template = "maildesk_mail_client.RemoteContentBanner";
}

/**
 * @typedef {Object} InboxAttachment
 * @property {string} part_id
 * @property {string} filename
 * @property {number} size
 * @property {string} content_type
 * @property {string} url
 * @property {boolean} [is_message] a message attached to the message: it opens in the pane
 */
export class AttachmentList extends Component {
    static props = {
        attachments: { type: Array, element: Object },
        onOpenMessage: { type: Function },
    };
    static template = "maildesk_mail_client.AttachmentList";

    size(attachment) {
        return formatSize(attachment.size);
    }

    icon(attachment) {
        const type = attachment.content_type || "";
        if (type === "message/rfc822") {
            return "fa-envelope-o";
        }
        if (type.startsWith("image/")) {
            return "fa-file-image-o";
        }
        if (type === "application/pdf") {
            return "fa-file-pdf-o";
        }
        return "fa-paperclip";
    }
}

/**
 * Buttons in the reading pane's header, after Reply / Reply all / Forward, for other addons
 * (e.g. "Log in chatter"), like `maildesk.message_actions` for the list:
 *
 *     registry.category("maildesk.reading_pane_actions").add("log_in_chatter", {
 *         sequence: 10,
 *         label: _t("Log in chatter"),
 *         icon: "fa-comments",
 *         isAvailable: (store, message) => !message.partId,
 *         run: (store, message, env) => env.services.action.doAction(...),
 *     });
 *
 * `message` is `store.state.message`: `id` (the index row), `partId`, `data` (what the pane shows).
 */
export const readingPaneActionsRegistry = registry.category("maildesk.reading_pane_actions");

/** The reading pane: headers, actions, remote-content banner, body, attachments. */
export class ReadingPane extends Component {
    static components = { AttachmentList, MessageBody, RemoteContentBanner };
    static props = {};
    static template = "maildesk_mail_client.ReadingPane";

    setup() {
        this.store = useState(useService("maildesk.store"));
    }

    get message() {
        return this.store.state.message;
    }

    get view() {
        return this.message?.data || null;
    }

    get bodyHtml() {
        return this.view ? messageBodyHtml(this.view) : "";
    }

    /** The user let remote content through: this once, or for every message of this sender. */
    get allowRemote() {
        const view = this.view;
        return Boolean(view && (this.message.remote || view.sender_trusted));
    }

    get showBanner() {
        return Boolean(this.view && this.view.blocked_remote > 0 && !this.allowRemote);
    }

    get senderLabel() {
        const from = this.view?.from || "";
        return this.view?.sender_email || senderEmail(from) || senderName(from);
    }

    /** "Always trust" trusts the sender of the message in the list, not of one attached to it. */
    get canTrust() {
        return !this.message?.partId;
    }

    get paneActions() {
        const message = this.message;
        return readingPaneActionsRegistry
            .getEntries()
            .map(([id, action]) => ({ id, ...action }))
            .filter((action) => !action.isAvailable || action.isAvailable(this.store, message))
            .sort((a, b) => (a.sequence ?? 50) - (b.sequence ?? 50));
    }

    runPaneAction(action) {
        return action.run(this.store, this.message, this.env);
    }

    /** Reply, reply all or forward the message in the list (not one attached to it). */
    compose(mode) {
        return this.store.compose(mode, this.message.id);
    }

    openAttachedMessage(attachment) {
        this.store.openMessage(this.message.id, { partId: attachment.part_id });
    }

    backToMessage() {
        this.store.openMessage(this.message.id);
    }

    date(value) {
        return formatFullDate(value);
    }

    addressList(value) {
        if (Array.isArray(value)) {
            return value.join(", ");
        }
        return value || "";
    }
}
