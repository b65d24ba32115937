"""Google Calendar: the user's upcoming events, and new events on their primary calendar.

Times may come with an offset ("2025-03-04T15:00:00+01:00"), as a bare local time
("2025-03-04T15:00", read in the given time zone or else the calendar's own), or as
a date for whole days ("2025-03-04"; an all-day event's end date is exclusive).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from carmenta.chat.tools import google_api
from carmenta.chat.tools.base import (
    ServiceTool,
    ToolContext,
    ToolFailure,
    ToolOutcome,
    iso_time,
    numbered,
    one_line,
    plural,
)

PROVIDER_ID = "google"
_SCOPES = (
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/calendar.events.readonly",
)
_WRITE_SCOPES = (
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.events",
)
_DEFAULT_WINDOW = timedelta(days=7)
_TIME = {
    "type": "string",
    "minLength": 10,
    "maxLength": 40,
    "pattern": r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$",
    "examples": ["2025-03-04T15:00:00+01:00", "2025-03-04T15:00", "2025-03-04"],
}
_TIME_ZONE = {
    "type": "string",
    "maxLength": 64,
    "description": "IANA time zone for times without an offset, e.g. Europe/Paris "
    "(default: the calendar's own)",
}


def parse_when(value: str) -> date | datetime:
    """A date, or a datetime (naive when no offset was written). Raises ValueError."""
    text = value.strip().replace(" ", "T", 1)
    if len(text) == 10:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolFailure(
            f"'{one_line(name, 64)}' is not a time zone (try Europe/Paris)."
        ) from None


class _CalendarZone:
    """The time zone for naive times: the one given, else the calendar's (asked once)."""

    def __init__(self, ctx: ToolContext, given: str | None) -> None:
        self.ctx = ctx
        self.name = given
        if given:
            _zone(given)

    async def get(self) -> str:
        if not self.name:
            calendar = await google_api.call(
                self.ctx, "GET", f"{_calendar_url(self.ctx)}", params=None
            )
            self.name = str(calendar.get("timeZone") or "UTC")
        return self.name


def _calendar_url(ctx: ToolContext) -> str:
    return f"{google_api.api_root(ctx)}/calendar/v3/calendars/primary"


def _argument_time(name: str, value: str) -> date | datetime:
    try:
        return parse_when(value)
    except ValueError:
        raise ToolFailure(
            f"Argument '{name}' is not a date or time like 2025-03-04T15:00; got {value!r}."
        ) from None


async def _instant(value: date | datetime, zone: _CalendarZone) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=_zone(await zone.get()))
        return value
    return datetime(value.year, value.month, value.day, tzinfo=_zone(await zone.get()))


def _event_time(value: Mapping[str, Any] | None) -> tuple[str, bool]:
    value = value or {}
    if value.get("date"):
        return str(value["date"]), True
    moment = iso_time(value.get("dateTime"))
    return (moment.strftime("%Y-%m-%d %H:%M %z") if moment else "?"), False


