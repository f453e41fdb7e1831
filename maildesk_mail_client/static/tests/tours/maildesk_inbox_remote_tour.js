import { registry } from "@web/core/registry";

import { delay, loopback, messageFrame } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

async function waitForRequests(paths, after) {
    const response = await loopback(`/__wait?paths=${paths.join(",")}&after=${after}`);
    // no-cors: the status is opaque; the test checks the server's log afterwards.
    return response;
}

registry.category("web_tour.tours").add("maildesk_inbox_remote", {
    steps: () => [
        {
            trigger: ".o_maildesk_row:contains(Tracking pixel)",
            run: "click",
        },
        {
            content: "Remote content is blocked, and the banner says so",
            trigger: ".o_maildesk_remote_banner:contains(Remote content blocked)",
            async run() {
                const frame = await messageFrame("Newsletter");
                if (frame.dataset.remote !== "blocked") {
                    throw new Error("remote content must be blocked by default");
                }
                // Long enough for a leaked request to reach the loopback server.
                await delay(1500);
                await loopback("/__mark/show-once");
            },
        },
        {
            content: "Show once",
            trigger: ".o_maildesk_remote_banner .o_maildesk_show_remote",
            run: "click",
        },
        {
            trigger: "iframe.o_maildesk_message_body[data-remote=allowed]",
            async run() {
                await waitForRequests(["/pixel.gif", "/css-background.gif", "/srcset.gif"], "show-once");
                await delay(500);
                await loopback("/__mark/reopen");
            },
        },
        {
            content: "Shown once only: opened again, it is blocked again",
            trigger: ".o_maildesk_close_message",
            run: "click",
        },
        {
            trigger: ".o_maildesk_row:contains(Tracking pixel)",
            run: "click",
        },
        {
            trigger: ".o_maildesk_remote_banner .o_maildesk_trust_sender:contains(carol@client.test)",
            async run() {
                await delay(1000);
                await loopback("/__mark/trust");
            },
        },
        {
            content: "Always trust the sender",
            trigger: ".o_maildesk_remote_banner .o_maildesk_trust_sender",
            run: "click",
        },
        {
            trigger: "iframe.o_maildesk_message_body[data-remote=allowed]",
            async run() {
                if (document.querySelector(".o_maildesk_remote_banner")) {
                    throw new Error("a trusted sender's message shows no banner");
                }
                await waitForRequests(["/pixel.gif"], "trust");
            },
        },
    ],
});
