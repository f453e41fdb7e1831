import { _t } from "@web/core/l10n/translation";
import { deserializeDateTime, formatDateTime } from "@web/core/l10n/dates";

const { DateTime } = luxon;

/** The server's UTC "YYYY-MM-DD HH:MM:SS" as a local luxon DateTime, or null. */
export function toDateTime(value) {
    if (!value) {
        return null;
    }
    try {
        const date = deserializeDateTime(String(value).replace("T", " ").slice(0, 19));
        return date.isValid ? date : null;
    } catch {
        return null;
    }
}

/** A list date: the time today, "Mar 5" this year, the date before. */
export function formatListDate(value) {
    const date = toDateTime(value);
    if (!date) {
        return "";
    }
    const now = DateTime.local();
    if (date.hasSame(now, "day")) {
        return date.toLocaleString(DateTime.TIME_SIMPLE);
    }
    if (date.hasSame(now, "year")) {
        return date.toLocaleString({ month: "short", day: "numeric" });
    }
    return date.toLocaleString(DateTime.DATE_SHORT);
}

export function formatFullDate(value) {
    const date = toDateTime(value);
    return date ? formatDateTime(date) : "";
}

/** "Alice Martin <alice@example.com>" → "Alice Martin"; a bare address stays as it is. */
export function senderName(address) {
    if (!address) {
        return _t("(no sender)");
    }
    const match = /^\s*"?([^"<]*?)"?\s*<[^>]*>\s*$/.exec(address);
    return (match && match[1].trim()) || address.replace(/[<>]/g, "").trim();
}

export function senderEmail(address) {
    const match = /<([^>]+)>/.exec(address || "");
    return (match ? match[1] : address || "").trim();
}

export function formatSize(bytes) {
    if (!bytes && bytes !== 0) {
        return "";
    }
    const units = ["B", "KB", "MB", "GB"];
    let size = bytes;
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
        size /= 1024;
        unit++;
    }
    return `${unit ? size.toFixed(size < 10 ? 1 : 0) : size} ${units[unit]}`;
}
