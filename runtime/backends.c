/* backends.c - the one array of backends (backend.h), and the lookups the
 * command line, the REPL and the executor make in it: by device name, by
 * emit stage, by aot target, and the default device (the first available
 * accelerator, else cpu, else ref).
 *
 * A new device is one file defining `const Backend NAME_backend` and one
 * entry in KILN_BACKENDS below; its order here is the order of help texts. */
#include "runtime/backend.h"

#include <string.h>

#define KILN_BACKENDS(X) X(ref_backend) X(kir_backend) X(cpu_backend) X(cuda_backend) X(cuda_emu_backend)

#define DECLARE(b) extern const Backend b;
KILN_BACKENDS(DECLARE)
#undef DECLARE

#define ROW(b) &b,
static const Backend *const backend_table[] = {KILN_BACKENDS(ROW)};
#undef ROW

int backend_count(void) { return (int)(sizeof backend_table / sizeof backend_table[0]); }

const Backend *backend_at(int i) { return i >= 0 && i < backend_count() ? backend_table[i] : NULL; }

const Backend *backend_lookup(const char *name) {
    for (int i = 0; i < backend_count(); i++)
        if (strcmp(backend_table[i]->name, name) == 0) return backend_table[i];
    return NULL;
}

bool backend_takes_unaligned(const Backend *be) {
    bool device_memory = (be->caps & BK_KERNELS) && !(be->caps & BK_HOST_MEMORY);
    return (be->caps & BK_UNALIGNED_INPUTS) || device_memory;
}

void backend_names(StrBuf *out, const char *sep) {
    for (int i = 0; i < backend_count(); i++) sb_printf(out, "%s%s", i ? sep : "", backend_table[i]->name);
}

KilnStatus backend_open(const char *name, const Backend **out, char *err, size_t errlen) {
    *out = NULL;
    const Backend *be = backend_lookup(name);
    if (!be) {
        StrBuf names = {0};
        backend_names(&names, ", ");
        snprintf(err, errlen, "unknown device '%s' (devices: %s)", name, names.data);
        sb_free(&names);
        return KILN_ERR_USAGE;
    }
    char why[512] = "";
    if (be->available && !be->available(why, sizeof why)) {
        snprintf(err, errlen, "--device=%s: %s", name, why);
        return KILN_ERR_DEVICE;
    }
    *out = be;
    return KILN_OK;
}

const char *backend_default(void) {
    char why[512];
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = backend_table[i];
        if ((be->caps & BK_ACCELERATOR) && (!be->available || be->available(why, sizeof why)))
            return be->name;
    }
    const Backend *cpu = backend_lookup("cpu");
    if (cpu && (!cpu->available || cpu->available(why, sizeof why))) return "cpu";
    return "ref";
}

const Backend *backend_aot_target(const char *target, const char **variant, char *err, size_t errlen) {
    size_t n = strcspn(target, ":");
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = backend_table[i];
        bool variant_ok = target[n] == 0 || be->aot.variant; /* NAME:VARIANT only where it takes one */
        if (be->aot.write && variant_ok && strlen(be->name) == n && strncmp(be->name, target, n) == 0) {
            if (variant) *variant = target[n] == ':' ? target + n + 1 : NULL;
            return be;
        }
    }
    StrBuf names = {0};
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = backend_table[i];
        if (!be->aot.write) continue;
        sb_printf(&names, "%s%s", names.len ? ", " : "", be->name);
        if (be->aot.variant) sb_printf(&names, "[:%s]", be->aot.variant);
    }
    snprintf(err, errlen, "unknown target '%s' (targets: %s)", target, names.data ? names.data : "none");
    sb_free(&names);
    return NULL;
}

const EmitStage *backend_stage(const char *name, const Backend **owner) {
    for (int i = 0; i < backend_count(); i++) {
        const Backend *be = backend_table[i];
        for (int s = 0; be->stages && be->stages[s].name; s++) {
            if (strcmp(be->stages[s].name, name) == 0) {
                if (owner) *owner = be;
                return &be->stages[s];
            }
        }
    }
    return NULL;
}

void backend_stage_names(StrBuf *out, const char *sep) {
    bool first = true;
    for (int i = 0; i < backend_count(); i++)
        for (int s = 0; backend_table[i]->stages && backend_table[i]->stages[s].name; s++, first = false)
            sb_printf(out, "%s%s", first ? "" : sep, backend_table[i]->stages[s].name);
}

const char *aot_c_type(KilnDType dt) {
    switch (dt) {
    case KILN_F32: return "float";
    case KILN_F64: return "double";
    case KILN_F16:
    case KILN_BF16: return "uint16_t";
    case KILN_I32: return "int32_t";
    case KILN_I64: return "int64_t";
    case KILN_BOOL: return "uint8_t";
    case KILN_NUM_DTYPES: break;
    }
    return "void";
}
