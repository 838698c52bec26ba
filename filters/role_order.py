"""Drop conversations whose turns are out of order.

Accepted shape: an optional leading system turn, then user and assistant alternating, starting
with user. An assistant turn with tool calls is followed by one tool turn per call, each answering
(by id) a call of that turn not answered yet, and naming that call's tool if it names one, then by
an assistant turn. A final assistant turn that only calls tools is accepted (xLAM-style rows stop
at the calls). `require_assistant` (default on) demands that the conversation ends with an
assistant turn; prompt- and document-only sources (WildChat prompts, FineWeb-Edu documents) turn
it off.
"""

from filters.base import RecordFilter


class RoleOrderFilter(RecordFilter):
    name = "role_order"

    def __init__(self, require_assistant: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.require_assistant = require_assistant

    def check(self, record, doc):
        messages = record["messages"]
        turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
        if not turns:
            return "no_user_turn"
        previous = "system"
        pending: dict[str, str] = {}  # id -> tool of the last assistant turn's calls that still have no result
        for message in turns:
            role = message["role"]
            if role == "system":
                return "system_turn_not_first"
            if role == "tool":
                if previous not in ("assistant_calls", "tool"):
                    return "tool_turn_without_call"
                tool = pending.pop(message["tool_call_id"], None)
                if tool is None:
                    return "unmatched_tool_result"
                if message["name"] is not None and message["name"] != tool:
                    return "tool_result_name_mismatch"
            elif pending:
                return "missing_tool_result"
            elif role == "user" and previous not in ("system", "assistant"):
                return "bad_role_order"
            elif role == "assistant" and previous not in ("user", "tool"):
                return "bad_role_order"
            if role == "assistant" and message["tool_calls"]:
                pending = {call["id"]: call["function"]["name"] for call in message["tool_calls"]}
                if len(pending) != len(message["tool_calls"]):
                    return "duplicate_tool_call_id"
                role = "assistant_calls"
            previous = role
        if self.require_assistant and previous not in ("assistant", "assistant_calls"):
            return "no_final_assistant_turn"
        return None
