"""A conversation: the thread, with the composer under it."""

from __future__ import annotations

import reflex as rx

from carmenta.chat.thread import AttachmentChip, SourceLink, ThreadMessage, ToolStep
from carmenta.components.file_uploader import file_uploader
from carmenta.components.layout import page
from carmenta.components.markdown import thread_markdown
from carmenta.state.chat import LONG_PASTE_CHARS, ChatState, LiveReplyState, ThreadState

# app.css hides these inside a thread marked data-busy="true".
HIDDEN_WHILE_BUSY = "hidden-while-busy"
DRAFT_DEBOUNCE_MS = 150


def attachment_chip(chip: AttachmentChip) -> rx.Component:
    return rx.hstack(
        rx.cond(
            chip.thumbnail != "",
            rx.image(
                src=chip.thumbnail,
                alt=chip.name,
                width="48px",
                height="48px",
                object_fit="cover",
                border_radius="var(--radius-2)",
                border="1px solid var(--gray-6)",
            ),
            rx.icon("file-text", size=20, aria_hidden="true"),
        ),
        rx.vstack(
            rx.text(chip.name, size="1", weight="medium", trim="both"),
            rx.text(chip.kind, " · ", chip.size, size="1", color_scheme="gray"),
            spacing="0",
            align="start",
            min_width="0",
        ),
        align="center",
        spacing="2",
        padding="0.35rem 0.5rem",
        border="1px solid var(--gray-6)",
        border_radius="var(--radius-3)",
        background="var(--gray-a2)",
        max_width="16rem",
        data_testid="attachment-chip",
    )


def tool_step(step: ToolStep) -> rx.Component:
    icon = rx.match(
        step.status,
        ("done", rx.icon("circle-check", size=16, color="var(--green-10)", aria_hidden="true")),
        ("failed", rx.icon("circle-x", size=16, color="var(--red-10)", aria_hidden="true")),
        ("declined", rx.icon("ban", size=16, color="var(--gray-10)", aria_hidden="true")),
        ("waiting", rx.icon("hand", size=16, color="var(--amber-10)", aria_hidden="true")),
        rx.spinner(size="1"),
    )
    return rx.hstack(
        icon,
        rx.vstack(
            rx.text(step.call, size="2", weight="medium"),
            rx.cond(step.result != "", rx.text(step.result, size="1", color_scheme="gray")),
            spacing="0",
            align="start",
        ),
        spacing="2",
        align="start",
        data_testid="tool-step",
        data_status=step.status,
    )


def source_link(source: SourceLink) -> rx.Component:
    return rx.link(
        source.title,
        href=source.href,
        size="1",
        custom_attrs={"reloadDocument": True},
    )


def context_used(message: ThreadMessage) -> rx.Component:
    return rx.cond(
        message.used != "",
        rx.popover.root(
            rx.popover.trigger(
                rx.button(
                    rx.icon("library", size=14, aria_hidden="true"),
                    "Used ",
                    message.used,
                    variant="ghost",
                    size="1",
                    color_scheme="gray",
                    data_testid="context-used",
                )
            ),
            rx.popover.content(
                rx.vstack(
                    rx.text("What this reply drew on", size="2", weight="bold"),
                    rx.foreach(message.sources, source_link),
                    rx.foreach(
                        message.notices,
                        lambda notice: rx.text(notice, size="1", color_scheme="amber"),
                    ),
                    spacing="1",
                    align="start",
                ),
                max_width="20rem",
            ),
        ),
    )


def writing_indicator() -> rx.Component:
    """A dot while a reply is written, which starts to pulse if the words are slow
    (app.css): one element and one animation, where a spinner's eight animated leaves
    had the page restyle on every frame of the reply."""
    return rx.el.span(
        rx.el.span("Writing", class_name="sr-only"),
        class_name="carmenta-writing",
        data_testid="writing",
    )


