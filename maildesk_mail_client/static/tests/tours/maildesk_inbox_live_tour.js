import { registry } from "@web/core/registry";

import { clickWith, delay, loopback, row, rows, waitUntil } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

/** The row drawn at `top` px in the list (rows are absolutely positioned). */
function rowAt(top) {
    return rows().find((el) => Math.abs(parseFloat(el.style.top) - top) < 1);
}

function subjectOf(el) {
    return el?.querySelector(".o_maildesk_row_subject").textContent.trim();
}

let height = 0;
let scrolledTo = 0;

registry.category("web_tour.tours").add("maildesk_inbox_live", {
    steps: () => [
        {
            content: "40 messages; select two, scroll down by 20 rows",
            trigger: ".o_maildesk_row:contains(Earlier message 39)",
            async run() {
                height = rows()[0].offsetHeight;
                clickWith(row("Earlier message 38"), { ctrlKey: true });
                clickWith(row("Earlier message 37"), { ctrlKey: true });
                await waitUntil(() => document.querySelectorAll(".o_maildesk_selected").length === 2, "2 selected");
                const list = document.querySelector(".o_maildesk_list");
                list.scrollTop = 20 * height;
                list.dispatchEvent(new Event("scroll"));
                await waitUntil(() => subjectOf(rowAt(20 * height)) === "Earlier message 19", "row 20 on screen");
                await delay(100);
                scrolledTo = list.scrollTop;
            },
        },
        {
            content: "Dovecot receives a message; the test runs the sync cron, which notifies the bus",
            trigger: ".o_maildesk_selection_count:contains(2 selected)",
            timeout: 30000,
            async run() {
                await loopback("/__deliver");
            },
        },
        {
            content: "The list grows by one row without a reload; the screen stays on the same rows",
            trigger: ".o_maildesk_list_spacer",
            timeout: 30000,
            async run() {
                const spacer = document.querySelector(".o_maildesk_list_spacer");
                await waitUntil(() => spacer.offsetHeight === 41 * height, "the new row", 20000);
                const list = document.querySelector(".o_maildesk_list");
                await waitUntil(() => Math.abs(list.scrollTop - (scrolledTo + height)) < 2,
                    `the list to keep its place (scrollTop ${scrolledTo} + ${height}, is ${list.scrollTop})`);
                const top = rowAt(Math.round(list.scrollTop / height) * height);
                if (subjectOf(top) !== "Earlier message 19") {
                    throw new Error(`the row at the top of the screen moved: now ${subjectOf(top)}`);
                }
                list.scrollTop = 0;
                list.dispatchEvent(new Event("scroll"));
            },
        },
        {
            content: "The new message is on top, and the selection stayed",
            trigger: ".o_maildesk_row:contains(Live message from Dovecot)",
            async run() {
                if (subjectOf(rows()[0]) !== "Live message from Dovecot") {
                    throw new Error("the new message should be the first row");
                }
                if (!row("Earlier message 38").classList.contains("o_maildesk_selected") ||
                    !row("Earlier message 37").classList.contains("o_maildesk_selected") ||
                    row("Live message from Dovecot").classList.contains("o_maildesk_selected")) {
                    throw new Error("the live refresh lost the selection");
                }
                const unread = document.querySelector(".o_maildesk_all_inboxes .o_maildesk_unread");
                if (unread?.textContent.trim() !== "41") {
                    throw new Error(`all inboxes should count 41 unread, not ${unread?.textContent}`);
                }
            },
        },
    ],
});
