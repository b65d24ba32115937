"""Sign in: built-in accounts by email and password, or Clerk's own component."""

import reflex as rx

from carmenta.components import clerk
from carmenta.components.auth_layout import auth_frame, form_error, labelled_input
from carmenta.components.layout import public_page
from carmenta.settings import get_settings
from carmenta.state.auth_forms import SignInState


def builtin_sign_in_form() -> rx.Component:
    return rx.form(
        rx.vstack(
            form_error(SignInState.error),
            labelled_input(
                "Email",
                name="email",
                type="email",
                auto_complete="email",
                required=True,
                placeholder="you@example.com",
            ),
            labelled_input(
                "Password",
                name="password",
                type="password",
                auto_complete="current-password",
                required=True,
            ),
            rx.button(
                rx.cond(SignInState.submitting, rx.spinner(size="2"), None),
                "Sign in",
                type="submit",
                size="3",
                width="100%",
                disabled=SignInState.submitting,
            ),
            rx.text(
                "New here? ",
                rx.link("Create an account", href="/sign-up"),
                size="2",
            ),
            spacing="4",
            width="100%",
        ),
        on_submit=SignInState.submit,
        reset_on_submit=False,
        width="100%",
        aria_label="Sign in",
    )


@public_page(route="/sign-in", title="Sign in", on_load=[SignInState.leave_if_signed_in])
def sign_in() -> rx.Component:
    if get_settings().uses_clerk:
        return auth_frame(clerk.sign_in(), heading="Sign in", subheading="Welcome back.")
    return auth_frame(
        builtin_sign_in_form(),
        heading="Sign in",
        subheading="Welcome back. Sign in to continue.",
    )
