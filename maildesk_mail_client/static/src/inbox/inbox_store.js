import { reactive } from "@odoo/owl";

import { _t } from "@web/core/l10n/translation";
import { rpc } from "@web/core/network/rpc";
import { registry } from "@web/core/registry";

/**
 * The inbox's one store (`maildesk.store`): the folder tree, the list in keyset pages,
 * the open conversations, the selection and the open message. Components read it through
 * `useState(useService("maildesk.store"))` and call its methods; none calls the server.
 *
 * Server side (see /tmp contract, ARCHITECTURE.md "Inbox"):
 * - `mailbox.account.maildesk_inbox_tree()`: accounts, folders, unread counts, sync state;
 * - `maildesk.message_index.maildesk_page(scope, query, cursor, limit, threads)`: one page,
 *   newest first, with the keyset cursor of the next one;
 * - `maildesk.message_index.maildesk_thread(index_id)`: a conversation, oldest first;
 * - `POST /maildesk/message/<id>` (json): a message, its body made safe on the server.
 * - `maildesk.outbox`: `maildesk_compose`, `maildesk_open_draft`, `maildesk_save_draft` (autosave),
 *   `maildesk_drafts`, `maildesk_send`, `maildesk_undo_send`, `maildesk_outbox_status`,
 *   `maildesk_retry`, `maildesk_discard`, `maildesk_recipients`: the composer and the outbox.
 *
 * The bus notification `maildesk/index_changed` (one per sync run, on the reader's partner
 * channel) reloads the tree and the rows already loaded, keeping the selection. The tree's
 * counts are then taken again for the payload's `folder_ids` only
 * (`maildesk_inbox_tree(folder_ids)`); the first load and a manual refresh count every folder.
 */

export const PAGE_SIZE = 50;
/** A live refresh reloads at most this many rows (the rest keep their last state). */
export const REFRESH_MAX_ROWS = 1000;

/** A draft is saved this long after the last change (and when the page closes). */
export const AUTOSAVE_DELAY = 1500;
/** How often the state of messages on their way out is asked for. */
const OUTBOX_POLL_DELAY = 1000;
/** A sent message stays in the outbox strip this long. */
const SENT_SHOWN_FOR = 8000;
const PENDING_STATES = ["queued", "sending"];

function errorMessage(error, fallback) {
    return error?.data?.message || error?.message || fallback;
}

/** Scopes: what the list shows. */
export const ALL_INBOXES = Object.freeze({ all_inboxes: true });

export function scopeKey(scope) {
    if (scope.folder_id) {
        return `folder_${scope.folder_id}`;
    }
    if (scope.account_id) {
        return `account_${scope.account_id}`;
    }
    return scope.everywhere ? "everywhere" : "all_inboxes";
}

export function scopeFromKey(key) {
    const match = /^(folder|account)_(\d+)$/.exec(key || "");
    if (match) {
        return { [`${match[1]}_id`]: parseInt(match[2]) };
    }
    return key === "everywhere" ? { everywhere: true } : { ...ALL_INBOXES };
}

export class InboxStore {
    constructor(env, { orm, bus_service, notification }) {
        this.env = env;
        this.orm = orm;
        this.notification = notification;
        this.state = reactive({
            tree: { accounts: [], all_inboxes_unread: 0 },
            treeLoaded: false,
            scope: { ...ALL_INBOXES },
            /** "scope" (the folder / account / all inboxes chosen in the tree), "account", "everywhere" */
            searchIn: "scope",
            query: "",
            rows: [],
            nextCursor: null,
            loading: false,
            loadingMore: false,
            listError: "",
            /** thread key → {loading, rows} for the conversations shown message by message */
            threads: {},
            /** ids of the selected list items; `activeId` has the keyboard focus */
            selection: {},
            activeId: null,
            anchorId: null,
            message: null,
            /** bumped by each new list (scope, search), and by each live refresh of the same list */
            listVersion: 0,
            refreshCount: 0,
            /** The message being written (a draft of `maildesk.outbox`), or null. */
            composer: null,
            /** The Drafts view of the tree: the user's drafts and what is on its way out. */
            draftsOpen: false,
            drafts: [],
            draftsLoaded: false,
            /** Messages sent from this page, until they are sent (or the user dismisses them). */
            outbox: [],
        });
        this._pageToken = 0;
        this._loadingMore = null;
        this._messageToken = 0;
        this._refreshing = null;
        this._refreshAgain = false;
        /** folders whose counts the next refresh takes again; null: all of them */
        this._changedFolders = null;
        this._saveTimer = null;
        this._saving = null;
        this._pollTimer = null;
        /** Set by the open composer: the editor's HTML, read when the draft is saved. */
        this.composerBody = null;
        bus_service.subscribe("maildesk/index_changed", (payload) => this.onIndexChanged(payload));
        bus_service.start();
    }

