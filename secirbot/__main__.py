"""`python -m secirbot` is the `secirbot` command."""

from .cli import main

raise SystemExit(main())
