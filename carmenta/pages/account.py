"""Account: who you are signed in as and where; your data to take away; leaving."""

import reflex as rx

from carmenta.components.auth_layout import form_error
from carmenta.components.layout import page
from carmenta.settings import get_settings
from carmenta.state.account import (
    CONFIRMATION_PHRASE,
    AccountState,
    DataExportState,
    DeleteAccountState,
)
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


def export_card() -> rx.Component:
    building = rx.vstack(
        rx.hstack(
            rx.spinner(size="1"),
            rx.text(
                "Preparing your export… ",
                DataExportState.export_step,
                size="2",
            ),
            spacing="2",
            align="center",
        ),
        rx.progress(
            value=DataExportState.export_percent,
            max=100,
            width="100%",
            aria_label="Export progress",
        ),
        rx.text(DataExportState.export_percent, "%", size="1", color_scheme="gray"),
        width="100%",
        role="status",
        data_testid="export-progress",
    )
    ready = rx.hstack(
        # A plain anchor: the signed link answers with the zip as an attachment, so the
        # browser downloads it without leaving the page (a router link would navigate).
        rx.el.a(
            rx.icon("download", size=16, aria_hidden="true"),
            "Download your data",
            href=DataExportState.export_url,
            download="",
            custom_attrs={"reloadDocument": True},
            class_name="rt-reset rt-BaseButton rt-r-size-2 rt-variant-solid rt-Button",
            data_testid="export-download",
        ),
        rx.text(DataExportState.export_details, size="1", color_scheme="gray"),
        align="center",
        wrap="wrap",
        spacing="3",
    )
    failed = rx.callout.root(
        rx.callout.text(DataExportState.export_error),
        color_scheme="red",
        role="alert",
        size="1",
        data_testid="export-error",
    )
    return rx.card(
        rx.vstack(
            rx.heading("Your data", size="4", as_="h2"),
            rx.text(
                "Download everything you keep here as a zip: conversations, documents, "
                "memories, files, and the list of connected services (never their passwords "
                "or tokens).",
                size="2",
            ),
            rx.cond(
                DataExportState.export_loading,
                rx.hstack(rx.spinner(size="1"), rx.text("Loading…", size="2"), role="status"),
                rx.match(
                    DataExportState.export_status,
                    ("building", building),
                    ("ready", ready),
                    ("failed", failed),
                    rx.text("You have not exported your data yet.", size="2", color_scheme="gray"),
                ),
            ),
            rx.button(
                "Export my data",
                variant="outline",
                on_click=DataExportState.export_data,
                disabled=DataExportState.export_status == "building",
            ),
            spacing="3",
            align="start",
            width="100%",
        ),
        width="100%",
        data_testid="export-card",
    )


def delete_account_card() -> rx.Component:
    uses_password = not get_settings().uses_clerk
    return rx.card(
        rx.vstack(
            rx.heading("Delete account", size="4", as_="h2"),
            rx.text(
                "Deleting your account removes your conversations, documents, memories, files "
                "and connections for good, and disconnects every service you connected. "
                "Export your data first if you want to keep it.",
                size="2",
            ),
            rx.alert_dialog.root(
                rx.alert_dialog.trigger(
                    rx.button("Delete my account…", color_scheme="red", variant="soft"),
                ),
                rx.alert_dialog.content(
                    rx.alert_dialog.title("Delete your account?"),
                    rx.alert_dialog.description(
                        "This cannot be undone. Type ",
                        rx.text.strong(CONFIRMATION_PHRASE),
                        " to confirm.",
                        size="2",
                    ),
                    rx.form(
                        rx.vstack(
                            rx.el.label(
                                rx.text("Confirmation", size="2", weight="medium"),
                                html_for="delete_confirmation",
                            ),
                            rx.input(
                                id="delete_confirmation",
                                name="confirmation",
                                auto_complete="off",
                                width="100%",
                            ),
                            rx.fragment(
                                rx.el.label(
                                    rx.text("Password", size="2", weight="medium"),
                                    html_for="delete_password",
                                ),
                                rx.input(
                                    id="delete_password",
                                    name="password",
                                    type="password",
                                    auto_complete="current-password",
                                    width="100%",
                                ),
                            )
                            if uses_password
                            else rx.fragment(),
                            form_error(DeleteAccountState.delete_error),
                            rx.hstack(
                                rx.alert_dialog.cancel(
                                    rx.button("Cancel", variant="soft", color_scheme="gray")
                                ),
                                rx.button(
                                    "Delete account",
                                    color_scheme="red",
                                    type="submit",
                                    loading=DeleteAccountState.deleting,
                                ),
                                justify="end",
                                width="100%",
                            ),
                            spacing="2",
                            width="100%",
                        ),
                        on_submit=DeleteAccountState.delete_account,
                        reset_on_submit=False,
                        aria_label="Delete account",
                    ),
                ),
                open=DeleteAccountState.delete_open,
                on_open_change=DeleteAccountState.set_delete_open,
            ),
            spacing="3",
            align="start",
            width="100%",
        ),
        width="100%",
        data_testid="delete-account-card",
    )


@page(
    route="/account",
    title="Account",
    on_load=[AccountState.load, DataExportState.load_export],
)
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
        export_card(),
        delete_account_card(),
        spacing="4",
        width="100%",
        data_testid="account-page",
    )
