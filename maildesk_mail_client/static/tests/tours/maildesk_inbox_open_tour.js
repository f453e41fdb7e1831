import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

import {
    clickWith,
    expectSubjects,
    press,
    row,
    rows,
    waitUntil,
} from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

const ALL_INBOXES = [
    "Welcome to MailDesk",
    "Customer question",
    "Re: Budget 2024",
    "Flagged news",
];

function selectedCount() {
    return document.querySelectorAll(".o_maildesk_row.o_maildesk_selected").length;
}

registry.category("web_tour.tours").add("maildesk_inbox_open", {
    steps: () => [
        ...stepUtils.goToAppSteps("maildesk_mail_client.menu_maildesk_root", "Open MailDesk"),
        {
            content: "MailDesk opens on the inbox, all inboxes",
            trigger: ".o_maildesk_inbox .o_maildesk_all_inboxes.active",
        },
        {
            content: "Newest first, one row per conversation, only mailboxes Alice may read",
            trigger: ".o_maildesk_row",
            async run() {
                await expectSubjects(ALL_INBOXES, "all inboxes");
                const budget = row("Re: Budget 2024");
                if (budget.querySelector(".o_maildesk_thread_count")?.textContent.trim() !== "3") {
                    throw new Error("the Budget conversation should count 3 messages");
                }
                const flagged = row("Flagged news");
                if (!flagged.querySelector(".o_maildesk_mark_flagged") ||
                    !flagged.querySelector(".o_maildesk_mark_attachment")) {
                    throw new Error("flagged / attachment marks missing");
                }
                if (!row("Welcome to MailDesk").classList.contains("o_maildesk_unread_row") ||
                    flagged.classList.contains("o_maildesk_unread_row")) {
                    throw new Error("unread marks are wrong");
                }
                if (document.body.textContent.includes("Bob's secret")) {
                    throw new Error("Bob's mailbox leaked into Alice's inbox");
                }
            },
        },
        {
            content: "Unread counts: 3 in Alice's INBOX, 1 in Support's, 4 in all inboxes",
            trigger: ".o_maildesk_all_inboxes .o_maildesk_unread:contains(4)",
            run() {
                const counts = [...document.querySelectorAll(".o_maildesk_account")].map((account) => [
                    account.querySelector(".o_maildesk_account_name").textContent.trim(),
                    [...account.querySelectorAll(".o_maildesk_folder")].map((folder) => [
                        folder.querySelector(".o_maildesk_folder_name").textContent.trim(),
                        folder.querySelector(".o_maildesk_unread")?.textContent.trim() || "0",
                    ]),
                ]);
                const expected = [
                    ["Alice", [["INBOX", "3"], ["Archive", "0"]]],
                    ["Support", [["INBOX", "1"]]],
                ];
                if (JSON.stringify(counts) !== JSON.stringify(expected)) {
                    throw new Error(`folder tree: ${JSON.stringify(counts)}`);
                }
            },
        },
        {
            content: "The shared account needs a reconnect: its state and last error show",
            trigger: ".o_maildesk_account:contains(Support) .o_maildesk_sync_reconnect_needed",
        },
        {
            trigger: ".o_maildesk_account:contains(Support) .o_maildesk_account_error:contains(Connection refused by imap.support.test)",
        },
        {
            content: "Show the conversation's messages",
            trigger: ".o_maildesk_row:contains(Re: Budget 2024) .o_maildesk_thread_toggle",
            run: "click",
        },
        {
            trigger: ".o_maildesk_child_row",
            async run() {
                // Under the conversation's row (its newest message), its other messages, newest first.
                await waitUntil(() => document.querySelectorAll(".o_maildesk_child_row").length === 2,
                    "the 2 other messages of the conversation");
                const children = rows().filter((el) => el.classList.contains("o_maildesk_child_row"));
                const lines = children.map((el) => [
                    el.querySelector(".o_maildesk_row_sender").textContent.trim(),
                    el.querySelector(".o_maildesk_row_subject").textContent.trim(),
                ]);
                const expected = [["Frank", "Re: Budget 2024"], ["Erin", "Budget 2024"]];
                if (JSON.stringify(lines) !== JSON.stringify(expected)) {
                    throw new Error(`conversation: ${JSON.stringify(lines)}`);
                }
                if (!rows()[3].classList.contains("o_maildesk_child_row") ||
                    !rows()[4].classList.contains("o_maildesk_child_row")) {
                    throw new Error("the messages should come right under their conversation");
                }
            },
        },
        {
            content: "And hide them",
            trigger: ".o_maildesk_row:contains(Re: Budget 2024) .o_maildesk_thread_toggle[aria-expanded=true]",
            run: "click",
        },
        {
            trigger: ".o_maildesk_list:not(:has(.o_maildesk_child_row))",
        },
        {
            content: "Keyboard: j / k / arrows move through the list",
            trigger: ".o_maildesk_row",
            async run() {
                document.activeElement?.blur();
                press("j");
                await waitUntil(() => rows()[0].classList.contains("o_maildesk_active"), "j selects the first row");
                press("j");
                press("ArrowDown");
                await waitUntil(() => rows()[2].classList.contains("o_maildesk_active"), "j, ArrowDown: third row");
                press("k");
                await waitUntil(() => rows()[1].classList.contains("o_maildesk_active"), "k: second row");
                press("ArrowDown", { shiftKey: true });
                await waitUntil(() => selectedCount() === 2, "Shift+ArrowDown extends the selection");
            },
        },
        {
            content: "Multi-select: Ctrl-click adds, Shift-click selects a range",
            trigger: ".o_maildesk_selection_count:contains(2 selected)",
            async run() {
                clickWith(rows()[0], { ctrlKey: true });
                await waitUntil(() => selectedCount() === 3, "Ctrl-click adds a row");
                clickWith(rows()[1], { ctrlKey: true });
                await waitUntil(() => selectedCount() === 2, "Ctrl-click on a selected row removes it");
                clickWith(rows()[3], { shiftKey: true });
                // From the anchor (the last Ctrl-clicked row, the second) to the fourth.
                await waitUntil(() => selectedCount() === 3, "Shift-click selects the range");
                if (!["1", "2", "3"].every((i) => rows()[i].classList.contains("o_maildesk_selected"))) {
                    throw new Error("the range should be rows 2 to 4");
                }
            },
        },
        {
            trigger: ".o_maildesk_selection_count:contains(3 selected)",
            run() {
                press("Escape");
            },
        },
        {
            content: "Escape clears the selection",
            trigger: ".o_maildesk_inbox:not(:has(.o_maildesk_selected))",
            run() {
                press("/");
            },
        },
        {
            content: "/ focuses the search box, Escape leaves it",
            trigger: ".o_maildesk_search_input",
            async run() {
                const input = document.querySelector(".o_maildesk_search_input");
                await waitUntil(() => document.activeElement === input, "the search box to have the focus");
                press("Escape");
                await waitUntil(() => document.activeElement !== input, "Escape to leave the search box");
            },
        },
        {
            content: "A folder",
            trigger: ".o_maildesk_folder[data-role=archive]",
            run: "click",
        },
        {
            trigger: ".o_maildesk_folder[data-role=archive].active",
            async run() {
                await expectSubjects(["Old archived thing"], "Archive");
            },
        },
        {
            content: "An account",
            trigger: ".o_maildesk_account_name:contains(Support)",
            run: "click",
        },
        {
            trigger: ".o_maildesk_account_name.active:contains(Support)",
            async run() {
                await expectSubjects(["Customer question"], "Support");
            },
        },
    ],
});