async def _list(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    zone = _CalendarZone(ctx, arguments.get("time_zone"))
    start = (
        await _instant(_argument_time("time_min", arguments["time_min"]), zone)
        if arguments.get("time_min")
        else datetime.now(UTC)
    )
    end = (
        await _instant(_argument_time("time_max", arguments["time_max"]), zone)
        if arguments.get("time_max")
        else start + _DEFAULT_WINDOW
    )
    if end <= start:
        raise ToolFailure("time_max must be after time_min.")
    params = {
        "timeMin": start.isoformat(),
        "timeMax": end.isoformat(),
        "singleEvents": "true",
        "orderBy": "startTime",
        "maxResults": arguments["limit"],
    }
    if arguments.get("query"):
        params["q"] = arguments["query"]
    listing = await google_api.call(ctx, "GET", f"{_calendar_url(ctx)}/events", params=params)
    events = [
        item
        for item in listing.get("items") or []
        if isinstance(item, dict) and item.get("status") != "cancelled"
    ]
    lines, items = [], []
    for event in events:
        begins, all_day = _event_time(event.get("start"))
        ends, _ = _event_time(event.get("end"))
        title = one_line(event.get("summary"), 120) or "(no title)"
        extra = []
        if event.get("location"):
            extra.append(f"at {one_line(event['location'], 80)}")
        attendees = [a for a in event.get("attendees") or [] if isinstance(a, dict)]
        if attendees:
            extra.append(plural(len(attendees), "attendee"))
        when = f"{begins} (all day)" if all_day else f"{begins} → {ends}"
        lines.append(
            f"{when} · {title}"
            + (f" · {'; '.join(extra)}" if extra else "")
            + (f" {event['htmlLink']}" if event.get("htmlLink") else "")
        )
        items.append({"id": event.get("id"), "summary": title, "start": begins})
    zone_name = listing.get("timeZone")
    header = f"Events from {start.isoformat()} to {end.isoformat()}: {len(lines)}" + (
        f" (calendar time zone {zone_name})." if zone_name else "."
    )
    return ToolOutcome(
        ok=True,
        content=numbered(header, lines, ctx.budget),
        summary=f"Found {plural(len(lines), 'calendar event')}",
        data={"events": items},
    )


async def _create(ctx: ToolContext, arguments: dict[str, Any]) -> ToolOutcome:
    zone = _CalendarZone(ctx, arguments.get("time_zone"))
    start = _argument_time("start", arguments["start"])
    end = _argument_time("end", arguments["end"]) if arguments.get("end") else None
    body: dict[str, Any] = {"summary": arguments["summary"]}
    if isinstance(start, datetime):
        if end is None:
            end = start + timedelta(hours=1)
        if not isinstance(end, datetime):
            raise ToolFailure("Give both start and end as times, or both as dates.")
        if end.tzinfo is None and start.tzinfo is not None:
            end = end.replace(tzinfo=start.tzinfo)
        if start.tzinfo is None and end.tzinfo is not None:
            start = start.replace(tzinfo=end.tzinfo)
        if end <= start:
            raise ToolFailure("The event must end after it starts.")
        if start.tzinfo is None:
            # Calendar reads an offset-less time in the zone named next to it.
            name = await zone.get()
            body["start"] = {"dateTime": start.isoformat(), "timeZone": name}
            body["end"] = {"dateTime": end.isoformat(), "timeZone": name}
        else:
            body["start"] = {"dateTime": start.isoformat()}
            body["end"] = {"dateTime": end.isoformat()}
            if arguments.get("time_zone"):
                body["start"]["timeZone"] = body["end"]["timeZone"] = arguments["time_zone"]
    else:
        if end is None:
            end = start + timedelta(days=1)
        if isinstance(end, datetime):
            raise ToolFailure("Give both start and end as times, or both as dates.")
        if end <= start:
            raise ToolFailure("An all-day event's end date (exclusive) must be after its start.")
        body["start"] = {"date": start.isoformat()}
        body["end"] = {"date": end.isoformat()}
    if arguments.get("description"):
        body["description"] = arguments["description"]
    if arguments.get("location"):
        body["location"] = arguments["location"]
    if arguments.get("attendees"):
        body["attendees"] = [{"email": email} for email in arguments["attendees"]]
    event = await google_api.call(ctx, "POST", f"{_calendar_url(ctx)}/events", json=body)
    begins, _ = _event_time(event.get("start"))
    title = one_line(event.get("summary") or arguments["summary"], 80)
    link = str(event.get("htmlLink") or "")
    return ToolOutcome(
        ok=True,
        content=f"Created the event “{title}” starting {begins}." + (f" {link}" if link else ""),
        summary=f"Created “{title}” on {begins}",
        data={"event_id": event.get("id"), "link": link or None},
    )


TOOLS = (
    ServiceTool(
        name="calendar_list_events",
        provider_id=PROVIDER_ID,
        title="List calendar events",
        description=(
            "List events on the user's primary Google Calendar between two times "
            "(default: the next 7 days), recurring events expanded, in start order."
        ),
        parameters={
            "type": "object",
            "properties": {
                "time_min": {**_TIME, "description": "From (default: now)"},
                "time_max": {**_TIME, "description": "Until (default: 7 days after time_min)"},
                "query": {"type": "string", "maxLength": 200, "description": "Words to match"},
                "time_zone": _TIME_ZONE,
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
            },
            "required": [],
            "additionalProperties": False,
        },
        writes=False,
        describe=lambda a: (
            "List calendar events"
            + (f" from {a['time_min']}" if a.get("time_min") else "")
            + (f" to {a['time_max']}" if a.get("time_max") else "")
        ),
        run=_list,
        scopes=_SCOPES,
    ),
    ServiceTool(
        name="calendar_create_event",
        provider_id=PROVIDER_ID,
        title="Create a calendar event",
        description=(
            "Create an event on the user's primary Google Calendar. Only when the user "
            "asked for it. A date without a time makes an all-day event."
        ),
        parameters={
            "type": "object",
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 300},
                "start": {**_TIME, "description": "Start time, or a date for all day"},
                "end": {**_TIME, "description": "End (default: one hour, or one day, later)"},
                "time_zone": _TIME_ZONE,
                "description": {"type": "string", "maxLength": 8000},
                "location": {"type": "string", "maxLength": 500},
                "attendees": {
                    "type": "array",
                    "maxItems": 50,
                    "items": {
                        "type": "string",
                        "maxLength": 254,
                        "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                        "description": "An email address",
                    },
                    "description": "Email addresses to invite",
                },
            },
            "required": ["summary", "start"],
            "additionalProperties": False,
        },
        writes=True,
        describe=lambda a: (
            f'Create "{one_line(a.get("summary"), 60)}" on {one_line(a.get("start"), 30)}'
            + (f" until {one_line(a.get('end'), 30)}" if a.get("end") else "")
        ),
        run=_create,
        scopes=_WRITE_SCOPES,
    ),
)
