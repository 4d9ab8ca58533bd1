# `make demo` and `make test` each set up .venv (once, with every extra: '.[all,test]') and run;
# `make docs` adds the docs extra and builds the site with --strict (a broken link or reference fails).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test docs hostile install sshd clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dcapps demo

# The tests run in one process per core (pytest-xdist): most of them use one thread each.
test: $(STAMP) sshd
	$(PY) -m pytest -q -n auto

docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

# The hostile-input campaign (tests/harness/hostile_campaign.py): bad and hostile inputs across every
# command, in two processes of one thread; it exits 1 unless every case is handled (CI runs it after
# the tests).
hostile: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) tests/harness/hostile_campaign.py --jobs 2 --out runs/hostile/campaign.json

# tests/test_nas_remote.py runs NNI's remote training service against a real OpenSSH server that
# it starts itself: as root with apt, Debian's openssh-server is installed once (no daemon is left
# running); elsewhere that one test is skipped and says why.
sshd:
	@test -x /usr/sbin/sshd || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server >/dev/null 2>&1; } || \
	  echo "openssh-server is not installed: the SSH run of tests/test_nas_remote.py will be skipped"

clean:
	rm -rf $(VENV) runs site .pytest_cache
