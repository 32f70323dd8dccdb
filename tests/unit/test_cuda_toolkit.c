/* test_cuda_toolkit.c - the one CUDA toolkit search (runtime/cuda_toolkit.c)
 * and NVRTC loaded from what it finds (runtime/nvrtc.c).
 *
 * Checks, on toolkit folders made up in a temporary folder: CUDA_HOME and
 * CUDA_PATH are the only place looked at when set (a wrong one is reported,
 * never replaced); nvcc on PATH, LD_LIBRARY_PATH and the default folders in
 * that order, the newest /usr/local/cuda-X.Y first; the lib64, lib and
 * targets/<arch>-linux layouts; the builtins library taken beside NVRTC with
 * NVRTC's major version, its absence reported by name; the include folder
 * and ptxas of the same toolkit; the cache identity following the files.
 * Then, where a real toolkit is installed: NVRTC loads, agrees with its
 * builtins, lists its architectures, refuses one it does not list, and
 * writes PTX and a cubin (nvrtcGetCUBIN).  The driver compatibility rules
 * (runtime/cuda_compat.c) on made-up versions and architecture lists.
 * Prints "test_cuda_toolkit: N passed, N failed" last. */
#include "codegen/cuda.h"
#include "runtime/cuda_driver.h"
#include "runtime/cuda_toolkit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static const char *str(const char *s) { return s ? s : "(null)"; }

static bool contains(const char *s, const char *part) { return s && strstr(s, part); }

static char base[] = "/tmp/test_cuda_toolkit.XXXXXX";

/* Makes base/rel (and its folders), with `bytes` bytes; executable when asked. */
static void make_file(const char *rel, int bytes, bool exec) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    for (char *p = path + strlen(base) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    for (int i = 0; f && i < bytes; i++) fputc('x', f);
    if (f) fclose(f);
    if (exec) chmod(path, 0755);
}

/* A toolkit at base/rel: lib (lib64 unless given) with NVRTC major.minor and
 * its builtins, include/cuda_fp16.h, bin/ptxas, each only when asked. */
static void make_toolkit(const char *rel, const char *lib, int major, int minor, bool builtins,
                         bool include) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s/libnvrtc.so.%d", rel, lib, major);
    make_file(p, 1, false);
    if (builtins) {
        snprintf(p, sizeof p, "%s/%s/libnvrtc-builtins.so.%d.%d", rel, lib, major, minor);
        make_file(p, 1, false);
    }
    if (include) {
        snprintf(p, sizeof p, "%s/include/cuda_fp16.h", rel);
        make_file(p, 1, false);
    }
    snprintf(p, sizeof p, "%s/bin/ptxas", rel);
    make_file(p, 1, true);
}

static char *at(const char *rel) {
    StrBuf sb = {0};
    sb_printf(&sb, "%s/%s", base, rel);
    return sb.data;
}

static void find(CudaToolkit *tk, const char *home, const char *cpath, const char *path, const char *ldpath,
                 const char *root1, const char *root2) {
    char *r1 = root1 ? at(root1) : NULL, *r2 = root2 ? at(root2) : NULL;
    const char *roots[] = {r1, r2, NULL};
    if (!r1) roots[0] = r2, roots[1] = NULL;
    CudaToolkitSearch where = {home, cpath, path, ldpath, roots};
    cuda_toolkit_find(tk, &where);
    free(r1), free(r2);
}

