import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";

/**
 * "Log in chatter" in the reading pane (`maildesk.reading_pane_actions`, see reading_pane.js):
 * opens the wizard maildesk.log_message on the open message, where the user picks a partner or
 * any document with a chatter. A message attached to another (`partId`) is not an index row.
 */
registry.category("maildesk.reading_pane_actions").add("log_in_chatter", {
    sequence: 60,
    label: _t("Log in chatter"),
    icon: "fa-sign-in",
    isAvailable: (store, message) => Boolean(message?.id && !message.partId),
    run: (store, message, env) =>
        env.services.action.doAction("maildesk_mail_client.action_maildesk_log_message", {
            additionalContext: { default_index_id: message.id },
        }),
});
