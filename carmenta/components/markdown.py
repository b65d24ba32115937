"""Markdown as the thread shows it: raw HTML stays text, code blocks highlighted with a
copy button, links open in a new tab."""

from __future__ import annotations

import reflex as rx


def _code_block(value: object, **props) -> rx.Component:
    return rx.code_block(
        value,
        can_copy=True,
        wrap_long_lines=True,
        margin_y="0.75em",
        border_radius="var(--radius-3)",
        **props,
    )


def _link(*children, **props) -> rx.Component:
    return rx.link(*children, is_external=True, **props)


def safe_markdown(content: rx.Var | str, **props) -> rx.Component:
    # use_raw=False: HTML in a message is shown as text, never rendered. react-markdown
    # already drops javascript: and other unsafe link targets.
    return rx.markdown(
        content,
        use_raw=False,
        component_map={"pre": _code_block, "a": _link},
        **props,
    )


@rx.memo
def thread_markdown(content: rx.Var[str]) -> rx.Component:
    """A message's text, rendered again only when that text changed.

    While a reply streams, every frame carries the whole thread; without this each
    frame parsed every message's Markdown again, and the newest words waited for it.
    """
    return safe_markdown(content)
