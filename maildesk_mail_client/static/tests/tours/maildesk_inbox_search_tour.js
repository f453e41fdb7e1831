import { registry } from "@web/core/registry";

import { expectSubjects, search } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

/** One step per search: type it, then expect exactly these rows, newest first. */
function searchStep(query, expected, content) {
    return {
        content: content || `search ${query}`,
        trigger: ".o_maildesk_search_input",
        async run() {
            search(query);
            await expectSubjects(expected, `"${query}"`);
        },
    };
}

registry.category("web_tour.tours").add("maildesk_inbox_search", {
    steps: () => [
        {
            content: "All inboxes (Alice's and Support's, never Bob's)",
            trigger: ".o_maildesk_all_inboxes.active",
        },
        searchStep("quarterly", ["Quarterly report draft", "Quarterly report for support", "Quarterly report Q1"],
            "free words"),
        searchStep("quart", ["Quarterly report draft", "Quarterly report for support", "Quarterly report Q1"],
            "the last word is a prefix"),
        searchStep('from:carol subject:"quarterly report"', ["Quarterly report for support", "Quarterly report Q1"]),
        searchStep("from:carol has:attachment", ["Quarterly report Q1"]),
        searchStep("is:flagged", ["Quarterly report draft"]),
        searchStep("is:unread from:carol", ["Lunch on Friday"]),
        searchStep("to:alice", ["Quarterly report draft"]),
        searchStep("quarterly after:2024-02-01 before:2024-03-01", ["Quarterly report draft", "Quarterly report for support"]),
        searchStep("client.test pizza", ["Lunch on Friday"], "words over sender and snippet"),
        searchStep("nothing-matches-this", [], "no match"),
        {
            content: "Within a folder",
            trigger: ".o_maildesk_account:contains(Alice) .o_maildesk_folder[data-role=inbox]",
            run: "click",
        },
        {
            trigger: ".o_maildesk_account:contains(Alice) .o_maildesk_folder[data-role=inbox].active",
        },
        searchStep("quarterly", ["Quarterly report draft", "Quarterly report Q1"], "in this folder"),
        {
            content: "Everywhere",
            trigger: ".o_maildesk_search_in",
            async run() {
                const select = document.querySelector(".o_maildesk_search_in");
                select.value = "everywhere";
                select.dispatchEvent(new Event("change", { bubbles: true }));
                await expectSubjects(
                    ["Quarterly report draft", "Quarterly report for support", "Quarterly report Q1"],
                    "everywhere");
            },
        },
        {
            content: "Back to the folder's own search",
            trigger: ".o_maildesk_search_in",
            async run() {
                const select = document.querySelector(".o_maildesk_search_in");
                select.value = "account";
                select.dispatchEvent(new Event("change", { bubbles: true }));
                await expectSubjects(["Quarterly report draft", "Quarterly report Q1"], "this account");
            },
        },
        {
            content: "Clearing the search shows the folder again",
            trigger: ".o_maildesk_search_clear",
            run: "click",
        },
        {
            trigger: ".o_maildesk_search_input",
            async run() {
                await expectSubjects(["Lunch on Friday", "Quarterly report draft", "Quarterly report Q1"], "the folder");
            },
        },
    ],
});
