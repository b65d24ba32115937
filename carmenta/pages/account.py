"""Account: who you are signed in as, and where."""

import reflex as rx

from carmenta.components.auth_layout import form_error
from carmenta.components.layout import page
from carmenta.settings import get_settings
from carmenta.state.account import AccountState
from carmenta.state.session import SessionState


def profile_card() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Profile", size="4", as_="h2"),
                rx.text("Email: ", rx.text.strong(SessionState.user_email), size="2"),
                rx.cond(
                    SessionState.is_admin,
                    rx.badge("Administrator", color_scheme="iris", data_testid="admin-badge"),
                ),
                rx.el.label(rx.text("Name", size="2", weight="medium"), html_for="display_name"),
                rx.hstack(
                    rx.input(
                        id="display_name",
                        name="display_name",
                        default_value=SessionState.user_name,
                        auto_complete="name",
                        max_length=80,
                        width="100%",
                    ),
                    rx.button("Save", type="submit"),
                    width="100%",
                ),
                spacing="3",
                align="start",
                width="100%",
            ),
            on_submit=AccountState.save_profile,
            reset_on_submit=False,
            aria_label="Profile",
        ),
        width="100%",
    )


def session_row(item: dict) -> rx.Component:
    return rx.hstack(
        rx.icon("monitor-smartphone", size=18, aria_hidden="true"),
        rx.vstack(
            rx.hstack(
                rx.text(item["device"], weight="medium", size="2"),
                rx.cond(item["current"], rx.badge("This browser", color_scheme="green")),
                spacing="2",
            ),
            rx.text(
                "Signed in ",
                item["started"],
                " from ",
                item["address"],
                size="1",
                color_scheme="gray",
            ),
            spacing="0",
            align="start",
        ),
        rx.spacer(),
        rx.cond(
            item["current"],
            rx.fragment(),
            rx.button(
                "Sign out",
                variant="soft",
                color_scheme="red",
                size="1",
                on_click=AccountState.revoke_session(item["id"]),
                aria_label="Sign out this session",
            ),
        ),
        width="100%",
        align="center",
        padding="0.5rem 0",
        border_bottom="1px solid var(--gray-4)",
        data_testid="session-row",
    )


def sessions_card() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading("Where you are signed in", size="4", as_="h2"),
                rx.spacer(),
                rx.button(
                    "Sign out everywhere else",
                    variant="outline",
                    size="1",
                    on_click=AccountState.revoke_other_sessions,
                ),
                width="100%",
                align="center",
                wrap="wrap",
            ),
            rx.cond(
                AccountState.loading,
                rx.hstack(rx.spinner(), rx.text("Loading sessions…", size="2"), role="status"),
                rx.cond(
                    AccountState.sessions.length() > 0,
                    rx.vstack(
                        rx.foreach(AccountState.sessions, session_row), width="100%", spacing="0"
                    ),
                    rx.text("No other sessions.", color_scheme="gray", size="2"),
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


@page(route="/account", title="Account", on_load=[AccountState.load])
def account() -> rx.Component:
    return rx.vstack(
        rx.cond(
            AccountState.message != "",
            rx.callout.root(
                rx.callout.text(AccountState.message),
                color_scheme="green",
                role="status",
                size="1",
            ),
        ),
        form_error(AccountState.error),
        profile_card(),
        sessions_card() if not get_settings().uses_clerk else rx.fragment(),
        spacing="4",
        width="100%",
        data_testid="account-page",
    )
