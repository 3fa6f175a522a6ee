"""E-mail that comes back, as mail servers and feedback loops write it: bounces (RFC 3464) and complaints (RFC 5965)."""

from __future__ import annotations


def dsn(message_id: str, action: str, status: str, diagnostic: str) -> bytes:
    """A bounce as Postfix writes it (RFC 3464): the notice, the delivery status, the returned headers."""
    return (
        "From: MAILER-DAEMON@mx.test.example\r\nTo: bounces@test.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test.example\r\n\r\n"
        f"Final-Recipient: rfc822; someone@test.example\r\nAction: {action}\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{message_id}@test.example>\r\nSubject: Hi\r\n"
        "--B--\r\n"
    ).encode()


def arf(message_id: str) -> bytes:
    """A spam complaint as a feedback loop sends it (RFC 5965)."""
    return (
        "From: fbl@isp.example\r\nTo: abuse@test.example\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n"
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
        f"--F\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <{message_id}@test.example>\r\nSubject: Hi\r\n\r\nHello\r\n"
        "--F--\r\n"
    ).encode()
