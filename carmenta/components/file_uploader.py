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
    # Where each file is sent: "/files/upload" by default, or a file's replace route.
    endpoint: rx.Var[str]
    multiple: rx.Var[bool]
    on_uploaded: rx.EventHandler[lambda info: [info]]


file_uploader = FileUploader.create
