"""The conversations sidebar: a fixed column on wide screens, a drawer on phones."""

import reflex as rx

from carmenta.components.dialogs import confirm_dialog
from carmenta.components.theme import SIDEBAR_WIDTH
from carmenta.state.conversation_list import ConversationItem, ConversationListState
from carmenta.state.shell import ShellState


def brand() -> rx.Component:
    return rx.hstack(
        rx.image(src="/logo.svg", alt="", width="28px", height="28px"),
        rx.heading("Carmenta", size="5", weight="bold"),
        align="center",
        spacing="2",
    )


def conversation_row(item: ConversationItem) -> rx.Component:
    return rx.hstack(
        rx.link(
            rx.vstack(
                rx.text(item.title, size="2", trim="both", class_name="one-line"),
                rx.cond(
                    item.snippet_before + item.snippet_match + item.snippet_after != "",
                    rx.text(
                        item.snippet_before,
                        rx.el.mark(item.snippet_match),
                        item.snippet_after,
                        size="1",
                        color_scheme="gray",
                        class_name="one-line",
                    ),
                ),
                spacing="0",
                align="start",
                min_width="0",
            ),
            href="/chat/" + item.id,
            color="inherit",
            underline="none",
            flex="1",
            min_width="0",
            padding="0.3rem 0.4rem",
            data_testid="conversation-link",
        ),
        rx.dropdown_menu.root(
            rx.dropdown_menu.trigger(
                rx.icon_button(
                    rx.icon("ellipsis", size=14, aria_hidden="true"),
                    variant="ghost",
                    size="1",
                    color_scheme="gray",
                    aria_label="Actions for " + item.title,
                    data_testid="conversation-actions",
                )
            ),
            rx.dropdown_menu.content(
                rx.dropdown_menu.item(
                    "Rename", on_select=ConversationListState.ask_rename(item.id, item.title)
                ),
                rx.dropdown_menu.item(
                    rx.cond(item.starred, "Unstar", "Star"),
                    on_select=ConversationListState.toggle_star(item.id, item.starred),
                ),
                rx.dropdown_menu.item(
                    rx.cond(item.archived, "Unarchive", "Archive"),
                    on_select=ConversationListState.toggle_archive(item.id, item.archived),
                ),
                rx.dropdown_menu.separator(),
                rx.dropdown_menu.item(
                    "Delete…",
                    color="red",
                    on_select=ConversationListState.ask_delete(item.id, item.title),
                ),
            ),
        ),
        rx.cond(
            item.starred, rx.icon("star", size=12, aria_label="Starred", color="var(--amber-9)")
        ),
        align="center",
        spacing="1",
        width="100%",
        border_radius="var(--radius-2)",
        _hover={"background": "var(--gray-a3)"},
        data_testid="conversation-row",
    )


def rename_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Rename conversation"),
            rx.form(
                rx.vstack(
                    rx.input(
                        name="title",
                        value=ConversationListState.rename_text,
                        on_change=ConversationListState.set_rename_text,
                        aria_label="Title",
                        auto_focus=True,
                        data_testid="rename-input",
                    ),
                    rx.hstack(
                        rx.dialog.close(
                            rx.button("Cancel", variant="soft", color_scheme="gray", type="button")
                        ),
                        rx.button("Save", type="submit", data_testid="rename-save"),
                        justify="end",
                        width="100%",
                    ),
                    spacing="3",
                ),
                on_submit=lambda _: ConversationListState.rename(),
            ),
        ),
        open=ConversationListState.rename_id != "",
        on_open_change=lambda _: ConversationListState.close_dialogs(),
    )


def delete_dialog() -> rx.Component:
    return confirm_dialog(
        title="Delete this conversation?",
        description=rx.text.span(
            "“", ConversationListState.delete_title, "” and all its messages will be gone."
        ),
        open=ConversationListState.delete_id != "",
        on_cancel=ConversationListState.close_dialogs,
        on_confirm=ConversationListState.delete,
        confirm_testid="confirm-delete-conversation",
    )


