import { Component, onMounted, onWillUnmount, useExternalListener, useRef, useState } from "@odoo/owl";

import { MAIN_PLUGINS } from "@html_editor/plugin_sets";
import { Wysiwyg } from "@html_editor/wysiwyg";
import { FileInput } from "@web/core/file_input/file_input";
import { localization } from "@web/core/l10n/localization";
import { _t } from "@web/core/l10n/translation";
import { useService } from "@web/core/utils/hooks";

import { formatFullDate } from "../inbox_format";
import { ComposerAttachments } from "./composer_attachments";
import { RecipientsInput } from "./recipients_input";

/** The editor's plugins: those of Odoo's html field, minus what has no place in a mail. */
const EDITOR_PLUGINS = MAIN_PLUGINS.filter((Plugin) => !["chatgpt", "youtube"].includes(Plugin.id));

const TITLES = {
    new: _t("New message"),
    reply: _t("Reply"),
    reply_all: _t("Reply all"),
    forward: _t("Forward"),
};

/**
 * The composer, in place of the reading pane: a draft of `maildesk.outbox` (store.state.composer).
 *
 * - From: the accounts the user may send from, each with its identity; changing it swaps the
 *   signature (the user's, for that account) in the body;
 * - To / Cc / Bcc with autocomplete (RecipientsInput), the subject;
 * - the body in Odoo's HTML editor (`Wysiwyg` of @html_editor with the html field's plugins);
 * - attachments uploaded through `/web/binary/upload_attachment` onto the draft, removable;
 * - autosave: every change is saved AUTOSAVE_DELAY ms after the last one, on close, when the
 *   inbox is left, and when the page closes (store.saveOnPageHide);
 * - Send (Ctrl+Enter), Discard, Close (saves).
 */
export class Composer extends Component {
    static components = { ComposerAttachments, FileInput, RecipientsInput, Wysiwyg };
    static props = {};
    static template = "maildesk_mail_client.Composer";

    setup() {
        this.store = useState(useService("maildesk.store"));
        this.root = useRef("root");
        const composer = this.store.state.composer;
        this.outboxId = composer.id;
        this.ui = useState({
            showCc: Boolean(composer.email_cc),
            showBcc: Boolean(composer.email_bcc),
        });
        this.editor = null;
        this.editorConfig = {
            content: composer.body_html || "<p><br></p>",
            Plugins: EDITOR_PLUGINS,
            placeholder: _t("Write your message…"),
            onChange: () => this.store.touchComposer(),
            // Pasted or dropped images stay in the body as data: URLs (no attachment record to upload to).
            dropImageAsAttachment: false,
            disableVideo: true,
            direction: localization.direction || "ltr",
            getRecordInfo: () => ({ resModel: "maildesk.outbox", resId: this.outboxId }),
            resources: {},
        };
        useExternalListener(window, "pagehide", () => this.store.saveOnPageHide());
        useExternalListener(window, "beforeunload", () => this.store.saveOnPageHide());
        useExternalListener(document, "visibilitychange", () => {
            if (document.visibilityState === "hidden") {
                this.store.saveDraft();
            }
        });
        onMounted(() => this.focusFirst());
        onWillUnmount(() => {
            // Leaving the inbox (another menu, the breadcrumb): what was typed is saved.
            if (this.store.state.composer?.id === this.outboxId) {
                this.store.saveDraft();
            }
            if (this.store.composerBody === this.readBody) {
                this.store.composerBody = null;
            }
        });
        this.readBody = () => (this.editor && !this.editor.isDestroyed ? this.editor.getContent() : null) ??
            this.store.state.composer?.body_html ?? "";
    }

    get composer() {
        return this.store.state.composer;
    }

    get title() {
        return TITLES[this.composer.mode] || TITLES.new;
    }

    accountLabel(account) {
        return account.email && account.email !== account.name ? `${account.name} <${account.email}>` : account.name;
    }

    get saveStatus() {
        const composer = this.composer;
        if (composer.saveError) {
            return { text: _t("Not saved: %s", composer.saveError), tone: "danger" };
        }
        if (composer.saving) {
            return { text: _t("Saving…"), tone: "muted" };
        }
        if (composer.dirty) {
            return { text: _t("Editing"), tone: "muted" };
        }
        if (composer.edited || composer.savedAt) {
            return { text: _t("Draft saved"), tone: "muted", title: formatFullDate(composer.savedAt) };
        }
        return { text: "", tone: "muted" };
    }

    onEditorLoad(editor) {
        this.editor = editor;
        this.store.composerBody = this.readBody;
    }

    focusFirst() {
        const el = this.root.el;
        if (!el) {
            return;
        }
        if (!this.composer.email_to) {
            el.querySelector(".o_maildesk_recipients_to input")?.focus();
        } else if (!this.composer.subject) {
            el.querySelector(".o_maildesk_composer_subject")?.focus();
        } else if (this.editor?.editable) {
            // A reply: the caret at the top, above the quote.
            const first = this.editor.editable.firstElementChild || this.editor.editable;
            this.editor.shared.selection.setCursorStart(first);
        }
    }

    update(values) {
        this.store.updateComposer(values);
    }

    async onAccountChange(ev) {
        const accountId = parseInt(ev.target.value);
        const previous = this.composer.account_id;
        this.update({ account_id: accountId });
        if (accountId === previous) {
            return;
        }
        const signature = await this.store.signature(accountId);
        if (this.composer?.account_id === accountId) {
            this.swapSignature(signature);
        }
    }

    /** The signature block the server put in the body, for the account chosen now. */
    swapSignature(html) {
        const editable = this.editor?.editable;
        if (!editable) {
            return;
        }
        let block = editable.querySelector(".maildesk_signature");
        if (!block && !html) {
            return;
        }
        if (!block) {
            block = document.createElement("div");
            block.className = "maildesk_signature";
            const first = editable.firstElementChild;
            editable.insertBefore(block, first ? first.nextSibling : null);
        }
        if (html) {
            block.innerHTML = html;
        } else {
            block.remove();
        }
        this.editor.shared.history.addStep();
        this.store.touchComposer();
    }

    onUpload(files) {
        const added = [];
        for (const file of files || []) {
            if (file.error) {
                this.store.notification.add(file.error, { type: "danger" });
            } else {
                added.push({ id: file.id, name: file.filename, size: file.size, mimetype: file.mimetype });
            }
        }
        if (added.length) {
            this.update({ attachments: [...this.composer.attachments, ...added] });
            this.store.saveDraft();
        }
    }

    removeAttachment(attachment) {
        this.update({ attachments: this.composer.attachments.filter((a) => a.id !== attachment.id) });
        this.store.saveDraft();
    }

    /** @param {KeyboardEvent} ev */
    onKeydown(ev) {
        if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
            ev.preventDefault();
            this.send();
        }
    }

    send() {
        return this.store.send();
    }

    close() {
        return this.store.closeComposer();
    }

    discard() {
        return this.store.discard(this.composer.id);
    }
}
