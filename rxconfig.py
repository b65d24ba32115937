"""Reflex configuration. Carmenta's own settings live in carmenta/settings.py."""

import reflex as rx

from carmenta.components.theme import APP_THEME
from carmenta.settings import get_settings

config = rx.Config(
    app_name="carmenta",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    # The browser reaches the backend at the app's own address (one port serves both).
    api_url=get_settings().app_url,
    deploy_url=get_settings().app_url,
    # Set: page state lives in Redis (Reflex picks its Redis state manager), so every
    # instance behind the load balancer serves every person. Unset: this process only.
    redis_url=get_settings().redis_url,
    plugins=[rx.plugins.RadixThemesPlugin(theme=APP_THEME)],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
