import { registry } from "@web/core/registry";

import {
    chips,
    composer,
    keepLoopback,
    sendNowAndWait,
} from "@maildesk_mail_client/../tests/tours/maildesk_composer_utils";
import { press, row, waitUntil } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

const ORIGINAL = "Budget question";

registry.category("web_tour.tours").add("maildesk_composer_reply", {
    steps: () => [
        {
            content: "Open the message",
            trigger: `.o_maildesk_row:contains(${ORIGINAL})`,
            run() {
                keepLoopback();
                row(ORIGINAL).click();
            },
        },
        {
            content: "a: reply all, from the keyboard",
            trigger: `.o_maildesk_message_subject:contains(${ORIGINAL})`,
            run() {
                document.activeElement?.blur();
                press("a");
            },
        },
        {
            content: "Reply all: the sender in To, the other recipients in Cc, never Alice herself",
            trigger: ".o_maildesk_composer[data-mode=reply_all] .odoo-editor-editable",
            async run() {
                await waitUntil(() => chips("to").length && chips("cc").length, "the reply-all recipients");
                if (JSON.stringify(chips("to")) !== '["carol@client.test"]' ||
                    JSON.stringify(chips("cc")) !== '["team@example.com"]') {
                    throw new Error(`reply all: to ${chips("to")}, cc ${chips("cc")}`);
                }
                // Closed untouched: nothing is kept.
                document.querySelector(".o_maildesk_composer_close").click();
                await waitUntil(() => !composer(), "the composer to close");
            },
        },
        {
            content: "The reading pane's Reply",
            trigger: ".o_maildesk_reading_actions .o_maildesk_reply",
            run: "click",
        },
        {
            content: "Reply: Re: subject, the sender, the original quoted, the signature",
            trigger: ".o_maildesk_composer[data-mode=reply] .odoo-editor-editable blockquote",
            run() {
                if (document.querySelector(".o_maildesk_composer_subject").value !== `Re: ${ORIGINAL}`) {
                    throw new Error(`subject: ${document.querySelector(".o_maildesk_composer_subject").value}`);
                }
                if (JSON.stringify(chips("to")) !== '["carol@client.test"]' || chips("cc").length) {
                    throw new Error(`reply: to ${chips("to")}, cc ${chips("cc")}`);
                }
                const editable = document.querySelector(".o_maildesk_composer_editable");
                const quote = editable.querySelector(".maildesk_quote");
                if (!quote || !/wrote:/.test(quote.textContent) ||
                    !quote.querySelector("blockquote").textContent.includes("How much can we spend")) {
                    throw new Error("the original is not quoted");
                }
                if (!editable.querySelector(".maildesk_signature")?.textContent.includes("Alice, via Dovecot")) {
                    throw new Error("the signature is missing");
                }
            },
        },
        {
            content: "Type the answer above the quote",
            trigger: ".o_maildesk_composer_editable > p:first-child",
            run: "editor We can spend 500 euros.",
        },
        {
            trigger: ".o_maildesk_composer_editable:contains(We can spend 500 euros.)",
            run() {
                document.querySelector(".o_maildesk_composer_send").click();
            },
        },
        {
            content: "Sending…, then sent",
            trigger: `.o_maildesk_outbox_entry:contains(Re: ${ORIGINAL})`,
            timeout: 45000,
            async run() {
                await sendNowAndWait(`Re: ${ORIGINAL}`, "sent");
            },
        },
    ],
});
