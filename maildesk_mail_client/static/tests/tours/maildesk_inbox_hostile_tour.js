import { registry } from "@web/core/registry";

import {
    checkFrameIsolation,
    delay,
    loopback,
    messageFrame,
    row,
    waitUntil,
} from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

const HOSTILE = [
    ["Hostile 01_script_tags", "Script tags"],
    ["Hostile 02_event_handlers", "Event handlers"],
    ["Hostile 03_javascript_urls", "javascript: and data: URLs"],
    ["Hostile 04_svg", "SVG and MathML"],
    ["Hostile 05_meta_refresh", "Meta refresh, links, base"],
    ["Hostile 06_css", "CSS expressions and remote CSS"],
    ["Hostile 07_form", "A form"],
];

const FORBIDDEN_TAGS =
    "script, svg, math, form, input, button, select, textarea, iframe, frame, object, embed, link, " +
    "base[href], meta:not([http-equiv='Content-Security-Policy']):not([name=referrer]):not([charset]), " +
    "noscript, template, video, audio, source, marquee, isindex";
const URL_ATTRIBUTES = ["href", "src", "srcset", "action", "formaction", "background", "style", "xlink:href"];

/** What the server made of the message, read inertly (DOMParser runs nothing, loads nothing). */
function checkSanitized(doc, loopbackUrl) {
    const body = doc.body;
    const bad = body.querySelector(FORBIDDEN_TAGS) || doc.head.querySelector(FORBIDDEN_TAGS);
    if (bad) {
        throw new Error(`a forbidden element survived: ${bad.outerHTML.slice(0, 200)}`);
    }
    for (const el of doc.querySelectorAll("*")) {
        for (const attr of el.attributes) {
            const value = attr.value.replace(/[\s\u0000-\u001f]/g, "").toLowerCase();
            if (attr.name.startsWith("on")) {
                throw new Error(`an event handler survived: ${el.outerHTML.slice(0, 200)}`);
            }
            if (URL_ATTRIBUTES.includes(attr.name) &&
                (/(java|vb)script:|data:text\/html|expression\(|behavior:|-moz-binding/.test(value) ||
                 value.includes(loopbackUrl))) {
                throw new Error(`a dangerous or remote URL survived: ${el.outerHTML.slice(0, 200)}`);
            }
        }
    }
    for (const style of body.querySelectorAll("style")) {
        const css = style.textContent.toLowerCase();
        if (/@import|expression\(|javascript:|behavior:|-moz-binding/.test(css) || css.includes(loopbackUrl)) {
            throw new Error(`a dangerous stylesheet survived: ${css.slice(0, 200)}`);
        }
    }
}

registry.category("web_tour.tours").add("maildesk_inbox_hostile", {
    steps: () => [
        {
            content: "Open every hostile message in turn",
            trigger: ".o_maildesk_row:contains(Hostile 01_script_tags)",
            async run() {
                const calls = [];
                for (const name of ["alert", "confirm", "prompt", "print"]) {
                    window[name] = (...args) => {
                        calls.push([name, ...args]);
                    };
                }
                const loopbackUrl = window.maildeskTest.loopback.toLowerCase();
                for (const [subject, text] of HOSTILE) {
                    const line = await waitUntil(() => row(subject), subject);
                    line.click();
                    const frame = await messageFrame(text);
                    const doc = checkFrameIsolation(frame);
                    checkSanitized(doc, loopbackUrl);
                    if (frame.dataset.remote !== "blocked") {
                        throw new Error("remote content must be blocked by default");
                    }
                    await delay(700); // time for anything that would run, or load, to do so
                }
                if (calls.length) {
                    throw new Error(`the page called ${JSON.stringify(calls)}`);
                }
                await loopback("/__mark/end");
            },
        },
    ],
});
