"""Create an account: built-in accounts with password rules shown as you type."""

import reflex as rx

from carmenta.components import clerk
from carmenta.components.auth_layout import auth_frame, form_error, labelled_input
from carmenta.components.layout import public_page
from carmenta.settings import get_settings
from carmenta.state.auth_forms import SignUpState


def password_rule(rule: dict) -> rx.Component:
    return rx.hstack(
        rx.cond(
            rule["met"],
            rx.icon("circle-check", size=16, color="var(--green-10)", aria_hidden="true"),
            rx.icon("circle", size=16, color="var(--gray-8)", aria_hidden="true"),
        ),
        rx.text(rule["label"], size="1"),
        rx.el.span(rx.cond(rule["met"], " (met)", " (not met yet)"), class_name="sr-only"),
        spacing="2",
        align="center",
    )


def builtin_sign_up_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            form_error(SignUpState.error),
            labelled_input(
                "Email",
                name="email",
                type="email",
                auto_complete="email",
                required=True,
                placeholder="you@example.com",
                on_change=SignUpState.set_email_value.debounce(300),
            ),
            labelled_input(
                "Name (optional)",
                name="display_name",
                id="display_name",
                auto_complete="name",
                placeholder="What should Carmenta call you?",
            ),
            labelled_input(
                "Password",
                name="password",
                type="password",
                auto_complete="new-password",
                required=True,
                on_change=SignUpState.check_password.debounce(150),
                aria_describedby="password-rules",
            ),
            rx.vstack(
                rx.foreach(SignUpState.rule_results, password_rule),
                id="password-rules",
                spacing="1",
                aria_live="polite",
                data_testid="password-rules",
            ),
            rx.button(
                rx.cond(SignUpState.submitting, rx.spinner(size="2"), None),
                "Create account",
                type="submit",
                size="3",
                width="100%",
                disabled=SignUpState.submitting,
            ),
            rx.text("Already have an account? ", rx.link("Sign in", href="/sign-in"), size="2"),
            spacing="4",
            width="100%",
        ),
        on_submit=SignUpState.submit,
        reset_on_submit=False,
        width="100%",
        aria_label="Create an account",
    )


@public_page(route="/sign-up", title="Create an account", on_load=[SignUpState.leave_if_signed_in])
def sign_up() -> rx.Component:
    if get_settings().uses_clerk:
        return auth_frame(clerk.sign_up(), heading="Create an account", subheading="")
    return auth_frame(
        builtin_sign_up_form(),
        heading="Create an account",
        subheading="Your assistant, your data, on your own server.",
    )