def status_line(message: ThreadMessage) -> rx.Component:
    return rx.match(
        message.status,
        (
            "stopped",
            rx.badge("Stopped", color_scheme="gray", data_testid="reply-status"),
        ),
        (
            "interrupted",
            rx.badge(
                "Interrupted: the server stopped while writing",
                color_scheme="amber",
                data_testid="reply-status",
            ),
        ),
        (
            "failed",
            rx.callout.root(
                rx.callout.icon(rx.icon("triangle-alert", size=16)),
                rx.callout.text(rx.cond(message.error != "", message.error, "The reply failed.")),
                color_scheme="red",
                size="1",
                role="alert",
                data_testid="reply-error",
            ),
        ),
        ("streaming", writing_indicator()),
        rx.fragment(),
    )


def confirmation(message: ThreadMessage) -> rx.Component:
    return rx.cond(
        message.status == "waiting",
        rx.hstack(
            rx.text("Carry out this action?", size="2", weight="medium"),
            rx.button(
                "Approve",
                size="1",
                on_click=ChatState.confirm_action(message.id, True),
                data_testid="approve-action",
            ),
            rx.button(
                "Decline",
                size="1",
                variant="soft",
                color_scheme="gray",
                on_click=ChatState.confirm_action(message.id, False),
            ),
            spacing="2",
            align="center",
            padding="0.5rem",
            border="1px solid var(--amber-7)",
            border_radius="var(--radius-3)",
            background="var(--amber-a2)",
        ),
    )


def assistant_message(message: ThreadMessage) -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.icon(
                "sparkles", size=16, aria_hidden="true", color="var(--accent-10)", flex_shrink="0"
            ),
            rx.text(
                rx.cond(message.model_label != "", message.model_label, "Carmenta"),
                size="1",
                color_scheme="gray",
            ),
            rx.cond(message.offline, rx.badge("Offline", size="1", color_scheme="gray")),
            rx.spacer(),
            context_used(message),
            align="center",
            spacing="2",
            width="100%",
            # At phone width "Used 1 document, 3 profile notes" takes a line of its own
            # rather than running off the screen.
            flex_wrap="wrap",
            row_gap="0.25rem",
        ),
        rx.cond(
            message.preparing != "",
            rx.hstack(
                rx.spinner(size="1"),
                rx.text(message.preparing, size="2", color_scheme="gray"),
                role="status",
                spacing="2",
            ),
        ),
        rx.cond(
            (message.research_job != "") & (message.status == "streaming"),
            rx.vstack(
                rx.hstack(
                    rx.spinner(size="1"),
                    rx.text(message.research_step, size="2", data_testid="research-step"),
                    spacing="2",
                    align="center",
                ),
                rx.progress(
                    value=message.research_percent,
                    max=100,
                    width="100%",
                    aria_label="Research progress",
                    data_testid="research-progress",
                ),
                rx.text(
                    "Research runs in the background: you can leave or reload this page.",
                    size="1",
                    color_scheme="gray",
                ),
                width="100%",
                spacing="1",
                role="status",
                padding="0.5rem",
                border="1px solid var(--gray-6)",
                border_radius="var(--radius-3)",
            ),
        ),
        rx.vstack(rx.foreach(message.steps, tool_step), spacing="1", align="start"),
        rx.box(
            # A reply just started has no text: its Markdown (a parser built anew each
            # time, a few milliseconds) is rendered with its first words. The box, a
            # live region, is there from the start so that they are announced.
            rx.cond(message.content != "", thread_markdown(content=message.content)),
            class_name="carmenta-markdown",
            data_testid="assistant-text",
            aria_live=rx.cond(message.status == "streaming", "polite", "off"),
        ),
        confirmation(message),
        rx.hstack(
            status_line(message),
            rx.cond(
                message.id == ThreadState.last_assistant_id,
                rx.button(
                    rx.icon("refresh-cw", size=14, aria_hidden="true"),
                    "Regenerate",
                    size="1",
                    variant="ghost",
                    on_click=ChatState.regenerate,
                    data_testid="regenerate",
                    class_name=HIDDEN_WHILE_BUSY,
                ),
            ),
            spacing="2",
            align="center",
        ),
        width="100%",
        padding_y="0.5rem",
        data_testid="assistant-message",
        data_status=message.status,
    )


