import { Component, onWillUnmount, useRef, useState } from "@odoo/owl";

import { useService } from "@web/core/utils/hooks";

/**
 * Addresses as the server stores them: "Name <a@b>, c@d". Split on the commas between
 * addresses, not on those inside a quoted name or the angle brackets.
 *
 * @param {string} value
 * @returns {{name: string, email: string}[]}
 */
export function parseAddresses(value) {
    const entries = [];
    let current = "";
    let quoted = false;
    let angled = false;
    for (const char of value || "") {
        if (char === '"') {
            quoted = !quoted;
        } else if (char === "<" && !quoted) {
            angled = true;
        } else if (char === ">" && !quoted) {
            angled = false;
        }
        if ((char === "," || char === ";") && !quoted && !angled) {
            entries.push(current);
            current = "";
        } else {
            current += char;
        }
    }
    entries.push(current);
    return entries
        .map((entry) => entry.trim())
        .filter(Boolean)
        .map((entry) => {
            const match = /^(.*?)\s*<([^<>]*)>\s*$/.exec(entry);
            if (match) {
                return { name: match[1].replace(/^"|"$/g, "").replace(/\\"/g, '"').trim(), email: match[2].trim() };
            }
            return { name: "", email: entry };
        });
}

/** One address the way a header wants it: the name quoted when it holds special characters. */
export function formatAddress({ name, email }) {
    if (!name || name === email) {
        return email;
    }
    const safe = /[,;<>@"()[\]:\\.]/.test(name) ? `"${name.replace(/(["\\])/g, "\\$1")}"` : name;
    return `${safe} <${email}>`;
}

export function joinAddresses(entries) {
    return entries.map(formatAddress).join(", ");
}

/** What the server will accept as an address (it checks again at Send). */
export function looksLikeAddress(email) {
    return /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>.]+$/.test(email);
}

const SUGGEST_DELAY = 200;

/**
 * A recipients field (To, Cc or Bcc): the addresses as chips, and an input that suggests
 * contacts and recent correspondents (`maildesk_recipients`) as one types. Enter, Tab, a comma
 * or leaving the field turns what was typed into an address; Backspace in an empty input
 * removes the last one.
 */
export class RecipientsInput extends Component {
    static props = {
        name: { type: String },
        label: { type: String },
        value: { type: String },
        onChange: { type: Function },
        autofocus: { type: Boolean, optional: true },
    };
    static template = "maildesk_mail_client.RecipientsInput";

    setup() {
        this.store = useService("maildesk.store");
        this.input = useRef("input");
        this.state = useState({ text: "", suggestions: [], active: 0, open: false });
        this._timer = null;
        this._token = 0;
        onWillUnmount(() => clearTimeout(this._timer));
    }

    get entries() {
        return parseAddresses(this.props.value);
    }

    isValid(entry) {
        return looksLikeAddress(entry.email);
    }

    _set(entries) {
        this.props.onChange(joinAddresses(entries));
    }

    add(entry) {
        const known = new Set(this.entries.map((e) => e.email.toLowerCase()));
        if (!known.has(entry.email.toLowerCase())) {
            this._set([...this.entries, entry]);
        }
    }

    remove(index) {
        const entries = this.entries;
        entries.splice(index, 1);
        this._set(entries);
    }

    /** What was typed becomes one or more addresses. */
    commitText() {
        const typed = parseAddresses(this.state.text);
        this.state.text = "";
        this.closeSuggestions();
        if (typed.length) {
            const entries = this.entries;
            const known = new Set(entries.map((e) => e.email.toLowerCase()));
            for (const entry of typed) {
                if (!known.has(entry.email.toLowerCase())) {
                    known.add(entry.email.toLowerCase());
                    entries.push(entry);
                }
            }
            this._set(entries);
        }
    }

    pick(suggestion) {
        this.state.text = "";
        this.closeSuggestions();
        this.add({ name: suggestion.name, email: suggestion.email });
        this.input.el?.focus();
    }

    closeSuggestions() {
        this._token++;
        clearTimeout(this._timer);
        this.state.open = false;
        this.state.suggestions = [];
        this.state.active = 0;
    }

    onInput(ev) {
        const text = ev.target.value;
        this.state.text = text;
        if (/[,;]\s*$/.test(text)) {
            this.commitText();
            return;
        }
        clearTimeout(this._timer);
        const term = text.trim();
        if (!term) {
            this.closeSuggestions();
            return;
        }
        const token = ++this._token;
        this._timer = setTimeout(async () => {
            const found = await this.store.recipients(term).catch(() => []);
            if (token === this._token) {
                this.state.suggestions = found;
                this.state.active = 0;
                this.state.open = found.length > 0;
            }
        }, SUGGEST_DELAY);
    }

    /** @param {KeyboardEvent} ev */
    onKeydown(ev) {
        const { open, suggestions } = this.state;
        switch (ev.key) {
            case "ArrowDown":
            case "ArrowUp":
                if (open) {
                    const step = ev.key === "ArrowDown" ? 1 : -1;
                    this.state.active = (this.state.active + step + suggestions.length) % suggestions.length;
                    ev.preventDefault();
                }
                return;
            case "Enter":
            case "Tab":
                if (open && suggestions.length) {
                    this.pick(suggestions[this.state.active]);
                    ev.preventDefault();
                } else if (this.state.text.trim()) {
                    this.commitText();
                    if (ev.key === "Enter") {
                        ev.preventDefault();
                    }
                } else if (ev.key === "Enter") {
                    ev.preventDefault(); // never submit anything from here
                }
                return;
            case "Escape":
                if (open) {
                    this.closeSuggestions();
                    ev.preventDefault(); // the inbox's Escape must not close the composer
                }
                return;
            case "Backspace":
                if (!this.state.text && this.entries.length) {
                    this.remove(this.entries.length - 1);
                    ev.preventDefault();
                }
                return;
        }
    }

    onBlur() {
        // A click on a suggestion keeps the focus (mousedown.prevent), so this is a real leave.
        if (this.state.text.trim()) {
            this.commitText();
        } else {
            this.closeSuggestions();
        }
    }

    focus() {
        this.input.el?.focus();
    }
}
