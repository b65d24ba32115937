"""Files: upload, see processing status, preview, download and delete."""

import reflex as rx

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
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete this file?"),
            rx.alert_dialog.description(
                rx.text(
                    rx.text.strong(FilesState.pending_delete_name),
                    " and everything made from it (previews, extracted text) will be "
                    "deleted. This cannot be undone.",
                )
            ),
            rx.hstack(
                rx.alert_dialog.cancel(
                    rx.button(
                        "Keep it",
                        variant="soft",
                        color_scheme="gray",
                        on_click=FilesState.cancel_delete,
                    )
                ),
                rx.alert_dialog.action(
                    rx.button("Delete", color_scheme="red", on_click=FilesState.confirm_delete)
                ),
                spacing="3",
                justify="end",
                margin_top="1rem",
            ),
            max_width="28rem",
        ),
        open=FilesState.pending_delete_id != "",
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
        spacing="4",
        width="100%",
    )
