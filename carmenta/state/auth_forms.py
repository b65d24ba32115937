"""The sign-in and sign-up forms of built-in accounts."""

from __future__ import annotations

import json

import reflex as rx

from carmenta.auth import passwords
from carmenta.auth import service as auth_service
from carmenta.settings import get_settings
from carmenta.state.session import SessionState


def _complete_sign_in(code: str, return_path: str) -> rx.event.EventSpec:
    # The one-time code becomes the HttpOnly cookie in a same-origin request; the full
    # page load that follows opens a new connection that carries it.
    return rx.call_script(
        "fetch('/auth/session', {method: 'POST', credentials: 'same-origin',"
        " headers: {'Content-Type': 'application/json'},"
        f" body: JSON.stringify({{code: {json.dumps(code)}}})}})"
        f".then(r => {{ if (r.ok) {{ window.location.assign({json.dumps(return_path)}); }}"
        " else { window.location.assign('/sign-in?expired=1'); } })"
    )


class SignInState(SessionState):
    error: str = ""
    submitting: bool = False

    @rx.event
    async def submit(self, form_data: dict):
        self.error = ""
        email = str(form_data.get("email", ""))
        password = str(form_data.get("password", ""))
        if passwords.email_problem(email) or not password:
            self.error = "Enter your email address and password."
            return
        self.submitting = True
        yield
        attempt = await auth_service.sign_in_with_password(
            settings=get_settings(),
            email=email,
            password=password,
            user_agent=self.router.headers.user_agent,
            ip_address=self.router.session.client_ip,
        )
        if attempt.handoff_code is None:
            self.submitting = False
            self.error = attempt.error or "Sign-in failed."
            return
        yield _complete_sign_in(attempt.handoff_code, self.return_path())


class SignUpState(SessionState):
    error: str = ""
    submitting: bool = False
    email_value: str = ""
    # The rules the password meets so far; the password itself is never kept.
    rule_results: list[dict[str, str | bool]] = [
        {"label": rule.label, "met": False} for rule in passwords.password_rules("")
    ]
    password_ok: bool = False

    @rx.event
    def set_email_value(self, value: str):
        self.email_value = value[:254]

    @rx.event
    def check_password(self, value: str):
        rules = passwords.password_rules(value, email=self.email_value)
        self.rule_results = [{"label": rule.label, "met": rule.met} for rule in rules]
        self.password_ok = all(rule.met for rule in rules)

    @rx.event
    async def submit(self, form_data: dict):
        self.error = ""
        email = str(form_data.get("email", ""))
        password = str(form_data.get("password", ""))
        if problem := passwords.email_problem(email):
            self.error = problem
            return
        if problems := passwords.password_problems(password, email=email):
            self.error = "Choose a stronger password: " + "; ".join(problems).lower() + "."
            return
        self.submitting = True
        yield
        attempt = await auth_service.sign_up_with_password(
            settings=get_settings(),
            email=email,
            password=password,
            display_name=str(form_data.get("display_name", "")) or None,
            user_agent=self.router.headers.user_agent,
            ip_address=self.router.session.client_ip,
        )
        if attempt.handoff_code is None:
            self.submitting = False
            self.error = attempt.error or "Sign-up failed."
            return
        yield _complete_sign_in(attempt.handoff_code, self.return_path())
