/* cuda_toolkit.c - the one search for the CUDA toolkit (see cuda_toolkit.h).
 *
 * Contract: cuda_toolkit_find() looks at files only and always fills its
 * result; the first folder that holds NVRTC is THE toolkit, and the builtins
 * library, the include folder and ptxas are taken from that folder only, so
 * that NVRTC never meets headers or builtins of another version.  Order:
 *   1. $CUDA_HOME, else $CUDA_PATH: when set, the only folder looked at (a
 *      wrong value is reported, not silently replaced by another toolkit);
 *   2. the toolkit of the first nvcc on $PATH (bin/..);
 *   3. the parent of the first folder on $LD_LIBRARY_PATH that holds NVRTC;
 *   4. /usr/local/cuda, the newest /usr/local/cuda-X.Y, /opt/cuda, /usr
 *      (Debian's nvidia-cuda-toolkit).
 * In a toolkit folder R, NVRTC is looked for in R/lib64, R/lib,
 * R/targets/<arch>-linux/lib and R/lib/<arch>-linux-gnu, the headers in
 * R/include and R/targets/<arch>-linux/include, ptxas in R/bin. */
#include "runtime/cuda_toolkit.h"

#include <glob.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__aarch64__)
#define TARGET_DIR "targets/sbsa-linux"
#define MULTIARCH  "aarch64-linux-gnu"
#else
#define TARGET_DIR "targets/x86_64-linux"
#define MULTIARCH  "x86_64-linux-gnu"
#endif

const char *const cuda_toolkit_default_roots[] = {"/usr/local/cuda", "/usr/local/cuda-*", "/opt/cuda", "/usr",
                                                  NULL};

static const char *const lib_subdirs[] = {"lib64", "lib", TARGET_DIR "/lib", "lib/" MULTIARCH, NULL};
static const char *const include_subdirs[] = {"include", TARGET_DIR "/include", NULL};

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *path_join(const char *dir, const char *name) {
    StrBuf sb = {0};
    sb_printf(&sb, "%s/%s", dir, name);
    return sb.data;
}

/* The numbers after ".so." in a library's file name: "libnvrtc.so.12.4.127"
 * gives major 12, minor 4; false when there are none. */
static bool so_version(const char *path, int *major, int *minor) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *v = strstr(base, ".so.");
    if (!v) return false;
    char *end;
    long a = strtol(v + 4, &end, 10), b = 0;
    if (end == v + 4) return false;
    if (*end == '.') b = strtol(end + 1, NULL, 10);
    *major = (int)a;
    if (minor) *minor = (int)b;
    return true;
}

/* Paths matching pattern, the highest version first. */
static int cmp_version_desc(const void *a, const void *b) {
    return strverscmp(*(char *const *)b, *(char *const *)a);
}

static void glob_sorted(const char *pattern, glob_t *g) {
    memset(g, 0, sizeof *g);
    if (glob(pattern, 0, NULL, g) != 0) {
        globfree(g);
        memset(g, 0, sizeof *g);
        return;
    }
    qsort(g->gl_pathv, g->gl_pathc, sizeof(char *), cmp_version_desc);
}

/* NVRTC in one lib folder: libnvrtc.so, else the newest libnvrtc.so.N. */
static char *nvrtc_in(const char *lib_dir) {
    char *p = path_join(lib_dir, "libnvrtc.so");
    if (is_file(p)) return p;
    free(p);
    char *pattern = path_join(lib_dir, "libnvrtc.so.[0-9]*");
    glob_t g;
    glob_sorted(pattern, &g);
    free(pattern);
    char *found = NULL;
    for (size_t i = 0; i < g.gl_pathc && !found; i++)
        if (is_file(g.gl_pathv[i])) found = xstrdup(g.gl_pathv[i]);
    globfree(&g);
    return found;
}

/* Takes lib_dir of toolkit root as THE toolkit when it holds NVRTC. */
static bool take_lib_dir(CudaToolkit *tk, const char *root, const char *found_by, const char *lib_dir,
                         StrBuf *tried) {
    sb_printf(tried, "%s%s", tried->len ? ", " : "", lib_dir);
    char *nvrtc = nvrtc_in(lib_dir);
    if (!nvrtc) return false;
    tk->root = xstrdup(root);
    tk->found_by = xstrdup(found_by);
    tk->lib_dir = xstrdup(lib_dir);
    tk->nvrtc = nvrtc;
    char *real = realpath(nvrtc, NULL);
    if (!so_version(real ? real : nvrtc, &tk->nvrtc_major, NULL)) tk->nvrtc_major = 0;
    free(real);
    return true;
}

