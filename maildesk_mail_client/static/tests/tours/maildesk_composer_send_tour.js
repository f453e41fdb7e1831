import { registry } from "@web/core/registry";

import {
    askTest,
    chips,
    chooseAccount,
    composer,
    draftSaved,
    keepLoopback,
    pickRecipient,
    sendNowAndWait,
    setSubject,
} from "@maildesk_mail_client/../tests/tours/maildesk_composer_utils";
import { press, waitUntil } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

const SUBJECT = "Hello from the composer";
const BODY = "Hello Zoe, this is the composer speaking.";

/** A draft listed in the Drafts view with this subject (the list is asked for again until then). */
async function draftInList(subject) {
    return waitUntil(() => {
        const row = [...document.querySelectorAll(".o_maildesk_draft")].find((el) =>
            el.querySelector(".o_maildesk_draft_subject").textContent.includes(subject)
        );
        if (!row) {
            document.querySelector(".o_maildesk_drafts_refresh")?.click();
        }
        return row;
    }, `the draft "${subject}" in the Drafts view`);
}

registry.category("web_tour.tours").add("maildesk_composer_send", {
    steps: () => [
        {
            content: "c starts a new message",
            trigger: ".o_maildesk_inbox .o_maildesk_row",
            run() {
                keepLoopback();
                document.activeElement?.blur();
                press("c");
            },
        },
        {
            content: "From: the accounts Alice may send from, with their identity",
            trigger: ".o_maildesk_composer[data-mode=new] .odoo-editor-editable",
            async run() {
                const options = [...document.querySelectorAll(".o_maildesk_composer_account option")].map((o) =>
                    o.textContent.trim()
                );
                if (!options.includes("Dovecot <alice@example.com>") || options.some((o) => o.startsWith("Bob"))) {
                    throw new Error(`From offers ${JSON.stringify(options)}`);
                }
                chooseAccount("alice@example.com");
                // The account's signature (Alice's, for Dovecot) comes with it.
                await waitUntil(
                    () => document.querySelector(".o_maildesk_composer_editable .maildesk_signature")?.textContent
                        .includes("Alice, via Dovecot"),
                    "Alice's Dovecot signature in the body"
                );
                // To: a contact (res.partner); Cc: someone who wrote to Alice (the index).
                await pickRecipient("to", "Zoe", "zoe@client.test");
                document.querySelector(".o_maildesk_composer_show_cc").click();
                await waitUntil(() => document.querySelector(".o_maildesk_recipients_cc input"), "the Cc field");
                await pickRecipient("cc", "carol", "carol@client.test");
                setSubject("Composer draft");
            },
        },
        {
            content: "The body, in Odoo's HTML editor",
            trigger: ".o_maildesk_composer_editable > p:first-child",
            run: `editor ${BODY}`,
        },
        {
            content: "Autosaved while typing",
            trigger: ".o_maildesk_composer_editable:contains(Hello Zoe)",
            async run() {
                await draftSaved();
                // One more change, and the page closes before the autosave would run:
                // the save on pagehide must keep it.
                setSubject(SUBJECT);
                window.location.reload();
            },
        },
        {
            content: "After the reload, the Drafts view lists the draft as it was when the page closed",
            trigger: ".o_maildesk_drafts_entry",
            run: "click",
        },
        {
            trigger: ".o_maildesk_drafts_entry.active",
            async run() {
                const row = await draftInList(SUBJECT);
                row.querySelector(".o_maildesk_draft_editable").click();
            },
        },
        {
            content: "Reopened: recipients, subject and body are back",
            trigger: `.o_maildesk_composer .o_maildesk_composer_editable:contains(${BODY})`,
            run() {
                if (JSON.stringify(chips("to")) !== '["zoe@client.test"]' ||
                    JSON.stringify(chips("cc")) !== '["carol@client.test"]') {
                    throw new Error(`recipients: ${chips("to")} / ${chips("cc")}`);
                }
                if (document.querySelector(".o_maildesk_composer_subject").value !== SUBJECT) {
                    throw new Error("the subject typed before the page closed is lost");
                }
            },
        },
        {
            content: "Send",
            trigger: ".o_maildesk_composer_send",
            run: "click",
        },
        {
            content: "The composer closes; the message shows as Sending… with Undo",
            trigger: `.o_maildesk_outbox_entry[data-state=queued]:contains(${SUBJECT}) .o_maildesk_outbox_undo`,
            timeout: 45000,
            async run() {
                if (composer()) {
                    throw new Error("the composer should close on Send");
                }
                await sendNowAndWait(SUBJECT, "sent");
            },
        },
        {
            content: "Sent: the Drafts view no longer lists it",
            trigger: `.o_maildesk_outbox_entry[data-state=sent]:contains(${SUBJECT})`,
            async run() {
                document.querySelector(".o_maildesk_drafts_refresh").click();
                await waitUntil(
                    () => ![...document.querySelectorAll(".o_maildesk_draft")].some((el) => el.textContent.includes(SUBJECT)),
                    "the sent message to leave the Drafts view"
                );
                await askTest("/__mark/done");
            },
        },
    ],
});
