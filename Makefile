# bk: PostgreSQL and MariaDB backups through Kafka.
#
#   make            build every part
#   make check      install what is missing, start throwaway servers, run every
#                   test, stop the servers; ends with "N passed, M failed"
#   make demo       the main job on the embedded default (local Kafka, local
#                   repository)
#   make install    install bk, bk-shipper, bk-mysql-agent, the PostgreSQL
#                   extension, the MariaDB UDF library bk_udf.so, the
#                   systemd units (install-units: only the units) and the
#                   documentation the units name (DOCDIR)
#   make format     clang-format every C file
#   make bench      benchmarks (bench/, on demand; results in BENCHMARKS.md)
#   make fuzz-long  a long fuzzing campaign

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
# The units' Documentation= (README.md, installed with docs/).
DOCDIR ?= $(PREFIX)/share/doc/bk
# The units run $(BINDIR)/...: install rewrites their /usr/local/bin, and
# their documentation's /usr/local/share/doc/bk.
SYSTEMD_UNIT_DIR ?= /lib/systemd/system
UNITS = shipper/bk-shipper@.service mysql_agent/bk-mysql-agent.service

all:
	$(MAKE) -C common
	$(MAKE) -C repository
	$(MAKE) -C cli libcli.a
	$(MAKE) -C cli
	$(MAKE) -C shipper
	$(MAKE) -C mysql_agent
	$(MAKE) -C mysql_udf
	$(MAKE) -C extension

tests: all
	$(MAKE) -C tests/unit
	$(MAKE) -C tests/integration

# install -C replaces no unchanged binary: a bk restore running from it
# would read its own path as "<path> (deleted)", and make check's two lanes
# and make demo install while the other lane's tests run them.
install: all install-units
	install -d $(DESTDIR)$(BINDIR)
	install -C -m 0755 cli/bk $(DESTDIR)$(BINDIR)/bk
	install -C -m 0755 shipper/bk-shipper $(DESTDIR)$(BINDIR)/bk-shipper
	install -C -m 0755 mysql_agent/bk-mysql-agent $(DESTDIR)$(BINDIR)/bk-mysql-agent
	install -d $(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DOCDIR)/extension
	install -m 0644 README.md BENCHMARKS.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/
	install -m 0644 extension/README.md $(DESTDIR)$(DOCDIR)/extension/
	$(MAKE) -C mysql_udf install
	$(MAKE) -C extension install

# Only the unit files: enabling and starting them is the administrator's.
install-units:
	install -d $(DESTDIR)$(SYSTEMD_UNIT_DIR)
	for unit in $(UNITS); do \
		dest=$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$${unit##*/}; \
		sed -e 's|/usr/local/bin/|$(BINDIR)/|g' \
			-e 's|/usr/local/share/doc/bk/|$(DOCDIR)/|g' $$unit >$$dest && \
		chmod 0644 $$dest || exit 1; \
	done

check:
	scripts/check

demo:
	scripts/demo

bench:
	bench/run

fuzz-long:
	$(MAKE) -C tests/fuzz fuzz-long

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	$(MAKE) -C common clean
	$(MAKE) -C repository clean
	$(MAKE) -C cli clean
	$(MAKE) -C shipper clean
	$(MAKE) -C mysql_agent clean
	$(MAKE) -C mysql_udf clean
	$(MAKE) -C extension clean
	$(MAKE) -C tests/unit clean
	$(MAKE) -C tests/integration clean
	$(MAKE) -C tests/fuzz clean

.PHONY: all tests install install-units check demo bench fuzz-long format clean
