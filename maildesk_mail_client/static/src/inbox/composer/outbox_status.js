import { Component, useState } from "@odoo/owl";

import { useService } from "@web/core/utils/hooks";

import { OUTBOX_STATES } from "./drafts_list";

/**
 * What was just sent from this page, at the bottom of the inbox: "Sending…" with Undo while the
 * undo window is open, then "Sent", or "Not sent" with the reason, Retry, Edit and Discard.
 */
export class OutboxStatus extends Component {
    static props = {};
    static template = "maildesk_mail_client.OutboxStatus";

    setup() {
        this.store = useState(useService("maildesk.store"));
    }

    status(entry) {
        return OUTBOX_STATES[entry.state] || OUTBOX_STATES.queued;
    }

    /** A failed message, back in the composer to be corrected. */
    edit(entry) {
        this.store.dismissOutbox(entry.id);
        return this.store.openDraft(entry.id);
    }
}
