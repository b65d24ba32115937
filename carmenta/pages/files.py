"""Files: upload, see processing status, preview, download, replace and delete; keep
a file's text in the knowledge base."""

import reflex as rx

from carmenta.components.dialogs import confirm_dialog
from carmenta.components.file_uploader import file_uploader
from carmenta.components.layout import page
from carmenta.state.files import FilesState

KIND_ICONS = {
    "image": "image",
    "pdf": "file-text",
    "document": "file-text",
    "presentation": "presentation",
    "spreadsheet": "sheet",
    "text": "file-type",
    "audio": "audio-lines",
}


def kind_icon(kind) -> rx.Component:
    return rx.match(
        kind,
        *[(name, rx.icon(icon, size=28, aria_hidden="true")) for name, icon in KIND_ICONS.items()],
        rx.icon("file", size=28, aria_hidden="true"),
    )


def status_badge(item: dict) -> rx.Component:
    return rx.match(
        item["status"],
        ("ready", rx.badge("Ready", color_scheme="green", data_testid="file-status")),
        (
            "failed",
            rx.badge("Failed", color_scheme="red", data_testid="file-status"),
        ),
        rx.badge(
            rx.spinner(size="1"), "Processing", color_scheme="amber", data_testid="file-status"
        ),
    )


def thumbnail(item: dict) -> rx.Component:
    return rx.center(
        rx.cond(
            item["thumbnail_url"] != "",
            rx.image(
                src=item["thumbnail_url"],
                alt=item["name"],
                width="100%",
                height="100%",
                object_fit="cover",
                loading="lazy",
                data_testid="file-thumbnail",
            ),
            kind_icon(item["kind"]),
        ),
        width="64px",
        height="64px",
        min_width="64px",
        border_radius="var(--radius-3)",
        overflow="hidden",
        background="var(--gray-a3)",
        # A white page thumbnail still shows where it ends.
        border="1px solid var(--gray-5)",
        color="var(--gray-11)",
    )


