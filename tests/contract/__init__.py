"""The contract suite: one set of tests run against every backend and facade."""
