"""Knowledge: the user's documents as a tree, a Markdown editor, links and search."""

import reflex as rx

from carmenta.components.auth_layout import form_error
from carmenta.components.dialogs import confirm_dialog
from carmenta.components.layout import page
from carmenta.knowledge.browse import SearchResult
from carmenta.knowledge.display import SnippetSegment
from carmenta.knowledge.service import MAX_CONTENT_BYTES
from carmenta.knowledge.tree import TreeRow
from carmenta.state.knowledge import EDITOR_ID, KnowledgeState

# The editor's text, or null when it is over the limit: then it never leaves the browser.
EDITOR_TEXT = rx.Var(
    "((el) => { const text = el ? el.value : ''; "
    f"return new TextEncoder().encode(text).length > {MAX_CONTENT_BYTES} ? null : text; }})"
    f"(document.getElementById('{EDITOR_ID}'))"
)
EDITOR_BYTES = rx.Var(
    f"new TextEncoder().encode((document.getElementById('{EDITOR_ID}') || {{}}).value || '').length"
)

# Ctrl+S / Cmd+S saves instead of saving the web page, while the editor is on screen.
SAVE_SHORTCUT = """
if (!window.__carmentaSaveShortcut) {
  window.__carmentaSaveShortcut = true;
  document.addEventListener('keydown', (event) => {
    if (!(event.ctrlKey || event.metaKey) || event.key.toLowerCase() !== 's') return;
    const button = document.querySelector('[data-testid="save-document"]');
    if (!button) return;
    event.preventDefault();
    if (!button.disabled) button.click();
  });
}
"""

NATIVE_SELECT_STYLE = {
    "width": "100%",
    "height": "2.25rem",
    "padding": "0 0.5rem",
    "border_radius": "var(--radius-2)",
    "border": "1px solid var(--gray-7)",
    "background": "var(--color-surface)",
    "color": "var(--gray-12)",
    "font_size": "var(--font-size-2)",
}


def section_heading(text: str) -> rx.Component:
    return rx.heading(
        text,
        as_="h2",
        size="1",
        weight="medium",
        color_scheme="gray",
        text_transform="uppercase",
        letter_spacing="0.05em",
        padding="0.5rem 0.25rem 0.25rem",
    )


def tree_row(row: TreeRow) -> rx.Component:
    is_open = row.document_id == KnowledgeState.doc_id
    toggle = rx.cond(
        row.has_children,
        rx.icon_button(
            rx.cond(
                row.expanded,
                rx.icon("chevron-down", size=14, aria_hidden="true"),
                rx.icon("chevron-right", size=14, aria_hidden="true"),
            ),
            size="1",
            variant="ghost",
            color_scheme="gray",
            aria_expanded=rx.cond(row.expanded, "true", "false"),
            aria_label=rx.cond(row.expanded, "Collapse ", "Expand ") + row.title,
            on_click=KnowledgeState.toggle_folder(row.path),
            data_testid="tree-toggle",
        ),
        rx.box(width="24px", min_width="24px", aria_hidden="true"),
    )
    icon = rx.cond(
        row.is_folder,
        rx.icon("folder", size=15, aria_hidden="true", color="var(--gray-10)", min_width="15px"),
        rx.icon("file-text", size=15, aria_hidden="true", color="var(--gray-10)", min_width="15px"),
    )
    label = rx.cond(
        row.document_id != "",
        rx.link(
            rx.text(row.title, size="2", trim="both", truncate=True),
            href="/knowledge?doc=" + row.document_id,
            color=rx.cond(is_open, "var(--accent-12)", "var(--gray-12)"),
            weight=rx.cond(is_open, "medium", "regular"),
            underline="hover",
            aria_current=rx.cond(is_open, "page", "false"),
            min_width="0",
            flex="1",
            padding="0.2rem 0",
        ),
        rx.text(row.title, size="2", color_scheme="gray", truncate=True, flex="1"),
    )
    return rx.hstack(
        toggle,
        icon,
        label,
        align="center",
        spacing="1",
        width="100%",
        padding_left=(row.depth * 14).to_string() + "px",
        border_radius="var(--radius-2)",
        background=rx.cond(is_open, "var(--accent-a3)", "transparent"),
        data_testid="tree-row",
        data_path=row.path,
        data_folder=rx.cond(row.is_folder, "true", "false"),
    )


