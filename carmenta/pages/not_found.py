"""Shown for any address the app does not know."""

import reflex as rx

from carmenta.components.layout import shell


def not_found() -> rx.Component:
    return shell(
        rx.vstack(
            rx.heading("This page does not exist.", size="6", as_="h2"),
            rx.text("The link may be old, or the address mistyped.", color_scheme="gray"),
            rx.link(rx.button("Back to home", variant="soft"), href="/"),
            spacing="3",
            align="start",
            data_testid="not-found",
        ),
        title="Not found",
    )
