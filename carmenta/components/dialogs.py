"""The confirmation asked before anything is deleted, disconnected or otherwise lost."""

from __future__ import annotations

from typing import Any

import reflex as rx


def confirm_dialog(
    *,
    title: Any,
    description: Any,
    open: Any,
    on_cancel: Any,
    on_confirm: Any,
    confirm_label: str = "Delete",
    cancel_label: str = "Keep it",
    confirm_testid: str | None = None,
    error: rx.Component | None = None,
    close_on_confirm: bool = True,
) -> rx.Component:
    """An alert dialog: a title, what will happen, then Keep / Delete.

    `close_on_confirm=False` keeps it open after the confirm button (the handler closes it,
    or shows `error` inside it when the action fails).
    """
    confirm = rx.button(
        confirm_label,
        color_scheme="red",
        on_click=on_confirm,
        **({"data_testid": confirm_testid} if confirm_testid else {}),
    )
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(*title)
            if isinstance(title, tuple)
            else rx.alert_dialog.title(title),
            rx.alert_dialog.description(description),
            *([error] if error is not None else []),
            rx.hstack(
                rx.alert_dialog.cancel(
                    rx.button(cancel_label, variant="soft", color_scheme="gray", on_click=on_cancel)
                ),
                rx.alert_dialog.action(confirm) if close_on_confirm else confirm,
                spacing="3",
                justify="end",
                margin_top="1rem",
            ),
            max_width="28rem",
        ),
        open=open,
        on_open_change=lambda opened: rx.cond(opened, rx.noop(), on_cancel),
    )