def tree_section(title: str, rows) -> rx.Component:
    return rx.box(
        section_heading(title),
        rx.cond(
            rows.length() > 0,
            rx.vstack(rx.foreach(rows, tree_row), spacing="0", width="100%"),
            rx.text("Nothing here yet.", size="1", color_scheme="gray", padding_left="0.25rem"),
        ),
        width="100%",
    )


def tree_panel() -> rx.Component:
    return rx.el.nav(
        rx.vstack(
            rx.hstack(
                rx.button(
                    rx.icon("file-plus", size=15, aria_hidden="true"),
                    "New document",
                    size="1",
                    variant="soft",
                    on_click=KnowledgeState.open_create("document"),
                ),
                rx.button(
                    rx.icon("folder-plus", size=15, aria_hidden="true"),
                    "New folder",
                    size="1",
                    variant="soft",
                    color_scheme="gray",
                    on_click=KnowledgeState.open_create("folder"),
                ),
                spacing="2",
                wrap="wrap",
            ),
            tree_section("Profile", KnowledgeState.profile_rows),
            tree_section("Knowledge", KnowledgeState.knowledge_rows),
            spacing="2",
            width="100%",
        ),
        aria_label="Documents",
        width=["100%", "100%", "16rem"],
        min_width=["0", "0", "16rem"],
        padding="0.75rem",
        border="1px solid var(--gray-5)",
        border_radius="var(--radius-3)",
        background="var(--gray-a2)",
        data_testid="document-tree",
    )


def segment(part: SnippetSegment) -> rx.Component:
    return rx.cond(
        part.highlighted,
        rx.el.mark(
            part.text,
            background="var(--amber-a5)",
            color="inherit",
            border_radius="2px",
            padding="0 1px",
        ),
        rx.text.span(part.text),
    )


def search_result(result: SearchResult) -> rx.Component:
    return rx.box(
        rx.link(
            result.title,
            href="/knowledge?doc=" + result.id,
            weight="medium",
            size="2",
        ),
        rx.text(result.path, size="1", color_scheme="gray", font_family="monospace"),
        rx.text(rx.foreach(result.segments, segment), size="1", color_scheme="gray", as_="p"),
        padding="0.5rem 0",
        border_bottom="1px solid var(--gray-4)",
        width="100%",
        data_testid="search-result",
    )


def search_panel() -> rx.Component:
    return rx.vstack(
        rx.form(
            rx.hstack(
                rx.input(
                    rx.input.slot(rx.icon("search", size=15, aria_hidden="true")),
                    name="query",
                    placeholder="Search your documents",
                    aria_label="Search documents",
                    type="search",
                    value=KnowledgeState.search_query,
                    on_change=KnowledgeState.set_search_query,
                    flex="1",
                ),
                rx.button(
                    rx.cond(KnowledgeState.searching, rx.spinner(size="1"), None),
                    "Search",
                    type="submit",
                    disabled=KnowledgeState.searching,
                ),
                width="100%",
                spacing="2",
            ),
            on_submit=KnowledgeState.run_search,
            reset_on_submit=False,
            role="search",
            width="100%",
        ),
        rx.cond(
            KnowledgeState.searched,
            rx.box(
                rx.hstack(
                    rx.heading("Results", as_="h2", size="2"),
                    rx.spacer(),
                    rx.button(
                        "Clear",
                        size="1",
                        variant="ghost",
                        color_scheme="gray",
                        on_click=KnowledgeState.clear_search,
                        aria_label="Clear search results",
                    ),
                    align="center",
                    width="100%",
                ),
                rx.cond(
                    KnowledgeState.search_results.length() > 0,
                    rx.vstack(
                        rx.foreach(KnowledgeState.search_results, search_result),
                        spacing="0",
                        width="100%",
                    ),
                    rx.text(
                        "No document matches “",
                        KnowledgeState.search_query,
                        "”.",
                        size="2",
                        color_scheme="gray",
                        data_testid="search-empty",
                    ),
                ),
                width="100%",
                padding="0.75rem",
                border="1px solid var(--gray-5)",
                border_radius="var(--radius-3)",
                aria_live="polite",
                data_testid="search-results",
            ),
        ),
        width="100%",
        spacing="2",
    )


