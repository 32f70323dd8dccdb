# kiln - tensor-graph compiler.  `make` builds build/kiln and build/libkiln.a
# (the library for programs that embed kiln: only include/kiln.h's names).
#   make test    every test (prints "N passed, N failed" last)
#   make demo    builds and runs examples/mlp.kiln
#   make asan    the test suite under AddressSanitizer + UBSan (build-asan/)
#   make fuzz    libFuzzer targets, 60 s each (FUZZ_SECONDS=...)
#   make test-long   long random-program sweeps
#   make test-models whole ONNX models against onnxruntime/PyTorch (opt-in, big installs)
#   make probe   build/probe/kiln: build/kiln with the pool's clock trace (bench/poolprobe.py)
# Sources are found by wildcard: a new .c file in a module folder is built
# without touching this file.

BUILD   ?= build
CC      ?= cc
LLVM_CONFIG ?= llvm-config-19
DEPS_STAMP := $(BUILD)/.deps-ok

# KILN_LLVM=0 builds without LLVM: no cpu device (runtime/nollvm/ says so), for
# machines without LLVM 19 such as the GPU machines (see `make gpu-bundle`).
# Such a build installs nothing and asks for no llvm-config: it needs flex,
# bison, libedit and the CUDA headers, and names the tools that are missing.
KILN_LLVM   ?= 1
ifeq ($(KILN_LLVM),1)
# Install missing tools before anything else needs them.
NEED_DEPS := $(shell command -v flex >/dev/null && command -v bison >/dev/null && command -v dot >/dev/null && \
               command -v g++ >/dev/null && \
               command -v $(LLVM_CONFIG) >/dev/null && /usr/bin/python3 -c 'import numpy; from onnx import helper' 2>/dev/null && \
               test -d /usr/share/libonnx-testdata && command -v go >/dev/null && echo ok)
ifneq ($(NEED_DEPS),ok)
$(info kiln: installing missing build dependencies (tools/install-deps.sh))
$(shell sh tools/install-deps.sh >&2)
endif
else
MISSING_TOOLS := $(shell for t in flex bison; do command -v $$t >/dev/null || echo $$t; done)
ifneq ($(strip $(MISSING_TOOLS)),)
ifeq ($(filter clean,$(MAKECMDGOALS)),)
$(error kiln: KILN_LLVM=0 installs nothing and this machine lacks: $(MISSING_TOOLS); build elsewhere with make gpu-bundle and carry build-gpu/)
endif
endif
endif
ifeq ($(KILN_LLVM),1)
LLVM_CFLAGS := $(shell $(LLVM_CONFIG) --cflags 2>/dev/null | sed 's/-std=[^ ]*//g')
LLVM_LIBS   := $(shell $(LLVM_CONFIG) --ldflags 2>/dev/null) $(shell $(LLVM_CONFIG) --libs core orcjit native passes 2>/dev/null)
# kiln's one C++ file: LLVM's out-of-memory handlers, which LLVM-C cannot
# install (codegen/llvm_oom.cpp).  libLLVM already needs libstdc++.
CXX_SRCS    := codegen/llvm_oom.cpp
LLVM_CXXFLAGS := -I$(shell $(LLVM_CONFIG) --includedir 2>/dev/null)
LLVM_LIBS   += -lstdc++
endif
CUDA_HOME   ?= /usr/local/cuda

OPT     ?= -O2 -g
Q       ?= @    # make Q= shows every command
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT) -fvisibility=hidden -Iinclude -I. -I$(BUILD)/gen \
           $(LLVM_CFLAGS) -I$(CUDA_HOME)/include -MMD -MP
LDLIBS  += $(LLVM_LIBS) -ldl -lpthread -lm -ledit
CXXFLAGS += -std=c++17 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT) -fvisibility=hidden -fno-exceptions -fno-rtti -I. \
           $(LLVM_CXXFLAGS) -MMD -MP

