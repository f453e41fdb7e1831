import { Component, useState } from "@odoo/owl";

import { _t } from "@web/core/l10n/translation";
import { useService } from "@web/core/utils/hooks";

import { formatListDate } from "../inbox_format";

/**
 * @typedef {Object} OutboxRow a row of `maildesk_drafts()` or of the outbox strip
 * @property {number} id
 * @property {string} subject
 * @property {string} [email_to]
 * @property {string} [write_date]
 * @property {"draft"|"queued"|"sending"|"sent"|"failed"} state
 * @property {string} [last_error]
 */

export const OUTBOX_STATES = {
    draft: { label: _t("Draft"), tone: "secondary", icon: "fa-pencil" },
    queued: { label: _t("Sending…"), tone: "info", icon: "fa-paper-plane" },
    sending: { label: _t("Sending…"), tone: "info", icon: "fa-paper-plane" },
    sent: { label: _t("Sent"), tone: "success", icon: "fa-check" },
    failed: { label: _t("Not sent"), tone: "danger", icon: "fa-exclamation-triangle" },
};

/**
 * The Drafts view of the tree, in place of the message list: the user's drafts (reopened by a
 * click), failed messages with their reason, Retry and Discard, and the messages on their way
 * out, with Undo while the undo window is open.
 */
export class DraftsList extends Component {
    static props = {};
    static template = "maildesk_mail_client.DraftsList";

    setup() {
        this.store = useState(useService("maildesk.store"));
    }

    get drafts() {
        return this.store.state.drafts;
    }

    status(row) {
        return OUTBOX_STATES[row.state] || OUTBOX_STATES.draft;
    }

    date(row) {
        return formatListDate(row.write_date);
    }

    isEditable(row) {
        return row.state === "draft" || row.state === "failed";
    }

    isOpen(row) {
        return this.store.state.composer?.id === row.id;
    }

    open(row) {
        if (this.isEditable(row)) {
            return this.store.openDraft(row.id);
        }
    }
}
