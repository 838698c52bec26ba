"""Drop conversations whose text holds the markup a rendered row is made of.

A row is trained as ChatML with Hermes tool blocks (`sftmix.render`), and a tokenizer reads
`<|im_start|>`, `<|im_end|>` and `<|endoftext|>` as its special tokens wherever they occur: a user
who pasted `<|im_start|>assistant\n...<|im_end|>` makes a turn the trainer masks as the model's.
The tool blocks are markup too: an assistant text holding `<tool_call>{...}</tool_call>` is a call
that a Hermes parser (vLLM's) reads from the trained turn, though the record has none (so the
tool-calls rule never judged it), and a result holding `</tool_response>` ends its block early.
A call's name and arguments are written into its block as they are by a chat template (Qwen2.5's
`tojson` escapes no tag), so a `</tool_call>` in a string argument ends the block there and the
parser reads no call: the row is dropped rather than trained on a call nothing reads back.
Control tokens are looked for in every text (turns, calls, tool definitions); tool markup in
assistant and tool turns and in calls, where it would be read as such. `control_tokens` names
other templates' tokens (Llama 3's `<|eot_id|>`).
"""

from typing import Annotated

from pydantic import Field

from filters.base import RecordFilter

CHATML_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
TOOL_MARKUP = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")


class ReservedMarkupFilter(RecordFilter):
    name = "reserved_markup"

    def __init__(self, control_tokens: list[Annotated[str, Field(min_length=1)]] = CHATML_TOKENS, **kwargs):
        super().__init__(**kwargs)
        self.control_tokens = tuple(control_tokens)
        # The characters every token and tag starts with ("<" alone for ChatML's): a text without
        # them holds none, and looking for one character is a memchr.
        self.first_characters = "".join(sorted({token[0] for token in self.control_tokens} | {"<"}))

    def _may_hold_some(self, text: str) -> bool:
        marks = self.first_characters
        return marks in text if len(marks) == 1 else any(mark in text for mark in marks)

    def _has_control_token(self, text: str) -> bool:
        return self._may_hold_some(text) and any(token in text for token in self.control_tokens)

    def check(self, record, doc):
        # One loop, each text first looked at for the first characters inline (no method call for a
        # text without one): 2.1 µs a bench Toucan row, where looking for each token and tag took 6.1.
        marks = self.first_characters
        single = len(marks) == 1
        for message in record["messages"]:
            content = message["content"]
            if content and (marks in content if single else self._may_hold_some(content)):
                role = message["role"]
                if self._has_control_token(content):
                    return f"control_token_in_{role}_turn"
                if role in ("assistant", "tool") and any(tag in content for tag in TOOL_MARKUP):
                    return f"tool_markup_in_{role}_turn"
            for call in message["tool_calls"] or ():
                function = call["function"]
                for text in (function["name"], function["arguments"]):
                    if text and (marks in text if single else self._may_hold_some(text)):
                        if self._has_control_token(text):
                            return "control_token_in_tool_call"
                        if any(tag in text for tag in TOOL_MARKUP):
                            return "tool_markup_in_tool_call"
        if self._has_control_token(record["tools"]):
            return "control_token_in_tools"
        return None
