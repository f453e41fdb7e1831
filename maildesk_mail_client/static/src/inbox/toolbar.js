import { Component, useState } from "@odoo/owl";

import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";

import { SearchBar } from "./search_bar";

/**
 * Buttons on the selected messages. Basic is read-only and adds none; Pro (read, flag, move,
 * delete) adds its own without touching these files:
 *
 *     registry.category("maildesk.message_actions").add("flag", {
 *         sequence: 10,
 *         label: _t("Flag"),
 *         icon: "fa-star",
 *         isAvailable: (store, rows) => rows.length > 0,
 *         run: async (store, rows) => { ...; await store.refresh(); },
 *     });
 */
export const messageActionsRegistry = registry.category("maildesk.message_actions");

/** Search, what is selected, and the message actions. */
export class Toolbar extends Component {
    static components = { SearchBar };
    static props = {};
    static template = "maildesk_mail_client.Toolbar";

    setup() {
        this.store = useState(useService("maildesk.store"));
    }

    get selectedRows() {
        return this.store.selectedRows;
    }

    get actions() {
        const rows = this.selectedRows;
        return messageActionsRegistry
            .getEntries()
            .map(([id, action]) => ({ id, ...action }))
            .filter((action) => !action.isAvailable || action.isAvailable(this.store, rows))
            .sort((a, b) => (a.sequence ?? 50) - (b.sequence ?? 50));
    }

    runAction(action) {
        return action.run(this.store, this.selectedRows);
    }

    get canSearchAccount() {
        return Boolean(this.store.scopeAccountId());
    }

    onSearch(query, searchIn) {
        this.store.closeMessage();
        return this.store.search(query, searchIn);
    }
}
