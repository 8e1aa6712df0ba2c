"""aiosmtpd handlers for credwatch's tests: a Maildir that refuses one address for good,
as a real server refuses a mailbox that does not exist, and refuses every message (554 at
DATA, as a server whose store is full) while the file named by SMTP_REFUSE_DATA exists."""

import os

from aiosmtpd.handlers import Mailbox


class RejectingMailbox(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 <%s>: no such mailbox" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        refuse = os.environ.get("SMTP_REFUSE_DATA")
        if refuse and os.path.exists(refuse):
            return "554 5.3.0 mailbox store unavailable"
        return await super().handle_DATA(server, session, envelope)
