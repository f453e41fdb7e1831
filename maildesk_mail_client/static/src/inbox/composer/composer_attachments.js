import { Component } from "@odoo/owl";

import { formatSize } from "../inbox_format";

/**
 * @typedef {Object} ComposerAttachment an `ir.attachment` of the draft
 * @property {number} id
 * @property {string} name
 * @property {number} size bytes
 * @property {string} mimetype
 */

/** The draft's attachments: name, size, and a button to remove each. */
export class ComposerAttachments extends Component {
    static props = {
        attachments: { type: Array, element: Object },
        onRemove: { type: Function },
    };
    static template = "maildesk_mail_client.ComposerAttachments";

    size(attachment) {
        return formatSize(attachment.size);
    }

    get total() {
        return formatSize(this.props.attachments.reduce((sum, a) => sum + (a.size || 0), 0));
    }
}
