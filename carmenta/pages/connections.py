"""Connections: the services Carmenta may use on your behalf."""

import reflex as rx

from carmenta.components.auth_layout import form_error
from carmenta.components.dialogs import confirm_dialog
from carmenta.components.layout import page
from carmenta.connections.overview import AccountItem, ProviderCard
from carmenta.state.connections import ConnectionsState

STATUS_COLORS = {"connected": "green", "needs_reauth": "amber", "error": "red", "revoked": "gray"}


def status_badge(status, label) -> rx.Component:
    return rx.cond(
        label != "",
        rx.match(
            status,
            *[(name, rx.badge(label, color_scheme=color)) for name, color in STATUS_COLORS.items()],
            rx.badge(label),
        ),
    )


def account_row(account: AccountItem, provider: ProviderCard) -> rx.Component:
    return rx.hstack(
        rx.vstack(
            rx.hstack(
                rx.text(account.label, weight="medium", size="2"),
                rx.cond(account.is_default, rx.badge("Default", variant="outline")),
                status_badge(account.status, account.status_label),
                spacing="2",
                align="center",
                wrap="wrap",
            ),
            rx.cond(account.detail != "", rx.text(account.detail, size="1", color_scheme="red")),
            rx.cond(
                account.history.length() > 0,
                rx.el.details(
                    rx.el.summary(rx.text("History", size="1", color_scheme="gray", as_="span")),
                    rx.foreach(
                        account.history,
                        lambda entry: rx.text(entry, size="1", color_scheme="gray"),
                    ),
                    data_testid="account-history",
                ),
            ),
            spacing="1",
            align="start",
            flex="1",
            min_width="0",
        ),
        rx.hstack(
            rx.cond(
                account.status == "needs_reauth",
                # A full page load: the browser must leave the app for the provider.
                rx.el.a(
                    rx.button("Reconnect", size="1", color_scheme="amber", tab_index=-1),
                    href=provider.connect_url,
                    aria_label="Reconnect " + account.label,
                    custom_attrs={"reloadDocument": True},
                ),
            ),
            rx.cond(
                ~account.is_default,
                rx.button(
                    "Make default",
                    size="1",
                    variant="soft",
                    on_click=ConnectionsState.set_default(account.id),
                ),
            ),
            rx.button(
                rx.cond(ConnectionsState.testing_id == account.id, rx.spinner(size="1"), None),
                "Test",
                size="1",
                variant="soft",
                on_click=ConnectionsState.test_connection(account.id),
                aria_label="Test " + account.label,
            ),
            rx.button(
                "Disconnect",
                size="1",
                variant="soft",
                color_scheme="red",
                on_click=ConnectionsState.ask_disconnect(account.id, account.label),
                aria_label="Disconnect " + account.label,
            ),
            spacing="2",
            wrap="wrap",
        ),
        width="100%",
        align="center",
        padding="0.5rem 0",
        border_top="1px solid var(--gray-4)",
        data_testid="account-row",
        wrap="wrap",
    )


def connect_action(provider: ProviderCard) -> rx.Component:
    label = rx.cond(provider.accounts.length() > 0, "Add another account", "Connect")
    return rx.cond(
        provider.auth_type == "api_key",
        rx.button(
            rx.cond(provider.accounts.length() > 0, "Add another key", "Add key"),
            size="2",
            on_click=ConnectionsState.open_key_dialog(provider.id),
            aria_label="Add a key for " + provider.name,
        ),
        rx.cond(
            provider.configured,
            rx.el.a(
                rx.button(label, size="2", tab_index=-1),
                href=provider.connect_url,
                aria_label="Connect " + provider.name,
                custom_attrs={"reloadDocument": True},
            ),
            rx.tooltip(
                rx.button("Not set up", size="2", disabled=True),
                content=provider.setup_hint,
            ),
        ),
    )