def save_state() -> rx.Component:
    return rx.cond(
        KnowledgeState.saving,
        rx.badge(rx.spinner(size="1"), "Saving…", color_scheme="gray"),
        rx.cond(
            KnowledgeState.dirty,
            rx.badge("Unsaved changes", color_scheme="amber"),
            rx.badge("Saved", color_scheme="green"),
        ),
    )


def document_toolbar() -> rx.Component:
    return rx.hstack(
        rx.hstack(
            rx.button(
                rx.icon("pencil", size=14, aria_hidden="true"),
                "Edit",
                size="1",
                variant="soft",
                color_scheme=rx.cond(KnowledgeState.preview, "gray", "iris"),
                aria_pressed=rx.cond(KnowledgeState.preview, "false", "true"),
                on_click=KnowledgeState.show_editor,
            ),
            rx.button(
                rx.icon("eye", size=14, aria_hidden="true"),
                "Preview",
                size="1",
                variant="soft",
                color_scheme=rx.cond(KnowledgeState.preview, "iris", "gray"),
                aria_pressed=rx.cond(KnowledgeState.preview, "true", "false"),
                on_click=KnowledgeState.show_preview(EDITOR_TEXT),
            ),
            spacing="1",
            role="group",
            aria_label="Editor mode",
        ),
        save_state(),
        rx.spacer(),
        rx.hstack(
            rx.button(
                "Rename",
                size="1",
                variant="soft",
                color_scheme="gray",
                on_click=KnowledgeState.open_rename,
            ),
            rx.cond(
                ~KnowledgeState.doc_is_profile,
                rx.button(
                    "Move",
                    size="1",
                    variant="soft",
                    color_scheme="gray",
                    on_click=KnowledgeState.open_move,
                ),
            ),
            rx.cond(
                ~KnowledgeState.doc_is_fixed,
                rx.button(
                    "Delete",
                    size="1",
                    variant="soft",
                    color_scheme="red",
                    on_click=KnowledgeState.open_delete,
                ),
            ),
            rx.button(
                rx.icon("save", size=14, aria_hidden="true"),
                "Save",
                size="1",
                disabled=KnowledgeState.saving,
                on_click=KnowledgeState.save(EDITOR_TEXT),
                title="Save (Ctrl+S)",
                aria_keyshortcuts="Control+S Meta+S",
                data_testid="save-document",
            ),
            spacing="2",
            wrap="wrap",
        ),
        align="center",
        spacing="2",
        width="100%",
        wrap="wrap",
    )


def backlinks_panel() -> rx.Component:
    return rx.el.section(
        rx.heading("Linked from", as_="h3", size="2", margin_bottom="0.25rem"),
        rx.cond(
            KnowledgeState.backlinks.length() > 0,
            rx.el.ul(
                rx.foreach(
                    KnowledgeState.backlinks,
                    lambda link: rx.el.li(
                        rx.link(link.title, href="/knowledge?doc=" + link.id, size="2"),
                        rx.text(" ", link.path, size="1", color_scheme="gray", as_="span"),
                    ),
                ),
                style={"padding_left": "1.1rem", "margin": "0"},
            ),
            rx.text(
                "No document links here yet. Write [[",
                KnowledgeState.doc_title,
                "]] in another document to link to this one.",
                size="1",
                color_scheme="gray",
            ),
        ),
        aria_label="Linked from",
        padding="0.75rem",
        border="1px solid var(--gray-5)",
        border_radius="var(--radius-3)",
        width="100%",
        data_testid="backlinks",
    )


