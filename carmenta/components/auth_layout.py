"""The frame of the sign-in and sign-up pages: a centered card, no sidebar."""

import reflex as rx

from carmenta.components.layout import color_mode_toggle


def auth_frame(*children: rx.Component, heading: str, subheading: str) -> rx.Component:
    return rx.box(
        rx.hstack(rx.spacer(), color_mode_toggle(), padding="0.75rem 1rem", width="100%"),
        rx.el.main(
            rx.center(
                rx.card(
                    rx.vstack(
                        rx.hstack(
                            rx.image(src="/logo.svg", alt="", width="32px", height="32px"),
                            rx.text("Carmenta", size="5", weight="bold"),
                            align="center",
                            spacing="2",
                        ),
                        rx.heading(heading, size="6", as_="h1"),
                        rx.text(subheading, color_scheme="gray", size="2"),
                        *children,
                        spacing="4",
                        width="100%",
                    ),
                    size="4",
                    width="100%",
                    max_width="26rem",
                ),
                padding="1rem",
                min_height="80dvh",
            ),
            id="main",
        ),
        min_height="100dvh",
        background="var(--gray-2)",
    )


def form_error(message) -> rx.Component:
    return rx.cond(
        message != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("circle-alert", aria_hidden="true")),
            rx.callout.text(message),
            color_scheme="red",
            role="alert",
            size="1",
            data_testid="form-error",
        ),
    )


def labelled_input(label: str, **props) -> rx.Component:
    input_id = props.setdefault("id", props["name"])
    return rx.vstack(
        rx.el.label(rx.text(label, size="2", weight="medium"), html_for=input_id),
        rx.input(size="3", width="100%", **props),
        spacing="1",
        width="100%",
    )