    // ------------------------------------------------------------------
    // Folder tree
    // ------------------------------------------------------------------

    async loadTree() {
        const tree = await this.orm.call("mailbox.account", "maildesk_inbox_tree", []);
        this.state.tree = tree;
        this.state.treeLoaded = true;
        return tree;
    }

    get accounts() {
        return this.state.tree.accounts || [];
    }

    folder(folderId) {
        for (const account of this.accounts) {
            const folder = (account.folders || []).find((f) => f.id === folderId);
            if (folder) {
                return { account, folder };
            }
        }
        return null;
    }

    account(accountId) {
        return this.accounts.find((a) => a.id === accountId) || null;
    }

    /** The account a scope belongs to, if any (for "search in this account"). */
    scopeAccountId(scope = this.state.scope) {
        if (scope.account_id) {
            return scope.account_id;
        }
        if (scope.folder_id) {
            return this.folder(scope.folder_id)?.account.id || null;
        }
        return null;
    }

    scopeLabel(scope = this.state.scope) {
        if (scope.folder_id) {
            const found = this.folder(scope.folder_id);
            return found ? `${found.account.name} / ${found.folder.name}` : _t("Folder");
        }
        if (scope.account_id) {
            return this.account(scope.account_id)?.name || _t("Account");
        }
        return scope.everywhere ? _t("Everywhere") : _t("All inboxes");
    }

    // ------------------------------------------------------------------
    // The list: keyset pages
    // ------------------------------------------------------------------

    /** The scope the server is asked for: the tree's, widened by "search in" when searching. */
    get effectiveScope() {
        const { scope, searchIn, query } = this.state;
        if (!query.trim() || searchIn === "scope") {
            return scope;
        }
        if (searchIn === "account") {
            const accountId = this.scopeAccountId(scope);
            return accountId ? { account_id: accountId } : scope;
        }
        return { everywhere: true };
    }

    get threaded() {
        return true;
    }

    async openScope(scope) {
        this.state.scope = { ...scope };
        this.state.query = "";
        this.clearSelection();
        return this.reload();
    }

    async search(query, searchIn = this.state.searchIn) {
        this.state.query = query;
        this.state.searchIn = searchIn;
        this.clearSelection();
        return this.reload();
    }

    async _page(cursor, limit) {
        return this.orm.call("maildesk.message_index", "maildesk_page", [this.effectiveScope], {
            query: this.state.query.trim(),
            cursor: cursor || null,
            limit,
            threads: this.threaded,
        });
    }

    /** The first page of the current scope and query, from scratch. */
    async reload() {
        const token = ++this._pageToken;
        this.state.listVersion++;
        this.state.loading = true;
        this.state.listError = "";
        try {
            const page = await this._page(null, PAGE_SIZE);
            if (token !== this._pageToken) {
                return;
            }
            this.state.rows = page.rows;
            this.state.nextCursor = page.next_cursor || null;
            this.state.threads = {};
        } catch (error) {
            if (token === this._pageToken) {
                this.state.rows = [];
                this.state.nextCursor = null;
                this.state.listError = error.data?.message || error.message || String(error);
            }
        } finally {
            if (token === this._pageToken) {
                this.state.loading = false;
            }
        }
    }

    /**
     * The next keyset page, appended: every message of the scope is reachable. Resolves to
     * true when rows were added; while a page is on its way, returns that same promise.
     */
    loadMore() {
        if (this._loadingMore) {
            return this._loadingMore;
        }
        if (!this.state.nextCursor || this.state.loading) {
            return Promise.resolve(false);
        }
        this._loadingMore = this._loadMore().finally(() => {
            this._loadingMore = null;
        });
        return this._loadingMore;
    }