MODULE_SRCS := $(wildcard base/*.c ir/*.c frontend/*.c onnx/*.c passes/*.c codegen/*.c runtime/*.c app/*.c)
ifneq ($(KILN_LLVM),1)
MODULE_SRCS := $(filter-out codegen/llvm.c runtime/cpu.c runtime/cpu_code.c runtime/prebuilt_forms.c,$(MODULE_SRCS)) runtime/nollvm/cpu_absent.c
CFLAGS      += -DKILN_NO_LLVM
endif
GEN_SRCS    := $(BUILD)/gen/kiln.tab.c $(BUILD)/gen/kiln.lex.c
LIB_OBJS    := $(patsubst %.c,$(BUILD)/%.o,$(MODULE_SRCS)) $(patsubst %.cpp,$(BUILD)/%.o,$(CXX_SRCS)) $(GEN_SRCS:.c=.o)
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
ifneq ($(KILN_LLVM),1)
UNIT_SRCS   := $(filter-out tests/unit/test_llvm.c tests/unit/test_cpu_code.c tests/unit/test_math.c,$(UNIT_SRCS))
endif
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
# The checking stand-in for libcuda.so.1 (tests/standin/libcuda.c): built
# without sanitizers, as the real driver is, so that programs built without
# them (AOT bundles) can load it too.
STANDIN     := $(BUILD)/standin/libcuda.so.1

.PHONY: all test demo asan fuzz test-long test-models clean format gpu-bundle probe
all: $(BUILD)/kiln $(BUILD)/libkiln.a $(UNIT_BINS) $(STANDIN) $(BUILD)/embed/embed

# Grouped targets (&:): one bison (one flex) run writes both files; with plain
# `a b: ...` make -j ran the recipe once per file, two writers at once.
$(BUILD)/gen/kiln.tab.c $(BUILD)/gen/kiln.tab.h &: grammar/kiln.y
	@mkdir -p $(dir $@)
	bison -Wall -Werror --defines=$(BUILD)/gen/kiln.tab.h -o $(BUILD)/gen/kiln.tab.c $<

$(BUILD)/gen/kiln.lex.c $(BUILD)/gen/kiln.lex.h &: grammar/kiln.l $(BUILD)/gen/kiln.tab.h
	@mkdir -p $(dir $@)
	flex --header-file=$(BUILD)/gen/kiln.lex.h -o $(BUILD)/gen/kiln.lex.c $<

# Objects depend on this Makefile too: a change of flags (visibility,
# sanitizers) rebuilds them.
# Generated scanner code trips a few warnings we do not control.
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c Makefile
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -Wno-unused-function -Wno-sign-compare -c $< -o $@

$(BUILD)/%.o: %.c Makefile | $(BUILD)/gen/kiln.tab.h $(BUILD)/gen/kiln.lex.h
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# Two archives of the same objects.  libkiln-internal.a keeps every symbol:
# the command line and the unit tests link it.  libkiln.a, for programs that
# embed kiln (and the Go package), is one relocatable object in which only
# what include/kiln.h marks KILN_API stays global: everything is compiled
# -fvisibility=hidden, and objcopy makes the hidden symbols local, so no
# internal name (xmalloc, read_file, tp_run ...) can clash with the
# embedding program's.  Being one object, it leaves out the REPL (only the
# command line uses it; it would need libedit).  tests/embed checks it.
INTERNAL_LIB := $(BUILD)/libkiln-internal.a
PUBLIC_OBJS  := $(filter-out $(BUILD)/app/repl.o,$(LIB_OBJS))

$(INTERNAL_LIB): $(LIB_OBJS)
	@rm -f $@
	@echo "  AR    $@"
	$(Q)ar rcs $@ $^

$(BUILD)/libkiln.a: $(PUBLIC_OBJS)
	@rm -f $@ $(BUILD)/libkiln.o
	@echo "  AR    $@ (public names only)"
	$(Q)$(LD) -r -o $(BUILD)/libkiln.o $^
	$(Q)objcopy --localize-hidden $(BUILD)/libkiln.o
	$(Q)ar rcs $@ $(BUILD)/libkiln.o

# The CPU's shared helpers (micro-kernels, packing) compiled at build time
# for this host by tools/gen_helpers.c into a header of bytes that
# runtime/cpu_code.c includes; made again whenever the generator, that is
# the code generator, changes.  The generator links every object but
# cpu_code's (which includes its output) and the prebuilt forms' (made after).
ifeq ($(KILN_LLVM),1)
GEN_HELPERS_LIB := $(BUILD)/libkiln-gen.a
$(GEN_HELPERS_LIB): $(filter-out $(BUILD)/runtime/cpu_code.o $(BUILD)/runtime/prebuilt_forms.o,$(LIB_OBJS))
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/gen-helpers: $(BUILD)/tools/gen_helpers.o $(GEN_HELPERS_LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/gen/prebuilt_helpers.h: $(BUILD)/gen-helpers
	@echo "  GEN   $@"
	$(Q)$(BUILD)/gen-helpers $@

$(BUILD)/runtime/cpu_code.o: $(BUILD)/gen/prebuilt_helpers.h

# The prebuilt kernel forms (runtime/cpu_code.h): the sized units of the
# generic corpus tools/forms.kiln compiled at build time for this host by
# tools/gen_forms.c (after the helpers, whose symbols they call) into a
# header runtime/prebuilt_forms.c includes; the generator links every object
# but that one.
GEN_FORMS_LIB := $(BUILD)/libkiln-genforms.a
$(GEN_FORMS_LIB): $(filter-out $(BUILD)/runtime/prebuilt_forms.o,$(LIB_OBJS))
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/gen-forms: $(BUILD)/tools/gen_forms.o $(GEN_FORMS_LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/gen/prebuilt_forms.h: $(BUILD)/gen-forms tools/forms.kiln
	@echo "  GEN   $@"
	$(Q)$(BUILD)/gen-forms tools/forms.kiln $@

$(BUILD)/runtime/prebuilt_forms.o: $(BUILD)/gen/prebuilt_forms.h
endif

$(BUILD)/kiln: $(BUILD)/tools/kiln.o $(INTERNAL_LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The pool's clock trace (runtime/probe.h): build/probe/kiln is build/kiln with
# the files that mark its events compiled -DKILN_PROBE (bench/poolprobe.py runs
# it); never the timed build.  `make probe`.
PROBE_SRCS := runtime/threadpool.c runtime/cpu.c
PROBE_OBJS := $(patsubst %.c,$(BUILD)/probe/%.o,$(PROBE_SRCS))
$(BUILD)/probe/%.o: %.c Makefile | $(BUILD)/gen/kiln.tab.h $(BUILD)/gen/kiln.lex.h
	@mkdir -p $(dir $@)
	@echo "  CC    $< (-DKILN_PROBE)"
	$(Q)$(CC) $(CFLAGS) -DKILN_PROBE -c $< -o $@

$(BUILD)/probe/kiln: $(BUILD)/tools/kiln.o $(PROBE_OBJS) $(INTERNAL_LIB)
	@echo "  LINK  $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

probe: $(BUILD)/probe/kiln

$(BUILD)/tests/%: tests/unit/%.c $(INTERNAL_LIB)
	@mkdir -p $(dir $@)
	@echo "  LINK  $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.cpp Makefile
	@mkdir -p $(dir $@)
	@echo "  CXX   $<"
	$(Q)$(CXX) $(CXXFLAGS) -c $< -o $@

# A program that embeds kiln through libkiln.a and kiln.h only (tests/embed).
$(BUILD)/embed/embed: tests/embed/embed.c $(BUILD)/libkiln.a
	@mkdir -p $(dir $@)
	@echo "  LINK  $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(STANDIN): tests/standin/libcuda.c
	@mkdir -p $(dir $@)
	@echo "  CC    $@"
	$(Q)$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g -fPIC -shared -fvisibility=hidden \
	    -I$(CUDA_HOME)/include -o $@ $< -lpthread

# The Go package (go/) links libkiln.a and the libraries it needs; their
# flags are written here, from this Makefile's, so that `go build` in go/
# (or a program that uses it) needs no environment.  Only the default build
# writes it (go/ is shared by every build folder).  Go's build cache does not
# look into libkiln.a, so a checksum of it goes into the C flags: a new
# library rebuilds and relinks the package.
GO_CGO_FLAGS := go/cgo_flags.go
GO_LDLIBS    := $(LLVM_LIBS) -ldl -lpthread -lm
ifeq ($(BUILD),build)
all: $(GO_CGO_FLAGS)
endif
$(GO_CGO_FLAGS): Makefile $(BUILD)/libkiln.a
	@echo "  GEN   $@"
	$(Q)printf '%s\n' '// Code generated by the kiln Makefile; DO NOT EDIT.' '' 'package kiln' '' \
	    "// #cgo CFLAGS: -DKILN_LIBRARY_SUM=$$(cksum <$(BUILD)/libkiln.a | cut -d' ' -f1)" \
	    '// #cgo LDFLAGS: $${SRCDIR}/../$(BUILD)/libkiln.a $(strip $(GO_LDLIBS))' 'import "C"' >$@

test: all
	@sh tests/run_all.sh $(BUILD)

demo: $(BUILD)/kiln
	$(BUILD)/kiln run examples/mlp.kiln --dim B=2

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    LDFLAGS="-fsanitize=address,undefined" test

# A kiln for the GPU machines, which have no LLVM, flex, bison or libedit: built
# here without LLVM, with the few shared libraries it needs beside it in
# build-gpu/lib.  Send it along (carry build-gpu) and run tests/gpu/run.sh.
gpu-bundle:
	$(MAKE) BUILD=build-gpu KILN_LLVM=0 build-gpu/kiln
	@mkdir -p build-gpu/lib
	@for lib in $$(ldd build-gpu/kiln | awk '/=> \// {print $$3}' | grep -v -E '/lib(c|m|dl|pthread|rt)\.so'); do \
	    cp -L "$$lib" build-gpu/lib/; done
	@ls build-gpu/lib
	@echo "gpu-bundle: build-gpu/kiln (run with LD_LIBRARY_PATH=build-gpu/lib)"

FUZZ_SECONDS ?= 60
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
fuzz:
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

test-long: all
	@sh tools/install-deps.sh --browser
	@KILN_LONG=1 sh tests/run_all.sh $(BUILD)

# Whole models against onnxruntime and PyTorch (opt-in: installs about 1.3 GB, see
# tools/install-deps.sh --models): torchvision's ResNet-18/50 and MobileNetV2, a BERT
# encoder and bench/models.py's MiniLM-shaped encoder, each against onnxruntime; then the
# pretrained all-MiniLM-L6-v2 against PyTorch (examples/minilm).
test-models: all
	@MODELS_VENV=$(BUILD)/models-venv sh tools/install-deps.sh --models
	@$(BUILD)/models-venv/bin/python tests/onnx/models.py --kiln $(BUILD)/kiln --work $(BUILD)/models
	@$(BUILD)/models-venv/bin/python examples/minilm/minilm.py --kiln $(BUILD)/kiln --work $(BUILD)/minilm

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz build-gpu $(GO_CGO_FLAGS)

-include $(LIB_OBJS:.o=.d) $(PROBE_OBJS:.o=.d) $(BUILD)/tools/kiln.d $(BUILD)/tools/gen_helpers.d $(BUILD)/tools/gen_forms.d