/* Looks for NVRTC in the lib folders of toolkit folder root. */
static bool try_root(CudaToolkit *tk, const char *root, const char *found_by, StrBuf *tried) {
    bool ok = false;
    for (int i = 0; lib_subdirs[i] && !ok; i++) {
        char *dir = path_join(root, lib_subdirs[i]);
        ok = take_lib_dir(tk, root, found_by, dir, tried);
        free(dir);
    }
    return ok;
}

/* The builtins library of the NVRTC found: same folder, same major version. */
static void find_builtins(CudaToolkit *tk) {
    char *pattern = path_join(tk->lib_dir, "libnvrtc-builtins.so.[0-9]*");
    glob_t g;
    glob_sorted(pattern, &g);
    free(pattern);
    for (size_t i = 0; i < g.gl_pathc && !tk->builtins; i++) {
        int major, minor;
        if (!is_file(g.gl_pathv[i]) || !so_version(g.gl_pathv[i], &major, &minor)) continue;
        if (tk->nvrtc_major && major != tk->nvrtc_major) continue;
        tk->builtins = xstrdup(g.gl_pathv[i]);
        tk->builtins_major = major, tk->builtins_minor = minor;
    }
    globfree(&g);
}

static void find_include_and_ptxas(CudaToolkit *tk) {
    StrBuf tried = {0};
    for (int i = 0; include_subdirs[i] && !tk->include; i++) {
        char *dir = path_join(tk->root, include_subdirs[i]);
        char *hdr = path_join(dir, "cuda_fp16.h");
        sb_printf(&tried, "%s%s", tried.len ? ", " : "", dir);
        if (is_file(hdr))
            tk->include = dir;
        else
            free(dir);
        free(hdr);
    }
    tk->include_tried = tried.data ? tried.data : xstrdup("");
    char *ptxas = path_join(tk->root, "bin/ptxas");
    if (access(ptxas, X_OK) == 0)
        tk->ptxas = ptxas;
    else
        free(ptxas);
}

/* Each folder of a ':'-separated list, in order; stops when fn returns true. */
static bool each_dir(const char *list, bool (*fn)(CudaToolkit *, const char *, StrBuf *), CudaToolkit *tk,
                     StrBuf *tried) {
    if (!list) return false;
    char *copy = xstrdup(list);
    bool done = false;
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d && !done; d = strtok_r(NULL, ":", &save))
        if (*d) done = fn(tk, d, tried);
    free(copy);
    return done;
}

static bool try_nvcc_dir(CudaToolkit *tk, const char *bin, StrBuf *tried) {
    char *nvcc = path_join(bin, "nvcc");
    bool ok = false;
    if (access(nvcc, X_OK) == 0) {
        char *real = realpath(nvcc, NULL);
        if (real) { /* REAL/bin/nvcc -> REAL */
            char *slash = strrchr(real, '/');
            if (slash) *slash = 0;
            slash = strrchr(real, '/');
            if (slash && slash != real) {
                *slash = 0;
                ok = try_root(tk, real, "nvcc on PATH", tried);
            }
            free(real);
        }
    }
    free(nvcc);
    return ok;
}

/* A folder on the loader path holding NVRTC: its parent is the toolkit. */
static bool try_loader_dir(CudaToolkit *tk, const char *dir, StrBuf *tried) {
    char *nvrtc = nvrtc_in(dir);
    if (!nvrtc) return false;
    free(nvrtc);
    char *up = path_join(dir, ".."), *root = realpath(up, NULL);
    bool ok = root && take_lib_dir(tk, root, "LD_LIBRARY_PATH", dir, tried);
    free(up), free(root);
    return ok;
}