def provider_card(provider: ProviderCard) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.center(
                    rx.cond(
                        provider.logo != "",
                        rx.image(src=provider.logo, alt="", width="28px", height="28px"),
                        rx.icon(provider.icon, size=22),
                    ),
                    width="40px",
                    height="40px",
                    border_radius="var(--radius-3)",
                    background="var(--accent-a3)",
                    color="var(--accent-11)",
                    aria_hidden="true",
                ),
                rx.vstack(
                    rx.hstack(
                        rx.heading(provider.name, size="3", as_="h2"),
                        status_badge(provider.status, provider.status_label),
                        spacing="2",
                        align="center",
                    ),
                    rx.text(provider.description, size="1", color_scheme="gray"),
                    spacing="1",
                    align="start",
                    flex="1",
                ),
                connect_action(provider),
                width="100%",
                align="center",
                spacing="3",
            ),
            rx.cond(
                ~provider.configured & (provider.auth_type == "oauth"),
                rx.text(provider.setup_hint, size="1", color_scheme="gray"),
            ),
            rx.foreach(provider.accounts, lambda account: account_row(account, provider)),
            spacing="2",
            width="100%",
        ),
        width="100%",
        data_testid="provider-card",
        data_provider=provider.id,
    )


def disconnect_dialog() -> rx.Component:
    return confirm_dialog(
        title="Disconnect this account?",
        description=rx.text(
            "Carmenta will revoke its access to ",
            rx.text.strong(ConnectionsState.pending_disconnect_label),
            " and delete the stored credentials.",
        ),
        open=ConnectionsState.pending_disconnect_id != "",
        on_cancel=ConnectionsState.cancel_disconnect,
        on_confirm=ConnectionsState.confirm_disconnect,
        confirm_label="Disconnect",
    )


def api_key_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("API key for ", ConnectionsState.key_provider_name),
            rx.dialog.description(ConnectionsState.key_hint, size="2", color_scheme="gray"),
            rx.form(
                rx.vstack(
                    form_error(ConnectionsState.key_error),
                    rx.el.label(rx.text("API key", size="2", weight="medium"), html_for="api_key"),
                    rx.input(
                        id="api_key",
                        name="api_key",
                        type="password",
                        auto_complete="off",
                        required=True,
                        width="100%",
                        on_change=ConnectionsState.check_key.debounce(250),
                        aria_describedby="api-key-problem",
                    ),
                    rx.text(
                        ConnectionsState.key_problem,
                        id="api-key-problem",
                        size="1",
                        color_scheme="red",
                        aria_live="polite",
                        data_testid="api-key-problem",
                    ),
                    rx.cond(
                        ConnectionsState.key_needs_base_url,
                        rx.vstack(
                            rx.el.label(
                                rx.text("Base URL", size="2", weight="medium"), html_for="base_url"
                            ),
                            rx.input(
                                id="base_url",
                                name="base_url",
                                type="url",
                                placeholder="https://api.openai.com/v1",
                                width="100%",
                            ),
                            spacing="1",
                            width="100%",
                        ),
                    ),
                    rx.hstack(
                        rx.dialog.close(
                            rx.button(
                                "Cancel",
                                type="button",
                                variant="soft",
                                color_scheme="gray",
                                on_click=ConnectionsState.close_key_dialog,
                            )
                        ),
                        rx.button(
                            rx.cond(ConnectionsState.saving_key, rx.spinner(size="1"), None),
                            "Check and save",
                            type="submit",
                            disabled=ConnectionsState.saving_key,
                        ),
                        justify="end",
                        spacing="3",
                        width="100%",
                    ),
                    spacing="2",
                    width="100%",
                ),
                on_submit=ConnectionsState.save_key,
                reset_on_submit=False,
                aria_label="Add an API key",
            ),
            max_width="30rem",
        ),
        open=ConnectionsState.key_provider_id != "",
        on_open_change=lambda opened: rx.cond(opened, rx.noop(), ConnectionsState.close_key_dialog),
    )


@page(route="/connections", title="Connections", on_load=[ConnectionsState.load])
def connections() -> rx.Component:
    return rx.vstack(
        rx.text(
            "Connect the services your assistant may search and act in. Tokens are encrypted "
            "and can be disconnected at any time.",
            color_scheme="gray",
            size="2",
        ),
        rx.cond(
            ConnectionsState.message != "",
            rx.callout.root(
                rx.callout.text(ConnectionsState.message),
                color_scheme="green",
                role="status",
                size="1",
            ),
        ),
        form_error(ConnectionsState.error),
        rx.cond(
            ConnectionsState.loading,
            rx.hstack(rx.spinner(), rx.text("Loading connections…", size="2"), role="status"),
            rx.vstack(
                rx.foreach(ConnectionsState.providers, provider_card), spacing="3", width="100%"
            ),
        ),
        disconnect_dialog(),
        api_key_dialog(),
        spacing="4",
        width="100%",
    )
