"""Memory: the short facts and preferences the assistant keeps about you."""

import reflex as rx

from carmenta.components.auth_layout import form_error
from carmenta.components.dialogs import confirm_dialog
from carmenta.components.layout import page
from carmenta.memory.browse import KIND_LABELS, EarlierVersion, MemoryCard
from carmenta.memory.extraction import MAX_MEMORY_CHARS
from carmenta.state.memory import MemoryState

KIND_COLORS = {"fact": "blue", "preference": "grass", "instruction": "orange"}

NATIVE_SELECT_STYLE = {
    "height": "2rem",
    "padding": "0 0.5rem",
    "border_radius": "var(--radius-2)",
    "border": "1px solid var(--gray-7)",
    "background": "var(--color-surface)",
    "color": "var(--gray-12)",
    "font_size": "var(--font-size-2)",
}


def kind_badge(memory: MemoryCard) -> rx.Component:
    return rx.match(
        memory.kind,
        *[
            (kind, rx.badge(memory.kind_label, color_scheme=color, variant="soft"))
            for kind, color in KIND_COLORS.items()
        ],
        rx.badge(memory.kind_label, variant="soft"),
    )


def add_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.heading("Add a memory", as_="h2", size="3"),
            form_error(MemoryState.add_error),
            rx.text_area(
                name="content",
                placeholder="e.g. I am vegetarian; my sister is called Lena.",
                aria_label="New memory",
                max_length=MAX_MEMORY_CHARS,
                rows="2",
                width="100%",
            ),
            rx.hstack(
                rx.el.label(rx.text("Kind", size="2"), html_for="memory-kind"),
                rx.el.select(
                    *[rx.el.option(label, value=kind) for kind, label in KIND_LABELS.items()],
                    id="memory-kind",
                    name="kind",
                    default_value="fact",
                    style=NATIVE_SELECT_STYLE,
                ),
                rx.spacer(),
                rx.button(
                    rx.cond(MemoryState.adding, rx.spinner(size="1"), None),
                    "Remember",
                    type="submit",
                    disabled=MemoryState.adding,
                ),
                align="center",
                spacing="2",
                width="100%",
            ),
            spacing="2",
            width="100%",
        ),
        key=MemoryState.add_form_key,
        on_submit=MemoryState.add,
        reset_on_submit=False,
        aria_label="Add a memory",
        width="100%",
        padding="0.75rem",
        border="1px solid var(--gray-5)",
        border_radius="var(--radius-3)",
    )


def search_form() -> rx.Component:
    return rx.form(
        rx.hstack(
            rx.input(
                rx.input.slot(rx.icon("search", size=15, aria_hidden="true")),
                name="query",
                type="search",
                placeholder="Search memories",
                aria_label="Search memories",
                value=MemoryState.query,
                on_change=MemoryState.set_query,
                flex="1",
            ),
            rx.button(
                rx.cond(MemoryState.searching, rx.spinner(size="1"), None),
                "Search",
                type="submit",
                variant="soft",
                disabled=MemoryState.searching,
            ),
            rx.cond(
                MemoryState.searched,
                rx.button(
                    "Show all",
                    type="button",
                    variant="ghost",
                    color_scheme="gray",
                    on_click=MemoryState.clear_search,
                ),
            ),
            spacing="2",
            width="100%",
        ),
        on_submit=MemoryState.run_search,
        reset_on_submit=False,
        role="search",
        width="100%",
    )


def earlier_version(version: EarlierVersion) -> rx.Component:
    return rx.el.li(
        rx.text(version.content, size="1"),
        rx.text(" (until ", version.replaced, ")", size="1", color_scheme="gray", as_="span"),
    )


def edit_form(memory: MemoryCard) -> rx.Component:
    return rx.form(
        rx.vstack(
            form_error(MemoryState.edit_error),
            rx.text_area(
                name="content",
                default_value=memory.content,
                aria_label="Memory text",
                max_length=MAX_MEMORY_CHARS,
                auto_focus=True,
                rows="2",
                width="100%",
            ),
            rx.hstack(
                rx.button(
                    "Cancel",
                    type="button",
                    size="1",
                    variant="soft",
                    color_scheme="gray",
                    on_click=MemoryState.cancel_edit,
                ),
                rx.button("Save", type="submit", size="1"),
                spacing="2",
                justify="end",
                width="100%",
            ),
            spacing="2",
            width="100%",
        ),
        on_submit=MemoryState.save_edit,
        reset_on_submit=False,
        aria_label="Edit memory",
        width="100%",
    )


