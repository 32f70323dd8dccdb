/* objload.c - loads the CPU units' x86-64 ELF relocatable objects into
 * memory of their own, or refuses them with a reason (objload.h).
 *
 * One pass reads and checks the headers and lays the allocated sections
 * out in three page-aligned parts of one mapping: code, read-only data
 * followed by the global offset table, writable data.  The relocations are
 * checked (kind, symbol, offset inside their section) and the offset table
 * sized before anything is mapped, so a refused object costs no mapping;
 * then the sections are copied, the symbols resolved, the table filled, the
 * relocations applied and the protections set. */
#include "runtime/objload.h"

#include "base/base.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__ELF__) && defined(__linux__)
#define OBJLOAD_X86_64 1
#include <dlfcn.h>
#include <elf.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

typedef struct {
    char *name;
    void *addr;
} ObjExport;

/* One mapping, shared by the images loaded into it (obj_load_all): the
 * last image freed unmaps it. */
typedef struct {
    void *base;
    size_t size;
    atomic_int refs;
} ObjMapping;

struct ObjImage {
    ObjMapping *map;
    size_t size;        /* its own parts' bytes */
    ObjExport *exports; /* the global symbols it defines */
    int nexports;
    char *names; /* their names, one block */
};

void *obj_symbol(const ObjImage *im, const char *name) {
    for (int i = 0; im && i < im->nexports; i++)
        if (strcmp(im->exports[i].name, name) == 0) return im->exports[i].addr;
    return NULL;
}

size_t obj_size(const ObjImage *im) { return im ? im->size : 0; }

ObjImage *obj_load(const void *data, size_t len, ObjResolveFn resolve, void *ctx, char *err, size_t errlen) {
    ObjImage *im = NULL;
    void *ctxs[1] = {ctx};
    return obj_load_all(1, &data, &len, resolve, ctxs, &im, err, errlen) ? im : NULL;
}

#ifndef OBJLOAD_X86_64

bool obj_loader_available(void) { return false; }

bool obj_load_all(int n, const void *const *data, const size_t *len, ObjResolveFn resolve, void *const *ctx,
                  ObjImage **out, char *err, size_t errlen) {
    (void)data, (void)len, (void)resolve, (void)ctx;
    for (int k = 0; k < n; k++) out[k] = NULL;
    snprintf(err, errlen, "kiln's object loader takes x86-64 ELF objects only");
    return false;
}

void obj_free(ObjImage *im) {
    if (!im) return;
    free(im->exports);
    free(im->names);
    free(im);
}

#else

bool obj_loader_available(void) { return true; }

enum { PART_CODE, PART_RODATA, PART_DATA, NPARTS };

/* What one load knows about the file: its checked headers and the layout. */
typedef struct {
    const unsigned char *file;
    size_t len;
    Elf64_Shdr *sh; /* copies: the file need not be aligned */
    int nsh;
    int *part;      /* per section: PART_*, or -1 (not loaded) */
    size_t *offset; /* per loaded section: its offset in the mapping */
    size_t part_at[NPARTS], part_size[NPARTS], part_align[NPARTS];
    size_t got_at; /* the offset table, at the end of the read-only part */
    int nslots;
    int symtab;      /* its section index */
    Elf64_Sym *syms; /* copies */
    int nsyms;
    const char *strtab;
    size_t strtab_len;
    int *slot;       /* per symbol: its offset table slot, or -1 */
    uintptr_t *addr; /* per symbol: its address once resolved */
    char *err;
    size_t errlen;
} Load;

static bool refuse(Load *l, const char *fmt, const char *what) {
    snprintf(l->err, l->errlen, fmt, what);
    return false;
}