    async _loadMore() {
        const token = this._pageToken;
        this.state.loadingMore = true;
        try {
            const page = await this._page(this.state.nextCursor, PAGE_SIZE);
            if (token !== this._pageToken) {
                return false;
            }
            const known = new Set(this.state.rows.map((row) => row.id));
            this.state.rows.push(...page.rows.filter((row) => !known.has(row.id)));
            this.state.nextCursor = page.next_cursor || null;
            return true;
        } finally {
            if (token === this._pageToken) {
                this.state.loadingMore = false;
            }
        }
    }

    /**
     * Reload the rows already loaded (as many as there were, in keyset pages), the open
     * conversations and the tree, keeping the selection and the open message. The list
     * component keeps its scroll position on the row at its top.
     */
    async refresh(folderIds = null) {
        this._noteChangedFolders(folderIds);
        if (this._refreshing) {
            this._refreshAgain = true;
            return this._refreshing;
        }
        const changed = this._takeChangedFolders();
        this._refreshing = this._refresh(changed).finally(() => {
            this._refreshing = null;
            if (this._refreshAgain) {
                this._refreshAgain = false;
                this.refresh(this._takeChangedFolders() || undefined);
            }
        });
        return this._refreshing;
    }

    /** Folders to count again: `null` (every folder) wins over any list. */
    _noteChangedFolders(folderIds) {
        if (folderIds === undefined) {
            return;
        }
        if (!Array.isArray(folderIds)) {
            this._changedFolders = "all";
        } else if (this._changedFolders !== "all") {
            this._changedFolders = [...new Set([...(this._changedFolders || []), ...folderIds])];
        }
    }

    _takeChangedFolders() {
        const changed = this._changedFolders;
        this._changedFolders = null;
        return changed === "all" ? null : changed;
    }

    /** The tree, its counts taken again for `folderIds` only (all when null). */
    async _fetchTree(folderIds) {
        if (!folderIds) {
            return this.orm.call("mailbox.account", "maildesk_inbox_tree", []);
        }
        const tree = await this.orm.call("mailbox.account", "maildesk_inbox_tree", [], {
            folder_ids: folderIds,
        });
        const known = new Map();
        for (const account of this.state.tree.accounts || []) {
            for (const folder of account.folders) {
                known.set(folder.id, folder);
            }
        }
        let allInboxesUnread = 0;
        for (const account of tree.accounts) {
            for (const folder of account.folders) {
                if (folder.unread === null || folder.unread === undefined) {
                    const old = known.get(folder.id);
                    folder.unread = old ? old.unread : 0;
                    folder.total = old ? old.total : 0;
                }
                if (folder.role === "inbox") {
                    allInboxesUnread += folder.unread;
                }
            }
        }
        tree.all_inboxes_unread = allInboxesUnread;
        tree.partial = false;
        return tree;
    }

    async _refresh(folderIds = null) {
        const token = this._pageToken;
        const wanted = Math.min(Math.max(this.state.rows.length, PAGE_SIZE), REFRESH_MAX_ROWS);
        const rows = [];
        let cursor = null;
        let nextCursor = null;
        do {
            const page = await this._page(cursor, Math.min(wanted - rows.length, 200));
            if (token !== this._pageToken) {
                return;
            }
            rows.push(...page.rows);
            nextCursor = cursor = page.next_cursor || null;
        } while (cursor && rows.length < wanted);
        const [tree] = await Promise.all([this._fetchTree(folderIds), this._refreshThreads()]);
        if (token !== this._pageToken) {
            return;
        }
        const seen = new Set(rows.map((row) => row.id));
        if (rows.length >= wanted && this.state.rows.length > wanted) {
            // Beyond what a refresh reloads: keep the old rows, after the fresh ones.
            const tail = this.state.rows.slice(wanted).filter((row) => !seen.has(row.id));
            rows.push(...tail);
            nextCursor = this.state.nextCursor;
        }
        this.state.tree = tree;
        this.state.rows = rows;
        this.state.nextCursor = nextCursor;
        this.state.refreshCount++;
    }

    async _refreshThreads() {
        const keys = Object.keys(this.state.threads);
        await Promise.all(
            keys.map(async (key) => {
                const thread = this.state.threads[key];
                const messages = await this._thread(thread.rootId);
                if (this.state.threads[key]) {
                    this.state.threads[key].rows = messages;
                }
            })
        );
    }

