/**
 * Helpers of the inbox tours. The tours run in the page, as the user; the test that started
 * them put the address of its loopback HTTP server in `window.maildeskTest.loopback`.
 */

export function delay(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait until `predicate()` is truthy; fail with `what` after `timeout` ms. */
export async function waitUntil(predicate, what, timeout = 10000) {
    const end = Date.now() + timeout;
    let value;
    while (!(value = predicate())) {
        if (Date.now() > end) {
            throw new Error(`Timed out waiting for ${what}`);
        }
        await delay(50);
    }
    return value;
}

export function rows() {
    return [...document.querySelectorAll(".o_maildesk_list .o_maildesk_row")].sort(
        (a, b) => parseFloat(a.style.top) - parseFloat(b.style.top)
    );
}

export function row(subject) {
    return rows().find((el) => el.querySelector(".o_maildesk_row_subject")?.textContent.trim() === subject);
}

export function subjects() {
    return rows().map((el) => el.querySelector(".o_maildesk_row_subject").textContent.trim());
}

export function listIsIdle() {
    return !document.querySelector(".o_maildesk_list_loading, .o_maildesk_load_more:disabled");
}

/** Wait until the list shows exactly these subjects, in this order. */
export async function expectSubjects(expected, what = "the list") {
    const wanted = JSON.stringify(expected);
    try {
        await waitUntil(() => listIsIdle() && JSON.stringify(subjects()) === wanted, wanted, 10000);
    } catch {
        throw new Error(`${what}: expected ${wanted}, got ${JSON.stringify(subjects())}`);
    }
}

export function press(key, options = {}) {
    const target = document.activeElement || document.body;
    target.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true, ...options }));
}

export function clickWith(el, options = {}) {
    el.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true, view: window, ...options }));
}

/** Type a search and submit it. */
export function search(text) {
    const input = document.querySelector(".o_maildesk_search_input");
    input.value = text;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.form.requestSubmit();
}

export function loopback(path) {
    const base = window.maildeskTest?.loopback;
    if (!base) {
        throw new Error("window.maildeskTest.loopback is not set: run this tour from its HttpCase");
    }
    // An opaque request is enough: the test's server does its work before it answers.
    return fetch(base + path, { mode: "no-cors", cache: "no-store" });
}

/** The open message's iframe, once its srcdoc holds `text`. */
export async function messageFrame(text) {
    return waitUntil(() => {
        const frame = document.querySelector("iframe.o_maildesk_message_body");
        return frame && (frame.getAttribute("srcdoc") || "").includes(text) && frame;
    }, `the message body showing "${text}"`);
}

/** The reading pane's iframe must be sandboxed without scripts, with a CSP and no referrer. */
export function checkFrameIsolation(frame) {
    const sandbox = frame.getAttribute("sandbox");
    if (sandbox === null || /allow-scripts|allow-same-origin|allow-forms|allow-top-navigation/.test(sandbox)) {
        throw new Error(`unsafe sandbox: ${sandbox}`);
    }
    const doc = new DOMParser().parseFromString(frame.getAttribute("srcdoc"), "text/html");
    const csp = doc.head.querySelector('meta[http-equiv="Content-Security-Policy"]');
    if (!csp || doc.head.firstElementChild !== csp || !/default-src 'none'/.test(csp.content)) {
        throw new Error("the message document does not start with its Content-Security-Policy");
    }
    if (/script-src|'unsafe-eval'/.test(csp.content)) {
        throw new Error(`the CSP lets scripts run: ${csp.content}`);
    }
    if (doc.head.querySelector('meta[name="referrer"]')?.content !== "no-referrer") {
        throw new Error("the message document has no no-referrer policy");
    }
    return doc;
}