def conversation_list() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.heading(
                "Conversations",
                size="1",
                weight="medium",
                color_scheme="gray",
                as_="h2",
                text_transform="uppercase",
                letter_spacing="0.05em",
            ),
            rx.spacer(),
            rx.button(
                rx.cond(ConversationListState.show_archived, "Active", "Archived"),
                variant="ghost",
                size="1",
                color_scheme="gray",
                on_click=ConversationListState.toggle_archived,
                data_testid="toggle-archived",
            ),
            width="100%",
            align="center",
        ),
        rx.input(
            placeholder="Search conversations",
            value=ConversationListState.query,
            on_change=ConversationListState.search.debounce(300),
            aria_label="Search conversations",
            size="1",
            width="100%",
            data_testid="conversation-search",
        ),
        rx.cond(
            ConversationListState.list_error != "",
            rx.text(ConversationListState.list_error, size="1", color_scheme="red", role="alert"),
        ),
        rx.cond(
            ConversationListState.items.length() > 0,
            rx.vstack(
                rx.foreach(ConversationListState.starred_items, conversation_row),
                rx.foreach(ConversationListState.other_items, conversation_row),
                spacing="0",
                width="100%",
                overflow_y="auto",
                max_height="calc(100dvh - 22rem)",
            ),
            rx.box(
                rx.cond(
                    ConversationListState.query != "",
                    rx.text("No conversation matches.", size="2", color_scheme="gray"),
                    rx.fragment(
                        rx.text("No conversations yet.", size="2", color_scheme="gray"),
                        rx.text(
                            "Start one and it will be listed here.", size="1", color_scheme="gray"
                        ),
                    ),
                ),
                padding="0.75rem",
                border="1px dashed var(--gray-6)",
                border_radius="var(--radius-3)",
                width="100%",
                data_testid="conversations-empty",
            ),
        ),
        rename_dialog(),
        delete_dialog(),
        spacing="2",
        width="100%",
        align="start",
        flex="1",
        min_height="0",
    )


def nav_link(label: str, href: str, icon: str) -> rx.Component:
    return rx.link(
        rx.hstack(
            rx.icon(icon, size=16, aria_hidden="true"),
            rx.text(label, size="2"),
            align="center",
            spacing="2",
            padding="0.4rem 0.5rem",
            border_radius="var(--radius-2)",
            _hover={"background": "var(--gray-a3)"},
        ),
        href=href,
        color="inherit",
        underline="none",
        width="100%",
    )


def sidebar_content() -> rx.Component:
    return rx.vstack(
        brand(),
        rx.button(
            rx.icon("square-pen", size=16, aria_hidden="true"),
            "New conversation",
            width="100%",
            variant="soft",
            on_click=rx.redirect("/"),
            data_testid="new-conversation",
        ),
        conversation_list(),
        rx.spacer(),
        rx.vstack(
            nav_link("Knowledge", "/knowledge", "book-open"),
            nav_link("Memory", "/memory", "brain"),
            nav_link("Connections", "/connections", "plug"),
            nav_link("Files", "/files", "folder"),
            nav_link("Account", "/account", "user-round"),
            spacing="1",
            width="100%",
        ),
        spacing="4",
        height="100%",
        width="100%",
        padding="1rem",
    )


def desktop_sidebar() -> rx.Component:
    return rx.el.nav(
        sidebar_content(),
        aria_label="Conversations",
        display=["none", "none", "flex"],
        width=SIDEBAR_WIDTH,
        min_width=SIDEBAR_WIDTH,
        height="100dvh",
        position="sticky",
        top="0",
        border_right="1px solid var(--gray-5)",
        background="var(--gray-2)",
    )


def mobile_sidebar() -> rx.Component:
    return rx.cond(
        ShellState.sidebar_open,
        rx.box(
            rx.box(
                position="fixed",
                inset="0",
                background="var(--black-a8)",
                on_click=ShellState.close_sidebar,
                aria_hidden="true",
            ),
            rx.el.nav(
                rx.hstack(
                    rx.spacer(),
                    rx.icon_button(
                        rx.icon("x", aria_hidden="true"),
                        variant="ghost",
                        on_click=ShellState.close_sidebar,
                        aria_label="Close menu",
                    ),
                    width="100%",
                    padding="0.5rem 0.5rem 0 0.5rem",
                ),
                sidebar_content(),
                aria_label="Conversations",
                position="fixed",
                top="0",
                left="0",
                bottom="0",
                width="min(85vw, 20rem)",
                background="var(--color-panel-solid)",
                box_shadow="var(--shadow-5)",
                display="flex",
                flex_direction="column",
                data_testid="mobile-sidebar",
            ),
            display=["block", "block", "none"],
            position="fixed",
            inset="0",
            z_index="50",
        ),
    )