    onIndexChanged(payload) {
        if (!this.active) {
            return;
        }
        const folderIds = payload && Array.isArray(payload.folder_ids) ? payload.folder_ids : null;
        this.refresh(folderIds).catch(() => {
            // A failed live refresh is not worth a dialog: the next notification retries.
        });
    }

    /** Set by the client action while it is mounted. */
    active = false;

    // ------------------------------------------------------------------
    // Conversations
    // ------------------------------------------------------------------

    /** A conversation's messages, as the list counted them (same scope, same search). */
    _thread(indexId) {
        return this.orm.call("maildesk.message_index", "maildesk_thread", [indexId], {
            scope: this.effectiveScope,
            query: this.state.query.trim(),
        });
    }

    threadKeyOf(row) {
        return `${row.account_id}:${row.thread_key || `id${row.id}`}`;
    }

    isExpanded(row) {
        return Boolean(this.state.threads[this.threadKeyOf(row)]);
    }

    async toggleThread(row) {
        const key = this.threadKeyOf(row);
        if (this.state.threads[key]) {
            delete this.state.threads[key];
            return;
        }
        this.state.threads[key] = { rootId: row.id, loading: true, rows: [] };
        const messages = await this._thread(row.id);
        if (this.state.threads[key]) {
            this.state.threads[key].rows = messages;
            this.state.threads[key].loading = false;
        }
    }

    /**
     * What the list shows, in order: each row, and under an expanded conversation its other
     * messages one by one, newest first like the list (the row itself is the newest). Each
     * item has a unique `id` (the index row's id).
     */
    get items() {
        const items = [];
        const seen = new Set();
        for (const row of this.state.rows) {
            if (seen.has(row.id)) {
                continue;
            }
            seen.add(row.id);
            const thread = this.state.threads[this.threadKeyOf(row)];
            items.push({ id: row.id, row, depth: 0, thread });
            if (thread) {
                for (const message of [...thread.rows].reverse()) {
                    if (!seen.has(message.id)) {
                        seen.add(message.id);
                        items.push({ id: message.id, row: message, depth: 1, parentId: row.id });
                    }
                }
            }
        }
        return items;
    }

    // ------------------------------------------------------------------
    // Selection (click, ctrl/cmd-click, shift-click, keyboard)
    // ------------------------------------------------------------------

    clearSelection() {
        this.state.selection = {};
        this.state.anchorId = null;
    }

    get selectedIds() {
        const wanted = this.state.selection;
        return this.items.filter((item) => wanted[item.id]).map((item) => item.id);
    }

    get selectedRows() {
        const wanted = this.state.selection;
        return this.items.filter((item) => wanted[item.id]).map((item) => item.row);
    }

    /**
     * @param {number} id an item's id
     * @param {{toggle?: boolean, range?: boolean}} how ctrl/cmd toggles, shift selects a range
     */
    select(id, { toggle = false, range = false } = {}) {
        const items = this.items;
        if (range && this.state.anchorId !== null) {
            const from = items.findIndex((item) => item.id === this.state.anchorId);
            const to = items.findIndex((item) => item.id === id);
            if (from !== -1 && to !== -1) {
                const selection = toggle ? { ...this.state.selection } : {};
                const [start, end] = from < to ? [from, to] : [to, from];
                for (const item of items.slice(start, end + 1)) {
                    selection[item.id] = true;
                }
                this.state.selection = selection;
                this.state.activeId = id;
                return;
            }
        }
        if (toggle) {
            if (this.state.selection[id]) {
                delete this.state.selection[id];
            } else {
                this.state.selection[id] = true;
            }
        } else {
            this.state.selection = { [id]: true };
        }
        this.state.anchorId = id;
        this.state.activeId = id;
    }

    /** Keyboard: move the active item by `delta`, selecting it (or extending with shift). */
    moveActive(delta, { extend = false } = {}) {
        const items = this.items;
        if (!items.length) {
            return null;
        }
        let index = items.findIndex((item) => item.id === this.state.activeId);
        index = index === -1 ? (delta > 0 ? 0 : items.length - 1) : index + delta;
        index = Math.max(0, Math.min(items.length - 1, index));
        const id = items[index].id;
        if (extend) {
            this.select(id, { range: true });
        } else {
            this.select(id);
        }
        if (index >= items.length - 5) {
            this.loadMore();
        }
        return id;
    }

    // ------------------------------------------------------------------
    // The open message
    // ------------------------------------------------------------------