def knowledge_status(item: dict) -> rx.Component:
    """Where the file stands with the knowledge base, and what can be done about it."""
    add_button = rx.button(
        rx.icon("book-plus", size=14, aria_hidden="true"),
        "Add to knowledge",
        size="1",
        variant="soft",
        aria_label="Add " + item["name"] + " to knowledge",
        on_click=FilesState.add_to_knowledge(item["id"], item["name"]),
    )
    return rx.box(
        rx.match(
            item["knowledge_state"],
            (
                "waiting",
                rx.badge(
                    rx.spinner(size="1"),
                    "Knowledge: waiting for the file to be read",
                    color_scheme="amber",
                    variant="soft",
                ),
            ),
            (
                "adding",
                rx.badge(
                    rx.spinner(size="1"),
                    "Adding to knowledge… " + item["knowledge_percent"] + "%",
                    color_scheme="amber",
                    variant="soft",
                ),
            ),
            (
                "ready",
                rx.hstack(
                    rx.badge(
                        rx.icon("book-check", size=12, aria_hidden="true"),
                        "In knowledge",
                        color_scheme="green",
                        variant="soft",
                    ),
                    rx.link(
                        "Open in knowledge",
                        href=item["knowledge_url"],
                        size="1",
                        aria_label="Open " + item["name"] + " in knowledge",
                    ),
                    rx.button(
                        "Remove from knowledge",
                        size="1",
                        variant="ghost",
                        color_scheme="gray",
                        aria_label="Remove " + item["name"] + " from knowledge",
                        on_click=FilesState.remove_from_knowledge(item["id"], item["name"]),
                    ),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
            ),
            (
                "failed",
                rx.vstack(
                    rx.text(
                        "Not added to knowledge: " + item["knowledge_error"],
                        size="1",
                        color_scheme="red",
                    ),
                    rx.hstack(
                        rx.button(
                            "Try again",
                            size="1",
                            variant="soft",
                            aria_label="Try adding " + item["name"] + " to knowledge again",
                            on_click=FilesState.add_to_knowledge(item["id"], item["name"]),
                        ),
                        rx.button(
                            "Dismiss",
                            size="1",
                            variant="ghost",
                            color_scheme="gray",
                            aria_label="Stop adding " + item["name"] + " to knowledge",
                            on_click=FilesState.remove_from_knowledge(item["id"], item["name"]),
                        ),
                        spacing="2",
                    ),
                    spacing="1",
                    align="start",
                ),
            ),
            rx.cond(item["status"] != "failed", add_button),
        ),
        data_testid="knowledge-status",
        data_state=item["knowledge_state"],
        aria_live="polite",
    )


def file_row(item: dict) -> rx.Component:
    return rx.hstack(
        thumbnail(item),
        rx.vstack(
            rx.cond(
                item["preview_url"] != "",
                rx.link(
                    item["name"],
                    href=item["preview_url"],
                    is_external=True,
                    weight="medium",
                    size="2",
                    data_testid="file-name",
                ),
                rx.text(item["name"], weight="medium", size="2", data_testid="file-name"),
            ),
            rx.hstack(
                status_badge(item),
                rx.text(item["size_label"], size="1", color_scheme="gray"),
                rx.cond(
                    item["details"] != "", rx.text(item["details"], size="1", color_scheme="gray")
                ),
                spacing="2",
                align="center",
                wrap="wrap",
            ),
            rx.cond(
                item["error"] != "",
                rx.text(item["error"], size="1", color_scheme="red", data_testid="file-error"),
            ),
            knowledge_status(item),
            spacing="1",
            align="start",
            min_width="0",
            flex="1",
        ),
        rx.hstack(
            # A full page load: the file is served by the backend, not by a page of the app.
            rx.el.a(
                rx.icon_button(
                    rx.icon("download", size=16),
                    variant="ghost",
                    tab_index=-1,
                    aria_hidden="true",
                ),
                href=item["download_url"],
                aria_label="Download " + item["name"],
                custom_attrs={"reloadDocument": True},
            ),
            rx.icon_button(
                rx.icon("file-up", size=16),
                variant="ghost",
                aria_label="Replace " + item["name"],
                title="Replace…",
                on_click=FilesState.ask_replace(item["id"], item["name"]),
            ),
            rx.icon_button(
                rx.icon("trash-2", size=16),
                variant="ghost",
                color_scheme="red",
                aria_label="Delete " + item["name"],
                on_click=FilesState.ask_delete(item["id"], item["name"]),
            ),
            spacing="1",
        ),
        width="100%",
        align="center",
        padding="0.75rem 0",
        border_bottom="1px solid var(--gray-4)",
        data_testid="file-row",
        data_status=item["status"],
    )


def delete_dialog() -> rx.Component:
    return confirm_dialog(
        title="Delete this file?",
        description=rx.text(
            rx.text.strong(FilesState.pending_delete_name),
            " and everything made from it (previews, extracted text) will be "
            "deleted. This cannot be undone.",
        ),
        open=FilesState.pending_delete_id != "",
        on_cancel=FilesState.cancel_delete,
        on_confirm=FilesState.confirm_delete,
    )


def replace_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Replace " + FilesState.replacing_name),
            rx.dialog.description(
                "Choose the new version. The file keeps its place, its links and, if it "
                "is in your knowledge base, its document, which is updated once the new "
                "version is read. If the upload fails, the current version stays.",
                size="2",
            ),
            rx.box(
                rx.cond(
                    FilesState.replacing_id != "",
                    file_uploader(
                        label="Choose the new file",
                        hint="Drop the new version here, or",
                        paste_target=False,
                        endpoint=FilesState.replace_endpoint,
                        multiple=False,
                        on_uploaded=FilesState.replaced,
                    ),
                ),
                margin_top="1rem",
            ),
            rx.flex(
                rx.dialog.close(
                    rx.button(
                        "Close",
                        variant="soft",
                        color_scheme="gray",
                        on_click=FilesState.cancel_replace,
                    )
                ),
                justify="end",
                margin_top="1rem",
            ),
            max_width="32rem",
            data_testid="replace-dialog",
        ),
        open=FilesState.replacing_id != "",
        on_open_change=FilesState.replace_open_changed,
    )


def file_list() -> rx.Component:
    return rx.cond(
        FilesState.loading,
        rx.hstack(rx.spinner(), rx.text("Loading your files…", size="2"), role="status"),
        rx.cond(
            FilesState.files.length() > 0,
            rx.vstack(
                rx.foreach(FilesState.files, file_row),
                spacing="0",
                width="100%",
                data_testid="file-list",
            ),
            rx.vstack(
                rx.icon("folder-open", size=32, color="var(--gray-9)", aria_hidden="true"),
                rx.text("No files yet.", weight="medium"),
                rx.text(
                    "Upload PDFs, images, audio, documents and spreadsheets; Carmenta reads "
                    "them so your assistant can use what is inside.",
                    size="2",
                    color_scheme="gray",
                    text_align="center",
                ),
                align="center",
                padding="2rem 1rem",
                width="100%",
                data_testid="files-empty",
            ),
        ),
    )


@page(route="/files", title="Files", on_load=[FilesState.load])
def files() -> rx.Component:
    return rx.vstack(
        file_uploader(
            label="Choose files",
            hint="Drop files here, paste them, or",
            paste_target=True,
            on_uploaded=FilesState.uploaded,
        ),
        rx.cond(
            FilesState.error != "",
            rx.callout.root(
                rx.callout.text(FilesState.error), color_scheme="red", role="alert", size="1"
            ),
        ),
        rx.cond(
            FilesState.notice != "",
            rx.text(FilesState.notice, size="2", color_scheme="gray", role="status"),
        ),
        file_list(),
        delete_dialog(),
        replace_dialog(),
        spacing="4",
        width="100%",
    )
