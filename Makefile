# Two commands do everything: `make demo` and `make test`. Needs Python 3.10+.
# Each target runs dev.py, which does the work on Windows too (`python dev.py demo`), so there is
# one source of truth; `make <target> ARGS="..."` passes arguments on.
PYTHON ?= python3
DEV := $(PYTHON) dev.py
REQUIREMENTS := requirements.txt requirements-emulator.txt requirements-dev.txt constraints.txt

.PHONY: demo test quick lint emulator worker client bench clean lock

demo:
	$(DEV) demo $(ARGS)

test:
	$(DEV) test $(ARGS)

# The inner loop: the tests not marked slow (docs/testing.md).
quick:
	$(DEV) quick $(ARGS)

lint:
	$(DEV) lint $(ARGS)

emulator:
	$(DEV) emulator $(ARGS)

worker:
	$(DEV) worker $(ARGS)

client:
	$(DEV) client $(ARGS)

bench:
	$(DEV) bench $(ARGS)

# The venv with the run-time (and dev) requirements; dev.py installs again only when one changed.
.venv/.installed: $(REQUIREMENTS)
	$(DEV) install

.venv/.installed-dev: $(REQUIREMENTS)
	$(DEV) install --dev

lock:
	$(DEV) lock

clean:
	$(DEV) clean