def user_message(message: ThreadMessage) -> rx.Component:
    editing = ThreadState.editing_id == message.id
    return rx.vstack(
        rx.cond(
            editing,
            rx.vstack(
                rx.text_area(
                    value=ThreadState.edit_text,
                    on_change=ThreadState.set_edit_text,
                    aria_label="Edit your message",
                    width="100%",
                    rows="3",
                ),
                rx.hstack(
                    rx.button("Send", size="1", on_click=ChatState.resend_edit),
                    rx.button(
                        "Cancel",
                        size="1",
                        variant="soft",
                        color_scheme="gray",
                        on_click=ThreadState.cancel_edit,
                    ),
                    spacing="2",
                ),
                width="100%",
                align="end",
            ),
            rx.box(
                rx.text(message.content, white_space="pre-wrap", size="3"),
                background="var(--accent-a3)",
                padding="0.6rem 0.9rem",
                border_radius="var(--radius-4)",
                max_width="min(40rem, 100%)",
            ),
        ),
        rx.cond(
            message.attachments.length() > 0,
            rx.flex(rx.foreach(message.attachments, attachment_chip), wrap="wrap", gap="0.5rem"),
        ),
        rx.cond(
            (message.id == ThreadState.last_user_id) & ~editing,
            rx.button(
                rx.icon("pencil", size=14, aria_hidden="true"),
                "Edit",
                size="1",
                variant="ghost",
                color_scheme="gray",
                on_click=ThreadState.start_edit(message.id, message.content),
                data_testid="edit-message",
                class_name=HIDDEN_WHILE_BUSY,
            ),
        ),
        align="end",
        width="100%",
        spacing="1",
        data_testid="user-message",
    )


def thread_message(message: ThreadMessage) -> rx.Component:
    return rx.cond(message.role == "user", user_message(message), assistant_message(message))


@rx.memo
def thread_messages() -> rx.Component:
    """The thread as last read. It reads ThreadState alone, so a frame of the streaming
    reply or a keystroke in the composer does not render it again."""
    return rx.foreach(ThreadState.messages, thread_message)


def empty_thread() -> rx.Component:
    return rx.vstack(
        rx.heading("Good to see you.", size="7", as_="h2", weight="bold"),
        rx.text(
            "Carmenta is your own assistant: ask anything. It draws on your profile, "
            "memories, knowledge base and files, and works with the services you connect.",
            color_scheme="gray",
            size="3",
        ),
        spacing="2",
        padding_y="2rem",
        data_testid="empty-thread",
    )


def model_picker() -> rx.Component:
    return rx.select.root(
        rx.select.trigger(aria_label="Model", variant="ghost", data_testid="model-picker"),
        rx.select.content(
            rx.foreach(
                ChatState.models,
                lambda option: rx.select.item(option["label"], value=option["id"]),
            )
        ),
        value=ChatState.model_choice,
        on_change=ChatState.choose_model,
        size="1",
    )


