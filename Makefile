# The commands the README gives, by name.
PY ?= python3

.PHONY: install run stop status tail test bench lint

install:
	$(PY) -m pip install -e '.[test]'

run:
	supervisord -c supervisord.conf

stop:
	supervisorctl -c supervisord.conf shutdown

status:
	supervisorctl -c supervisord.conf status

tail:
	$(PY) -m services.logger --tail

test:
	$(PY) -m pytest -q

bench:
	$(PY) -m benchmarks.mesh --json bench-mesh.json

lint:
	$(PY) -m pip install -q -e '.[lint]'
	$(PY) -m ruff check common services tests benchmarks
