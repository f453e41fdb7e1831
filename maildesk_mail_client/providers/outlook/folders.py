"""The mailbox's folders: ``mailFolders`` and their ``childFolders``, with the roles of the well-known ones.

A folder is known by its Graph id, which survives renames and moves, so
the engine keeps its index whatever happens to its path. The roles come
from the well-known names (``/me/mailFolders/inbox`` ...), asked once per
listing in one ``$batch``; a name the mailbox does not have (``archive``
often) is simply left out.
"""

from __future__ import annotations

from .graph import GraphClient
from .mapper import FOLDER_FIELDS, WELL_KNOWN_ROLES, remote_folder

#: enough for most mailboxes in one page; more come through @odata.nextLink
_PAGE = 250


def pages(graph: GraphClient, path: str, params: dict | None, what: str):
    """Every item of a collection, following @odata.nextLink (which carries the query)."""
    url, query = path, params
    while url:
        page = graph.get(url, params=query, what=what)
        yield from page.get("value") or ()
        url, query = page.get("@odata.nextLink"), None


def well_known_roles(graph: GraphClient) -> dict:
    """{folder id: role} of the well-known folders this mailbox has."""
    answers = graph.batch({name: f"/me/mailFolders/{name}?$select=id" for name in WELL_KNOWN_ROLES},
                          what="reading the well-known folders")
    roles = {}
    for name, (status, body) in answers.items():
        if status == 200 and body.get("id"):
            roles[body["id"]] = WELL_KNOWN_ROLES[name]
    return roles


def list_folders(graph: GraphClient) -> list:
    """Every mail folder, parents before children, level by level (a level's children side by side)."""
    roles = well_known_roles(graph)
    params = {"$top": _PAGE, "$select": FOLDER_FIELDS, "includeHiddenFolders": "false"}
    level = [(item, None) for item in pages(graph, "/me/mailFolders", params, "listing the folders")]
    listed, seen = [], set()
    while level:
        parents = []
        for item, parent_path in level:
            if item["id"] in seen:
                continue  # a folder moved while we listed: it is listed once, where we met it first
            seen.add(item["id"])
            folder = remote_folder(item, parent_path, roles)
            listed.append(folder)
            if item.get("childFolderCount"):
                parents.append(folder)
        children = graph.pool.map(
            lambda parent: [(item, parent.path) for item in pages(
                graph, f"/me/mailFolders/{parent.remote_id}/childFolders", params, "listing the folders")],
            parents)
        level = [pair for group in children for pair in group]
    return listed
