"""Page objects: the flows the browser tests drive, located by role and label."""

from __future__ import annotations

from playwright.sync_api import Page, expect


class SignUpPage:
    def __init__(self, page: Page) -> None:
        self.page = page

    def open(self) -> SignUpPage:
        self.page.goto("/sign-up")
        expect(self.page.get_by_role("heading", name="Create an account")).to_be_visible()
        return self

    def fill(self, *, email: str, password: str, name: str = "") -> SignUpPage:
        self.page.get_by_label("Email").fill(email)
        if name:
            self.page.get_by_label("Name (optional)").fill(name)
        self.page.get_by_label("Password").fill(password)
        return self

    def sign_up(self, *, email: str, password: str, name: str = "") -> None:
        self.fill(email=email, password=password, name=name)
        self.page.get_by_role("button", name="Create account").click()


class SignInPage:
    def __init__(self, page: Page) -> None:
        self.page = page

    def expect_open(self) -> SignInPage:
        expect(self.page.get_by_role("heading", name="Sign in")).to_be_visible()
        return self

    def sign_in(self, *, email: str, password: str) -> None:
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()


class AppShell:
    def __init__(self, page: Page) -> None:
        self.page = page

    def sign_out(self) -> None:
        self.page.get_by_role("button", name="Account menu").click()
        self.page.get_by_role("menuitem", name="Sign out").click()
