/**
 * Helpers of the composer tours. The loopback address of the test is kept in sessionStorage,
 * so a tour that reloads the page (to prove a draft survives it) can still reach the test.
 */

import { waitUntil } from "@maildesk_mail_client/../tests/tours/maildesk_tour_utils";

const KEY = "maildesk_test_loopback";

export function keepLoopback() {
    if (window.maildeskTest?.loopback) {
        sessionStorage.setItem(KEY, window.maildeskTest.loopback);
    }
}

/** Ask the test for something (`/__send`: run the sender now) and wait for its answer. */
export async function askTest(path) {
    const base = window.maildeskTest?.loopback || sessionStorage.getItem(KEY);
    if (!base) {
        throw new Error("no loopback address: run this tour from its HttpCase");
    }
    await fetch(base + path, { mode: "no-cors", cache: "no-store" });
}

export function composer() {
    return document.querySelector(".o_maildesk_composer");
}

/** The addresses of a recipients field (to, cc, bcc) as chips. */
export function chips(name) {
    return [...document.querySelectorAll(`.o_maildesk_recipients_${name} .o_maildesk_recipient`)].map((el) =>
        el.dataset.email
    );
}

export function editable() {
    return document.querySelector(".o_maildesk_composer .o_maildesk_composer_editable");
}

/** Type into a recipients field and wait for the suggestion of `email`, then pick it. */
export async function pickRecipient(name, text, email) {
    const input = document.querySelector(`.o_maildesk_recipients_${name} input`);
    input.focus();
    input.value = text;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    const suggestion = await waitUntil(
        () => document.querySelector(`.o_maildesk_recipients_${name} .o_maildesk_recipient_suggestion[data-email="${email}"]`),
        `the suggestion ${email} for "${text}"`
    );
    suggestion.dispatchEvent(new MouseEvent("mousedown", { bubbles: true, cancelable: true }));
    suggestion.click();
    await waitUntil(() => chips(name).includes(email), `${email} in ${name}`);
}

/** Type an address and press Enter: it becomes a chip. */
export async function typeRecipient(name, text) {
    const input = document.querySelector(`.o_maildesk_recipients_${name} input`);
    input.focus();
    input.value = text;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
    await waitUntil(() => chips(name).includes(text), `${text} in ${name}`);
}

export function setSubject(text) {
    const input = document.querySelector(".o_maildesk_composer_subject");
    input.value = text;
    input.dispatchEvent(new Event("input", { bubbles: true }));
}

/** Files chosen in the composer's file input, as if picked in the browser's dialog. */
export function attachFiles(files) {
    const input = document.querySelector(".o_maildesk_composer .o_input_file");
    const transfer = new DataTransfer();
    for (const [name, content, type] of files) {
        transfer.items.add(new File([content], name, { type }));
    }
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
}

export function attachmentNames() {
    return [...document.querySelectorAll(".o_maildesk_composer_attachment .o_maildesk_composer_attachment_name")].map(
        (el) => el.textContent.trim()
    );
}

/** Wait until the composer says its draft is saved on the server. */
export function draftSaved() {
    return waitUntil(
        () => document.querySelector(".o_maildesk_composer_saved[data-saved=yes]")?.textContent.includes("Draft saved"),
        "the draft to be saved"
    );
}

/** Ask the test to run the sender, then wait for the outbox strip to show `state`. */
export async function sendNowAndWait(subject, state = "sent") {
    await askTest("/__send");
    await waitUntil(
        () =>
            [...document.querySelectorAll(`.o_maildesk_outbox_entry[data-state=${state}]`)].some((el) =>
                el.textContent.includes(subject)
            ),
        `"${subject}" to be ${state}`,
        30000
    );
}

/** Choose the sending account whose option shows `email`. */
export function chooseAccount(email) {
    const select = document.querySelector(".o_maildesk_composer_account");
    const option = [...select.options].find((o) => o.textContent.includes(email));
    if (!option) {
        throw new Error(`no account ${email} to send from`);
    }
    if (select.value !== option.value) {
        select.value = option.value;
        select.dispatchEvent(new Event("change", { bubbles: true }));
    }
}
