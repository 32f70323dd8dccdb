/* llvm_oom.cpp - out of memory inside LLVM ends kiln with exit status 3 and
 * kiln's message, never an abort.
 *
 * Contract: llvm_install_oom_handlers() (declared in codegen/llvm.h) makes
 * the two ways LLVM runs out of memory end as kiln's own allocation
 * failures do (base/util.c out_of_host_memory: "kiln: out of host memory
 * (in LLVM: ...)" on stderr, then _Exit(3)):
 *   - LLVM's C allocations (safe_malloc, SmallVector growth, ...) call
 *     report_bad_alloc_error, which without a handler prints "LLVM ERROR:
 *     out of memory" and aborts (Debian's LLVM has no exceptions);
 *   - C++ operator new, which without a new-handler throws std::bad_alloc
 *     that nothing catches: std::terminate, an abort.
 * It is called where LLVM is initialised (llvm.c's llvm_init_native) and,
 * in the command line, before libLLVM's static constructors run
 * (tools/kiln.c's .preinit_array entry); only the first call does anything.
 * The new-handler is process-wide: it is installed only when the process
 * has none, so a program that embeds kiln (libkiln.a) and set its own keeps
 * it.  LLVM-C offers neither call, hence this file: the only C++ in kiln,
 * built only with LLVM (KILN_LLVM=1), linked with -lstdc++ (which libLLVM
 * needs anyway). */
#include <llvm/Support/ErrorHandling.h>

#include <atomic>
#include <cstdio>
#include <new>

extern "C" {
[[noreturn]] void out_of_host_memory(const char *what);
void llvm_install_oom_handlers(void);
}

static void llvm_bad_alloc(void *, const char *reason, bool) {
    char what[160]; /* on the stack: no allocation here, the memory is gone */
    snprintf(what, sizeof what, "in LLVM: %s", reason && *reason ? reason : "no reason given");
    out_of_host_memory(what);
}

static void operator_new_failed() { out_of_host_memory("in LLVM: C++ operator new"); }

void llvm_install_oom_handlers(void) {
    static std::atomic<bool> installed; /* LLVM wants one install only */
    if (installed.exchange(true)) return;
    llvm::install_bad_alloc_error_handler(llvm_bad_alloc, nullptr);
    if (!std::get_new_handler()) std::set_new_handler(operator_new_failed);
}
