"""The reason codes a source's errors carry, as the strings the database stores.

Why here: a failure's reason is data (docs/rules.md, 失败与等待原因), set where the failure is
raised; the channels raise most of them but may not import the app, so the codes live at the
bottom and webapp.statuses.Reason gives each its Chinese sentence (a test checks every code here
is one of its members).
"""
from __future__ import annotations

REJECTED = "rejected"  # the source refused the input; params["message"] is the Chinese sentence to show
FILE_REFUSED = "file_refused"  # an uploaded file is not a usable export; params["message"] says why
CHANNEL_UNAVAILABLE = "channel_unavailable"  # HTTP 5xx/429 or 系统繁忙: worth trying later
CHANNEL_TIMEOUT = "channel_timeout"
CHANNEL_UNREACHABLE = "channel_unreachable"  # no connection at all
CHANNEL_PENDING = "channel_pending"  # 处理中 after every poll
LOGIN_FAILED = "login_failed"  # HTTP 4xx: the address or the credentials are wrong
CHANNEL_ADDRESS = "channel_address"  # the base URL is no URL
CHANNEL_BAD_ANSWER = "channel_bad_answer"  # an answer outside the contract (PROTOCOL.md)
CHANNEL_REFUSED = "channel_refused"  # the protocol's refusal; params["message"] is the bureau's own words
RPA_TASK_FAILED = "rpa_task_failed"
