"""Real local servers for the sandbox, the demo, the benchmarks and the tests: a private Dovecot, an aiosmtpd
sink, and stand-ins for IANA's whois/RDAP and a DNS resolver. Nothing here runs in production."""