static bool in_file(const Load *l, uint64_t off, uint64_t size) {
    return off <= l->len && size <= l->len - off;
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

/* The symbol's name, or NULL when its offset lies outside the string table. */
static const char *sym_name(const Load *l, const Elf64_Sym *s) {
    return s->st_name < l->strtab_len ? l->strtab + s->st_name : NULL;
}

/* ELF header, section headers, the one symbol table and its strings. */
static bool read_headers(Load *l) {
    Elf64_Ehdr eh;
    if (l->len < sizeof eh) return refuse(l, "%s", "not an ELF object (too short)");
    memcpy(&eh, l->file, sizeof eh);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_ident[EI_DATA] != ELFDATA2LSB)
        return refuse(l, "%s", "not a 64-bit little-endian ELF object");
    if (eh.e_type != ET_REL || eh.e_machine != EM_X86_64)
        return refuse(l, "%s", "not an x86-64 relocatable object");
    if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum == 0 ||
        !in_file(l, eh.e_shoff, (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr)))
        return refuse(l, "%s", "section headers outside the file");
    l->nsh = eh.e_shnum;
    l->sh = xmalloc(sizeof(Elf64_Shdr) * (size_t)l->nsh);
    memcpy(l->sh, l->file + eh.e_shoff, sizeof(Elf64_Shdr) * (size_t)l->nsh);
    l->symtab = -1;
    for (int i = 0; i < l->nsh; i++) {
        const Elf64_Shdr *s = &l->sh[i];
        if (s->sh_type != SHT_NOBITS && s->sh_type != SHT_NULL && !in_file(l, s->sh_offset, s->sh_size))
            return refuse(l, "%s", "a section outside the file");
        if (s->sh_type == SHT_REL) return refuse(l, "%s", "REL relocations (without addends)");
        if (s->sh_type == SHT_SYMTAB) {
            if (l->symtab >= 0) return refuse(l, "%s", "two symbol tables");
            l->symtab = i;
        }
    }
    if (l->symtab < 0) return refuse(l, "%s", "no symbol table");
    const Elf64_Shdr *st = &l->sh[l->symtab];
    if (st->sh_entsize != sizeof(Elf64_Sym) || st->sh_size % sizeof(Elf64_Sym) != 0 || st->sh_link == 0 ||
        st->sh_link >= (unsigned)l->nsh || l->sh[st->sh_link].sh_type != SHT_STRTAB)
        return refuse(l, "%s", "a malformed symbol table");
    const Elf64_Shdr *str = &l->sh[st->sh_link];
    l->strtab = (const char *)l->file + str->sh_offset;
    l->strtab_len = str->sh_size;
    if (l->strtab_len == 0 || l->strtab[l->strtab_len - 1] != 0)
        return refuse(l, "%s", "a string table that does not end its last string");
    l->nsyms = (int)(st->sh_size / sizeof(Elf64_Sym));
    l->syms = xmalloc(sizeof(Elf64_Sym) * (size_t)(l->nsyms + 1));
    memcpy(l->syms, l->file + st->sh_offset, st->sh_size);
    return true;
}

/* Which part of the mapping each allocated section goes to, and where. */
static bool lay_out(Load *l) {
    l->part = xmalloc(sizeof(int) * (size_t)l->nsh);
    l->offset = xcalloc((size_t)l->nsh, sizeof(size_t));
    for (int i = 0; i < l->nsh; i++) {
        const Elf64_Shdr *s = &l->sh[i];
        l->part[i] = -1;
        if (!(s->sh_flags & SHF_ALLOC)) continue;
        if (s->sh_flags & SHF_TLS) return refuse(l, "%s", "thread-local data");
        if (s->sh_type == SHT_INIT_ARRAY || s->sh_type == SHT_FINI_ARRAY || s->sh_type == SHT_PREINIT_ARRAY)
            return refuse(l, "%s", "constructors or destructors");
        if (s->sh_type != SHT_PROGBITS && s->sh_type != SHT_NOBITS && s->sh_type != SHT_X86_64_UNWIND)
            return refuse(l, "%s", "an allocated section of a kind it does not know");
        uint64_t a = s->sh_addralign ? s->sh_addralign : 1;
        if ((a & (a - 1)) != 0 || a > 4096) return refuse(l, "%s", "a section alignment above a page");
        if (s->sh_size > ((uint64_t)1 << 30)) return refuse(l, "%s", "a section over 1 GiB");
        int p = (s->sh_flags & SHF_EXECINSTR) ? PART_CODE
                : (s->sh_flags & SHF_WRITE)   ? PART_DATA
                                              : PART_RODATA;
        l->part[i] = p;
        if (a > l->part_align[p]) l->part_align[p] = a;
        l->offset[i] = align_up(l->part_size[p], a);
        l->part_size[p] = l->offset[i] + s->sh_size;
    }
    return true;
}

/* The relocation section `r` applies to a loaded section: its entries. */
static bool relocated_section(const Load *l, const Elf64_Shdr *r) {
    return r->sh_type == SHT_RELA && r->sh_info < (unsigned)l->nsh && l->part[r->sh_info] >= 0;
}

/* The width in bytes a relocation kind writes; 0: a kind not taken. */
static int reloc_width(unsigned type) {
    switch (type) {
    case R_X86_64_NONE: return 1; /* writes nothing; any offset in the section */
    case R_X86_64_64:
    case R_X86_64_PC64:
    case R_X86_64_GOTPC64:
    case R_X86_64_GOTOFF64:
    case R_X86_64_GOT64:
    case R_X86_64_GOTPCREL64: return 8;
    case R_X86_64_PC32:
    case R_X86_64_PLT32:
    case R_X86_64_32:
    case R_X86_64_32S:
    case R_X86_64_GOTPC32:
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX: return 4;
    default: return 0;
    }
}

