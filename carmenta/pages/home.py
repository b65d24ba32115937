"""The home page: where a conversation starts."""

import reflex as rx

from carmenta.components.layout import page
from carmenta.components.status import service_status
from carmenta.pages.chat import chat_view
from carmenta.state.chat import ChatState, ThreadState


def feature_card(icon: str, title: str, text: str) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.icon(icon, size=20, aria_hidden="true", color="var(--accent-11)", flex_shrink="0"),
            rx.vstack(
                rx.heading(title, size="3", as_="h3"),
                rx.text(text, size="2", color_scheme="gray"),
                spacing="1",
                align="start",
            ),
            spacing="3",
            align="start",
        ),
        width="100%",
    )


@page(route="/", title="Home", on_load=[ChatState.load])
def home() -> rx.Component:
    return rx.vstack(
        service_status(),
        rx.cond(
            ThreadState.messages.length() == 0,
            rx.grid(
                feature_card(
                    "message-circle",
                    "Conversations",
                    "Talk with the models you choose, or offline with your own notes.",
                ),
                feature_card(
                    "library",
                    "Knowledge",
                    "Documents and memories the assistant draws on, all yours to edit.",
                ),
                feature_card(
                    "plug",
                    "Connections",
                    "Slack, Google, Notion, GitHub and more, with tokens kept encrypted.",
                ),
                columns=rx.breakpoints(initial="1", sm="3"),
                spacing="3",
                width="100%",
            ),
        ),
        chat_view(),
        spacing="4",
        align="start",
        width="100%",
        data_testid="home",
    )
