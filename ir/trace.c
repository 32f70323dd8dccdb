/* trace.c - a timeline of what one kiln command did (`bench --trace`), and
 * its Chrome trace-event JSON (the format chrome://tracing and Perfetto
 * open).  Contract in ir.h ("trace.c").
 *
 * A Trace holds tracks and spans.  A track is a (process, thread) pair of
 * the picture: every host thread that records is a track of the process
 * "kiln (host)" on its own (named "main" for the thread that made the trace,
 * else "worker N"); other tracks are named by their caller (the kernel
 * launches of "device cpu").  A span is [t0, t1] on the monotonic clock
 * (trace_clock_ms), a category, a name and optional arguments (a JSON
 * object's text).  Recording takes a lock: the LLVM backend compiles parts
 * of a program on several threads at once. */
#include "ir/ir.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char *process, *thread;
    long os_tid; /* the host thread a host track stands for; 0 for named tracks */
    int pid, tid;
} TraceTrack;

typedef struct {
    int track;
    const char *cat; /* a literal */
    char *name, *args;
    double t0, t1;
} TraceSpan;

struct Trace {
    pthread_mutex_t lock;
    double origin;  /* trace_clock_ms() when the trace began: ts 0 */
    long main_tid;  /* the thread that made it */
    int nprocesses; /* pids handed out (1..) */
    int nworkers;   /* host threads named so far besides main */
    VEC(TraceTrack) tracks;
    VEC(TraceSpan) spans;
};

static const char *const HOST_PROCESS = "kiln (host)";

double trace_clock_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

Trace *trace_new(void) {
    Trace *t = xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    t->origin = trace_clock_ms();
    t->main_tid = (long)gettid();
    return t;
}

