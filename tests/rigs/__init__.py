"""Real-server test rigs: a private Dovecot IMAP server and an aiosmtpd SMTP sink on loopback.

Nothing here is mocked; the fixtures in ``tests/conftest.py`` wrap these classes.
"""