def editor() -> rx.Component:
    return rx.vstack(
        rx.vstack(
            rx.text(KnowledgeState.doc_breadcrumb, size="1", color_scheme="gray"),
            rx.heading(KnowledgeState.doc_title, as_="h2", size="5", data_testid="document-title"),
            rx.text("Updated ", KnowledgeState.doc_updated, size="1", color_scheme="gray"),
            spacing="1",
            width="100%",
        ),
        document_toolbar(),
        rx.cond(
            KnowledgeState.size_error != "",
            rx.callout.root(
                rx.callout.icon(rx.icon("circle-alert", aria_hidden="true")),
                rx.callout.text(KnowledgeState.size_error),
                color_scheme="red",
                role="alert",
                size="1",
                data_testid="size-error",
            ),
        ),
        # Hidden, not removed, in preview: the unsaved text must survive the toggle.
        rx.text_area(
            id=EDITOR_ID,
            key=KnowledgeState.editor_key,
            default_value=KnowledgeState.saved_content,
            on_change=lambda _value: KnowledgeState.note_edit(EDITOR_BYTES),
            aria_label="Document text (Markdown)",
            spell_check=True,
            resize="vertical",
            width="100%",
            size="2",
            # Rows size the inner textarea; a height on the frame would leave it short.
            rows="16",
            font_family="var(--code-font-family)",
            display=rx.cond(KnowledgeState.preview, "none", "block"),
        ),
        rx.cond(
            KnowledgeState.preview,
            rx.box(
                rx.markdown(
                    KnowledgeState.preview_markdown,
                    # Raw HTML in a document is shown as text, never run or rendered.
                    use_raw=False,
                    use_math=False,
                    use_katex=False,
                ),
                width="100%",
                min_height="22rem",
                padding="0.25rem 1rem",
                border="1px solid var(--gray-5)",
                border_radius="var(--radius-3)",
                overflow_wrap="anywhere",
                data_testid="document-preview",
            ),
        ),
        backlinks_panel(),
        spacing="3",
        width="100%",
        min_width="0",
        data_testid="document-editor-panel",
    )


def no_document() -> rx.Component:
    return rx.vstack(
        rx.icon("book-open", size=32, color="var(--gray-9)", aria_hidden="true"),
        rx.text(
            rx.cond(
                (KnowledgeState.knowledge_rows.length() + KnowledgeState.profile_rows.length()) > 0,
                "Choose a document in the tree, or create one.",
                "No documents yet.",
            ),
            weight="medium",
        ),
        rx.text(
            "Write down what your assistant should know: people, projects, how you work. "
            "Link documents with [[Title]].",
            size="2",
            color_scheme="gray",
            text_align="center",
        ),
        rx.button(
            rx.icon("file-plus", size=15, aria_hidden="true"),
            "New document",
            on_click=KnowledgeState.open_create("document"),
        ),
        align="center",
        padding="2rem 1rem",
        width="100%",
        data_testid="knowledge-empty",
    )


def parent_select(options, *, default_value, select_id: str) -> rx.Component:
    return rx.vstack(
        rx.el.label(rx.text("Inside", size="2", weight="medium"), html_for=select_id),
        rx.el.select(
            rx.foreach(options, lambda option: rx.el.option(option[1], value=option[0])),
            id=select_id,
            name="parent",
            default_value=default_value,
            style=NATIVE_SELECT_STYLE,
        ),
        spacing="1",
        width="100%",
    )


def dialog_buttons(submit_label: str) -> rx.Component:
    return rx.hstack(
        rx.dialog.close(
            rx.button(
                "Cancel",
                type="button",
                variant="soft",
                color_scheme="gray",
                on_click=KnowledgeState.close_dialogs,
            )
        ),
        rx.button(submit_label, type="submit"),
        justify="end",
        spacing="3",
        width="100%",
        margin_top="0.5rem",
    )


def title_input(default_value="") -> rx.Component:
    return rx.vstack(
        rx.el.label(rx.text("Title", size="2", weight="medium"), html_for="document-title-input"),
        rx.input(
            id="document-title-input",
            name="title",
            default_value=default_value,
            required=True,
            max_length=300,
            auto_focus=True,
            width="100%",
        ),
        spacing="1",
        width="100%",
    )


def _close_on_dismiss(opened):
    return rx.cond(opened, rx.noop(), KnowledgeState.close_dialogs)