    /**
     * Open a message in the reading pane (never marks it read on the server).
     *
     * @param {number} id the index row
     * @param {{remote?: boolean, partId?: string|null}} options `remote` lets its remote content
     *   through, this once; `partId` opens a message attached to it (message/rfc822)
     */
    async openMessage(id, { remote = false, partId = null } = {}) {
        const token = ++this._messageToken;
        const base = { id, partId, remote, loading: true, data: null, error: "" };
        this.state.message = base;
        try {
            const params = { remote };
            if (partId) {
                params.part_id = partId;
            }
            const data = await rpc(`/maildesk/message/${id}`, params);
            if (token === this._messageToken) {
                this.state.message = { ...base, loading: false, data };
            }
        } catch (error) {
            if (token === this._messageToken) {
                this.state.message = {
                    ...base,
                    loading: false,
                    error: error.data?.message || error.message || _t("This message could not be opened."),
                };
            }
        }
    }

    closeMessage() {
        this._messageToken++;
        this.state.message = null;
    }

    /** "Show once": this message, this time, with its remote content. */
    async showRemoteOnce() {
        const message = this.state.message;
        if (message) {
            await this.openMessage(message.id, { remote: true, partId: message.partId });
        }
    }

    /** "Always trust <sender>": stored per user on the server, then the message again. */
    async trustSender() {
        const message = this.state.message;
        if (!message) {
            return;
        }
        const { email } = await rpc("/maildesk/trust_sender", { index_id: message.id });
        this.notification.add(_t("Remote content from %s will be shown.", email), { type: "success" });
        await this.openMessage(message.id, { partId: message.partId });
    }

    // ------------------------------------------------------------------
    // Composer, drafts and the outbox (`maildesk.outbox`)
    // ------------------------------------------------------------------

    /**
     * Start a message: "new", or "reply" / "reply_all" / "forward" of an index row. The server
     * prepares the draft (recipients, subject, quoted original, forwarded attachments, the
     * signature) and stores it at once; from then on it is autosaved.
     */
    async compose(mode = "new", indexId = false) {
        if (!(await this.closeComposer())) {
            return;
        }
        const accountId = mode === "new" ? this.scopeAccountId() || false : false;
        const draft = await this.orm.call("maildesk.outbox", "maildesk_compose", [mode], {
            index_id: indexId || false,
            account_id: accountId,
        });
        this._openComposer(draft, { fresh: true });
    }

    /** Reopen a draft (or a failed message, to edit and send it again). */
    async openDraft(outboxId) {
        if (this.state.composer?.id === outboxId) {
            return;
        }
        if (!(await this.closeComposer())) {
            return;
        }
        const draft = await this.orm.call("maildesk.outbox", "maildesk_open_draft", [outboxId]);
        this._openComposer(draft, { fresh: false });
    }

    _openComposer(draft, { fresh }) {
        this.composerBody = null;
        this.state.composer = {
            ...draft,
            mode: draft.compose_mode || "new",
            /** a draft made by this compose and never touched is dropped when closed */
            fresh,
            edited: false,
            dirty: false,
            saving: false,
            savedAt: draft.write_date || null,
            saveError: "",
            sending: false,
            sendError: "",
        };
    }

    /** Change the draft's fields; it is saved AUTOSAVE_DELAY ms after the last change. */
    updateComposer(values) {
        const composer = this.state.composer;
        if (composer) {
            Object.assign(composer, values);
            this.touchComposer();
        }
    }

    /** Something changed (the editor calls this on each change of the body). */
    touchComposer() {
        const composer = this.state.composer;
        if (!composer) {
            return;
        }
        composer.edited = true;
        composer.dirty = true;
        clearTimeout(this._saveTimer);
        this._saveTimer = setTimeout(() => this.saveDraft(), AUTOSAVE_DELAY);
    }

    _draftValues(composer) {
        if (this.composerBody) {
            composer.body_html = this.composerBody();
        }
        return {
            account_id: composer.account_id,
            subject: composer.subject,
            body_html: composer.body_html,
            email_to: composer.email_to,
            email_cc: composer.email_cc,
            email_bcc: composer.email_bcc,
            attachment_ids: composer.attachments.map((attachment) => attachment.id),
        };
    }

