"""The page template: sidebar, header, main landmark, and the page's on_load."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import reflex as rx

from carmenta.components.sidebar import desktop_sidebar, mobile_sidebar
from carmenta.state.shell import ShellState


def color_mode_toggle() -> rx.Component:
    return rx.icon_button(
        rx.color_mode_cond(
            light=rx.icon("moon", aria_hidden="true"),
            dark=rx.icon("sun", aria_hidden="true"),
        ),
        on_click=rx.toggle_color_mode,
        variant="ghost",
        color_scheme="gray",
        aria_label="Switch between light and dark theme",
        data_testid="theme-toggle",
    )


def header(title: str) -> rx.Component:
    return rx.el.header(
        rx.hstack(
            rx.icon_button(
                rx.icon("menu", aria_hidden="true"),
                variant="ghost",
                color_scheme="gray",
                on_click=ShellState.toggle_sidebar,
                aria_label="Open menu",
                display=["inline-flex", "inline-flex", "none"],
                data_testid="open-menu",
            ),
            rx.heading(title, size="4", as_="h1", weight="medium"),
            rx.spacer(),
            color_mode_toggle(),
            align="center",
            spacing="3",
            width="100%",
        ),
        padding="0.75rem 1rem",
        border_bottom="1px solid var(--gray-5)",
        position="sticky",
        top="0",
        background="var(--color-background)",
        z_index="10",
    )


def skip_link() -> rx.Component:
    return rx.el.a(
        "Skip to content",
        href="#main",
        class_name="skip-link",
    )


def shell(content: rx.Component, *, title: str) -> rx.Component:
    return rx.box(
        skip_link(),
        rx.hstack(
            desktop_sidebar(),
            mobile_sidebar(),
            rx.box(
                header(title),
                rx.el.main(
                    content,
                    id="main",
                    tab_index=-1,
                    padding=["1rem", "1.5rem", "2rem"],
                    width="100%",
                    max_width="60rem",
                    margin="0 auto",
                ),
                flex="1",
                min_width="0",
                min_height="100dvh",
            ),
            spacing="0",
            align="start",
            width="100%",
        ),
    )


@dataclass
class PageSpec:
    route: str
    title: str
    component: Callable[[], rx.Component]
    on_load: list = field(default_factory=list)


PAGES: list[PageSpec] = []


def page(*, route: str, title: str, on_load: list | None = None):
    """Register a page that is drawn inside the app shell."""

    def decorator(render: Callable[[], rx.Component]) -> Callable[[], rx.Component]:
        def wrapped() -> rx.Component:
            return shell(render(), title=title)

        wrapped.__name__ = render.__name__
        PAGES.append(
            PageSpec(
                route=route,
                title=title,
                component=wrapped,
                on_load=[ShellState.check_services, *(on_load or [])],
            )
        )
        return render

    return decorator
