"""The secirbot benchmark (issue 7): `python bench/run.py --help`; see BENCHMARKS.md."""
