# SPDX-License-Identifier: GPL-2.0
# sockredir: build, test, demo and install. Output goes to .output/; `make V=1` shows commands.

VERSION    := 0.1.0
OUTPUT     := .output
# `make test SANITIZE=1`: sockredir built with ASan and UBSan into .output/asan, and the tests
# run against that binary (the test programs themselves stay as they are).
ifeq ($(SANITIZE),1)
OUTPUT     := .output/asan
CFLAGS     ?= -O1 -g
CFLAGS     += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDFLAGS    += -fsanitize=address,undefined
endif
CLANG      ?= clang
CC         ?= gcc
BPFTOOL    ?= bpftool
PKG_CONFIG ?= pkg-config
PREFIX     ?= /usr/local
DESTDIR    ?=
ARCH       := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

# The kernel's BTF as C; override with VMLINUX_H=path to build for another kernel.
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
VMLINUX_H   ?= $(OUTPUT)/vmlinux.h

PKGS      := libbpf libsystemd
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
	      -I$(OUTPUT) -I$(dir $(VMLINUX_H)) -Ibpf
CFLAGS     ?= -O2 -g
# The ABI between the BPF object and the user side, as one 64-bit number: the first 16 hex digits
# of the sha256 of bpf/sockredir.h, so that it changes exactly when that header does. A restarted
# sockredir must adopt the maps of the previous instance (systemd's fd store) only under the same
# ABI: the loader compares map types and sizes, not what the bytes in them mean.
SR_BPF_ABI := 0x$(shell sha256sum bpf/sockredir.h | cut -c1-16)ULL
USER_CFLAGS := -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror -MMD -MP \
	       -DSR_VERSION='"$(VERSION)"' -DSR_BPF_ABI=$(SR_BPF_ABI) -I$(OUTPUT) -Ibpf $(PKG_CFLAGS)

