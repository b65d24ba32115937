"""One theme for the whole app; light and dark follow the system unless chosen."""

import reflex as rx

APP_THEME = rx.theme(
    appearance="inherit",
    accent_color="iris",
    gray_color="slate",
    radius="large",
    scaling="100%",
)

SIDEBAR_WIDTH = "17rem"

GLOBAL_STYLE = {
    "font_family": "'Inter', system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    # Focus must always be visible for keyboard users.
    ":focus-visible": {
        "outline": "2px solid var(--accent-8)",
        "outline_offset": "2px",
    },
}