static void test_cuda_home(void) {
    make_toolkit("a", "lib64", 13, 0, true, true);
    CudaToolkit tk;
    char *a = at("a"), *empty = at("empty");
    mkdir(empty, 0755);
    find(&tk, a, NULL, NULL, NULL, "b", NULL);
    CHECK(!tk.problem, "%s", str(tk.problem));
    CHECK(contains(tk.found_by, "CUDA_HOME"), "%s", str(tk.found_by));
    CHECK(contains(tk.nvrtc, "/a/lib64/libnvrtc.so.13"), "%s", str(tk.nvrtc));
    CHECK(contains(tk.builtins, "/a/lib64/libnvrtc-builtins.so.13.0"), "%s", str(tk.builtins));
    CHECK(tk.builtins_major == 13 && tk.builtins_minor == 0, "%d.%d", tk.builtins_major, tk.builtins_minor);
    CHECK(contains(tk.include, "/a/include"), "%s", str(tk.include));
    CHECK(contains(tk.ptxas, "/a/bin/ptxas"), "%s", str(tk.ptxas));
    cuda_toolkit_free(&tk);

    /* CUDA_PATH when CUDA_HOME is unset or empty */
    find(&tk, "", a, NULL, NULL, NULL, NULL);
    CHECK(!tk.problem && contains(tk.found_by, "CUDA_PATH"), "%s / %s", str(tk.problem), str(tk.found_by));
    cuda_toolkit_free(&tk);

    /* a CUDA_HOME without NVRTC is reported, not replaced by another toolkit */
    make_toolkit("b", "lib64", 13, 0, true, true);
    find(&tk, empty, a, NULL, NULL, "b", NULL);
    CHECK(!tk.nvrtc && contains(tk.problem, "CUDA_HOME=") && contains(tk.problem, "/empty/lib64"), "%s",
          str(tk.problem));
    cuda_toolkit_free(&tk);
    free(a), free(empty);
}

static void test_order(void) {
    CudaToolkit tk;
    /* nvcc on PATH names its toolkit, before LD_LIBRARY_PATH and the defaults */
    make_toolkit("c", "lib64", 13, 0, true, true);
    make_file("c/bin/nvcc", 1, true);
    make_toolkit("d", "lib", 13, 0, true, true);
    char *cbin = at("c/bin"), *dlib = at("d/lib");
    StrBuf path = {0};
    sb_printf(&path, "/nonexistent:%s", cbin);
    find(&tk, NULL, NULL, path.data, dlib, "a", NULL);
    CHECK(!tk.problem && contains(tk.found_by, "nvcc") && contains(tk.root, "/c"), "%s / %s", str(tk.problem),
          str(tk.root));
    cuda_toolkit_free(&tk);
    /* then a folder on LD_LIBRARY_PATH holding NVRTC: its parent */
    find(&tk, NULL, NULL, "/nonexistent", dlib, "a", NULL);
    CHECK(!tk.problem && contains(tk.found_by, "LD_LIBRARY_PATH") &&
              contains(tk.nvrtc, "/d/lib/libnvrtc.so.13") && contains(tk.include, "/d/include"),
          "%s / %s / %s", str(tk.problem), str(tk.nvrtc), str(tk.include));
    cuda_toolkit_free(&tk);
    /* then the default folders in order, the newest cuda-X.Y of a pattern first */
    make_toolkit("opt/cuda-12.9", "lib64", 12, 9, true, true);
    make_toolkit("opt/cuda-12.10", "lib64", 12, 10, true, true);
    make_toolkit("opt/cuda-11.8", "lib64", 11, 8, true, true);
    find(&tk, NULL, NULL, NULL, NULL, "none", "opt/cuda-*");
    CHECK(!tk.problem && contains(tk.root, "/opt/cuda-12.10") && tk.builtins_minor == 10, "%s / %s",
          str(tk.problem), str(tk.root));
    cuda_toolkit_free(&tk);
    /* nothing anywhere: what was tried */
    find(&tk, NULL, NULL, NULL, NULL, "none", NULL);
    CHECK(!tk.nvrtc && contains(tk.problem, "was not found") && contains(tk.problem, "/none/lib64"), "%s",
          str(tk.problem));
    cuda_toolkit_free(&tk);
    sb_free(&path);
    free(cbin), free(dlib);
}

