"""Use cases: one function per thing a user can do; every face (CLI, API, web) calls these."""