void trace_free(Trace *t) {
    if (!t) return;
    for (int i = 0; i < t->tracks.len; i++) {
        free(t->tracks.data[i].process);
        free(t->tracks.data[i].thread);
    }
    for (int i = 0; i < t->spans.len; i++) {
        free(t->spans.data[i].name);
        free(t->spans.data[i].args);
    }
    VEC_FREE(t->tracks);
    VEC_FREE(t->spans);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* The pid of `process`: that of a track already in it, else the next one. */
static int process_pid(Trace *t, const char *process) {
    for (int i = 0; i < t->tracks.len; i++)
        if (strcmp(t->tracks.data[i].process, process) == 0) return t->tracks.data[i].pid;
    return ++t->nprocesses;
}

/* Under the lock: the track of (process, thread), or of host thread os_tid
 * when os_tid != 0; made on first use. */
static int track_locked(Trace *t, const char *process, const char *thread, long os_tid) {
    int ntids = 0;
    for (int i = 0; i < t->tracks.len; i++) {
        const TraceTrack *k = &t->tracks.data[i];
        if (os_tid ? k->os_tid == os_tid
                   : !k->os_tid && strcmp(k->process, process) == 0 && strcmp(k->thread, thread) == 0)
            return i;
        if (strcmp(k->process, process) == 0) ntids++;
    }
    TraceTrack k = {xstrdup(process), NULL, os_tid, process_pid(t, process), 0};
    if (os_tid) {
        StrBuf name = {0};
        if (os_tid == t->main_tid)
            sb_puts(&name, "main");
        else
            sb_printf(&name, "worker %d", ++t->nworkers);
        k.thread = name.data;
        k.tid = (int)os_tid;
    } else {
        k.thread = xstrdup(thread);
        k.tid = ntids + 1;
    }
    VEC_PUSH(t->tracks, k);
    return t->tracks.len - 1;
}

int trace_track(Trace *t, const char *process, const char *thread) {
    if (!t) return -1;
    pthread_mutex_lock(&t->lock);
    int id = track_locked(t, process, thread, 0);
    pthread_mutex_unlock(&t->lock);
    return id;
}

static void add_span(Trace *t, int track, const char *cat, double t0, double t1, const char *args,
                     const char *fmt, va_list ap) {
    StrBuf name = {0};
    sb_vprintf(&name, fmt, ap);
    TraceSpan s = {
        track, cat, name.data ? name.data : xstrdup(""), args ? xstrdup(args) : NULL, t0, t1 < t0 ? t0 : t1};
    pthread_mutex_lock(&t->lock);
    if (s.track < 0) s.track = track_locked(t, HOST_PROCESS, NULL, (long)gettid());
    VEC_PUSH(t->spans, s);
    pthread_mutex_unlock(&t->lock);
}

void trace_span(Trace *t, const char *cat, double t0, double t1, const char *fmt, ...) {
    if (!t) return;
    va_list ap;
    va_start(ap, fmt);
    add_span(t, -1, cat, t0, t1, NULL, fmt, ap);
    va_end(ap);
}

void trace_span_on(Trace *t, int track, const char *cat, double t0, double t1, const char *args,
                   const char *fmt, ...) {
    if (!t || track < 0) return;
    va_list ap;
    va_start(ap, fmt);
    add_span(t, track, cat, t0, t1, args, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ JSON */

void json_quote(StrBuf *sb, const char *s) {
    sb_puts(sb, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sb_printf(sb, "\\%c", c);
        else if (c == '\n')
            sb_puts(sb, "\\n");
        else if (c < 0x20)
            sb_printf(sb, "\\u%04x", c);
        else
            sb_printf(sb, "%c", c);
    }
    sb_puts(sb, "\"");
}

/* Parents before children: by start, then the longer first. */
static int span_order(const void *a, const void *b) {
    const TraceSpan *x = *(const TraceSpan *const *)a, *y = *(const TraceSpan *const *)b;
    if (x->t0 != y->t0) return x->t0 < y->t0 ? -1 : 1;
    double dx = x->t1 - x->t0, dy = y->t1 - y->t0;
    return dx > dy ? -1 : dx < dy;
}

/* Events after the first start with ",\n"; the first with "\n". */
static void metadata(StrBuf *sb, bool first, const char *what, int pid, int tid, const char *name) {
    sb_printf(sb, "%s\n{\"ph\": \"M\", \"name\": \"%s\", \"pid\": %d, \"tid\": %d, \"args\": {\"name\": ",
              first ? "" : ",", what, pid, tid);
    json_quote(sb, name);
    sb_puts(sb, "}}");
}

/* The spans in start order, parents first (under the lock). */
static const TraceSpan **sorted_spans(Trace *t) {
    const TraceSpan **order = xcalloc((size_t)t->spans.len + 1, sizeof *order);
    for (int i = 0; i < t->spans.len; i++) order[i] = &t->spans.data[i];
    qsort(order, (size_t)t->spans.len, sizeof *order, span_order);
    return order;
}

int trace_spans(Trace *t, TraceSpanView **out) {
    pthread_mutex_lock(&t->lock);
    const TraceSpan **order = sorted_spans(t);
    int n = t->spans.len;
    *out = xcalloc((size_t)n + 1, sizeof **out);
    for (int i = 0; i < n; i++) {
        const TraceSpan *s = order[i];
        const TraceTrack *k = &t->tracks.data[s->track];
        (*out)[i] = (TraceSpanView){k->process, k->thread,         s->cat,           s->name,
                                    s->args,    s->t0 - t->origin, s->t1 - t->origin};
    }
    free(order);
    pthread_mutex_unlock(&t->lock);
    return n;
}

void trace_write_json(Trace *t, const char *other_data, StrBuf *out) {
    pthread_mutex_lock(&t->lock);
    sb_printf(out, TRACE_JSON_HEAD "%s\"%s%s}, \"displayTimeUnit\": \"ms\",\n", KILN_VERSION,
              other_data && *other_data ? ", " : "", other_data ? other_data : "");
    sb_puts(out, "\"traceEvents\": [");
    for (int i = 0; i < t->tracks.len; i++) {
        const TraceTrack *k = &t->tracks.data[i];
        bool first_of_process = true;
        for (int j = 0; j < i; j++) first_of_process = first_of_process && t->tracks.data[j].pid != k->pid;
        if (first_of_process) {
            metadata(out, i == 0, "process_name", k->pid, 0, k->process);
            sb_printf(out,
                      ",\n{\"ph\": \"M\", \"name\": \"process_sort_index\", \"pid\": %d, \"tid\": 0, "
                      "\"args\": {\"sort_index\": %d}}",
                      k->pid, k->pid);
        }
        metadata(out, false, "thread_name", k->pid, k->tid, k->thread);
    }
    const TraceSpan **order = sorted_spans(t);
    for (int i = 0; i < t->spans.len; i++) {
        const TraceSpan *s = order[i];
        const TraceTrack *k = &t->tracks.data[s->track];
        sb_printf(out, "%s\n{\"ph\": \"X\", \"cat\": \"%s\", \"name\": ", t->tracks.len || i ? "," : "",
                  s->cat);
        json_quote(out, s->name);
        sb_printf(out, ", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f", k->pid, k->tid,
                  (s->t0 - t->origin) * 1e3, (s->t1 - s->t0) * 1e3);
        if (s->args) sb_printf(out, ", \"args\": %s", s->args);
        sb_puts(out, "}");
    }
    sb_puts(out, "\n]}\n");
    free(order);
    pthread_mutex_unlock(&t->lock);
}
