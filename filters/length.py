"""Length bounds on the whole conversation, in characters and in approximate tokens.

Tokens are approximated as characters / `chars_per_token` (about 4 for Latin-script text with
BPE tokenizers): cheap, deterministic, tokenizer-free; the bound it enforces (e.g. the instruct
mixture's 32k) is approximate by design. Tool definitions count, since they are rendered into the
system turn.
"""

from typing import Annotated

from pydantic import Field

from filters.base import Count, Positive, RecordFilter


class LengthFilter(RecordFilter):
    name = "length"

    def __init__(
        self,
        min_chars: Count = 1,
        max_chars: Positive | None = None,
        max_tokens: Positive | None = 32768,
        chars_per_token: Annotated[float, Field(gt=0)] = 4.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.min_chars, self.max_chars = min_chars, max_chars
        self.max_tokens, self.chars_per_token = max_tokens, chars_per_token

    @classmethod
    def conflicts(cls, arguments: dict) -> str | None:
        min_chars, max_chars = cls.argument(arguments, "min_chars"), cls.argument(arguments, "max_chars")
        if max_chars is not None and min_chars > max_chars:
            return f"min_chars ({min_chars}) is above max_chars ({max_chars}): every row would be dropped"
        return None

    def check(self, record, doc):
        chars = sum(len(m["content"] or "") for m in record["messages"])
        chars += sum(len(c["function"]["arguments"] or "") for m in record["messages"] for c in m["tool_calls"] or ())
        if chars < self.min_chars:
            return "too_short"
        if self.max_chars is not None and chars > self.max_chars:
            return "too_long_chars"
        tools_chars = len(record["tools"]) if record["tools"] != "[]" else 0
        if self.max_tokens is not None and (chars + tools_chars) / self.chars_per_token > self.max_tokens:
            return "too_long_tokens"
        return None
