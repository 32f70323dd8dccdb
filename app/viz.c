/* viz.c - the fused-kernel graph of a compiled graph, as Graphviz text and
 * as SVG (contract in viz.h).
 *
 * SVG comes from Graphviz's own `dot` program, run as a child process: the
 * Graphviz text goes in through an unlinked temporary file (so a `dot` that
 * dies early cannot block or signal kiln on a pipe), the SVG and any
 * complaint come back through pipes read together with poll(). */
#include "app/viz.h"

#include "runtime/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

KilnStatus viz_print_dot(const IRGraph *g, const CompileOptions *opt, const DotTimes *times, FILE *out,
                         char *err, size_t errlen) {
    const char *sym;
    if (!ir_graph_is_concrete(g, &sym)) {
        StrBuf note = {0};
        sb_printf(&note, "%s: graph nodes only; the fused kernels need every dimension bound (--dim %s=SIZE)",
                  g->name, sym);
        ir_print_dot(g, note.data, out);
        sb_free(&note);
        return KILN_OK;
    }
    Arena *arena = arena_new();
    KProgram *kp = exec_schedule(arena, g, opt, err, errlen);
    if (kp) kprog_print_dot(kp, g, times, out);
    kprog_destroy(kp);
    arena_free(arena);
    return kp ? KILN_OK : KILN_ERR_DEVICE;
}

/* ------------------------------------------------------------ Graphviz */

/* The full path of program `name` on PATH, or NULL. */
static char *find_program(const char *name) {
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    while (true) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        StrBuf full = {0};
        sb_printf(&full, "%.*s/%s", (int)n, n ? path : ".", name);
        struct stat st;
        if (stat(full.data, &st) == 0 && S_ISREG(st.st_mode) && access(full.data, X_OK) == 0)
            return full.data;
        sb_free(&full);
        if (!colon) return NULL;
        path = colon + 1;
    }
}

/* A growable byte buffer for what the child prints. */
typedef struct {
    char *data;
    size_t len, cap;
} Bytes;

static bool bytes_read(Bytes *b, int fd) {
    if (b->cap - b->len < 65536) {
        b->cap = b->cap * 2 + 65536;
        b->data = xrealloc(b->data, b->cap + 1);
    }
    ssize_t r = read(fd, b->data + b->len, b->cap - b->len);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (r <= 0) return false; /* end of file, or an error: stop reading */
    b->len += (size_t)r;
    return true;
}

/* An unlinked temporary file holding `text`, positioned at its start. */
static int temp_input(const char *text, size_t len, char *err, size_t errlen) {
    const char *dir = getenv("TMPDIR");
    StrBuf path = {0};
    sb_printf(&path, "%s/kiln-dot-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkostemp(path.data, O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot make a temporary file for Graphviz in %s: %s",
                 dir && *dir ? dir : "/tmp", strerror(errno));
        sb_free(&path);
        return -1;
    }
    unlink(path.data);
    sb_free(&path);
    if (!write_fully(fd, text, len) || lseek(fd, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot write the temporary file for Graphviz: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Runs `prog -Tsvg` with stdin from in_fd; fills out and errs. Returns the
 * exit status (-1 when it could not start or was killed, with err set). */
static int run_dot(const char *prog, int in_fd, Bytes *out, Bytes *errs, char *err, size_t errlen) {
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot run Graphviz: pipe: %s", strerror(errno));
        return -1;
    }
    if (pipe2(pe, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot run Graphviz: pipe: %s", strerror(errno));
        close(po[0]), close(po[1]);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    char *argv[] = {(char *)"dot", (char *)"-Tsvg", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    if (rc != 0) {
        snprintf(err, errlen, "cannot run Graphviz's %s: %s", prog, strerror(rc));
        close(po[0]), close(pe[0]);
        return -1;
    }
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    Bytes *sinks[2] = {out, errs};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (!bytes_read(sinks[i], fds[i].fd)) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(err, errlen, "Graphviz's %s: waitpid: %s", prog, strerror(errno));
            return -1;
        }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    snprintf(err, errlen, "Graphviz's %s was killed by signal %d", prog, WTERMSIG(status));
    return -1;
}

KilnStatus viz_render_svg(const char *dot, size_t dot_len, char **svg, size_t *svg_len, char *err,
                          size_t errlen) {
    *svg = NULL;
    *svg_len = 0;
    char *prog = find_program("dot");
    if (!prog) {
        snprintf(
            err, errlen,
            "SVG needs Graphviz's `dot` program, which is not on PATH (Debian: apt-get install graphviz; "
            "tools/install-deps.sh installs it); --emit=dot prints the graph for it");
        return KILN_ERR_DEVICE;
    }
    int in_fd = temp_input(dot, dot_len, err, errlen);
    Bytes out = {0}, errs = {0};
    int rc = in_fd < 0 ? -1 : run_dot(prog, in_fd, &out, &errs, err, errlen);
    if (in_fd >= 0) close(in_fd);
    KilnStatus st = KILN_OK;
    if (rc > 0 || (rc == 0 && out.len == 0)) {
        size_t n = errs.len;
        while (n > 0 && (errs.data[n - 1] == '\n' || errs.data[n - 1] == '\r')) n--;
        snprintf(err, errlen, "Graphviz's %s failed (exit status %d)%s%.*s", prog, rc, n ? ": " : "",
                 (int)(n < 600 ? n : 600), n ? errs.data : "");
        st = KILN_ERR_DEVICE;
    } else if (rc < 0) {
        st = KILN_ERR_DEVICE;
    }
    if (st == KILN_OK) {
        /* the mark goes after the XML declaration, which must stay first */
        out.data[out.len] = 0;
        size_t head = 0;
        if (strncmp(out.data, "<?xml", 5) == 0) {
            const char *nl = strchr(out.data, '\n');
            head = nl ? (size_t)(nl - out.data) + 1 : 0;
        }
        StrBuf sb = {0};
        sb_printf(&sb, "%.*s%s %s, drawn by Graphviz -->\n", (int)head, out.data, VIZ_SVG_MARK, KILN_VERSION);
        sb_printf(&sb, "%s", out.data + head);
        *svg = sb.data;
        *svg_len = sb.len;
    }
    free(out.data);
    free(errs.data);
    free(prog);
    return st;
}
