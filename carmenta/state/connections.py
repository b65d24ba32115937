"""The Connections page: services the user connected, and connecting more."""

from __future__ import annotations

import reflex as rx

from carmenta.connections import overview
from carmenta.connections.overview import ProviderCard
from carmenta.settings import get_settings
from carmenta.state.session import SessionState


class ConnectionsState(SessionState):
    loading: bool = True
    providers: list[ProviderCard] = []
    message: str = ""
    error: str = ""
    # Disconnect confirmation.
    pending_disconnect_id: str = ""
    pending_disconnect_label: str = ""
    # The API-key dialog.
    key_provider_id: str = ""
    key_provider_name: str = ""
    key_needs_base_url: bool = False
    key_hint: str = ""
    key_problem: str = ""
    key_error: str = ""
    saving_key: bool = False
    testing_id: str = ""

    async def _reload(self) -> None:
        user = await self.verified_user()
        if user is None:
            self.providers = []
            return
        self.providers = await overview.provider_cards(
            owner_id=user.user_id, settings=get_settings()
        )

    @rx.event
    async def load(self):
        self.loading = True
        query = self.router.url.query_parameters if self.router.url else {}
        self.error = str(query.get("message", "")) if query.get("error") else ""
        connected = query.get("connected")
        self.message = f"Connected to {connected}." if connected else ""
        try:
            await self._reload()
        except Exception:  # noqa: BLE001 - shown on the page rather than breaking it
            self.error = "Your connections could not be loaded. Try again in a moment."
        self.loading = False

    @rx.event
    async def set_default(self, connection_id: str):
        user = await self.verified_user()
        if user is None:
            return
        if await overview.make_default(owner_id=user.user_id, connection_id=connection_id):
            self.message, self.error = "Default account changed.", ""
        await self._reload()

    @rx.event
    async def test_connection(self, connection_id: str):
        user = await self.verified_user()
        if user is None:
            return
        self.testing_id = connection_id
        yield
        problem = await overview.check(owner_id=user.user_id, connection_id=connection_id)
        self.testing_id = ""
        if problem:
            self.error, self.message = problem, ""
        else:
            self.message, self.error = "The connection works.", ""
        await self._reload()

    @rx.event
    def ask_disconnect(self, connection_id: str, label: str):
        self.pending_disconnect_id = connection_id
        self.pending_disconnect_label = label

    @rx.event
    def cancel_disconnect(self):
        self.pending_disconnect_id = ""
        self.pending_disconnect_label = ""

    @rx.event
    async def confirm_disconnect(self):
        connection_id, label = self.pending_disconnect_id, self.pending_disconnect_label
        self.cancel_disconnect()
        user = await self.verified_user()
        if user is None or not connection_id:
            return
        if await overview.remove(owner_id=user.user_id, connection_id=connection_id):
            self.message, self.error = f"Disconnected {label}.", ""
        else:
            self.error = "That connection no longer exists."
        await self._reload()

    @rx.event
    def open_key_dialog(self, provider_id: str):
        card = next((card for card in self.providers if card.id == provider_id), None)
        if card is None:
            return
        self.key_provider_id = card.id
        self.key_provider_name = card.name
        self.key_needs_base_url = card.needs_base_url
        self.key_hint = card.api_key_hint
        self.key_problem = self.key_error = ""
        self.saving_key = False

    @rx.event
    def close_key_dialog(self):
        self.key_provider_id = ""
        self.key_problem = self.key_error = ""

    @rx.event
    def check_key(self, value: str):
        # The key is checked as typed and then forgotten; it is never kept in state.
        problem = overview.key_problem(
            provider_id=self.key_provider_id, api_key=value, settings=get_settings()
        )
        self.key_problem = problem or "" if value else ""

    @rx.event
    async def save_key(self, form_data: dict):
        user = await self.verified_user()
        if user is None or not self.key_provider_id:
            return
        api_key = str(form_data.get("api_key", "")).strip()
        base_url = str(form_data.get("base_url", "")).strip() or None
        self.saving_key, self.key_error = True, ""
        yield
        problem = await overview.add_key(
            owner_id=user.user_id,
            provider_id=self.key_provider_id,
            api_key=api_key,
            base_url=base_url,
            settings=get_settings(),
        )
        self.saving_key = False
        if problem:
            self.key_error = problem
            return
        self.message, self.error = f"{self.key_provider_name} key saved.", ""
        self.key_provider_id = ""
        await self._reload()
