import reflex as rx
config = rx.Config(app_name="carmenta", telemetry_enabled=False, plugins=[rx.plugins.SitemapPlugin()] if False else [])