static void test_layouts(void) {
    CudaToolkit tk;
    char *e = at("e"), *f = at("f"), *g = at("g");
    /* targets/<arch>-linux/{lib,include} */
#if defined(__aarch64__)
    make_file("e/targets/sbsa-linux/lib/libnvrtc.so", 1, false);
    make_file("e/targets/sbsa-linux/lib/libnvrtc-builtins.so.13.1", 1, false);
    make_file("e/targets/sbsa-linux/include/cuda_fp16.h", 1, false);
#else
    make_file("e/targets/x86_64-linux/lib/libnvrtc.so", 1, false);
    make_file("e/targets/x86_64-linux/lib/libnvrtc-builtins.so.13.1", 1, false);
    make_file("e/targets/x86_64-linux/include/cuda_fp16.h", 1, false);
#endif
    find(&tk, e, NULL, NULL, NULL, NULL, NULL);
    CHECK(!tk.problem && contains(tk.nvrtc, "/lib/libnvrtc.so") && contains(tk.include, "-linux/include") &&
              tk.builtins_minor == 1,
          "%s / %s / %s", str(tk.problem), str(tk.nvrtc), str(tk.include));
    cuda_toolkit_free(&tk);
    /* the builtins of NVRTC's own major version, the newest */
    make_toolkit("f", "lib64", 12, 4, true, false);
    make_file("f/lib64/libnvrtc-builtins.so.13.0", 1, false);
    make_file("f/lib64/libnvrtc-builtins.so.12.2", 1, false);
    find(&tk, f, NULL, NULL, NULL, NULL, NULL);
    CHECK(contains(tk.builtins, "libnvrtc-builtins.so.12.4"), "%s", str(tk.builtins));
    CHECK(!tk.include && contains(tk.include_tried, "/f/include"), "%s / %s", str(tk.include),
          str(tk.include_tried));
    cuda_toolkit_free(&tk);
    /* no builtins of that major: named in the problem */
    make_toolkit("g", "lib64", 13, 0, false, true);
    make_file("g/lib64/libnvrtc-builtins.so.12.8", 1, false);
    find(&tk, g, NULL, NULL, NULL, NULL, NULL);
    CHECK(!tk.builtins && contains(tk.problem, "libnvrtc-builtins.so.13.*") &&
              contains(tk.problem, "/g/lib64"),
          "%s", str(tk.problem));
    cuda_toolkit_free(&tk);
    free(e), free(f), free(g);
}

static void test_identity(void) {
    CudaToolkit tk;
    char *h = at("h");
    make_toolkit("h", "lib64", 13, 0, true, true);
    find(&tk, h, NULL, NULL, NULL, NULL, NULL);
    StrBuf one = {0}, two = {0};
    cuda_toolkit_identity(&tk, &one);
    make_file("h/lib64/libnvrtc-builtins.so.13.0", 7, false); /* the builtins change */
    cuda_toolkit_identity(&tk, &two);
    CHECK(one.data && two.data && strcmp(one.data, two.data) != 0 && contains(one.data, "libnvrtc.so.13"),
          "%s / %s", str(one.data), str(two.data));
    cuda_toolkit_free(&tk);
    sb_free(&one), sb_free(&two);
    free(h);
}

/* The real toolkit of this machine, when there is one. */
static void test_real_nvrtc(void) {
    const CudaToolkit *tk = cuda_toolkit();
    if (tk->problem) {
        printf("skip: NVRTC checks (%s)\n", tk->problem);
        return;
    }
    NvrtcInfo info;
    char err[4096];
    bool ok = nvrtc_describe(&info, err, sizeof err);
    CHECK(ok, "%s", err);
    if (!ok) return;
    CHECK(info.major == tk->builtins_major && info.minor == tk->builtins_minor, "NVRTC %d.%d, builtins %d.%d",
          info.major, info.minor, tk->builtins_major, tk->builtins_minor);
    CHECK(info.narchs > 0 && nvrtc_supports_arch(&info, 90) && !nvrtc_supports_arch(&info, 31), "%d archs",
          info.narchs);
    const char *src = "#include <cuda_fp16.h>\n"
                      "extern \"C\" __global__ void k(__half *x) { x[threadIdx.x] = __float2half(1.0f); }\n";
    char *out = NULL;
    size_t n = 0;
    KilnStatus st = nvrtc_compile_to(src, 90, NVRTC_PTX, &out, &n, err, sizeof err);
    CHECK(st == KILN_OK && n > 0 && contains(out, ".entry k"), "%s", err);
    free(out);
    st = nvrtc_compile_to(src, 90, NVRTC_CUBIN, &out, &n, err, sizeof err);
    CHECK(st == KILN_OK && n > 64 && out && memcmp(out, "\177ELF", 4) == 0, "%s", err);
    free(out);
    st = nvrtc_compile_to(src, 31, NVRTC_PTX, &out, &n, err, sizeof err);
    CHECK(st != KILN_OK && contains(err, "cannot compile for sm_31") && contains(err, "sm_90"), "%s", err);
    free(out);
}

