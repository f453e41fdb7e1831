import { registry } from "@web/core/registry";

import {
    askTest,
    chooseAccount,
    composer,
    draftSaved,
    keepLoopback,
    setSubject,
    typeRecipient,
} from "@maildesk_mail_client/../tests/tours/maildesk_composer_utils";
import { waitUntil } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

const SUBJECT = "Please do not send";

registry.category("web_tour.tours").add("maildesk_composer_undo", {
    steps: () => [
        {
            content: "New message, from the button",
            trigger: ".o_maildesk_inbox .o_maildesk_compose_new",
            run() {
                keepLoopback();
                document.querySelector(".o_maildesk_compose_new").click();
            },
        },
        {
            trigger: ".o_maildesk_composer[data-mode=new] .odoo-editor-editable",
            async run() {
                chooseAccount("alice@example.com");
                await typeRecipient("to", "undo@example.com");
                setSubject(SUBJECT);
            },
        },
        {
            trigger: ".o_maildesk_composer_editable > p:first-child",
            run: "editor On second thoughts…",
        },
        {
            trigger: ".o_maildesk_composer_editable:contains(On second thoughts)",
            async run() {
                await draftSaved();
                document.querySelector(".o_maildesk_composer_send").click();
            },
        },
        {
            content: "Sending…: Undo, within the undo window",
            trigger: `.o_maildesk_outbox_entry[data-state=queued]:contains(${SUBJECT}) .o_maildesk_outbox_undo`,
            run: "click",
        },
        {
            content: "Undone: the draft is back in the composer, as it was",
            trigger: `.o_maildesk_composer .o_maildesk_composer_editable:contains(On second thoughts)`,
            async run() {
                if (document.querySelector(".o_maildesk_composer_subject").value !== SUBJECT) {
                    throw new Error("the undone draft lost its subject");
                }
                if (document.querySelector(`.o_maildesk_outbox_entry`)) {
                    throw new Error("an undone message should leave the outbox strip");
                }
                // The sender runs: nothing of this message may leave.
                await askTest("/__send");
                document.querySelector(".o_maildesk_composer_close").click();
                await waitUntil(() => !composer(), "the composer to close");
                document.querySelector(".o_maildesk_drafts_entry").click();
            },
        },
        {
            content: "It waits in the Drafts view, as a draft",
            trigger: `.o_maildesk_draft[data-state=draft]:contains(${SUBJECT})`,
        },
    ],
});
