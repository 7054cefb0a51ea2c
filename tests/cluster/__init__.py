"""The cluster pass (`./dev test --cluster`): lootlog shards on a 3-broker Kafka cluster.

A package, so that its conftest is imported as `cluster.conftest` and the tests here can
still import the suite's own `conftest` (tests/conftest.py) by that name."""