USER_SRCS := $(filter-out user/main.c,$(wildcard user/*.c))
USER_OBJS := $(patsubst user/%.c,$(OUTPUT)/user/%.o,$(USER_SRCS))
BENCH_PROGS := $(patsubst bench/%.c,$(OUTPUT)/bench-%,$(wildcard bench/*.c))
TEST_PROGS := $(OUTPUT)/srpeer $(OUTPUT)/test-address $(OUTPUT)/test-metrics \
	      $(OUTPUT)/test-metrics-http $(OUTPUT)/test-peek $(OUTPUT)/test-proxy-protocol \
	      $(OUTPUT)/test-bpf-reuse $(BENCH_PROGS)

# Debian packages: to build; for the demo (tests/demo.sh: systemd-socket-activate, ss, curl, and
# bpftool from DEPS_BUILD); to test; to benchmark; for the tests that boot systemd under nspawn; and
# to make the .deb (lintian is for the package test, `make deb` doesn't run it).
DEPS_BUILD := clang llvm bpftool libbpf-dev libsystemd-dev pkg-config gcc make
DEPS_DEMO  := systemd iproute2 curl
DEPS_TEST  := systemd iproute2 util-linux libcap2-bin curl procps python3 bc man-db groff-base \
	      bsdextrautils graphviz prometheus python3-prometheus-client
DEPS_BENCH := haproxy nginx libnginx-mod-stream socat gnuplot-nox linux-perf openssl wrk caddy
DEPS_EXTRA := podman runc uidmap busybox-static libclang-rt-14-dev
DEPS_NSPAWN := debootstrap systemd-container
DEPS_DEB   := debhelper dpkg-dev
DEPS_ALL   := $(DEPS_BUILD) $(DEPS_DEMO) $(DEPS_TEST) $(DEPS_BENCH) $(DEPS_EXTRA) $(DEPS_NSPAWN) \
	      $(DEPS_DEB) lintian

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all clean deps deps-demo deps-test deps-bench deps-deb demo test check bench soak deb \
	install uninstall format

all: $(OUTPUT)/sockredir

$(OUTPUT) $(OUTPUT)/user:
	$(Q)mkdir -p $@

# Regenerate only when the kernel's BTF changed, and touch the header only if its text did, so
# that a second `make` does nothing.
$(OUTPUT)/vmlinux.h: $(VMLINUX_BTF) | $(OUTPUT)
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) btf dump file $< format c > $@.tmp
	$(Q)if cmp -s $@.tmp $@; then rm -f $@.tmp; touch $@; else mv $@.tmp $@; fi

$(OUTPUT)/sockredir.tmp.bpf.o: bpf/sockredir.bpf.c bpf/sockredir.h $(VMLINUX_H) | $(OUTPUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OUTPUT)/sockredir.bpf.o: $(OUTPUT)/sockredir.tmp.bpf.o
	$(call msg,GEN-OBJ,$@)
	$(Q)$(BPFTOOL) gen object $@ $<

$(OUTPUT)/sockredir.skel.h: $(OUTPUT)/sockredir.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name sockredir > $@

# Only the loader includes the skeleton.
$(OUTPUT)/user/bpf-loader.o: $(OUTPUT)/sockredir.skel.h
# Every object is built with -DSR_BPF_ABI, a hash of bpf/sockredir.h: -MMD makes only those that
# include the header depend on it, so make them all depend on it, or one that doesn't would keep
# a stale value.
$(USER_OBJS) $(OUTPUT)/user/main.o: bpf/sockredir.h

$(OUTPUT)/user/%.o: user/%.c | $(OUTPUT)/user
	$(call msg,CC,$@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(USER_CFLAGS) -c $< -o $@

$(OUTPUT)/sockredir: $(USER_OBJS) $(OUTPUT)/user/main.o
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $^ $(PKG_LIBS) -lpthread -o $@

# Test programs.
$(OUTPUT)/srpeer: tests/srpeer.c | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread $< -o $@

$(OUTPUT)/test-address: tests/test-address.c $(OUTPUT)/user/address.o $(OUTPUT)/user/parse.o \
			$(OUTPUT)/user/log.o | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(USER_CFLAGS) $^ $(PKG_LIBS) -o $@

# metrics.o needs mode_to_string() from options.o, and so what options.o needs.
METRICS_OBJS := $(addprefix $(OUTPUT)/user/,metrics.o metrics-accept.o options.o options-help.o \
		  config-file.o address.o parse.o log.o)
$(OUTPUT)/test-metrics: tests/test-metrics.c $(METRICS_OBJS) | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(USER_CFLAGS) $^ $(PKG_LIBS) -o $@

$(OUTPUT)/test-metrics-http: tests/test-metrics-http.c $(OUTPUT)/user/metrics-http.o \
			     $(OUTPUT)/user/metrics-request.o $(METRICS_OBJS) | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(USER_CFLAGS) $^ $(PKG_LIBS) -lpthread -o $@

# The benchmark's own client and backend: bench/NAME.c -> .output/bench-NAME.
$(OUTPUT)/bench-%: bench/%.c $(wildcard bench/*.h) | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread $(filter %.c,$^) -lm -o $@

$(OUTPUT)/test-peek: tests/test-peek.c $(OUTPUT)/user/peek.o | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(USER_CFLAGS) $^ -o $@

$(OUTPUT)/test-proxy-protocol: tests/test-proxy-protocol.c $(OUTPUT)/user/proxy-protocol.o | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(USER_CFLAGS) $^ -o $@

# A second bpf_state adopting the maps of a first, as across a restart (tests/t-bpf-reuse.sh).
$(OUTPUT)/test-bpf-reuse: tests/test-bpf-reuse.c tests/check.h $(OUTPUT)/user/bpf-loader.o \
			  $(OUTPUT)/user/log.o | $(OUTPUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(USER_CFLAGS) $(filter-out %.h,$^) $(PKG_LIBS) -o $@

# Install the missing Debian packages among DEPS when root; otherwise say what to run. Each goal
# installs only what it needs; `make deps` installs everything.
deps:       DEPS = $(DEPS_ALL)
deps-test:  DEPS = $(DEPS_ALL)
deps-demo:  DEPS = $(DEPS_BUILD) $(DEPS_DEMO)
deps-bench: DEPS = $(DEPS_BUILD) $(DEPS_TEST) $(DEPS_BENCH)
deps-deb:   DEPS = $(DEPS_BUILD) $(DEPS_DEB)
deps deps-test deps-demo deps-bench deps-deb:
	@missing=""; for p in $(sort $(DEPS)); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "  DEPS    installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
			>/dev/null || { apt-get update -q >/dev/null && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$$missing >/dev/null; } || exit 1; \
	else \
		echo "Missing Debian packages. Run as root:"; \
		echo "  apt-get install$$missing"; exit 1; \
	fi

demo: deps-demo
	@$(MAKE) --no-print-directory all $(OUTPUT)/srpeer
	@tests/demo.sh

test: deps-test
ifeq ($(SANITIZE),1)
	@$(MAKE) --no-print-directory SANITIZE= all $(patsubst $(OUTPUT)/%,.output/%,$(TEST_PROGS))
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@SOCKREDIR=$(CURDIR)/$(OUTPUT)/sockredir \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:print_summary=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run.sh $(TESTS)
else
	@$(MAKE) --no-print-directory all $(TEST_PROGS)
	@tests/run.sh $(TESTS)
endif

# `make soak DURATION=10m`: mixed traffic and faults for a while, with trends. Not in `make test`.
soak: deps-test
	@$(MAKE) --no-print-directory all $(TEST_PROGS)
	@DURATION=$(DURATION) tests/soak.sh

# `make bench` (about 15 minutes here) or `make bench QUICK=1` (about 2 minutes).
bench: deps-bench
	@$(MAKE) --no-print-directory all $(OUTPUT)/srpeer $(BENCH_PROGS)
	@QUICK=$(QUICK) bench/run.sh

check: test

# systemd looks for units in /usr/local/lib/systemd/system too.
UNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/sockredir
# Under $(DOCDIR)/examples/: a config file, the socket drop-in it needs, and the drop-ins that run
# an instance as another user than root.
EXAMPLES := examples/web.conf examples/sockredir@web.socket.d/listen.conf sockredir-user.conf \
	    sockredir-home.conf

install: $(OUTPUT)/sockredir
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX)/bin/sockredir)
	$(Q)install -D -m 0755 $(OUTPUT)/sockredir $(DESTDIR)$(PREFIX)/bin/sockredir
	$(call msg,INSTALL,$(DESTDIR)$(UNITDIR)/sockredir@.socket sockredir-metrics@.socket sockredir@.service)
	$(Q)install -D -m 0644 units/sockredir@.socket $(DESTDIR)$(UNITDIR)/sockredir@.socket
	$(Q)install -D -m 0644 units/sockredir-metrics@.socket \
		$(DESTDIR)$(UNITDIR)/sockredir-metrics@.socket
	$(Q)sed 's|/usr/local/bin/sockredir|$(PREFIX)/bin/sockredir|' units/sockredir@.service \
		>$(OUTPUT)/sockredir@.service
	$(Q)install -D -m 0644 $(OUTPUT)/sockredir@.service $(DESTDIR)$(UNITDIR)/sockredir@.service
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX)/lib/sysusers.d/sockredir.conf tmpfiles.d/sockredir.conf)
	$(Q)install -D -m 0644 units/sockredir.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/sockredir.conf
	$(Q)install -D -m 0644 units/sockredir.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/sockredir.conf
	$(call msg,INSTALL,$(DESTDIR)$(MANDIR)/man8/sockredir.8)
	$(Q)install -D -m 0644 user/sockredir.8 $(DESTDIR)$(MANDIR)/man8/sockredir.8
	$(call msg,INSTALL,$(DESTDIR)$(DOCDIR)/examples/)
	$(Q)for f in $(EXAMPLES); do \
		install -D -m 0644 units/$$f $(DESTDIR)$(DOCDIR)/examples/$${f#examples/} || exit 1; \
	done

uninstall:
	$(Q)rm -f $(DESTDIR)$(PREFIX)/bin/sockredir $(DESTDIR)$(UNITDIR)/sockredir@.socket \
		$(DESTDIR)$(UNITDIR)/sockredir-metrics@.socket \
		$(DESTDIR)$(UNITDIR)/sockredir@.service $(DESTDIR)$(MANDIR)/man8/sockredir.8 \
		$(DESTDIR)$(PREFIX)/lib/sysusers.d/sockredir.conf \
		$(DESTDIR)$(PREFIX)/lib/tmpfiles.d/sockredir.conf \
		$(addprefix $(DESTDIR)$(DOCDIR)/examples/,$(patsubst examples/%,%,$(EXAMPLES)))
	$(Q)rmdir $(DESTDIR)$(DOCDIR)/examples/sockredir@web.socket.d $(DESTDIR)$(DOCDIR)/examples \
		$(DESTDIR)$(DOCDIR) 2>/dev/null || true

# `make deb`: sockredir_VERSION-REVISION_ARCH.deb, with its .buildinfo and .changes, here rather
# than in the parent directory. debian/rules builds with Debian's flags into .output/deb, through
# `make` and `make install`; the output goes to .output/deb.log unless V=1. Not signed, no -dbgsym.
DEB_PVA = sockredir_$(shell dpkg-parsechangelog -S Version)_$(shell dpkg --print-architecture)
deb: deps-deb
	$(Q)v=$$(dpkg-parsechangelog -S Version); [ "$${v%-*}" = "$(VERSION)" ] || \
		{ echo "debian/changelog is at $$v, but VERSION is $(VERSION)" >&2; exit 1; }
	$(call msg,DEB,$(DEB_PVA).deb)
	$(Q)mkdir -p $(OUTPUT)
	$(Q)env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL SOCKREDIR_DEB_DIR=$(CURDIR) \
		DEB_BUILD_OPTIONS="noautodbgsym $(DEB_BUILD_OPTIONS)" \
		dpkg-buildpackage -us -uc -b --jobs-try=auto \
		--buildinfo-option=-u$(CURDIR) --buildinfo-file=$(CURDIR)/$(DEB_PVA).buildinfo \
		--changes-option=-u$(CURDIR) --changes-file=$(CURDIR)/$(DEB_PVA).changes \
		$(if $(Q),>$(OUTPUT)/deb.log 2>&1 || { tail -n 30 $(OUTPUT)/deb.log; \
		echo "make deb failed; the whole log is $(OUTPUT)/deb.log" >&2; exit 1; })

format:
	$(Q)clang-format -i bpf/*.c bpf/*.h user/*.c user/*.h

clean:
	$(call msg,CLEAN,$(OUTPUT))
	$(Q)rm -rf $(OUTPUT)

-include $(wildcard $(OUTPUT)/user/*.d)

# libFuzzer targets for every parser of outside input: `make fuzz` (FUZZ_SECONDS per target),
# `make fuzz-regress` (the committed corpora and reproducers, once).
include tests/fuzz/fuzz.mk
