"""The user's connected services as tools a chat model may call.

tools = await tools_for_user(session=..., owner_id=...)
outcome = await run_tool(session=..., settings=..., owner_id=..., name=..., arguments=...)
"""

from carmenta.chat.tools.base import ServiceTool, ToolOutcome
from carmenta.chat.tools.registry import ALL_TOOLS, find_tool, run_tool, tools_for_user

__all__ = ["ALL_TOOLS", "ServiceTool", "ToolOutcome", "find_tool", "run_tool", "tools_for_user"]
