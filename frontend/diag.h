/* diag.h - source locations and diagnostics shared by every part of the compiler.
 * A diagnostic prints as clang does: "file:line:col: error: message", then the
 * source line and a caret (with a '~' underline when the location has a range).
 * A Diag collects errors; after DIAG_MAX_ERRORS it stops printing and says so.
 * Messages are lowercase, without a final period, and quote names as 'x'. */
#ifndef ELIDE_DIAG_H
#define ELIDE_DIAG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

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
	bool color;             /* reserved: no colour output yet */
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

/* Internal compiler errors: bugs, never bad input. */
_Noreturn void elide_ice(const char *file, int line, const char *msg);
#define ELIDE_ICE(msg) elide_ice(__FILE__, __LINE__, (msg))
#define ELIDE_UNREACHABLE() elide_ice(__FILE__, __LINE__, "unreachable")

#endif