static bool uses_slot(unsigned type) {
    return type == R_X86_64_GOT64 || type == R_X86_64_GOTPCREL64 || type == R_X86_64_GOTPCREL ||
           type == R_X86_64_GOTPCRELX || type == R_X86_64_REX_GOTPCRELX;
}

/* Every relocation checked (kind, symbol, place), offset table slots given. */
static bool check_relocations(Load *l) {
    l->slot = xmalloc(sizeof(int) * (size_t)(l->nsyms + 1));
    for (int i = 0; i < l->nsyms; i++) l->slot[i] = -1;
    for (int i = 0; i < l->nsh; i++) {
        const Elf64_Shdr *r = &l->sh[i];
        if (!relocated_section(l, r)) {
            if (r->sh_type == SHT_RELA && r->sh_info >= (unsigned)l->nsh)
                return refuse(l, "%s", "relocations of no section");
            continue;
        }
        if (r->sh_link != (unsigned)l->symtab || r->sh_entsize != sizeof(Elf64_Rela) ||
            r->sh_size % sizeof(Elf64_Rela) != 0)
            return refuse(l, "%s", "a malformed relocation section");
        const Elf64_Shdr *target = &l->sh[r->sh_info];
        if (target->sh_type == SHT_NOBITS) return refuse(l, "%s", "relocations in a section without bytes");
        for (uint64_t k = 0; k < r->sh_size / sizeof(Elf64_Rela); k++) {
            Elf64_Rela rel;
            memcpy(&rel, l->file + r->sh_offset + k * sizeof rel, sizeof rel);
            unsigned type = (unsigned)ELF64_R_TYPE(rel.r_info);
            uint64_t sym = ELF64_R_SYM(rel.r_info);
            int width = reloc_width(type);
            if (width == 0) {
                char what[32];
                snprintf(what, sizeof what, "%u", type);
                return refuse(l, "relocation kind %s", what);
            }
            if (sym >= (uint64_t)l->nsyms) return refuse(l, "%s", "a relocation of a symbol out of range");
            if (rel.r_offset > target->sh_size || (uint64_t)width > target->sh_size - rel.r_offset)
                return refuse(l, "%s", "a relocation outside its section");
            if (uses_slot(type) && l->slot[sym] < 0) l->slot[sym] = l->nslots++;
        }
    }
    return true;
}

/* The address of every symbol: defined ones in the mapping, undefined ones
 * from `resolve` or the process. */
static bool resolve_symbols(Load *l, unsigned char *base, ObjResolveFn resolve, void *ctx) {
    l->addr = xcalloc((size_t)l->nsyms + 1, sizeof(uintptr_t));
    for (int i = 1; i < l->nsyms; i++) {
        const Elf64_Sym *s = &l->syms[i];
        const char *name = sym_name(l, s);
        if (!name) return refuse(l, "%s", "a symbol name outside the string table");
        int type = ELF64_ST_TYPE(s->st_info);
        if (type == STT_TLS || type == STT_GNU_IFUNC)
            return refuse(l, "thread-local or indirect symbol %s", name);
        if (s->st_shndx == SHN_UNDEF) {
            if (!name[0]) continue;
            void *p = NULL;
            if (strcmp(name, "_GLOBAL_OFFSET_TABLE_") == 0)
                p = base + l->got_at;
            else if (!(resolve && (p = resolve(ctx, name))))
                p = dlsym(RTLD_DEFAULT, name);
            if (!p && ELF64_ST_BIND(s->st_info) != STB_WEAK) return refuse(l, "undefined symbol %s", name);
            l->addr[i] = (uintptr_t)p;
        } else if (s->st_shndx == SHN_ABS) {
            l->addr[i] = s->st_value;
        } else if (s->st_shndx >= SHN_LORESERVE || s->st_shndx >= l->nsh) {
            return refuse(l, "common or extended-index symbol %s", name);
        } else if (l->part[s->st_shndx] >= 0) {
            const Elf64_Shdr *sec = &l->sh[s->st_shndx];
            if (s->st_value > sec->sh_size) return refuse(l, "symbol %s outside its section", name);
            l->addr[i] =
                (uintptr_t)(base + l->part_at[l->part[s->st_shndx]] + l->offset[s->st_shndx] + s->st_value);
        } /* else defined in a section not loaded (debug info): address 0, never relocated against below */
    }
    return true;
}

