/* support.h - what every layer of the compiler uses: memory (xmalloc, arenas,
 * growable strings and arrays), hashing, source locations, diagnostics and the
 * timing of the compiler's phases.
 * One header for the support/ folder, divided into per-file sections.  support/
 * is the bottom layer: it includes only the C library and POSIX threads
 * (docs/architecture.md). */
#ifndef ELIDE_SUPPORT_H
#define ELIDE_SUPPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- memory.c: xmalloc, arenas, strings, hashing ---- */

typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
	ArenaBlock *head; /* newest block first */
} Arena;

void *xmalloc(size_t n);            /* dies on out-of-memory */
void *xcalloc(size_t n, size_t sz); /* idem, zeroed */
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
void *xmemdup(const void *p, size_t n); /* a malloc'd copy of n bytes (n may be 0) */
void *arena_alloc(Arena *a, size_t n); /* zeroed, 16-byte aligned */
char *arena_strdup(Arena *a, const char *s);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(Arena *a);
uint64_t hash_bytes(const void *p, size_t n, uint64_t seed); /* FNV-1a 64 (short keys) */
/* A 64-bit hash of bulk data (weights), 8 bytes a step in four lanes: about ten times
 * faster than hash_bytes on large buffers; not the same values. */
uint64_t hash_data(const void *p, size_t n, uint64_t seed);

/* A growable NUL-terminated string ({0} is empty; s is malloc'ed, the caller frees). */
typedef struct StrBuf {
	char *s;
	size_t n, cap;
} StrBuf;
void sb_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Growable array helper: grows *pp (count n, capacity *cap) to hold n+1 elements. */
#define VEC_PUSH(pp, n, cap) \
	((n) >= (cap) ? ((cap) = (cap) ? 2 * (cap) : 8, (pp) = xrealloc((pp), (cap) * sizeof *(pp))) : (pp))

/* ---- diag.c: source locations and diagnostics ----
 * A diagnostic prints as clang does: "file:line:col: error: message", then the
 * source line and a caret (with a '~' underline when the location has a range).
 * A Diag collects errors; after DIAG_MAX_ERRORS it stops printing and says so.
 * Messages are lowercase, without a final period, and quote names as 'x'. */
#define DIAG_MAX_ERRORS 20

typedef struct Loc {
	const char *file; /* path as given by the user; NULL for "no location" */
	int line;         /* 1-based; 0 when unknown */
	int col;          /* 1-based column of the first character */
	int end_col;      /* column one past the last character on the same line, 0 if none */
} Loc;

typedef struct SourceFile {
	const char *path; /* name printed in diagnostics */
	const char *text; /* whole file, NUL-terminated */
	size_t len;       /* bytes in text */
} SourceFile;

typedef struct Diag {
	FILE *out;              /* where messages go (stderr by default) */
	const SourceFile *srcs[16]; /* files whose lines can be quoted */
	int nsrcs;
	int nerrors;            /* errors reported so far (printed or not) */
	int nwarnings;
} Diag;

void diag_init(Diag *d, FILE *out);
void diag_add_source(Diag *d, const SourceFile *src);
void diag_error(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_warning(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_note(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_verror(Diag *d, Loc loc, const char *kind, const char *fmt, va_list ap);
bool diag_too_many(const Diag *d); /* true once DIAG_MAX_ERRORS were reported */

/* Reads a whole file; NULL (errno set) on failure.  The file stays allocated for the
 * life of the process (callers need not free it; diagnostics may quote it). */
/* Largest source file read (models and textual IR): 64 MiB. */
#define DIAG_MAX_SOURCE ((size_t)64 << 20)
SourceFile *diag_read_file(const char *path);

/* ---- file.c: opening input files ---- */

/* open(path, O_RDONLY) that never blocks on a FIFO without a writer (it is opened
 * non-blocking, then switched back to blocking reads); -1 with errno on failure. */
int file_open_read(const char *path);
/* The same as a FILE (fopen(path, "rb")); NULL with errno on failure. */
FILE *file_fopen_read(const char *path);
/* The whole file as a NUL-terminated string (length in *len when len is not NULL);
 * NULL when it cannot be read or is longer than max bytes. */
char *file_slurp(const char *path, size_t max, size_t *len);

/* Internal compiler errors: bugs, never bad input. */
_Noreturn void elide_ice(const char *file, int line, const char *msg);
#define ELIDE_ICE(msg) elide_ice(__FILE__, __LINE__, (msg))
#define ELIDE_UNREACHABLE() elide_ice(__FILE__, __LINE__, "unreachable")

/* ---- phase.c: phase times and progress (`elide compile -v`) ----
 * A Phases records, for each phase of a run, its wall time, the CPU time of the
 * process (user + sys) and the peak resident set so far.  phase_begin ends the
 * phase running, if any.  With `progress` set (stderr is a terminal), phase_progress
 * redraws one status line at most ten times a second; it does nothing otherwise.
 * Every function accepts NULL (no timing asked). */
#define PHASE_MAX 24

typedef struct PhaseRow {
	const char *name;         /* static string */
	double wall, cpu;         /* seconds */
	long peak_kb;             /* peak RSS of the process at the phase's end */
} PhaseRow;

typedef struct Phases {
	FILE *out;                /* where the table and progress go */
	bool progress;            /* draw progress lines (out is a terminal) */
	PhaseRow rows[PHASE_MAX];
	int nrows;
	int cur;                  /* row of the phase running, -1 when none */
	double wall0, cpu0;       /* start of the phase running */
	double start_wall, start_cpu; /* phases_init */
	double last_draw;         /* wall time of the last progress line */
	bool drawn;               /* a progress line is on the terminal */
	void *ticker;             /* the thread redrawing a long phase's line (phase.c) */
} Phases;

void phases_init(Phases *p, FILE *out, bool progress);
void phase_begin(Phases *p, const char *name);
/* A phase with no progress of its own (LLVM's): on a terminal, a thread redraws its
 * line with the time elapsed until the phase ends.  Nothing else may print to `out`
 * before it ends (phase_end). */
void phase_begin_long(Phases *p, const char *name);
void phase_end(Phases *p);
void phase_progress(Phases *p, uint64_t done, uint64_t total);
/* Ends the running phase and prints the table: one row per phase and a total. */
void phases_report(Phases *p);

#endif