def memory_row(memory: MemoryCard) -> rx.Component:
    editing = MemoryState.editing_id == memory.id
    return rx.box(
        rx.hstack(
            rx.vstack(
                rx.cond(
                    editing,
                    edit_form(memory),
                    rx.text(memory.content, size="2", data_testid="memory-content"),
                ),
                rx.hstack(
                    kind_badge(memory),
                    rx.cond(
                        memory.pinned,
                        rx.badge(
                            rx.icon("pin", size=12, aria_hidden="true"),
                            "Pinned",
                            variant="outline",
                        ),
                    ),
                    rx.text(memory.source_label, size="1", color_scheme="gray"),
                    rx.text("·", size="1", color_scheme="gray", aria_hidden="true"),
                    rx.text(memory.confidence_label, size="1", color_scheme="gray"),
                    rx.text("·", size="1", color_scheme="gray", aria_hidden="true"),
                    rx.text(
                        "Added ",
                        memory.created,
                        rx.cond(memory.edited, ", changed " + memory.updated, ""),
                        size="1",
                        color_scheme="gray",
                    ),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
                rx.cond(
                    memory.history.length() > 0,
                    rx.el.details(
                        rx.el.summary(
                            rx.text(
                                "Replaced ",
                                memory.history.length(),
                                " earlier version(s)",
                                size="1",
                                color_scheme="gray",
                                as_="span",
                            )
                        ),
                        rx.el.ul(
                            rx.foreach(memory.history, earlier_version),
                            style={"padding_left": "1.1rem", "margin": "0.25rem 0 0"},
                        ),
                        data_testid="memory-history",
                    ),
                ),
                spacing="2",
                align="start",
                flex="1",
                min_width="0",
            ),
            rx.cond(
                ~editing,
                rx.hstack(
                    rx.icon_button(
                        rx.cond(
                            memory.pinned,
                            rx.icon("pin-off", size=16, aria_hidden="true"),
                            rx.icon("pin", size=16, aria_hidden="true"),
                        ),
                        variant="ghost",
                        color_scheme="gray",
                        aria_label=rx.cond(memory.pinned, "Unpin: ", "Pin: ") + memory.content,
                        aria_pressed=rx.cond(memory.pinned, "true", "false"),
                        on_click=MemoryState.toggle_pin(memory.id, ~memory.pinned),
                    ),
                    rx.icon_button(
                        rx.icon("pencil", size=16, aria_hidden="true"),
                        variant="ghost",
                        color_scheme="gray",
                        aria_label="Edit: " + memory.content,
                        on_click=MemoryState.start_edit(memory.id),
                    ),
                    rx.icon_button(
                        rx.icon("trash-2", size=16, aria_hidden="true"),
                        variant="ghost",
                        color_scheme="red",
                        aria_label="Delete: " + memory.content,
                        on_click=MemoryState.ask_delete(memory.id, memory.content),
                    ),
                    spacing="1",
                ),
            ),
            align="start",
            spacing="3",
            width="100%",
        ),
        padding="0.75rem 0",
        border_bottom="1px solid var(--gray-4)",
        width="100%",
        data_testid="memory-row",
        data_pinned=rx.cond(memory.pinned, "true", "false"),
    )


def memory_list() -> rx.Component:
    return rx.cond(
        MemoryState.loading,
        rx.hstack(rx.spinner(), rx.text("Loading your memories…", size="2"), role="status"),
        rx.cond(
            MemoryState.memories.length() > 0,
            rx.vstack(
                rx.foreach(MemoryState.memories, memory_row),
                spacing="0",
                width="100%",
                data_testid="memory-list",
            ),
            rx.cond(
                MemoryState.searched,
                rx.text(
                    "No memory matches “",
                    MemoryState.query,
                    "”.",
                    size="2",
                    color_scheme="gray",
                    data_testid="memory-search-empty",
                ),
                rx.vstack(
                    rx.icon("brain", size=32, color="var(--gray-9)", aria_hidden="true"),
                    rx.text("No memories yet.", weight="medium"),
                    rx.text(
                        "Add what your assistant should always keep in mind, or tell it "
                        "“remember that …” in a conversation.",
                        size="2",
                        color_scheme="gray",
                        text_align="center",
                    ),
                    align="center",
                    padding="2rem 1rem",
                    width="100%",
                    data_testid="memory-empty",
                ),
            ),
        ),
    )


def delete_dialog() -> rx.Component:
    return confirm_dialog(
        title="Delete this memory?",
        description=rx.text.span(
            "Your assistant will forget “",
            rx.text.strong(MemoryState.pending_delete_text),
            "”. This cannot be undone.",
        ),
        open=MemoryState.pending_delete_id != "",
        on_cancel=MemoryState.cancel_delete,
        on_confirm=MemoryState.confirm_delete,
    )


@page(route="/memory", title="Memory", on_load=[MemoryState.load])
def memory() -> rx.Component:
    return rx.vstack(
        rx.text(
            "Short facts and preferences your assistant keeps about you. Pinned memories "
            "are always recalled; the others when they are relevant.",
            color_scheme="gray",
            size="2",
        ),
        add_form(),
        search_form(),
        form_error(MemoryState.load_error),
        form_error(MemoryState.error),
        rx.cond(
            MemoryState.notice != "",
            rx.text(MemoryState.notice, size="2", color_scheme="gray", role="status"),
        ),
        memory_list(),
        delete_dialog(),
        spacing="4",
        width="100%",
    )