def composer() -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.cond(
                ChatState.pending_attachments.length() > 0,
                rx.flex(
                    rx.foreach(
                        ChatState.pending_attachments,
                        lambda chip: rx.hstack(
                            attachment_chip(chip),
                            rx.icon_button(
                                rx.icon("x", size=14, aria_hidden="true"),
                                size="1",
                                variant="ghost",
                                type="button",
                                aria_label="Remove " + chip.name,
                                on_click=ChatState.remove_attachment(chip.id),
                            ),
                            align="center",
                            spacing="1",
                        ),
                    ),
                    wrap="wrap",
                    gap="0.5rem",
                ),
            ),
            rx.text_area(
                name="message",
                value=ChatState.draft,
                on_change=ChatState.set_draft,
                # The draft reaches the server once typing pauses this long (the default
                # is 300 ms); its sources are read then, ahead of being sent.
                debounce_timeout=DRAFT_DEBOUNCE_MS,
                placeholder="Message Carmenta…  (Enter sends, Shift+Enter adds a line)",
                aria_label="Message",
                enter_key_submit=True,
                rows="3",
                width="100%",
                resize="vertical",
                data_testid="composer-input",
            ),
            rx.hstack(
                rx.box(
                    file_uploader(
                        label="Attach",
                        compact=True,
                        paste_target=True,
                        long_text_chars=LONG_PASTE_CHARS,
                        on_uploaded=ChatState.attached,
                    ),
                    flex="1",
                    # Never narrower than the Attach button: at phone width the row
                    # wraps instead of drawing the switch over it.
                    min_width="fit-content",
                ),
                rx.tooltip(
                    rx.el.label(
                        rx.switch(
                            checked=ChatState.research_mode,
                            on_change=ChatState.set_research_mode,
                            size="1",
                            data_testid="research-mode",
                        ),
                        rx.text("Research", size="1"),
                        display="flex",
                        align_items="center",
                        gap="0.35rem",
                    ),
                    content="A thorough search of your notes, run in the background",
                ),
                model_picker(),
                rx.cond(
                    ChatState.is_streaming,
                    rx.button(
                        rx.icon("square", size=14, aria_hidden="true"),
                        "Stop",
                        type="button",
                        color_scheme="red",
                        variant="soft",
                        on_click=ChatState.stop,
                        data_testid="stop",
                    ),
                    rx.button(
                        rx.icon("send", size=14, aria_hidden="true"),
                        "Send",
                        type="submit",
                        data_testid="send",
                    ),
                ),
                width="100%",
                align="center",
                spacing="2",
                flex_wrap="wrap",
            ),
            rx.cond(
                ChatState.error != "",
                rx.text(ChatState.error, color_scheme="red", size="2", role="alert"),
            ),
            spacing="2",
            width="100%",
        ),
        on_submit=ChatState.send,
        reset_on_submit=False,
        width="100%",
        padding="0.75rem",
        border="1px solid var(--gray-6)",
        border_radius="var(--radius-4)",
        background="var(--color-panel-solid)",
        position="sticky",
        bottom="0.5rem",
    )


def chat_view() -> rx.Component:
    return rx.vstack(
        rx.cond(
            ChatState.not_found,
            rx.callout.root(
                rx.callout.text(
                    "This conversation does not exist, or it is not yours. ",
                    rx.link("Start a new one", href="/"),
                    ".",
                ),
                color_scheme="amber",
                data_testid="conversation-not-found",
            ),
            rx.vstack(
                rx.cond(
                    ChatState.title != "",
                    rx.heading(
                        ChatState.title, size="4", as_="h2", data_testid="conversation-title"
                    ),
                ),
                rx.cond(
                    ChatState.loading,
                    rx.hstack(rx.spinner(), rx.text("Loading…"), role="status"),
                    rx.cond(
                        (ThreadState.messages.length() > 0) | (LiveReplyState.reply.id != ""),
                        rx.vstack(
                            thread_messages(),
                            # The exchange in progress: apart, so its frames re-render it
                            # alone rather than the whole thread.
                            rx.cond(
                                LiveReplyState.asked.id != "",
                                user_message(LiveReplyState.asked),
                            ),
                            rx.cond(
                                LiveReplyState.reply.id != "",
                                assistant_message(LiveReplyState.reply),
                            ),
                            width="100%",
                            spacing="3",
                            role="log",
                            aria_label="Conversation",
                            data_testid="thread",
                            # While a reply is written, Regenerate and Edit are hidden
                            # (by app.css), without rendering the thread again.
                            data_busy=rx.cond(ChatState.is_streaming, "true", "false"),
                        ),
                        empty_thread(),
                    ),
                ),
                rx.spacer(),
                composer(),
                width="100%",
                spacing="3",
                min_height="calc(100dvh - 9rem)",
            ),
        ),
        width="100%",
    )


@page(route="/chat/[conversation_id]", title="Conversation", on_load=[ChatState.load])
def conversation_page() -> rx.Component:
    return chat_view()
