/**
 * The document a message is shown in: `<iframe sandbox srcdoc>`.
 *
 * The HTML comes sanitized from the server (application/html_safety.py); this is the second
 * wall. The iframe's sandbox (reading_pane.xml, a static attribute: "allow-popups
 * allow-popups-to-escape-sandbox") never has `allow-scripts` (nor `allow-same-origin`), so nothing
 * in the message runs, and the document starts with a Content-Security-Policy that loads
 * nothing but inline styles and images from data: (and, once the user allowed it, remote
 * images), plus a no-referrer policy.
 *
 * A sandboxed iframe without `allow-same-origin` has an opaque origin: the browser sends no
 * session cookie with its requests. The message's own images (`cid:`, served by
 * /maildesk/message/<id>/cid/<cid>) are therefore fetched here, by the web client, and put in
 * the document as data: URLs.
 */

/** The message's own images, as the server writes them in the safe HTML (maybe HTML-escaped). */
function localImagePattern(messageId) {
    return new RegExp(`(?:https?://[^\\s"'()<>/]+)?/maildesk/message/${Number(messageId)}/cid/[^\\s"'()<>]+`, "g");
}

/**
 * The URL, if after the browser's own normalisation (`..`, `%2e%2e`) it still names one part of
 * this message; else null. The pattern above also matches text the sender wrote, and a fetch
 * goes out with the user's session: it must never reach any other route.
 */
export function ownPartUrl(url, messageId, origin = window.location.origin) {
    let parsed;
    try {
        parsed = new URL(url, origin);
    } catch {
        return null;
    }
    const prefix = `/maildesk/message/${Number(messageId)}/cid/`;
    const rest = parsed.pathname.slice(prefix.length);
    if (parsed.origin !== origin || !parsed.pathname.startsWith(prefix) || !rest || rest.includes("/")) {
        return null;
    }
    return parsed.pathname + parsed.search;
}

/** Above this, an inline image is left out rather than copied into the document. */
const MAX_INLINE_IMAGE_BYTES = 5 * 1024 * 1024;

export function contentSecurityPolicy({ allowRemote = false, origin = window.location.origin } = {}) {
    const images = ["'self'", origin, "data:"];
    if (allowRemote) {
        images.push("https:", "http:");
    }
    return [
        "default-src 'none'",
        `img-src ${images.join(" ")}`,
        "style-src 'unsafe-inline'",
        "font-src data:",
        "form-action 'none'",
    ].join("; ");
}

function escapeAttribute(value) {
    return String(value)
        .replace(/&/g, "&amp;")
        .replace(/"/g, "&quot;")
        .replace(/</g, "&lt;")
        .replace(/>/g, "&gt;");
}

export function escapeHtml(text) {
    return escapeAttribute(text).replace(/'/g, "&#39;");
}

const BASE_STYLE = `
html { color-scheme: light; }
body { margin: 16px; font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #212529; background: #fff; overflow-wrap: anywhere; }
img { max-width: 100%; height: auto; }
pre.o_maildesk_text { white-space: pre-wrap; font: inherit; margin: 0; }
blockquote { margin: 0 0 0 .8em; padding-left: .8em; border-left: 2px solid #ced4da; color: #495057; }
details.o_maildesk_quote > summary { cursor: pointer; color: #6c757d; }
table { max-width: 100%; }
`;

/** The full srcdoc: CSP and referrer policy first, then the message. */
export function buildSrcdoc(bodyHtml, { allowRemote = false, origin = window.location.origin } = {}) {
    const csp = escapeAttribute(contentSecurityPolicy({ allowRemote, origin }));
    return (
        "<!DOCTYPE html><html><head>" +
        `<meta http-equiv="Content-Security-Policy" content="${csp}">` +
        '<meta name="referrer" content="no-referrer">' +
        '<meta charset="utf-8">' +
        '<base target="_blank">' +
        `<style>${BASE_STYLE}</style>` +
        `</head><body>${bodyHtml}</body></html>`
    );
}

function decodeEntities(url) {
    return url.replace(/&amp;/g, "&").replace(/&#x2F;/gi, "/").replace(/&#47;/g, "/");
}

function blobToDataUrl(blob) {
    return new Promise((resolve, reject) => {
        const reader = new FileReader();
        reader.onload = () => resolve(reader.result);
        reader.onerror = () => reject(reader.error);
        reader.readAsDataURL(blob);
    });
}

/**
 * Replace the message's own images (cid: parts, on our server) by data: URLs, fetched with
 * the user's session. An image that cannot be fetched is left pointing at the server, where
 * the sandboxed document, without the session, gets nothing.
 *
 * Only this message's parts: a message cannot pull another one's into its document.
 *
 * @param {string} html
 * @param {number} messageId
 * @param {(url: string) => Promise<Response>} [fetchFn]
 */
export async function inlineLocalImages(html, messageId, fetchFn = (url) => fetch(url, { credentials: "same-origin" })) {
    const pattern = localImagePattern(messageId);
    const urls = [...new Set(html.match(pattern) || [])];
    if (!urls.length) {
        return html;
    }
    const replacements = new Map();
    await Promise.all(
        urls.map(async (found) => {
            // The server may write it absolute, with its own idea of its address (web.base.url):
            // fetched from where the web client runs, it carries the session.
            const url = ownPartUrl(decodeEntities(found).replace(/^https?:\/\/[^/]+/, ""), messageId);
            if (!url) {
                return;
            }
            try {
                const response = await fetchFn(url);
                if (!response.ok) {
                    return;
                }
                const blob = await response.blob();
                if (blob.size > MAX_INLINE_IMAGE_BYTES || !/^image\//.test(blob.type)) {
                    return;
                }
                replacements.set(found, await blobToDataUrl(blob));
            } catch {
                // Leave it: the image is broken, the message still reads.
            }
        })
    );
    return html.replace(pattern, (found) => replacements.get(found) || found);
}

/** The body to show for a message view from the server: safe HTML, or plain text as HTML. */
export function messageBodyHtml(view) {
    if (view.html) {
        return view.html;
    }
    if (view.text_html) {
        return view.text_html;
    }
    if (view.text) {
        return `<pre class="o_maildesk_text">${escapeHtml(view.text)}</pre>`;
    }
    return "";
}