static bool fits_i32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

/* Applies every relocation of the loaded sections. */
static bool apply_relocations(Load *l, unsigned char *base) {
    uint64_t got = (uint64_t)(uintptr_t)(base + l->got_at);
    for (int i = 0; i < l->nsh; i++) {
        const Elf64_Shdr *r = &l->sh[i];
        if (!relocated_section(l, r)) continue;
        int tsec = (int)r->sh_info;
        unsigned char *section = base + l->part_at[l->part[tsec]] + l->offset[tsec];
        for (uint64_t k = 0; k < r->sh_size / sizeof(Elf64_Rela); k++) {
            Elf64_Rela rel;
            memcpy(&rel, l->file + r->sh_offset + k * sizeof rel, sizeof rel);
            unsigned type = (unsigned)ELF64_R_TYPE(rel.r_info);
            uint64_t sym = ELF64_R_SYM(rel.r_info);
            const Elf64_Sym *s = &l->syms[sym];
            if (sym != 0 && s->st_shndx != SHN_UNDEF && s->st_shndx != SHN_ABS && l->part[s->st_shndx] < 0)
                return refuse(l, "%s", "a relocation against a section that is not loaded");
            unsigned char *place = section + rel.r_offset;
            uint64_t S = l->addr[sym], A = (uint64_t)rel.r_addend, P = (uint64_t)(uintptr_t)place;
            uint64_t G = l->slot[sym] >= 0 ? 8 * (uint64_t)l->slot[sym] : 0;
            int64_t v32 = 0;
            switch (type) {
            case R_X86_64_NONE: break;
            case R_X86_64_64: put64(place, S + A); break;
            case R_X86_64_PC64: put64(place, S + A - P); break;
            case R_X86_64_GOTPC64: put64(place, got + A - P); break;
            case R_X86_64_GOTOFF64: put64(place, S + A - got); break;
            case R_X86_64_GOT64: put64(place, G + A); break;
            case R_X86_64_GOTPCREL64: put64(place, G + got + A - P); break;
            case R_X86_64_32:
                if (S + A > UINT32_MAX) return refuse(l, "%s", "a 32-bit relocation out of range");
                put32(place, (uint32_t)(S + A));
                break;
            default: /* the 32-bit signed kinds */
                switch (type) {
                case R_X86_64_32S: v32 = (int64_t)(S + A); break;
                case R_X86_64_PC32:
                case R_X86_64_PLT32: v32 = (int64_t)(S + A - P); break;
                case R_X86_64_GOTPC32: v32 = (int64_t)(got + A - P); break;
                default: v32 = (int64_t)(G + got + A - P); break; /* GOTPCREL(X) */
                }
                if (!fits_i32(v32)) return refuse(l, "%s", "a 32-bit relocation out of range");
                put32(place, (uint32_t)(int32_t)v32);
                break;
            }
        }
    }
    return true;
}

/* Whether symbol i is a global (or weak) one the object defines. */
static bool exported(const Load *l, int i) {
    const Elf64_Sym *s = &l->syms[i];
    int bind = ELF64_ST_BIND(s->st_info);
    return (bind == STB_GLOBAL || bind == STB_WEAK) && s->st_shndx != SHN_UNDEF && l->addr[i];
}

/* The global symbols the object defines, for obj_symbol. */
static void collect_exports(const Load *l, ObjImage *im) {
    size_t bytes = 0;
    int n = 0;
    for (int i = 1; i < l->nsyms; i++) {
        if (exported(l, i)) {
            bytes += strlen(sym_name(l, &l->syms[i])) + 1;
            n++;
        }
    }
    im->exports = xcalloc((size_t)n + 1, sizeof(ObjExport));
    im->names = xmalloc(bytes + 1);
    char *at = im->names;
    for (int i = 1; i < l->nsyms; i++) {
        if (exported(l, i)) {
            const char *name = sym_name(l, &l->syms[i]);
            size_t len = strlen(name) + 1;
            memcpy(at, name, len);
            im->exports[im->nexports++] = (ObjExport){at, (void *)l->addr[i]};
            at += len;
        }
    }
}

static void load_free(Load *l) {
    free(l->sh);
    free(l->part);
    free(l->offset);
    free(l->syms);
    free(l->slot);
    free(l->addr);
}

/* Everything but memory: the headers read, the sections laid out, the
 * relocations checked and the offset table placed after the read-only
 * data (8-byte aligned). */
