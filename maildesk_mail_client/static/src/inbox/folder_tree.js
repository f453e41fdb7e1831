import { Component, useState } from "@odoo/owl";

import { _t } from "@web/core/l10n/translation";
import { useService } from "@web/core/utils/hooks";

import { scopeKey } from "./inbox_store";

/**
 * @typedef {Object} InboxFolder
 * @property {number} id
 * @property {string} name
 * @property {string} path
 * @property {string} role
 * @property {number} depth
 * @property {number} unread
 * @property {number} total
 *
 * @typedef {Object} InboxAccount
 * @property {number} id
 * @property {string} name
 * @property {string} email
 * @property {string} provider
 * @property {string} sync_status
 * @property {string|false} last_error
 * @property {InboxFolder[]} folders
 */

const ROLE_ICONS = {
    inbox: "fa-inbox",
    sent: "fa-paper-plane-o",
    drafts: "fa-pencil-square-o",
    archive: "fa-archive",
    trash: "fa-trash-o",
    junk: "fa-ban",
    spam: "fa-ban",
    all: "fa-envelope-o",
    flagged: "fa-star-o",
};

export const SYNC_STATUS = {
    bootstrap: { label: _t("Loading"), icon: "fa-refresh", tone: "info" },
    ok: { label: _t("Up to date"), icon: "fa-check", tone: "success" },
    backoff: { label: _t("Retrying later"), icon: "fa-clock-o", tone: "warning" },
    reconnect_needed: { label: _t("Reconnect needed"), icon: "fa-exclamation-triangle", tone: "danger" },
    paused: { label: _t("Paused"), icon: "fa-pause", tone: "muted" },
};

/** One account of the tree: its sync state, last error, and folders with unread counts. */
export class FolderTreeAccount extends Component {
    static props = {
        account: { type: Object },
        activeKey: { type: String },
        onSelectScope: { type: Function },
    };
    static template = "maildesk_mail_client.FolderTreeAccount";

    setup() {
        this.state = useState({ folded: false });
    }

    get status() {
        return SYNC_STATUS[this.props.account.sync_status] || {
            label: this.props.account.sync_status || "",
            icon: "fa-question",
            tone: "muted",
        };
    }

    folderIcon(folder) {
        return ROLE_ICONS[folder.role] || "fa-folder-o";
    }

    folderKey(folder) {
        return scopeKey({ folder_id: folder.id });
    }

    get accountKey() {
        return scopeKey({ account_id: this.props.account.id });
    }
}

/**
 * Every account the user may read, with its folders; on top, "New message", "All inboxes"
 * and "Drafts" (the user's drafts and the messages on their way out).
 */
export class FolderTree extends Component {
    static components = { FolderTreeAccount };
    static props = {
        onSelectScope: { type: Function },
        onOpenDrafts: { type: Function, optional: true },
    };
    static template = "maildesk_mail_client.FolderTree";

    setup() {
        this.store = useState(useService("maildesk.store"));
    }

    get activeKey() {
        return this.store.state.draftsOpen ? "drafts" : scopeKey(this.store.state.scope);
    }

    /** Drafts to finish, and messages that failed: what the Drafts entry counts. */
    get draftsCount() {
        return this.store.state.drafts.filter((row) => row.state === "draft" || row.state === "failed").length;
    }

    get failedCount() {
        return this.store.state.drafts.filter((row) => row.state === "failed").length;
    }

    openDrafts() {
        return this.props.onOpenDrafts ? this.props.onOpenDrafts() : this.store.openDrafts();
    }

    selectAllInboxes() {
        this.props.onSelectScope({ all_inboxes: true });
    }
}
