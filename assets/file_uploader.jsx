// Uploads files one request each, so every file has its own progress bar and can be
// cancelled on its own. Files come from the picker, a drop, or a paste.
import { useCallback, useEffect, useRef, useState } from "react";

const PARALLEL = 3;

const formatSize = (bytes) => {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
};

let nextId = 0;

// `endpoint` receives each file (a new upload by default, or a file's replacement);
// `multiple` false picks one file, as replacing takes.
export function FileUploader({
  onUploaded,
  label,
  hint,
  pasteTarget,
  compact,
  longTextChars,
  endpoint,
  multiple,
}) {
  const [items, setItems] = useState([]);
  const [dragging, setDragging] = useState(false);
  const requests = useRef(new Map());
  const queue = useRef([]);
  const inputRef = useRef(null);

  const update = (id, changes) =>
    setItems((current) => current.map((item) => (item.id === id ? { ...item, ...changes } : item)));

  const pump = useCallback(() => {
    while (requests.current.size < PARALLEL && queue.current.length > 0) {
      const { id, file } = queue.current.shift();
      const xhr = new XMLHttpRequest();
      requests.current.set(id, xhr);
      xhr.open("POST", endpoint || "/files/upload");
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("X-File-Name", encodeURIComponent(file.name || "pasted file"));
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) {
          update(id, { percent: Math.round((event.loaded / event.total) * 100) });
        }
      };
      const finish = () => {
        requests.current.delete(id);
        pump();
      };
      xhr.onload = () => {
        let body = {};
        try {
          body = JSON.parse(xhr.responseText || "{}");
        } catch (error) {
          body = {};
        }
        if (xhr.status === 201 || xhr.status === 200) {
          update(id, { state: "done", percent: 100 });
          if (onUploaded) onUploaded(body);
          setTimeout(() => setItems((current) => current.filter((item) => item.id !== id)), 1500);
        } else {
          update(id, { state: "failed", error: body.error || `Upload failed (${xhr.status}).` });
        }
        finish();
      };
      xhr.onerror = () => {
        update(id, { state: "failed", error: "The connection was lost. Try again." });
        finish();
      };
      xhr.onabort = () => {
        update(id, { state: "cancelled" });
        finish();
      };
      update(id, { state: "uploading" });
      xhr.send(file);
    }
  }, [onUploaded, endpoint]);

  const addFiles = useCallback(
    (fileList) => {
      const picked = Array.from(fileList || []);
      const added = (multiple === false ? picked.slice(0, 1) : picked).map((file) => ({
        id: `upload-${++nextId}`,
        file,
      }));
      if (added.length === 0) return;
      setItems((current) => [
        ...current,
        ...added.map(({ id, file }) => ({
          id,
          name: file.name || "pasted file",
          size: file.size,
          percent: 0,
          state: "queued",
          error: "",
        })),
      ]);
      queue.current.push(...added);
      pump();
    },
    [pump, multiple],
  );

  const cancel = (id) => {
    const xhr = requests.current.get(id);
    if (xhr) {
      xhr.abort();
    } else {
      queue.current = queue.current.filter((entry) => entry.id !== id);
      update(id, { state: "cancelled" });
    }
  };

  const dismiss = (id) => setItems((current) => current.filter((item) => item.id !== id));

  useEffect(() => {
    if (!pasteTarget) return undefined;
    const onPaste = (event) => {
      const files = event.clipboardData && event.clipboardData.files;
      if (files && files.length > 0) {
        event.preventDefault();
        addFiles(files);
        return;
      }
      // A long pasted text becomes an attached text file instead of a wall in the box.
      const pasted = event.clipboardData && event.clipboardData.getData("text/plain");
      if (longTextChars && pasted && pasted.length > longTextChars) {
        event.preventDefault();
        addFiles([new File([pasted], "pasted text.txt", { type: "text/plain" })]);
      }
    };
    // Files dropped anywhere on the page are taken, not opened by the browser.
    const onDragOver = (event) => {
      if (event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files")) {
        event.preventDefault();
        setDragging(true);
      }
    };
    const onDrop = (event) => {
      if (event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files.length > 0) {
        event.preventDefault();
        setDragging(false);
        addFiles(event.dataTransfer.files);
      }
    };
    const onDragLeave = (event) => {
      if (!event.relatedTarget) setDragging(false);
    };
    window.addEventListener("paste", onPaste);
    if (compact) {
      window.addEventListener("dragover", onDragOver);
      window.addEventListener("drop", onDrop);
      window.addEventListener("dragleave", onDragLeave);
    }
    return () => {
      window.removeEventListener("paste", onPaste);
      window.removeEventListener("dragover", onDragOver);
      window.removeEventListener("drop", onDrop);
      window.removeEventListener("dragleave", onDragLeave);
    };
  }, [pasteTarget, addFiles, compact, longTextChars]);

  useEffect(
    () => () => {
      requests.current.forEach((xhr) => xhr.abort());
    },
    [],
  );

  const compactZone = {
    display: "flex",
    alignItems: "center",
    gap: "0.5rem",
    border: `1px dashed ${dragging ? "var(--accent-9)" : "transparent"}`,
    background: dragging ? "var(--accent-a3)" : "transparent",
    borderRadius: "var(--radius-3)",
    padding: "0.15rem",
  };
  const zoneStyle = {
    border: `2px dashed ${dragging ? "var(--accent-9)" : "var(--gray-7)"}`,
    background: dragging ? "var(--accent-a3)" : "var(--gray-a2)",
    borderRadius: "var(--radius-4)",
    padding: "1.25rem",
    textAlign: "center",
    transition: "background 120ms, border-color 120ms",
  };
  const buttonStyle = {
    font: "inherit",
    cursor: "pointer",
    border: "none",
    borderRadius: "var(--radius-3)",
    padding: "0.5rem 1rem",
    background: "var(--accent-9)",
    color: "var(--accent-contrast)",
  };
  const smallButton = {
    font: "inherit",
    fontSize: "var(--font-size-1)",
    cursor: "pointer",
    border: "1px solid var(--gray-7)",
    borderRadius: "var(--radius-2)",
    padding: "0.15rem 0.5rem",
    background: "transparent",
    color: "var(--gray-12)",
  };

  return (
    <div data-testid="file-uploader" style={{ width: "100%" }}>
      {compact ? (
        <div style={compactZone} data-testid="drop-zone">
          <button
            type="button"
            style={{ ...smallButton, display: "inline-flex", alignItems: "center", whiteSpace: "nowrap" }}
            onClick={() => inputRef.current.click()}
            aria-label={label || "Attach files"}
            title={label || "Attach files"}
          >
            <svg width="14" height="14" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true" style={{ verticalAlign: "-2px", marginRight: "0.3rem" }}>
              <path d="m21.44 11.05-9.19 9.19a6 6 0 0 1-8.49-8.49l8.57-8.57A4 4 0 1 1 18 8.84l-8.59 8.57a2 2 0 0 1-2.83-2.83l8.49-8.48" />
            </svg>
            {dragging ? "Drop to attach" : label || "Attach"}
          </button>
          <input
            ref={inputRef}
            type="file"
            multiple
            hidden
            aria-label={label || "Attach files"}
            data-testid="file-input"
            onChange={(event) => {
              addFiles(event.target.files);
              event.target.value = "";
            }}
          />
        </div>
      ) : (
      <div
        style={zoneStyle}
        data-testid="drop-zone"
        onDragOver={(event) => {
          event.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={(event) => {
          event.preventDefault();
          setDragging(false);
          addFiles(event.dataTransfer.files);
        }}
      >
        <p style={{ margin: "0 0 0.75rem", color: "var(--gray-11)" }}>
          {hint || "Drop files here, paste them, or"}
        </p>
        <button type="button" style={buttonStyle} onClick={() => inputRef.current.click()}>
          {label || "Choose files"}
        </button>
        <input
          ref={inputRef}
          type="file"
          multiple={multiple !== false}
          hidden
          aria-label={label || "Choose files"}
          data-testid="file-input"
          onChange={(event) => {
            addFiles(event.target.files);
            event.target.value = "";
          }}
        />
      </div>
      )}
      {items.filter((item) => !(compact && item.state === "done")).length > 0 && (
        <ul aria-label="Uploads" style={{ listStyle: "none", padding: 0, margin: "0.75rem 0 0" }}>
          {items.filter((item) => !(compact && item.state === "done")).map((item) => (
            <li
              key={item.id}
              data-testid="upload-item"
              data-state={item.state}
              style={{ padding: "0.5rem 0", borderBottom: "1px solid var(--gray-4)" }}
            >
              <div style={{ display: "flex", gap: "0.5rem", alignItems: "center" }}>
                <span style={{ flex: 1, minWidth: 0, overflow: "hidden", textOverflow: "ellipsis", whiteSpace: "nowrap" }}>
                  {item.name}
                </span>
                <span style={{ color: "var(--gray-11)", fontSize: "var(--font-size-1)" }}>
                  {formatSize(item.size)}
                </span>
                {(item.state === "uploading" || item.state === "queued") && (
                  <button type="button" style={smallButton} onClick={() => cancel(item.id)} aria-label={`Cancel upload of ${item.name}`}>
                    Cancel
                  </button>
                )}
                {(item.state === "failed" || item.state === "cancelled") && (
                  <button type="button" style={smallButton} onClick={() => dismiss(item.id)} aria-label={`Dismiss ${item.name}`}>
                    Dismiss
                  </button>
                )}
              </div>
              <div
                role="progressbar"
                aria-label={`Upload of ${item.name}`}
                aria-valuemin={0}
                aria-valuemax={100}
                aria-valuenow={item.percent}
                style={{ height: "6px", background: "var(--gray-a4)", borderRadius: "3px", marginTop: "0.35rem", overflow: "hidden" }}
              >
                <div
                  style={{
                    width: `${item.percent}%`,
                    height: "100%",
                    background: item.state === "failed" ? "var(--red-9)" : "var(--accent-9)",
                    transition: "width 100ms linear",
                  }}
                />
              </div>
              <div aria-live="polite" style={{ fontSize: "var(--font-size-1)", marginTop: "0.25rem", color: item.state === "failed" ? "var(--red-11)" : "var(--gray-11)" }}>
                {item.state === "queued" && "Waiting…"}
                {item.state === "uploading" && `Uploading… ${item.percent}%`}
                {item.state === "done" && "Uploaded. Processing…"}
                {item.state === "cancelled" && "Cancelled."}
                {item.state === "failed" && item.error}
              </div>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
