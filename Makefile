# Kilat: `make run` brings the platform up on :8080; `make test` runs the whole test suite.
.PHONY: setup run test test-faults lint down bench demo seed

setup:            ## Python deps, Kafka, PostgreSQL/PostGIS, migrations (idempotent)
	scripts/bootstrap.sh
	scripts/infra.sh up
	scripts/migrate.sh

run:              ## Kafka + PostGIS + Faust worker(s) + gateway on :8080 (WORKERS=2 for two)
	scripts/run.sh

test: setup       ## the whole suite against real Kafka and PostGIS (and Debian's chromium)
	scripts/bootstrap.sh --browser
	.venv/bin/ruff check .
	.venv/bin/pytest -q -p no:cacheprovider

test-faults: setup ## broker failures on a local three-broker cluster (not part of `make test`)
	KAFKA_CLUSTER=3 scripts/infra.sh up
	KAFKA_BROKERS=$$(scripts/infra.sh cluster-brokers) \
	  .venv/bin/pytest -q -s -p no:cacheprovider --broker-faults tests/test_broker_faults.py

demo:             ## with `make run` going in another shell: demo data and a live delivery
	.venv/bin/kilat seed-demo
	.venv/bin/kilat demo

seed:             ## with `make run` going: demo data and the apps' test logins (runner.test@kilat.my)
	.venv/bin/kilat seed-demo

bench:            ## benchmarks against the local Kafka/PostGIS (figures printed)
	.venv/bin/python -m bench.gateway_bench
	.venv/bin/python -m bench.gps_bench

lint:
	.venv/bin/ruff check .

down:             ## stop Kafka and PostgreSQL
	scripts/infra.sh down