    /**
     * Save the open draft if it changed. One save at a time, in order: a change made while a
     * save is on its way is saved after it. Resolves to false when the server refused it.
     */
    async saveDraft() {
        clearTimeout(this._saveTimer);
        this._saveTimer = null;
        while (this._saving) {
            await this._saving;
        }
        const composer = this.state.composer;
        if (!composer || !composer.dirty) {
            return !composer?.saveError;
        }
        const values = this._draftValues(composer);
        composer.dirty = false;
        composer.saving = true;
        this._saving = this.orm.silent
            .call("maildesk.outbox", "maildesk_save_draft", [composer.id, values])
            .then(
                (result) => {
                    composer.savedAt = result.write_date;
                    composer.saveError = "";
                    if (composer.state === "failed") {
                        composer.state = "draft"; // edited, it is a draft again (server side too)
                    }
                    return true;
                },
                (error) => {
                    composer.dirty = true;
                    composer.saveError = errorMessage(error, _t("The draft could not be saved."));
                    return false;
                }
            )
            .finally(() => {
                composer.saving = false;
                this._saving = null;
            });
        return this._saving;
    }

    /**
     * The page is closing (tab closed, reload, navigation): the last changes go out in a
     * request the browser finishes after the page is gone (`fetch` with `keepalive`, the
     * successor of `navigator.sendBeacon`, which cannot send JSON to a json route). Browsers
     * cap such requests at 64 KiB; a bigger draft keeps what the last autosave stored.
     */
    saveOnPageHide() {
        const composer = this.state.composer;
        if (!composer || !composer.dirty) {
            return false;
        }
        clearTimeout(this._saveTimer);
        const body = JSON.stringify({
            jsonrpc: "2.0",
            method: "call",
            id: Date.now(),
            params: {
                model: "maildesk.outbox",
                method: "maildesk_save_draft",
                args: [composer.id, this._draftValues(composer)],
                kwargs: {},
            },
        });
        composer.dirty = false;
        try {
            fetch("/web/dataset/call_kw/maildesk.outbox/maildesk_save_draft", {
                method: "POST",
                headers: { "Content-Type": "application/json" },
                body,
                keepalive: true,
                credentials: "same-origin",
            }).catch(() => {});
        } catch {
            // Over the keepalive quota: the last autosave is what is kept.
            composer.dirty = true;
            return false;
        }
        return true;
    }

    /**
     * Close the composer, saving the draft first. A draft opened by a compose and never
     * touched is discarded. Resolves to false (and keeps it open) if it could not be saved.
     */
    async closeComposer() {
        const composer = this.state.composer;
        if (!composer) {
            return true;
        }
        if (composer.fresh && !composer.edited) {
            clearTimeout(this._saveTimer);
            this.state.composer = null;
            this.composerBody = null;
            await this.orm.silent.call("maildesk.outbox", "maildesk_discard", [composer.id]).catch(() => {});
            this.loadDrafts().catch(() => {});
            return true;
        }
        if (!(await this.saveDraft())) {
            this.notification.add(composer.saveError, { type: "danger" });
            return false;
        }
        if (this.state.composer?.id === composer.id) {
            this.state.composer = null;
            this.composerBody = null;
        }
        this.loadDrafts().catch(() => {});
        return true;
    }

    /** Discard a draft or a failed message (the open one, or one of the Drafts view). */
    async discard(outboxId) {
        if (this.state.composer?.id === outboxId) {
            clearTimeout(this._saveTimer);
            this.state.composer = null;
            this.composerBody = null;
        }
        await this.orm.call("maildesk.outbox", "maildesk_discard", [outboxId]);
        this.state.outbox = this.state.outbox.filter((entry) => entry.id !== outboxId);
        this.state.drafts = this.state.drafts.filter((draft) => draft.id !== outboxId);
    }

    /**
     * Send: the draft is saved, then the server builds the final message into the outbox
     * (queued until the undo window ends). The composer closes; the message shows as
     * "Sending…" with Undo, then sent, or failed with the reason, Retry and Discard.
     */
    async send() {
        const composer = this.state.composer;
        if (!composer || composer.sending) {
            return false;
        }
        composer.sending = true;
        composer.sendError = "";
        try {
            if (!(await this.saveDraft())) {
                composer.sendError = composer.saveError;
                return false;
            }
            const result = await this.orm.silent.call("maildesk.outbox", "maildesk_send", [composer.id]);
            if (this.state.composer?.id === composer.id) {
                this.state.composer = null;
                this.composerBody = null;
            }
            this._track({ id: composer.id, subject: composer.subject, ...result, last_error: "" });
            this.loadDrafts().catch(() => {});
            return true;
        } catch (error) {
            composer.sendError = errorMessage(error, _t("The message could not be sent."));
            return false;
        } finally {
            composer.sending = false;
        }
    }

