"""Alert e-mail over SMTP, configured by the environment (README, Configuration); no SMTP_HOST, no mail."""
from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage

SEND_TIMEOUT = 10  # seconds: a dead mail server must not hold the scheduler's cycle long
SMTPS_PORT, SUBMISSION_PORT = 465, 587


def mail_configured(config) -> bool:
    """Whether alerts are mailed at all (系统状态 says so when not)."""
    return bool(config.get("SMTP_HOST"))


def _security(config) -> str:
    """"ssl", "starttls" or "none": SMTP_SECURITY, else what the port usually means."""
    if config.get("SMTP_SECURITY"):
        return config["SMTP_SECURITY"].strip().lower()
    return {SMTPS_PORT: "ssl", SUBMISSION_PORT: "starttls"}.get(config.get("SMTP_PORT"), "none")


def send_mail(config, recipients: list[str], subject: str, body: str) -> None:
    """Send one plain-text UTF-8 mail; raises OSError or smtplib.SMTPException when it cannot."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = config.get("SMTP_FROM") or config.get("SMTP_USER") or f"invoice-sync@{socket.getfqdn()}"
    message["To"] = ", ".join(recipients)
    message.set_content(body)
    security = _security(config)
    port = config.get("SMTP_PORT") or (SMTPS_PORT if security == "ssl" else 25)
    connect = smtplib.SMTP_SSL if security == "ssl" else smtplib.SMTP
    with connect(config["SMTP_HOST"], port, timeout=SEND_TIMEOUT) as smtp:
        if security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if config.get("SMTP_USER"):
            smtp.login(config["SMTP_USER"], config.get("SMTP_PASSWORD") or "")
        smtp.send_message(message)
