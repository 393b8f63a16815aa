# SPDX-License-Identifier: GPL-2.0
# libFuzzer targets for the parsers: build, fuzz, and replay the committed inputs.
#
#   make fuzz                  build every target into $(OUTPUT)/fuzz/ and fuzz each one for
#                              FUZZ_SECONDS (default 60), one after another
#   make fuzz-regress          run every target once over its committed corpus and regressions
#   make fuzz-build            only build
#   make fuzz-merge            add inputs of the last `make fuzz` that find new coverage to the
#                              committed corpora (review the result before committing)
#   make fuzz-clean
# FUZZ_TARGETS=fuzz-address ... picks targets; FUZZ_ARGS adds libFuzzer flags to `make fuzz`.
#
# Included from the top Makefile, or standalone: make -f tests/fuzz/fuzz.mk fuzz

# Standalone defaults; the top Makefile sets these first.
OUTPUT ?= .output
CLANG ?= clang

# Don't become the default goal of a Makefile that includes this one.
_fuzz_default_goal := $(.DEFAULT_GOAL)

FUZZ_DIR      := tests/fuzz
FUZZ_OUT       = $(OUTPUT)/fuzz
FUZZ_SECONDS  ?= 60
FUZZ_TARGETS  ?= fuzz-address fuzz-config fuzz-metrics-request fuzz-peek-http fuzz-peek-tls \
		 fuzz-proxy-header
FUZZ_SANITIZE ?= -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS   ?= $(FUZZ_SANITIZE) -g -O1 -fno-omit-frame-pointer
FUZZ_CPPFLAGS := -std=gnu11 -D_GNU_SOURCE -I$(OUTPUT) -Ibpf -Wall -Wextra -Wno-unused-parameter \
		 -MMD -MP
FUZZ_LIBBPF   ?= $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf)
# user/address.c resolves host names; the fuzz targets answer without DNS (fake-resolver.c).
FUZZ_WRAP     := -Wl,--wrap=getaddrinfo

FUZZ_BINS = $(addprefix $(FUZZ_OUT)/,$(FUZZ_TARGETS))
fuzz_obj  = $(FUZZ_OUT)/obj/$(1).o

.PHONY: fuzz fuzz-build fuzz-regress fuzz-merge fuzz-clean

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@FUZZ_NO_BUILD=1 FUZZ_OUT=$(FUZZ_OUT) FUZZ_SECONDS=$(FUZZ_SECONDS) \
		$(FUZZ_DIR)/run.sh fuzz $(FUZZ_TARGETS)

fuzz-regress: fuzz-build
	@FUZZ_NO_BUILD=1 FUZZ_OUT=$(FUZZ_OUT) $(FUZZ_DIR)/run.sh regress $(FUZZ_TARGETS)

fuzz-merge: fuzz-build
	@FUZZ_NO_BUILD=1 FUZZ_OUT=$(FUZZ_OUT) $(FUZZ_DIR)/run.sh merge $(FUZZ_TARGETS)

fuzz-clean:
	rm -rf $(FUZZ_OUT)

$(FUZZ_OUT)/obj:
	@mkdir -p $@

# The parsers, instrumented; and the targets' own sources.
$(FUZZ_OUT)/obj/user-%.o: user/%.c | $(FUZZ_OUT)/obj
	$(call msg,CC-FUZZ,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $(FUZZ_CPPFLAGS) -c $< -o $@

$(FUZZ_OUT)/obj/%.o: $(FUZZ_DIR)/%.c | $(FUZZ_OUT)/obj
	$(call msg,CC-FUZZ,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $(FUZZ_CPPFLAGS) -c $< -o $@

$(FUZZ_OUT)/fuzz-address: $(call fuzz_obj,fuzz-address) $(call fuzz_obj,fake-resolver) \
			  $(call fuzz_obj,user-address)
	$(call msg,LINK,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $(FUZZ_WRAP) $^ -o $@

$(FUZZ_OUT)/fuzz-config: $(call fuzz_obj,fuzz-config) $(call fuzz_obj,fake-resolver) \
			 $(call fuzz_obj,user-options) $(call fuzz_obj,user-options-help) \
			 $(call fuzz_obj,user-config-file) $(call fuzz_obj,user-parse) \
			 $(call fuzz_obj,user-address) $(call fuzz_obj,user-log)
	$(call msg,LINK,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $(FUZZ_WRAP) $^ $(FUZZ_LIBBPF) -o $@

$(FUZZ_OUT)/fuzz-metrics-request: $(call fuzz_obj,fuzz-metrics-request) \
				 $(call fuzz_obj,user-metrics-request) $(call fuzz_obj,user-metrics-accept)
	$(call msg,LINK,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $^ -o $@

$(FUZZ_OUT)/fuzz-peek-http: $(call fuzz_obj,fuzz-peek-http) $(call fuzz_obj,user-peek)
	$(call msg,LINK,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $^ -o $@

$(FUZZ_OUT)/fuzz-peek-tls: $(call fuzz_obj,fuzz-peek-tls) $(call fuzz_obj,user-peek)
	$(call msg,LINK,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $^ -o $@

$(FUZZ_OUT)/fuzz-proxy-header: $(call fuzz_obj,fuzz-proxy-header) \
			       $(call fuzz_obj,user-proxy-protocol)
	$(call msg,LINK,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $^ -o $@

-include $(wildcard $(OUTPUT)/fuzz/obj/*.d)

# Standalone (`make -f tests/fuzz/fuzz.mk`), build; included, leave the includer's default.
ifeq ($(notdir $(firstword $(MAKEFILE_LIST))),fuzz.mk)
.DEFAULT_GOAL := fuzz-build
else
.DEFAULT_GOAL := $(_fuzz_default_goal)
endif
