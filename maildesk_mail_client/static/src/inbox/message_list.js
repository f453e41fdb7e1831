import { Component, onMounted, onWillUnmount, useEffect, useRef, useState } from "@odoo/owl";

import { useService } from "@web/core/utils/hooks";

import { MessageRow } from "./message_row";

/** Every line of the list has this height: what virtual scrolling needs. */
export const ROW_HEIGHT = 60;
/** Lines rendered above and below what is on screen. */
const OVERSCAN = 10;
/** Ask for the next keyset page when the screen gets this close to the last loaded line. */
const LOAD_AHEAD = 30;

/**
 * The message list: virtual scrolling (only the lines on screen are in the DOM) over the
 * rows loaded by keyset pages; reaching the end loads the next page, so every message of
 * the folder is reachable by scrolling.
 *
 * A live refresh keeps the line at the top of the screen where it was (unless the list is
 * scrolled to the very top, where new mail shows up).
 */
export class MessageList extends Component {
    static components = { MessageRow };
    static props = {};
    static template = "maildesk_mail_client.MessageList";

    setup() {
        this.store = useState(useService("maildesk.store"));
        this.scroller = useRef("scroller");
        this.view = useState({ scrollTop: 0, height: 800 });
        this.rowHeight = ROW_HEIGHT;
        /** The line at the top of the screen: {id, offset} */
        this.anchor = null;
        this.frame = null;
        this.loadPending = false;

        onMounted(() => {
            this.resizeObserver = new ResizeObserver(() => this.measure());
            this.resizeObserver.observe(this.scroller.el);
            this.measure();
        });
        onWillUnmount(() => {
            this.resizeObserver?.disconnect();
            cancelAnimationFrame(this.frame);
        });
        // A new scope or search: back to the top.
        useEffect(
            () => {
                if (this.scroller.el) {
                    this.scroller.el.scrollTop = 0;
                    this.view.scrollTop = 0;
                    this.anchor = null;
                }
            },
            () => [this.store.state.listVersion]
        );
        // A live refresh: the line at the top of the screen stays there.
        useEffect(
            () => this.keepAnchor(),
            () => [this.store.state.refreshCount]
        );
        // The keyboard moved: keep the active line on screen.
        useEffect(
            (activeId) => this.scrollToItem(activeId),
            () => [this.store.state.activeId]
        );
    }

    measure() {
        if (this.scroller.el) {
            this.view.height = this.scroller.el.clientHeight || this.view.height;
            this.view.scrollTop = this.scroller.el.scrollTop;
            this.maybeLoadMore();
        }
    }

    get items() {
        return this.store.items;
    }

    /** The items to render and where they go. */
    get visibleRows() {
        const items = this.items;
        const height = this.rowHeight;
        const start = Math.max(0, Math.floor(this.view.scrollTop / height) - OVERSCAN);
        const end = Math.min(items.length, Math.ceil((this.view.scrollTop + this.view.height) / height) + OVERSCAN);
        return {
            total: items.length * height,
            rows: items.slice(start, end).map((item, i) => ({ item, top: (start + i) * height })),
        };
    }

    onScroll() {
        if (this.frame) {
            return;
        }
        this.frame = requestAnimationFrame(() => {
            this.frame = null;
            const el = this.scroller.el;
            if (!el) {
                return;
            }
            this.view.scrollTop = el.scrollTop;
            const items = this.items;
            const index = Math.floor(el.scrollTop / this.rowHeight);
            this.anchor =
                el.scrollTop > 0 && items[index]
                    ? { id: items[index].id, offset: el.scrollTop - index * this.rowHeight }
                    : null;
            this.maybeLoadMore();
        });
    }

    maybeLoadMore() {
        const lastOnScreen = Math.ceil((this.view.scrollTop + this.view.height) / this.rowHeight);
        if (this.loadPending || lastOnScreen + LOAD_AHEAD < this.items.length || !this.store.state.nextCursor) {
            return;
        }
        this.loadPending = true;
        this.store.loadMore().then(
            (loaded) => {
                this.loadPending = false;
                // Still near the end (a tall screen, a page of rows already shown): the next one.
                if (loaded && this.scroller.el) {
                    this.maybeLoadMore();
                }
            },
            () => {
                this.loadPending = false;
            }
        );
    }

    keepAnchor() {
        const el = this.scroller.el;
        if (!el || !this.anchor) {
            return;
        }
        const index = this.items.findIndex((item) => item.id === this.anchor.id);
        if (index !== -1) {
            const top = index * this.rowHeight + this.anchor.offset;
            if (Math.abs(top - el.scrollTop) >= 1) {
                el.scrollTop = top;
                this.view.scrollTop = el.scrollTop;
            }
        }
    }

    scrollToItem(id) {
        const el = this.scroller.el;
        if (!el || !id) {
            return;
        }
        const index = this.items.findIndex((item) => item.id === id);
        if (index === -1) {
            return;
        }
        const top = index * this.rowHeight;
        if (top < el.scrollTop) {
            el.scrollTop = top;
        } else if (top + this.rowHeight > el.scrollTop + el.clientHeight) {
            el.scrollTop = top + this.rowHeight - el.clientHeight;
        }
        this.view.scrollTop = el.scrollTop;
    }

    isOpen(item) {
        return this.store.state.message?.id === item.id;
    }

    /** Click opens; Ctrl / Cmd adds to the selection; Shift selects a range. */
    onRowClick(item, ev) {
        const toggle = ev.ctrlKey || ev.metaKey;
        const range = ev.shiftKey;
        this.store.select(item.id, { toggle, range });
        if (!toggle && !range) {
            this.store.openMessage(item.id);
        }
    }

    onToggleThread(item) {
        this.store.toggleThread(item.row);
    }
}
