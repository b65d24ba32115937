"""State of the app shell: the phone-width sidebar and the service status line."""

from __future__ import annotations

import reflex as rx

from carmenta.health import service as health_service


class ShellState(rx.State):
    sidebar_open: bool = False
    # "checking" while the first check runs, then "ok" or "error".
    service_status: str = "checking"
    service_error: str = ""

    @rx.event
    def toggle_sidebar(self) -> None:
        self.sidebar_open = not self.sidebar_open

    @rx.event
    def close_sidebar(self) -> None:
        self.sidebar_open = False

    @rx.event
    async def check_services(self) -> None:
        self.service_status = "checking"
        database = await health_service.check_database()
        self.service_status = "ok" if database.ok else "error"
        self.service_error = "" if database.ok else (database.error or "unknown error")