static bool try_default_root(CudaToolkit *tk, const char *root, StrBuf *tried) {
    size_t n = strlen(root);
    if (n < 2 || strcmp(root + n - 2, "-*") != 0) return try_root(tk, root, root, tried);
    glob_t g;
    glob_sorted(root, &g);
    bool ok = false;
    for (size_t i = 0; i < g.gl_pathc && !ok; i++) ok = try_root(tk, g.gl_pathv[i], g.gl_pathv[i], tried);
    globfree(&g);
    return ok;
}

void cuda_toolkit_find(CudaToolkit *tk, const CudaToolkitSearch *where) {
    memset(tk, 0, sizeof *tk);
    StrBuf tried = {0}, msg = {0};
    const char *home_var = where->cuda_home && *where->cuda_home   ? "CUDA_HOME"
                           : where->cuda_path && *where->cuda_path ? "CUDA_PATH"
                                                                   : NULL;
    if (home_var) {
        const char *home = strcmp(home_var, "CUDA_HOME") == 0 ? where->cuda_home : where->cuda_path;
        if (!try_root(tk, home, home_var, &tried))
            sb_printf(
                &msg,
                "%s=%s holds no NVRTC (looked for libnvrtc.so* in %s): set %s to the CUDA toolkit's folder",
                home_var, home, tried.data, home_var);
    } else if (!each_dir(where->path, try_nvcc_dir, tk, &tried) &&
               !each_dir(where->ld_library_path, try_loader_dir, tk, &tried)) {
        bool found = false;
        for (int i = 0; where->roots && where->roots[i] && !found; i++)
            found = try_default_root(tk, where->roots[i], &tried);
        if (!found)
            sb_printf(&msg,
                      "NVRTC (libnvrtc.so) was not found: looked in %s; install the CUDA toolkit or set "
                      "CUDA_HOME to its folder",
                      tried.len ? tried.data : "no folder");
    }
    if (tk->nvrtc) {
        find_builtins(tk);
        find_include_and_ptxas(tk);
        if (!tk->builtins) {
            StrBuf want = {0};
            if (tk->nvrtc_major)
                sb_printf(&want, "libnvrtc-builtins.so.%d.*", tk->nvrtc_major);
            else
                sb_puts(&want, "libnvrtc-builtins.so.*");
            sb_printf(&msg,
                      "the CUDA toolkit at %s (found by %s) has NVRTC (%s) but not its builtins library %s "
                      "in %s: the toolkit is incomplete (reinstall it, or set CUDA_HOME to a complete one)",
                      tk->root, tk->found_by, tk->nvrtc, want.data, tk->lib_dir);
            sb_free(&want);
        }
    }
    tk->problem = msg.data;
    sb_free(&tried);
}

void cuda_toolkit_free(CudaToolkit *tk) {
    free(tk->root), free(tk->found_by), free(tk->lib_dir), free(tk->nvrtc), free(tk->builtins);
    free(tk->include), free(tk->ptxas), free(tk->problem), free(tk->include_tried);
    memset(tk, 0, sizeof *tk);
}

static CudaToolkit process_toolkit;
static pthread_once_t process_once = PTHREAD_ONCE_INIT;

static void find_process_toolkit(void) {
    CudaToolkitSearch where = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), getenv("PATH"),
                               getenv("LD_LIBRARY_PATH"), cuda_toolkit_default_roots};
    cuda_toolkit_find(&process_toolkit, &where);
}

const CudaToolkit *cuda_toolkit(void) {
    pthread_once(&process_once, find_process_toolkit);
    return &process_toolkit;
}

static void identify_file(StrBuf *sb, const char *what, const char *path) {
    struct stat st;
    char *real = path ? realpath(path, NULL) : NULL;
    if (real && stat(real, &st) == 0)
        sb_printf(sb, "; %s %s %lld %lld", what, real, (long long)st.st_size, (long long)st.st_mtime);
    else
        sb_printf(sb, "; %s none", what);
    free(real);
}

void cuda_toolkit_identity(const CudaToolkit *tk, StrBuf *sb) {
    identify_file(sb, "nvrtc", tk->nvrtc);
    identify_file(sb, "builtins", tk->builtins);
    char *hdr = tk->include ? path_join(tk->include, "cuda_fp16.h") : NULL;
    identify_file(sb, "cuda_fp16.h", hdr);
    free(hdr);
}
