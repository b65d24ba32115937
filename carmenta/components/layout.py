"""The page template: sidebar, header, main landmark, and the page's on_load."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import reflex as rx

from carmenta.components.sidebar import desktop_sidebar, mobile_sidebar
from carmenta.settings import get_settings
from carmenta.state.conversation_list import ConversationListState
from carmenta.state.session import SessionState
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


def user_menu() -> rx.Component:
    if get_settings().uses_clerk:
        from carmenta.components import clerk

        return clerk.user_button()
    initial = rx.cond(SessionState.user_name != "", SessionState.user_name[0].upper(), "?")
    return rx.menu.root(
        rx.menu.trigger(
            rx.button(
                rx.avatar(fallback=initial, size="1", radius="full"),
                rx.text(SessionState.user_name, size="2", display=["none", "inline"]),
                rx.icon("chevron-down", size=14, aria_hidden="true"),
                variant="ghost",
                color_scheme="gray",
                aria_label="Account menu",
                data_testid="account-menu",
            )
        ),
        rx.menu.content(
            rx.box(
                rx.text(SessionState.user_email, size="1", color_scheme="gray"),
                padding="0.25rem 0.75rem",
            ),
            rx.menu.separator(),
            rx.menu.item("Account", on_select=rx.redirect("/account")),
            # The console is a server page, not a Reflex route: a full page load.
            rx.cond(
                SessionState.is_admin,
                rx.menu.item(
                    "Admin", on_select=rx.call_script("window.location.assign('/admin/')")
                ),
            ),
            rx.menu.item("Sign out", on_select=SessionState.sign_out, color_scheme="red"),
        ),
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
            user_menu(),
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


def checking_session() -> rx.Component:
    return rx.center(
        rx.hstack(
            rx.spinner(size="3"),
            rx.text("Checking your session…", color_scheme="gray"),
            align="center",
            role="status",
        ),
        min_height="100dvh",
        data_testid="checking-session",
    )


def signed_out_notice() -> rx.Component:
    # The session ended while the page was open (signed out here or on another device).
    return rx.center(
        rx.vstack(
            rx.heading("You are signed out", size="5", as_="h1"),
            rx.text(
                "Your session has ended. Sign in again to carry on.",
                color_scheme="gray",
                text_align="center",
            ),
            rx.link(rx.button("Sign in again"), href=SessionState.sign_in_again_path),
            align="center",
            spacing="3",
            role="alert",
        ),
        min_height="100dvh",
        padding="1.5rem",
        data_testid="signed-out",
    )


def with_auth_provider(content: rx.Component) -> rx.Component:
    if get_settings().uses_clerk:
        from carmenta.components import clerk

        return clerk.provider(content)
    return content


def protected(content: rx.Component) -> rx.Component:
    # Nothing of a protected page is drawn until the server has verified the session.
    return with_auth_provider(
        rx.cond(
            SessionState.signed_in,
            content,
            rx.cond(SessionState.auth_checked, signed_out_notice(), checking_session()),
        )
    )


@dataclass
class PageSpec:
    route: str
    title: str
    component: Callable[[], rx.Component]
    on_load: list = field(default_factory=list)


PAGES: list[PageSpec] = []


def page(*, route: str, title: str, on_load: list | None = None):
    """Register a page drawn inside the app shell, for signed-in people only."""

    def decorator(render: Callable[[], rx.Component]) -> Callable[[], rx.Component]:
        def wrapped() -> rx.Component:
            return protected(shell(render(), title=title))

        wrapped.__name__ = render.__name__
        PAGES.append(
            PageSpec(
                route=route,
                title=title,
                component=wrapped,
                on_load=[
                    SessionState.require_sign_in,
                    ShellState.check_services,
                    ConversationListState.reload,
                    *(on_load or []),
                ],
            )
        )
        return render

    return decorator


def public_page(*, route: str, title: str, on_load: list | None = None):
    """Register a page anyone may open (sign-in, sign-up); it draws its own frame."""

    def decorator(render: Callable[[], rx.Component]) -> Callable[[], rx.Component]:
        def wrapped() -> rx.Component:
            return with_auth_provider(render())

        wrapped.__name__ = render.__name__
        PAGES.append(PageSpec(route=route, title=title, component=wrapped, on_load=on_load or []))
        return render

    return decorator
