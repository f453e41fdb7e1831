import { registry } from "@web/core/registry";

import { checkFrameIsolation, messageFrame } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

registry.category("web_tour.tours").add("maildesk_inbox_read_html", {
    steps: () => [
        {
            content: "Open the message",
            trigger: ".o_maildesk_row:contains(Report with a logo)",
            run: "click",
        },
        {
            content: "Headers as Odoo users expect them",
            trigger: ".o_maildesk_message_subject:contains(Report with a logo)",
            run() {
                const text = (selector) => document.querySelector(selector)?.textContent || "";
                if (!text(".o_maildesk_message_from").includes("carol@client.test")) {
                    throw new Error("From is missing");
                }
                if (!text(".o_maildesk_message_to").includes("alice@example.com")) {
                    throw new Error("To is missing");
                }
                if (!text(".o_maildesk_message_cc").includes("team@example.com")) {
                    throw new Error("Cc is missing");
                }
                if (!text(".o_maildesk_message_date").trim()) {
                    throw new Error("Date is missing");
                }
            },
        },
        {
            content: "The HTML body, sandboxed, with its cid: image inline",
            trigger: "iframe.o_maildesk_message_body",
            async run() {
                const frame = await messageFrame("Hello Alice");
                const doc = checkFrameIsolation(frame);
                const logo = doc.querySelector("img#logo, img[alt=logo]");
                if (!logo || !logo.getAttribute("src").startsWith("data:image/png;base64,")) {
                    throw new Error(`the cid: image should be inline, got ${logo?.getAttribute("src")}`);
                }
                const link = doc.querySelector("a[href='https://example.com/report']");
                if (!link || link.target !== "_blank" || !/noopener/.test(link.rel) || !/noreferrer/.test(link.rel)) {
                    throw new Error(`links open in a new tab, noopener, no referrer: ${link?.outerHTML}`);
                }
            },
        },
        {
            content: "The attachment, with its name and size",
            trigger: ".o_maildesk_attachment:contains(report.pdf)",
            async run() {
                const pdf = [...document.querySelectorAll(".o_maildesk_attachment")].find((a) =>
                    a.textContent.includes("report.pdf"));
                if (!pdf.querySelector(".o_maildesk_attachment_size").textContent.trim()) {
                    throw new Error("the attachment's size is missing");
                }
                if (!pdf.hasAttribute("download")) {
                    throw new Error("the attachment link should download");
                }
                // Download it, as the link does (same URL, same session).
                const response = await fetch(pdf.getAttribute("href"), { credentials: "same-origin" });
                if (!response.ok) {
                    throw new Error(`download failed: ${response.status}`);
                }
                const disposition = response.headers.get("Content-Disposition") || "";
                if (!/attachment/i.test(disposition) || !disposition.includes("report.pdf")) {
                    throw new Error(`Content-Disposition: ${disposition}`);
                }
                const body = await response.text();
                if (!body.startsWith("%PDF-1.4") || !body.includes("MailDesk test attachment")) {
                    throw new Error("the downloaded file is not the attachment");
                }
            },
        },
        {
            content: "A message attached to the message opens in the pane",
            trigger: ".o_maildesk_attachments li:contains(The forwarded one) .o_maildesk_open_attached, .o_maildesk_attachments li:has(.fa-envelope-o) .o_maildesk_open_attached",
            run: "click",
        },
        {
            trigger: ".o_maildesk_message_subject:contains(The forwarded one)",
            async run() {
                const frame = await messageFrame("Forwarded body");
                checkFrameIsolation(frame);
                if (!document.querySelector(".o_maildesk_message_from").textContent.includes("dave@vendor.test")) {
                    throw new Error("the attached message's own headers should show");
                }
            },
        },
        {
            trigger: ".o_maildesk_back_to_message",
            run: "click",
        },
        {
            trigger: ".o_maildesk_message_subject:contains(Report with a logo)",
        },
        {
            content: "Escape closes the message",
            trigger: ".o_maildesk_message_body",
            run() {
                document.activeElement?.blur();
                document.body.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
            },
        },
        {
            trigger: ".o_maildesk_reading_empty",
        },
    ],
});
