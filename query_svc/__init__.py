"""query_svc: a thin runner over myko; see __main__.py."""
