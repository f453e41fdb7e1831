import { Component } from "@odoo/owl";

import { formatFullDate, formatListDate, senderName } from "./inbox_format";

/**
 * @typedef {Object} InboxRow one row of maildesk_page / maildesk_thread
 * @property {number} id
 * @property {string|false} thread_key
 * @property {number} [thread_count]
 * @property {number} account_id
 * @property {number} folder_id
 * @property {string|false} subject
 * @property {string|false} from_address
 * @property {string|false} snippet
 * @property {string|false} date
 * @property {boolean} is_seen
 * @property {boolean} is_flagged
 * @property {boolean} has_attachments
 */

/** One line of the list: a conversation (newest message first), or one of its messages. */
export class MessageRow extends Component {
    static props = {
        item: {
            type: Object,
            shape: { id: Number, row: Object, depth: Number, thread: { type: Object, optional: true },
                     parentId: { type: Number, optional: true } },
        },
        top: { type: Number },
        height: { type: Number },
        selected: { type: Boolean },
        active: { type: Boolean },
        open: { type: Boolean },
        expanded: { type: Boolean },
        onClick: { type: Function },
        onToggleThread: { type: Function },
    };
    static template = "maildesk_mail_client.MessageRow";

    get row() {
        return this.props.item.row;
    }

    get sender() {
        return senderName(this.row.from_address);
    }

    get date() {
        return formatListDate(this.row.date);
    }

    get fullDate() {
        return formatFullDate(this.row.date);
    }

    get threadCount() {
        return this.props.item.depth ? 0 : this.row.thread_count || 1;
    }

    onToggle(ev) {
        ev.stopPropagation();
        this.props.onToggleThread(this.props.item);
    }
}
