"""The service status line: loading, healthy and failing states."""

import reflex as rx

from carmenta.state.shell import ShellState


def service_status() -> rx.Component:
    return rx.box(
        rx.match(
            ShellState.service_status,
            (
                "ok",
                rx.callout(
                    "Carmenta is running and its database is connected.",
                    icon="circle-check",
                    color_scheme="green",
                    variant="surface",
                    size="1",
                ),
            ),
            (
                "error",
                rx.callout.root(
                    rx.callout.icon(rx.icon("triangle-alert", aria_hidden="true")),
                    rx.callout.text(
                        "Carmenta cannot reach its database right now (",
                        ShellState.service_error,
                        "). Your data is safe; check that PostgreSQL is running, then try again.",
                    ),
                    rx.button(
                        "Try again",
                        size="1",
                        variant="soft",
                        on_click=ShellState.check_services,
                        width="fit-content",
                    ),
                    color_scheme="red",
                    role="alert",
                ),
            ),
            rx.hstack(
                rx.spinner(size="2"),
                rx.text("Checking services…", size="2", color_scheme="gray"),
                align="center",
                role="status",
            ),
        ),
        aria_live="polite",
        data_testid="service-status",
        data_status=ShellState.service_status,
        width="100%",
    )
