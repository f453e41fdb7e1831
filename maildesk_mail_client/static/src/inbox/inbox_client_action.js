import {
    Component,
    onMounted,
    onWillStart,
    onWillUnmount,
    onWillUpdateProps,
    useExternalListener,
    useRef,
    useState,
} from "@odoo/owl";

import { router } from "@web/core/browser/router";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";

import { Composer } from "./composer/composer";
import { DraftsList } from "./composer/drafts_list";
import { OutboxStatus } from "./composer/outbox_status";
import { FolderTree } from "./folder_tree";
import { scopeFromKey, scopeKey } from "./inbox_store";
import { MessageList } from "./message_list";
import { ReadingPane } from "./reading_pane";
import { Toolbar } from "./toolbar";

/**
 * The inbox, as a client action (tag `maildesk.inbox`, menu MailDesk → Inbox): a shell, like
 * mail's DiscussClientAction. It restores the folder or account of the URL (`active_id`:
 * `folder_<id>`, `account_<id>`, `all_inboxes`, `everywhere`), lays out the three panes and
 * owns the keyboard:
 *
 * - ArrowDown / j, ArrowUp / k: next / previous message (with Shift: extend the selection);
 * - Enter: open the message; ArrowRight / ArrowLeft: show / hide a conversation's messages;
 * - Escape: close the composer (its draft is kept), else the message, then clear the selection;
 *   "/": search;
 * - c: a new message; r / a / f: reply / reply all / forward the open message (or, with none
 *   open, the active row of the list).
 */
export class InboxClientAction extends Component {
    static components = { Composer, DraftsList, FolderTree, MessageList, OutboxStatus, ReadingPane, Toolbar };
    static props = ["*"];
    static template = "maildesk_mail_client.InboxClientAction";

    setup() {
        this.store = useState(useService("maildesk.store"));
        this.root = useRef("root");
        onWillStart(async () => {
            await this.store.loadTree();
            await this.restoreScope(this.props);
            // The Drafts count of the tree; a server without the outbox still shows the inbox.
            this.store.loadDrafts().catch(() => {});
        });
        onWillUpdateProps((nextProps) => this.restoreScope(nextProps));
        onMounted(() => {
            this.store.active = true;
        });
        onWillUnmount(() => {
            this.store.active = false;
        });
        useExternalListener(window, "keydown", this.onKeydown);
    }

    activeId(props) {
        return props.action?.context?.active_id ?? props.action?.params?.active_id ?? null;
    }

    async restoreScope(props) {
        const key = this.activeId(props);
        if (key === "drafts") {
            await this.store.openDrafts();
            if (this.store.state.rows.length) {
                return;
            }
        }
        const scope = key ? scopeFromKey(String(key)) : this.store.state.scope;
        if (this.store.state.rows.length && scopeKey(scope) === scopeKey(this.store.state.scope)) {
            // Back to the inbox (breadcrumb, menu): the same place, with fresh rows.
            return this.store.refresh().catch(() => this.store.reload());
        }
        this.store.closeMessage();
        await this.store.openScope(scope);
    }

    async onSelectScope(scope) {
        router.pushState({ active_id: scopeKey(scope) });
        this.store.closeDrafts();
        this.store.closeMessage();
        await this.store.openScope(scope);
    }

    onOpenDrafts() {
        router.pushState({ active_id: "drafts" });
        return this.store.openDrafts();
    }

    /** r / a / f: the open message, or the active row when none is open. */
    composeOn(mode) {
        const store = this.store;
        const indexId = store.state.message?.id || (store.state.draftsOpen ? null : store.state.activeId);
        if (!indexId) {
            return false;
        }
        store.compose(mode, indexId);
        return true;
    }

    focusSearch() {
        const input = this.root.el?.querySelector(".o_maildesk_search_input");
        if (input) {
            input.focus();
            input.select();
        }
    }

    /** @param {KeyboardEvent} ev */
    onKeydown(ev) {
        if (!this.root.el || ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) {
            return;
        }
        if (document.querySelector(".modal")) {
            return; // a dialog has the keyboard
        }
        const target = ev.target;
        const typing =
            target instanceof HTMLElement &&
            (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
        if (typing) {
            if (ev.key === "Escape" && this.root.el.contains(target)) {
                target.blur();
                ev.preventDefault();
            }
            return;
        }
        const store = this.store;
        switch (ev.key) {
            case "ArrowDown":
            case "j":
            case "J":
                store.moveActive(1, { extend: ev.shiftKey });
                break;
            case "ArrowUp":
            case "k":
            case "K":
                store.moveActive(-1, { extend: ev.shiftKey });
                break;
            case "Enter":
                if (store.state.activeId) {
                    store.openMessage(store.state.activeId);
                } else {
                    return;
                }
                break;
            case "ArrowRight":
            case "ArrowLeft": {
                const item = store.items.find((i) => i.id === store.state.activeId);
                if (!item || item.depth || (item.row.thread_count || 1) < 2) {
                    return;
                }
                if (store.isExpanded(item.row) !== (ev.key === "ArrowRight")) {
                    store.toggleThread(item.row);
                }
                break;
            }
            case "c":
                store.compose("new");
                break;
            case "r":
            case "a":
            case "f":
                if (!this.composeOn({ r: "reply", a: "reply_all", f: "forward" }[ev.key])) {
                    return;
                }
                break;
            case "Escape":
                if (store.state.composer) {
                    store.closeComposer();
                } else if (store.state.message) {
                    store.closeMessage();
                } else if (Object.keys(store.state.selection).length) {
                    store.clearSelection();
                } else {
                    return;
                }
                break;
            case "/":
                this.focusSearch();
                break;
            default:
                return;
        }
        ev.preventDefault();
    }
}

registry.category("actions").add("maildesk.inbox", InboxClientAction);
