import { registry } from "@web/core/registry";

import {
    attachFiles,
    attachmentNames,
    draftSaved,
    keepLoopback,
    sendNowAndWait,
    typeRecipient,
} from "@maildesk_mail_client/../tests/tours/maildesk_composer_utils";
import { press, row, waitUntil } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

const ORIGINAL = "Quarterly report";

registry.category("web_tour.tours").add("maildesk_composer_forward", {
    steps: () => [
        {
            content: "Open the message with its attachment",
            trigger: `.o_maildesk_row:contains(${ORIGINAL})`,
            run() {
                keepLoopback();
                row(ORIGINAL).click();
            },
        },
        {
            content: "f: forward",
            trigger: ".o_maildesk_attachment:contains(report.pdf)",
            run() {
                document.activeElement?.blur();
                press("f");
            },
        },
        {
            content: "Forward: Fwd: subject, no recipient, the original's attachment with its size",
            trigger: ".o_maildesk_composer[data-mode=forward] .o_maildesk_composer_attachment:contains(report.pdf)",
            async run() {
                if (document.querySelector(".o_maildesk_composer_subject").value !== `Fwd: ${ORIGINAL}`) {
                    throw new Error("the subject should be Fwd: " + ORIGINAL);
                }
                const size = document.querySelector(".o_maildesk_composer_attachment_size").textContent.trim();
                if (!/\d/.test(size)) {
                    throw new Error(`the attachment's size is not shown: "${size}"`);
                }
                if (!document.querySelector(".o_maildesk_composer_editable .maildesk_forward")?.textContent
                    .includes("Forwarded message")) {
                    throw new Error("the forwarded message is not in the body");
                }
                await typeRecipient("to", "dave@vendor.test");
            },
        },
        {
            content: "Attach two more files, and remove one",
            trigger: ".o_maildesk_composer .o_maildesk_composer_attach",
            async run() {
                attachFiles([
                    ["notes.txt", "Notes for Dave\n", "text/plain"],
                    ["extra.txt", "Not for Dave\n", "text/plain"],
                ]);
                await waitUntil(() => attachmentNames().length === 3, "the uploaded files in the list", 15000);
                const extra = [...document.querySelectorAll(".o_maildesk_composer_attachment")].find((el) =>
                    el.textContent.includes("extra.txt")
                );
                extra.querySelector(".o_maildesk_composer_attachment_remove").click();
                await waitUntil(
                    () => JSON.stringify(attachmentNames()) === '["report.pdf","notes.txt"]',
                    "report.pdf and notes.txt, without extra.txt"
                );
                await draftSaved();
            },
        },
        {
            trigger: ".o_maildesk_composer_send",
            run: "click",
        },
        {
            content: "Sending…, then sent",
            trigger: `.o_maildesk_outbox_entry:contains(Fwd: ${ORIGINAL})`,
            timeout: 45000,
            async run() {
                await sendNowAndWait(`Fwd: ${ORIGINAL}`, "sent");
            },
        },
    ],
});
