"""The upload widget: picker, drag and drop and paste, one progress bar per file."""

from __future__ import annotations

import reflex as rx


class FileUploader(rx.Component):
    library = "$/public" + rx.asset("file_uploader.jsx", shared=False)
    tag = "FileUploader"
    label: rx.Var[str]
    hint: rx.Var[str]
    # Listen for pasted files anywhere on the page while the widget is shown.
    paste_target: rx.Var[bool]
    # A small attach button for a composer; files dropped anywhere on the page are taken.
    compact: rx.Var[bool]
    # A pasted text longer than this becomes an attached text file (0: never).
    long_text_chars: rx.Var[int]
    # Where each file is sent: "/files/upload" by default, or a file's replace route.
    endpoint: rx.Var[str]
    multiple: rx.Var[bool]
    on_uploaded: rx.EventHandler[lambda info: [info]]


file_uploader = FileUploader.create
