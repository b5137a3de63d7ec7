"""The ceiling: a bare loop that does only the unavoidable work of the bot's job, on the same servers.

Run as its own process, like the bot (`python bench/ceiling.py SPEC.json`), so that it competes with the SMTP sink
and Dovecot exactly as the bot does. It logs in, lists what waits, and per batch of `batch` messages: fetches
them in one round trip (`BODY.PEEK[]`), parses each with the stdlib (`email.parser.BytesParser` with the default
policy: From, Subject and the text body are read), sends its share of the given mails (the very bytes and
envelopes the bot sent for this backlog) over ONE SMTP connection kept for the whole run, and moves the batch to
another folder (`UID MOVE`). No store, no classification, no templates. Prints one JSON line with the counts and
the time from before the IMAP connect to after the logout (also to the spec's "out" file).

IMAP goes through `imapclient`, the library the bot uses, so its response parsing is in both figures.
For scale, the spec may turn parsing and sending off (`"parse": false, "send": false`) and set `"batch": 1`:
the bare IMAP loop, one message per round trip or batched.
"""

from __future__ import annotations

import email.policy
import json
import pickle
import smtplib
import sys
import time
from email.parser import BytesParser
from pathlib import Path

import imapclient


def run(spec: dict) -> dict:
    with open(spec["mails"], "rb") as f:
        mails: list[tuple[str, list[str], bytes]] = pickle.load(f)
    parser = BytesParser(policy=email.policy.default)
    started = time.monotonic()
    imap = imapclient.IMAPClient(spec["host"], port=spec["port"], ssl=False, timeout=60)
    imap.login(spec["user"], spec["password"])
    if not imap.folder_exists(spec["done"]):
        imap.create_folder(spec["done"])
    imap.select_folder(spec["folder"])
    smtp = smtplib.SMTP(spec["smtp_host"], spec["smtp_port"], timeout=60)
    uids = sorted(imap.search(["NOT", "DELETED"]))
    total, batch, sent, done, chars = len(uids), spec["batch"], 0, 0, 0
    parse, send = spec.get("parse", True), spec.get("send", True)
    for start in range(0, total, batch):
        chunk = uids[start : start + batch]
        fetched = imap.fetch(chunk, ["BODY.PEEK[]"])
        for uid in chunk if parse else ():
            msg = parser.parsebytes(fetched[uid][b"BODY[]"])
            body = msg.get_body(("plain", "html"))
            try:
                text = body.get_content() if body is not None and not body.is_multipart() else ""
            except (LookupError, ValueError):  # an unknown charset: the bot copes, the bare loop skips it
                text = ""
            chars += len(str(msg["From"] or "")) + len(str(msg["Subject"] or "")) + len(text)
        done += len(chunk)
        due = round(len(mails) * done / total) if send else 0
        while sent < due:
            mail_from, rcpts, data = mails[sent]
            smtp.sendmail(mail_from, rcpts, data)
            sent += 1
        imap.move(chunk, spec["done"])
    smtp.quit()
    imap.logout()
    return {"processed": done, "sent": sent, "seconds": time.monotonic() - started, "chars": chars}


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = json.dumps(run(spec))
    if spec.get("out"):
        Path(spec["out"]).write_text(result + "\n")
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