    /** Back to a draft, if the sender has not taken it yet; the draft opens again. */
    async undoSend(outboxId) {
        const undone = await this.orm.call("maildesk.outbox", "maildesk_undo_send", [outboxId]);
        if (!undone) {
            this.notification.add(_t("Too late to undo: the message is already on its way."), {
                type: "warning",
            });
            this._schedulePoll(0);
            return false;
        }
        this.state.outbox = this.state.outbox.filter((entry) => entry.id !== outboxId);
        await this.openDraft(outboxId);
        this.loadDrafts().catch(() => {});
        return true;
    }

    /** A failed message: queue it again, as it is. */
    async retry(outboxId) {
        await this.orm.call("maildesk.outbox", "maildesk_retry", [outboxId]);
        const draft = this.state.drafts.find((row) => row.id === outboxId);
        const entry = this.state.outbox.find((row) => row.id === outboxId);
        this._track({ id: outboxId, subject: (entry || draft)?.subject || "", state: "queued", last_error: "" });
        this.loadDrafts().catch(() => {});
    }

    dismissOutbox(outboxId) {
        this.state.outbox = this.state.outbox.filter((entry) => entry.id !== outboxId);
    }

    _track(entry) {
        const known = this.state.outbox.find((row) => row.id === entry.id);
        if (known) {
            Object.assign(known, entry);
        } else {
            this.state.outbox.unshift({ failure_kind: false, ...entry });
        }
        this._schedulePoll();
    }

    /** Follow the messages on their way out until each is sent or failed. */
    _schedulePoll(delay = OUTBOX_POLL_DELAY) {
        clearTimeout(this._pollTimer);
        this._pollTimer = setTimeout(() => this._poll(), delay);
    }

    async _poll() {
        this._pollTimer = null;
        const pending = this.state.outbox.filter((entry) => PENDING_STATES.includes(entry.state));
        if (!pending.length) {
            return;
        }
        let changed = false;
        try {
            const statuses = await this.orm.silent.call("maildesk.outbox", "maildesk_outbox_status", [
                pending.map((entry) => entry.id),
            ]);
            const byId = new Map(statuses.map((status) => [status.id, status]));
            for (const entry of pending) {
                const status = byId.get(entry.id);
                if (!status) {
                    this.dismissOutbox(entry.id); // discarded elsewhere
                    changed = true;
                } else if (status.state !== entry.state) {
                    Object.assign(entry, status);
                    changed = true;
                    if (status.state === "sent") {
                        setTimeout(() => this.dismissOutbox(entry.id), SENT_SHOWN_FOR);
                    }
                }
            }
        } catch {
            // A failed poll is retried by the next one.
        }
        if (changed) {
            this.loadDrafts().catch(() => {});
        }
        if (this.state.outbox.some((entry) => PENDING_STATES.includes(entry.state))) {
            this._schedulePoll();
        }
    }

    /** The Drafts view: the user's drafts, failed messages, and those on their way out. */
    async loadDrafts() {
        const drafts = await this.orm.silent.call("maildesk.outbox", "maildesk_drafts", []);
        this.state.drafts = drafts;
        this.state.draftsLoaded = true;
        return drafts;
    }

    openDrafts() {
        this.state.draftsOpen = true;
        return this.loadDrafts();
    }

    closeDrafts() {
        this.state.draftsOpen = false;
    }

    /** The user's signature for an account (the composer swaps it when the account changes). */
    async signature(accountId) {
        const { body_html } = await this.orm.silent.call("maildesk.signature", "maildesk_get_signature", [accountId]);
        return body_html || "";
    }

    /** Autocomplete of To / Cc / Bcc: contacts and recent correspondents. */
    recipients(term, limit = 8) {
        return this.orm.silent.call("maildesk.outbox", "maildesk_recipients", [term], { limit });
    }
}

export const inboxStoreService = {
    dependencies: ["orm", "bus_service", "notification"],
    start(env, services) {
        return new InboxStore(env, services);
    },
};

registry.category("services").add("maildesk.store", inboxStoreService);
