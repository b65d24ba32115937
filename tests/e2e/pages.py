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


class KnowledgePage:
    """The Knowledge page: tree, editor, dialogs and search."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def open(self, document_id: str | None = None) -> KnowledgePage:
        self.page.goto(f"/knowledge?doc={document_id}" if document_id else "/knowledge")
        expect(self.page.get_by_role("navigation", name="Documents")).to_be_visible()
        return self

    @property
    def tree(self):
        return self.page.get_by_role("navigation", name="Documents")

    def tree_row(self, title: str):
        return self.page.get_by_test_id("tree-row").filter(
            has=self.page.get_by_text(title, exact=True)
        )

    @property
    def editor(self):
        return self.page.get_by_role("textbox", name="Document text (Markdown)")

    @property
    def title(self):
        return self.page.get_by_test_id("document-title")

    def create(self, kind: str, title: str, *, inside: str | None = None) -> None:
        """`kind` is "document" or "folder"; `inside` is the breadcrumb of the parent."""
        self.tree.get_by_role("button", name=f"New {kind}").click()
        dialog = self.page.get_by_role("dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_label("Title").fill(title)
        if inside is not None:
            dialog.get_by_label("Inside").select_option(label=inside)
        dialog.get_by_role("button", name="Create").click()
        expect(dialog).to_be_hidden()
        expect(self.title).to_have_text(title)

    def write(self, text: str) -> None:
        self.editor.fill(text)
        expect(self.page.get_by_text("Unsaved changes")).to_be_visible()

    def save(self) -> None:
        self.page.get_by_test_id("save-document").click()
        expect(self.page.get_by_text("Saved", exact=True)).to_be_visible()

    def move_to(self, inside: str) -> None:
        self.page.get_by_role("button", name="Move", exact=True).click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_label("Inside").select_option(label=inside)
        dialog.get_by_role("button", name="Move").click()
        expect(dialog).to_be_hidden()

    def search(self, query: str):
        self.page.get_by_role("searchbox", name="Search documents").fill(query)
        self.page.get_by_role("search").get_by_role("button", name="Search").click()
        results = self.page.get_by_test_id("search-results")
        expect(results).to_be_visible()
        return results


class MemoryPage:
    def __init__(self, page: Page) -> None:
        self.page = page

    def open(self) -> MemoryPage:
        self.page.goto("/memory")
        expect(self.page.get_by_role("form", name="Add a memory")).to_be_visible()
        return self

    def row(self, text: str):
        return self.page.get_by_test_id("memory-row").filter(has_text=text)

    def add(self, text: str, *, kind: str = "Fact") -> None:
        form = self.page.get_by_role("form", name="Add a memory")
        form.get_by_role("textbox", name="New memory").fill(text)
        form.get_by_label("Kind").select_option(label=kind)
        form.get_by_role("button", name="Remember").click()
        expect(self.row(text)).to_be_visible(timeout=30_000)