/* PTX, SASS or refused, by versions; which architecture, by NVRTC's list. */
static void test_compat(void) {
    NvrtcOutput out;
    char err[1024] = "";
    struct {
        int nvrtc, driver;
        bool sass;
        int want; /* 0 PTX, 1 SASS, -1 refused */
    } cases[] = {
        {13000, 13000, false, 0},  {13000, 13020, false, 0},
        {12040, 13000, false, 0},                             /* driver as new or newer */
        {12080, 12020, false, 1},  {13010, 13000, false, 1},  /* older, same major: SASS */
        {13000, 12080, false, -1}, {12040, 11080, false, -1}, /* older major: refused */
        {13000, 0, false, 0},      {13000, 13000, true, 1},   /* no driver; forced SASS */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool ok = cuda_choose_output(cases[i].nvrtc, cases[i].driver, cases[i].sass, &out, err, sizeof err);
        int got = !ok ? -1 : out == NVRTC_CUBIN ? 1 : 0;
        CHECK(got == cases[i].want, "NVRTC %d, driver %d%s: %d, expected %d (%s)", cases[i].nvrtc,
              cases[i].driver, cases[i].sass ? ", SASS asked" : "", got, cases[i].want, err);
    }
    cuda_choose_output(13000, 12080, false, &out, err, sizeof err);
    CHECK(contains(err, "CUDA 12.8") && contains(err, "CUDA 13.0") && contains(err, "R580") &&
              contains(err, "CUDA_HOME"),
          "%s", err);
    CHECK(cuda_min_linux_driver(13000) == 580 && cuda_min_linux_driver(12040) == 550 &&
              cuda_min_linux_driver(12070) == 560 && cuda_min_linux_driver(9000) == 0,
          "driver branches");

    static const int archs[] = {75, 80, 86, 89, 90, 100, 120};
    NvrtcInfo info = {13, 0, archs, (int)(sizeof archs / sizeof archs[0]), "libnvrtc.so"};
    int arch = 0;
    CHECK(cuda_choose_arch(&info, NVRTC_PTX, 90, false, 90, &arch, err, sizeof err) && arch == 90, "%d %s",
          arch, err);
    /* a GPU newer than NVRTC knows: PTX for the newest it lists, the driver JITs it */
    CHECK(cuda_choose_arch(&info, NVRTC_PTX, 121, false, 121, &arch, err, sizeof err) && arch == 120, "%d %s",
          arch, err);
    /* but an explicit --arch it does not list is refused, with the list */
    CHECK(!cuda_choose_arch(&info, NVRTC_PTX, 87, true, 90, &arch, err, sizeof err) && contains(err, "sm_86"),
          "%s", err);
    /* a GPU older than NVRTC supports */
    CHECK(!cuda_choose_arch(&info, NVRTC_PTX, 70, false, 70, &arch, err, sizeof err) &&
              contains(err, "sm_70") && contains(err, "CUDA_HOME"),
          "%s", err);
    /* SASS: for the GPU itself, else its generation's newest not above it */
    CHECK(cuda_choose_arch(&info, NVRTC_CUBIN, 80, true, 90, &arch, err, sizeof err) && arch == 90, "%d %s",
          arch, err);
    CHECK(cuda_choose_arch(&info, NVRTC_CUBIN, 87, false, 87, &arch, err, sizeof err) && arch == 86, "%d %s",
          arch, err);
    CHECK(!cuda_choose_arch(&info, NVRTC_CUBIN, 103, false, 103, &arch, err, sizeof err) || arch == 100,
          "%d %s", arch, err);
    CHECK(!cuda_choose_arch(&info, NVRTC_CUBIN, 72, false, 72, &arch, err, sizeof err) &&
              contains(err, "SASS"),
          "%s", err);
}

int main(void) {
    if (!mkdtemp(base)) {
        perror("test_cuda_toolkit: mkdtemp");
        return 1;
    }
    test_cuda_home();
    test_order();
    test_layouts();
    test_identity();
    test_compat();
    test_real_nvrtc();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0) fprintf(stderr, "test_cuda_toolkit: could not remove %s\n", base);
    printf("test_cuda_toolkit: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
