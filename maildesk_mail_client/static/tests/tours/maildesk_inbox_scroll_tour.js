import { registry } from "@web/core/registry";

import { delay, listIsIdle, row, rows, waitUntil } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

const TOTAL = 2000;

registry.category("web_tour.tours").add("maildesk_inbox_scroll_oldest", {
    steps: () => [
        {
            content: "Open the 2,000-message folder",
            trigger: ".o_maildesk_folder:contains(Big)",
            run: "click",
        },
        {
            trigger: ".o_maildesk_row:contains(Bulk message 2000)",
            run() {
                if (rows()[0].querySelector(".o_maildesk_row_subject").textContent.trim() !== "Bulk message 2000") {
                    throw new Error("the newest message should come first");
                }
                const rendered = rows().length;
                if (rendered > 120) {
                    throw new Error(`virtual scrolling should render only the rows on screen, not ${rendered}`);
                }
            },
        },
        {
            content: "Scroll down to the end: each page loads as the end comes near",
            trigger: ".o_maildesk_list",
            // 40 pages, each a round trip: a minute, the most a tour step may take in Odoo 18.
            timeout: 60000,
            async run() {
                const list = document.querySelector(".o_maildesk_list");
                const started = Date.now();
                while (!document.querySelector(".o_maildesk_list_end")) {
                    if (Date.now() - started > 55000) {
                        throw new Error("the end of the folder was not reached in 55 seconds");
                    }
                    list.scrollTop = list.scrollHeight;
                    list.dispatchEvent(new Event("scroll"));
                    await delay(30);
                    await waitUntil(listIsIdle, "the next page", 15000);
                }
                list.scrollTop = list.scrollHeight;
                list.dispatchEvent(new Event("scroll"));
                await waitUntil(() => row("Bulk message 0001"), "the oldest message on screen");
                const spacer = document.querySelector(".o_maildesk_list_spacer");
                const expected = TOTAL * rows()[0].offsetHeight;
                if (spacer.offsetHeight !== expected) {
                    throw new Error(`the list should hold ${TOTAL} rows (${expected}px), it is ${spacer.offsetHeight}px`);
                }
                if (rows().length > 120) {
                    throw new Error(`${rows().length} rows in the DOM: virtual scrolling is not virtual`);
                }
            },
        },
        {
            content: "The oldest message is the last line, and it opens with Enter",
            trigger: ".o_maildesk_row:contains(Bulk message 0001)",
            async run() {
                const all = rows();
                const last = all[all.length - 1];
                if (last.querySelector(".o_maildesk_row_subject").textContent.trim() !== "Bulk message 0001") {
                    throw new Error("the oldest message should be the last row");
                }
            },
        },
    ],
});