static bool prepare(Load *l) {
    if (!read_headers(l) || !lay_out(l) || !check_relocations(l)) return false;
    l->got_at = align_up(l->part_size[PART_RODATA], 8);
    l->part_size[PART_RODATA] = l->got_at + 8 * (size_t)l->nslots;
    if (l->part_align[PART_RODATA] < 8) l->part_align[PART_RODATA] = 8;
    return true;
}

/* l's sections copied to base + its parts' places (part_at), its symbols
 * resolved, its offset table filled and its relocations applied. */
static bool place(Load *l, unsigned char *base, ObjResolveFn resolve, void *ctx) {
    l->got_at += l->part_at[PART_RODATA];
    for (int i = 0; i < l->nsh; i++) /* NOBITS stay zero: a fresh anonymous mapping */
        if (l->part[i] >= 0 && l->sh[i].sh_type != SHT_NOBITS)
            memcpy(base + l->part_at[l->part[i]] + l->offset[i], l->file + l->sh[i].sh_offset,
                   l->sh[i].sh_size);
    bool ok = resolve_symbols(l, base, resolve, ctx);
    for (int i = 0; ok && i < l->nsyms; i++)
        if (l->slot[i] >= 0) put64(base + l->got_at + 8 * (size_t)l->slot[i], l->addr[i]);
    return ok && apply_relocations(l, base);
}

bool obj_load_all(int n, const void *const *data, const size_t *len, ObjResolveFn resolve, void *const *ctx,
                  ObjImage **out, char *err, size_t errlen) {
    if (n < 1) {
        snprintf(err, errlen, "no objects to load");
        return false;
    }
    Load *l = xcalloc((size_t)n + 1, sizeof(Load));
    char why[256] = "";
    for (int j = 0; j < n; j++) out[j] = NULL;
    int k = 0;
    for (; k < n; k++) {
        l[k] = (Load){.file = data[k], .len = len[k], .err = why, .errlen = sizeof why};
        if (!prepare(&l[k])) break;
    }
    /* the parts side by side: every code part, then every read-only part,
     * then every writable one, each kind from a page of its own */
    size_t page = (size_t)sysconf(_SC_PAGESIZE), total = 0, area_at[NPARTS + 1] = {0};
    for (int p = 0; k == n && p < NPARTS; p++) {
        area_at[p] = total;
        for (int j = 0; j < n; j++) {
            l[j].part_at[p] = align_up(total, l[j].part_align[p] ? l[j].part_align[p] : 1);
            total = l[j].part_at[p] + l[j].part_size[p];
        }
        total = align_up(total, page);
    }
    area_at[NPARTS] = total;
    if (total == 0) total = page;
    unsigned char *base = MAP_FAILED;
    if (k == n &&
        (base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED)
        snprintf(why, sizeof why, "cannot map %zu bytes for %s", total, n > 1 ? "objects" : "an object");
    if (base != MAP_FAILED) k = 0;
    while (base != MAP_FAILED && k < n && place(&l[k], base, resolve, ctx ? ctx[k] : NULL)) k++;
    bool ok = base != MAP_FAILED && k == n;
    size_t code = area_at[PART_RODATA] - area_at[PART_CODE], ro = area_at[PART_DATA] - area_at[PART_RODATA];
    if (ok && code > 0 && mprotect(base, code, PROT_READ | PROT_EXEC) != 0)
        ok = false, snprintf(why, sizeof why, "cannot make the code executable");
    if (ok && ro > 0 && mprotect(base + area_at[PART_RODATA], ro, PROT_READ) != 0)
        ok = false, snprintf(why, sizeof why, "cannot make the read-only data read-only");
    if (ok) {
        ObjMapping *m = xcalloc(1, sizeof *m);
        m->base = base, m->size = total;
        atomic_init(&m->refs, n);
        for (int j = 0; j < n; j++) {
            out[j] = xcalloc(1, sizeof(ObjImage));
            out[j]->map = m;
            for (int p = 0; p < NPARTS; p++) out[j]->size += l[j].part_size[p];
            collect_exports(&l[j], out[j]);
        }
    } else if (base != MAP_FAILED) {
        munmap(base, total);
    }
    if (!ok) {
        if (n > 1 && k < n)
            snprintf(err, errlen, "object %d of %d: %s", k + 1, n, why);
        else
            snprintf(err, errlen, "%s", why);
    } else if (errlen) {
        err[0] = 0;
    }
    for (int j = 0; j < n; j++) load_free(&l[j]);
    free(l);
    return ok;
}

void obj_free(ObjImage *im) {
    if (!im) return;
    if (atomic_fetch_sub(&im->map->refs, 1) == 1) {
        munmap(im->map->base, im->map->size);
        free(im->map);
    }
    free(im->exports);
    free(im->names);
    free(im);
}

#endif
