"""A thin wrapper of Clerk's React components, used when Clerk keys are configured.

Clerk's components draw sign-in, sign-up and the user button; `ClerkSessionSync`
passes Clerk's session token to the server, which verifies it on every event.
"""

from __future__ import annotations

import reflex as rx

from carmenta.settings import get_settings

CLERK_REACT = "@clerk/clerk-react@5.61.11"


class _ClerkComponent(rx.Component):
    library = CLERK_REACT


class ClerkProvider(_ClerkComponent):
    tag = "ClerkProvider"
    publishable_key: rx.Var[str]
    sign_in_url: rx.Var[str]
    sign_up_url: rx.Var[str]
    after_sign_out_url: rx.Var[str]


class SignIn(_ClerkComponent):
    tag = "SignIn"
    routing: rx.Var[str]
    sign_up_url: rx.Var[str]


class SignUp(_ClerkComponent):
    tag = "SignUp"
    routing: rx.Var[str]
    sign_in_url: rx.Var[str]


class UserButton(_ClerkComponent):
    tag = "UserButton"


class ClerkSessionSync(rx.Component):
    library = "$/public" + rx.asset("clerk_session_sync.jsx", shared=False)
    lib_dependencies: list[str] = [CLERK_REACT]
    tag = "ClerkSessionSync"
    on_token: rx.EventHandler[lambda token: [token]]


def sign_in() -> rx.Component:
    return SignIn.create(routing="hash", sign_up_url="/sign-up")


def sign_up() -> rx.Component:
    return SignUp.create(routing="hash", sign_in_url="/sign-in")


def user_button() -> rx.Component:
    return UserButton.create()


def provider(*children: rx.Component) -> rx.Component:
    """Wraps a page in Clerk's provider and keeps the server's token current."""
    from carmenta.state.session import SessionState

    settings = get_settings()
    return ClerkProvider.create(
        ClerkSessionSync.create(on_token=SessionState.set_clerk_token),
        *children,
        publishable_key=settings.clerk_publishable_key or "",
        sign_in_url="/sign-in",
        sign_up_url="/sign-up",
        after_sign_out_url="/sign-in",
    )