def create_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(
                rx.cond(KnowledgeState.create_kind == "folder", "New folder", "New document")
            ),
            rx.dialog.description(
                "The title can be anything, e.g. “Sarah O'Neil”; its place in the tree "
                "is made from it.",
                size="2",
                color_scheme="gray",
            ),
            rx.form(
                rx.vstack(
                    form_error(KnowledgeState.dialog_error),
                    title_input(),
                    parent_select(
                        KnowledgeState.create_parents,
                        default_value=KnowledgeState.create_parent,
                        select_id="create-parent",
                    ),
                    dialog_buttons("Create"),
                    spacing="3",
                    width="100%",
                ),
                on_submit=KnowledgeState.create,
                reset_on_submit=False,
            ),
            max_width="28rem",
        ),
        open=KnowledgeState.create_kind != "",
        on_open_change=_close_on_dismiss,
    )


def rename_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Rename"),
            rx.dialog.description(
                "Links to this document keep working.", size="2", color_scheme="gray"
            ),
            rx.form(
                rx.vstack(
                    form_error(KnowledgeState.dialog_error),
                    title_input(KnowledgeState.doc_title),
                    dialog_buttons("Rename"),
                    spacing="3",
                    width="100%",
                ),
                on_submit=KnowledgeState.rename,
                reset_on_submit=False,
            ),
            max_width="28rem",
        ),
        open=KnowledgeState.rename_open,
        on_open_change=_close_on_dismiss,
    )


def move_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Move “", KnowledgeState.doc_title, "”"),
            rx.dialog.description(
                "Everything inside it moves along; links keep working.",
                size="2",
                color_scheme="gray",
            ),
            rx.form(
                rx.vstack(
                    form_error(KnowledgeState.dialog_error),
                    parent_select(
                        KnowledgeState.move_parents,
                        default_value="knowledge",
                        select_id="move-parent",
                    ),
                    dialog_buttons("Move"),
                    spacing="3",
                    width="100%",
                ),
                on_submit=KnowledgeState.move,
                reset_on_submit=False,
            ),
            max_width="28rem",
        ),
        open=KnowledgeState.move_open,
        on_open_change=_close_on_dismiss,
    )


def delete_dialog() -> rx.Component:
    return confirm_dialog(
        title=("Delete “", KnowledgeState.doc_title, "”?"),
        description=rx.cond(
            KnowledgeState.delete_count > 1,
            rx.text.span(
                rx.text.strong(KnowledgeState.delete_count, " documents"),
                " will be deleted: this one and the ",
                KnowledgeState.delete_count - 1,
                " inside it. This cannot be undone.",
                data_testid="delete-count",
            ),
            rx.text.span(
                rx.text.strong("1 document"),
                " will be deleted. This cannot be undone.",
                data_testid="delete-count",
            ),
        ),
        open=KnowledgeState.delete_open,
        on_cancel=KnowledgeState.close_dialogs,
        on_confirm=KnowledgeState.delete,
        error=form_error(KnowledgeState.dialog_error),
        # A failed delete shows its error in the dialog, so it stays open until done.
        close_on_confirm=False,
    )


def messages() -> rx.Component:
    return rx.fragment(
        form_error(KnowledgeState.load_error),
        form_error(KnowledgeState.error),
        rx.cond(
            KnowledgeState.notice != "",
            rx.text(KnowledgeState.notice, size="2", color_scheme="gray", role="status"),
        ),
    )


@page(route="/knowledge", title="Knowledge", on_load=[KnowledgeState.load])
def knowledge() -> rx.Component:
    return rx.vstack(
        rx.script(SAVE_SHORTCUT),
        search_panel(),
        messages(),
        rx.cond(
            KnowledgeState.loading,
            rx.hstack(rx.spinner(), rx.text("Loading your documents…", size="2"), role="status"),
            rx.flex(
                tree_panel(),
                rx.box(
                    rx.cond(KnowledgeState.doc_id != "", editor(), no_document()),
                    flex="1",
                    min_width="0",
                    width="100%",
                ),
                direction=rx.breakpoints(initial="column", md="row"),
                gap="1rem",
                width="100%",
                align="start",
            ),
        ),
        create_dialog(),
        rename_dialog(),
        move_dialog(),
        delete_dialog(),
        spacing="4",
        width="100%",
    )
