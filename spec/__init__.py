"""The agentstores contract: errors, value rules, the message model, and one Protocol per family.

Each family module (``thread_run``, ...) has a Markdown document of the same name beside it
that states every requirement with an ID; ``general.md`` holds the rules shared by all.
"""

from .errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    NotSupported,
    StorageUnavailable,
    StoreError,
)
from .messages import ContentPart, Message, message_from_json, message_to_json, text_part
from .values import Clock, JSONObject, JSONValue, system_clock

__all__ = [
    "AlreadyExists",
    "Clock",
    "Conflict",
    "ContentPart",
    "InvalidArgument",
    "JSONObject",
    "JSONValue",
    "Message",
    "NotFound",
    "NotSupported",
    "StorageUnavailable",
    "StoreError",
    "message_from_json",
    "message_to_json",
    "system_clock",
    "text_part",
]
