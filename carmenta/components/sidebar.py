"""The conversations sidebar: a fixed column on wide screens, a drawer on phones."""

import reflex as rx

from carmenta.components.theme import SIDEBAR_WIDTH
from carmenta.state.shell import ShellState


def brand() -> rx.Component:
    return rx.hstack(
        rx.image(src="/logo.svg", alt="", width="28px", height="28px"),
        rx.heading("Carmenta", size="5", weight="bold"),
        align="center",
        spacing="2",
    )


def conversation_list() -> rx.Component:
    # Conversations arrive with the chat; until then the list is honestly empty.
    return rx.vstack(
        rx.heading(
            "Conversations",
            size="1",
            weight="medium",
            color_scheme="gray",
            as_="h2",
            text_transform="uppercase",
            letter_spacing="0.05em",
        ),
        rx.box(
            rx.text("No conversations yet.", size="2", color_scheme="gray"),
            rx.text("Start one and it will be listed here.", size="1", color_scheme="gray"),
            padding="0.75rem",
            border="1px dashed var(--gray-6)",
            border_radius="var(--radius-3)",
            width="100%",
            data_testid="conversations-empty",
        ),
        spacing="2",
        width="100%",
        align="start",
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
